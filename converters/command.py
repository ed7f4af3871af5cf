"""The command line shared by ``python -m converters.<target>``."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from model.forms import EXPORT_FORMS
from model.options import (
    command,
    existing_path,
    form_option,
    image_size_option,
    out_option,
    precision_option,
    variant_option,
    weights_option,
)

from .base import Target
from .build import convert
from .spec import ConvertRequest

# What the toolchains (torch.export and torch.onnx, onnxscript, coremltools, onnx2tf,
# TensorFlow) warn and log on every conversion; it buried a failed conversion's one error
# line. Hidden while a conversion runs; the project's own warnings still show.
TOOLCHAIN_WARNINGS = (DeprecationWarning, FutureWarning, UserWarning)
TOOLCHAIN_LOGGERS = (
    "torch.onnx",
    "torch.export",
    "torch._export",
    "onnxscript",
    "coremltools",
    "onnx2tf",
    "tensorflow",
    "absl",
    "executorch",
)
NOT_OURS = r"(?!(model|converters|runtimes)(\.|$))"


@contextmanager
def quiet_toolchains() -> Iterator[None]:
    """Inside the block, third-party deprecation and user warnings and the toolchains' log
    lines below ERROR are not shown, so a failed conversion's ``error:`` line stands alone."""
    loggers = [logging.getLogger(name) for name in TOOLCHAIN_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        for category in TOOLCHAIN_WARNINGS:
            warnings.filterwarnings("ignore", category=category, module=NOT_OURS)
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def target_command(target: Target) -> click.Command:
    """The click command of ``python -m converters.<name>``; its precisions are the target's.

    Given the target itself (not its name): each target module builds its own command.
    """
    name = target.name

    def run(
        variant: str,
        weights: str,
        precision: str,
        form: str,
        image_size: int,
        calibration: Path | None,
        out: Path,
    ) -> None:
        request = ConvertRequest(
            variant=variant,
            weights=weights,
            precision=precision,
            form=form,
            image_size=image_size,
            calibration=calibration,
            out=out,
        )
        with quiet_toolchains():
            artifact = convert(target, request)
        print(artifact)

    run.__doc__ = (
        f"Convert BaS to {name}: writes the artifact and its JSON manifest, "
        "prints the artifact's path last."
    )
    options = (
        variant_option(),
        weights_option,
        precision_option(target.precisions),
        form_option(EXPORT_FORMS),
        image_size_option,
        click.option(
            "--calibration",
            type=existing_path,
            help="BUV, FLA-Net or plain dataset folder of calibration frames (int8 only).",
        ),
        out_option("artifacts", "Folder for the artifact and its manifest."),
    )
    for option in reversed(options):
        run = option(run)
    return command(f"python -m converters.{name}")(run)
