"""The signals a command received, where every commit point can see them.

A library may catch the exception a signal raised (onnx2tf and TensorFlow do, in places)
and carry on to the end. So each place that moves a result into place calls
:func:`stop_if_signalled` first: a run that was told to stop never leaves a result behind,
even when the exception that should have stopped it was swallowed on the way.
"""

from __future__ import annotations

import signal


class Terminated(BaseException):
    """SIGTERM, raised where the program is, so staging folders are cleaned up as on Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


_received: list[int] = []


def record(signum: int) -> None:
    _received.append(signum)


def clear() -> None:
    _received.clear()


def first_received() -> int | None:
    return _received[0] if _received else None


def stop_if_signalled() -> None:
    """Raise again what a received signal raised, if a library swallowed it."""
    signum = first_received()
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    if signum is not None:
        raise Terminated(signum)
