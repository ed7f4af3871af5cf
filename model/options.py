"""What every command line of the project shares: option definitions, choices, error handling.

Each command is a :class:`click.Command` built with :func:`command`; its project errors
(``model.errors.ProjectError`` and its kin: bad data, bad weights, a conversion that
cannot run; and an unreadable file) become one ``error: ...`` line on stderr and exit
status 2, like click's own usage errors. Options are defined once here and reused, so
``--variant`` means the same thing, and is checked the same way, everywhere.
"""

from __future__ import annotations

import os
import signal
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from . import signals
from .config import VARIANTS, closest
from .errors import ProjectError, one_line
from .signals import Terminated

F = TypeVar("F", bound=Callable[..., Any])

USAGE_EXIT = 2


class Choice(click.Choice):
    """Case-insensitive choice that returns the canonical spelling and suggests a near miss."""

    def __init__(self, choices: Sequence[str]) -> None:
        super().__init__(list(choices), case_sensitive=False)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return f"[{'|'.join(map(str, self.choices))}]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            choices = [str(c) for c in self.choices]
            hint = closest(str(value).lower(), [c.lower() for c in choices])
            for choice in choices:  # the hint in the choice's own spelling
                hint = hint.replace(repr(choice.lower()), repr(choice))
            self.fail(f"{value!r} is not one of {', '.join(choices)}{hint}", param, ctx)


class CommandError(click.ClickException):
    """A project error as click reports it: ``error: <one line>``, exit status 2."""

    exit_code = USAGE_EXIT

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


_SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


class ProjectCommand(click.Command):
    """A click command with the project's edge: one line and exit 2 for a ProjectError or an
    unusable file, 130 / 143 after Ctrl-C / SIGTERM (cleaned up), and for anything else, a
    bug, its traceback and a line asking for a report."""

    def invoke(self, ctx: click.Context) -> Any:
        def on_signal(signum: int, frame: Any) -> None:
            signals.record(signum)  # libraries that swallow the exception can't hide it
            signals.stop_if_signalled()

        signals.clear()
        handlers = _install({signal.SIGINT: on_signal, signal.SIGTERM: on_signal})
        try:
            result = super().invoke(ctx)
            if signals.first_received():  # a library swallowed the exception the signal raised
                _interrupted(ctx, signals.first_received())
            return result
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            if signals.first_received():
                _interrupted(ctx, signals.first_received())
            raise
        except (KeyboardInterrupt, Terminated):
            _interrupted(ctx, signals.first_received() or signal.SIGINT)
        except (ProjectError, OSError) as err:
            if signals.first_received():
                _interrupted(ctx, signals.first_received())
            raise CommandError(one_line(err)) from err
        except Exception:
            if signals.first_received():
                _interrupted(ctx, signals.first_received())
            traceback.print_exc()
            click.echo(
                "error: internal error in bas-deploy (a bug, not your input); please report "
                "it with the traceback above",
                err=True,
            )
            ctx.exit(1)
        finally:
            _install(handlers)
            signals.clear()


