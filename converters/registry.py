"""Every target by name: adding one is a module and a line here."""

from __future__ import annotations

from model.config import unknown_choice

from .base import Target
from .spec import ConversionError


def _targets() -> dict[str, type[Target]]:
    from .coreml import CoreMLTarget
    from .executorch import ExecuTorchTarget
    from .onnx import OnnxTarget
    from .tflite import TFLiteTarget

    return {t.name: t for t in (OnnxTarget, TFLiteTarget, CoreMLTarget, ExecuTorchTarget)}


TARGET_NAMES = ("onnx", "tflite", "coreml", "executorch")


def get_target(name: str) -> Target:
    if name not in TARGET_NAMES:
        raise ConversionError(unknown_choice("target", name, TARGET_NAMES))
    return _targets()[name]()
