"""Decode ahead, write behind: a loop's three stages overlapped through bounded queues.

On two cores a loop run in line spends as long decoding, resizing, drawing, writing PNGs
and encoding H.264 as the network takes, so its end-to-end rate is a third to a half of
its inference rate. Here the frames are decoded in one thread and written in another
while the caller runs the network in its own (a runtime's session is used from one thread
only); PyAV, PIL, NumPy and the runtimes release the GIL for their heavy work. The queues
hold :data:`DEPTH` items, so memory stays bounded; items are written in the order they
were put. An error in either thread is raised in the caller's at its next step, and an
error or a signal in the caller's stops both threads before it goes on.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

Frame = TypeVar("Frame")
Item = TypeVar("Item")

DEPTH = 4  # items each queue holds: enough to ride out one slow frame, little memory
_WAIT_S = 0.1  # how often a blocked thread looks whether it should stop
_END = object()


class Pipeline(Generic[Frame, Item]):
    """``for frame in pipeline`` gives what ``frames`` yields (read ahead); ``put(item)``
    hands an item to ``write`` (called behind, in order). ``overlap=False`` does both in
    the caller's thread, in line. ``decode_s``: seconds spent reading frames."""

    def __init__(
        self, frames: Iterator[Frame], write: Callable[[Item], None], overlap: bool = True
    ) -> None:
        self._frames, self._write, self.overlap = frames, write, overlap
        self._decoded: queue.Queue = queue.Queue(DEPTH)
        self._to_write: queue.Queue = queue.Queue(DEPTH)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._threads: list[threading.Thread] = []
        self.decode_s = 0.0

    def __enter__(self) -> Pipeline[Frame, Item]:
        if self.overlap:
            for target, name in ((self._read, "decode"), (self._write_all, "write")):
                thread = threading.Thread(target=target, name=f"pipeline-{name}", daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def __iter__(self) -> Iterator[Frame]:
        if not self.overlap:
            while True:
                started = time.perf_counter()
                frame = next(self._frames, _END)
                self.decode_s += time.perf_counter() - started
                if frame is _END:
                    return
                yield frame  # type: ignore[misc]
        while True:
            item = self._take(self._decoded)
            if item is _END:
                return
            yield item

    def put(self, item: Item) -> None:
        if not self.overlap:
            self._write(item)
            return
        self._give(self._to_write, item)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self.overlap:
            return
        try:
            if kind is None:  # let the writer finish what was put
                self._give(self._to_write, _END)
                self._threads[1].join()
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join()
        if kind is None:
            self._raise_if_failed()

    def _read(self) -> None:
        try:
            while not self._stop.is_set():
                started = time.perf_counter()
                frame = next(self._frames, _END)
                self.decode_s += time.perf_counter() - started
                if not self._offer(self._decoded, frame) or frame is _END:
                    return
        except BaseException as err:  # raised in the caller's thread at its next step
            self._fail(err)
        finally:
            close = getattr(self._frames, "close", None)
            if close is not None:
                close()

    def _write_all(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    item = self._to_write.get(timeout=_WAIT_S)
                except queue.Empty:
                    continue
                if item is _END:
                    return
                self._write(item)
        except BaseException as err:
            self._fail(err)

    def _fail(self, err: BaseException) -> None:
        if self._error is None:
            self._error = err
        self._stop.set()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _offer(self, into: queue.Queue, item: object) -> bool:
        """Put ``item`` unless told to stop first (False)."""
        while not self._stop.is_set():
            try:
                into.put(item, timeout=_WAIT_S)
                return True
            except queue.Full:
                continue
        return False

    def _give(self, into: queue.Queue, item: object) -> None:
        """The caller's put: waits for room, raising what a thread failed with."""
        if not self._offer(into, item):
            self._raise_if_failed()
            raise RuntimeError("the pipeline stopped")  # a bug: stopped without an error

    def _take(self, out_of: queue.Queue) -> object:
        """The caller's get: waits for an item, raising what a thread failed with."""
        while True:
            self._raise_if_failed()
            try:
                return out_of.get(timeout=_WAIT_S)
            except queue.Empty:
                continue