def _install(handlers: dict[int, Any]) -> dict[int, Any]:
    """Set signal handlers where Python allows it (the main thread); return the old ones."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}


def _interrupted(ctx: click.Context, signum: int) -> None:
    name = "interrupted (Ctrl-C)" if signum == signal.SIGINT else "terminated (SIGTERM)"
    click.echo(f"error: {name}; partial output removed", err=True)
    ctx.exit(_SIGNAL_EXIT.get(signum, 128 + signum))


def command(name: str) -> Callable[[F], click.Command]:
    """``@command("python -m model.info")``: a click command with the project's error handling.

    Its help is the function's docstring; ``name`` is what usage lines show.
    """
    return click.command(name=name, cls=ProjectCommand)


def variant_option(required: bool = False) -> Callable[[F], F]:
    return click.option(
        "--variant",
        type=Choice(tuple(VARIANTS)),
        default=None if required else "S",
        required=required,
        show_default=not required,
        help="BaS variant.",
    )


weights_option = click.option(
    "--weights",
    default="shipped",
    show_default=True,
    help="'shipped' (the bundled weights) or a .safetensors file.",
)

image_size_option = click.option(
    "--image-size",
    type=click.IntRange(min=16),
    default=240,
    show_default=True,
    help="Square network input side in pixels (a multiple of 16).",
)


def threads_option_saying(default: str) -> Callable[[F], F]:
    """``--threads``, its help naming what the command does without it."""
    return click.option(
        "--threads",
        type=click.IntRange(min=1),
        default=None,
        help=f"Inference threads (default: {default}).",
    )


threads_option = threads_option_saying("the runtime's own choice")
PIPELINE_THREADS = "one less than the cores: the other decodes ahead and writes behind"


def default_threads() -> int:
    """Inference threads when none are asked for: one core less than the machine has, the
    other decoding ahead and writing behind (measured on 2 cores: 1 thread overlapped
    runs a loop faster end to end than 2 threads, in line or overlapped). The segmentation
    command, the node and ``runtimes.fastest`` all use it, so the pick is timed as it runs."""
    return max(1, (os.cpu_count() or 2) - 1)


def precision_option(choices: Sequence[str], default: str = "fp32") -> Callable[[F], F]:
    return click.option("--precision", type=Choice(choices), default=default, show_default=True)


def form_option(choices: Sequence[str], default: str = "frame") -> Callable[[F], F]:
    return click.option(
        "--form",
        type=Choice(choices),
        default=default,
        show_default=True,
        help="frame: one frame at a time; stream: frame plus the temporal state.",
    )


def out_option(default: str | None = None, help_text: str = "Output folder.") -> Callable[[F], F]:
    return click.option(
        "--out",
        type=click.Path(path_type=Path, file_okay=False),
        default=default,
        required=default is None,
        show_default=default is not None,
        help=help_text,
    )


existing_path = click.Path(path_type=Path, exists=True)


def config_file_option(
    flag: str, help_text: str, required: bool = False, multiple: bool = False
) -> Callable[[F], F]:
    """A YAML config file that must exist (training's TrainConfig files)."""
    return click.option(
        flag,
        type=click.Path(path_type=Path, exists=True, dir_okay=False),
        required=required,
        multiple=multiple,
        help=help_text,
    )


temporal_window_option = click.option(
    "--temporal-window",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="TempLP window in frames (1 disables TempLP: the ablation).",
)


def frames_option(default: int, help_text: str) -> Callable[[F], F]:
    return click.option(
        "--frames", type=click.IntRange(min=1), default=default, show_default=True, help=help_text
    )


def seed_option(default: int, help_text: str = "Synthetic data seed.") -> Callable[[F], F]:
    return click.option(
        "--seed", type=click.IntRange(min=0), default=default, show_default=True, help=help_text
    )


def runtime_option(choices: Sequence[str]) -> Callable[[F], F]:
    return click.option(
        "--runtime",
        type=Choice(choices),
        help="A runtime other than the manifest's (mil_reference: Core ML's reference evaluator).",
    )


def list_option(flag: str, choices: Sequence[str], help_text: str) -> Callable:
    """A repeatable option of comma-separated choices; all of ``choices`` by default."""
    choice = Choice(choices)

    def split(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[str]:
        picked: list[str] = []
        for value in values:
            for item in filter(None, (part.strip() for part in value.split(","))):
                canonical = choice.convert(item, param, ctx)
                if canonical not in picked:
                    picked.append(canonical)
        if not picked:
            raise click.BadParameter("needs at least one value", ctx, param)
        return picked

    return click.option(
        flag,
        multiple=True,
        default=(",".join(choices),),
        show_default=True,
        callback=split,
        metavar="A,B,...",
        help=f"{help_text} Comma-separated or repeated; from {', '.join(choices)}.",
    )
