"""Every converter plug-in by its row of ``runtimes.targets``: adding one is a module, a row
there and a line here. The toolchains each imports are imported inside it, when it converts."""

from __future__ import annotations

from model.config import unknown_choice
from runtimes.targets import CONVERTED

from .base import Target
from .coreml import CoreMLTarget
from .executorch import ExecuTorchTarget
from .onnx import OnnxTarget
from .spec import ConversionError
from .tflite import TFLiteTarget

TARGET_CLASSES: dict[str, type[Target]] = {
    target.name: target
    for target in (
        OnnxTarget,
        TFLiteTarget,
        CoreMLTarget,
        ExecuTorchTarget,
    )
}


def get_target(name: str) -> Target:
    if name not in CONVERTED:
        raise ConversionError(unknown_choice("target", name, CONVERTED))
    return TARGET_CLASSES[name]()
