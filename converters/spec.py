"""What a conversion is asked for, checked before any work starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.atomic import check_output_folder
from model.config import VARIANTS, unknown_choice
from model.errors import ProjectError
from model.forms import EXPORT_FORMS, IO_NAMES
from runtimes.targets import PRECISIONS, QUANTIZED


class ConversionError(ProjectError):
    """A conversion that cannot run or whose result is not trustworthy; one line, named."""


@dataclass(frozen=True)
class ConvertRequest:
    variant: str = "S"
    weights: str = "shipped"
    precision: str = "fp32"
    form: str = "frame"
    image_size: int = 240
    calibration: Path | None = None
    out: Path = Path("artifacts")

    @property
    def stem(self) -> str:
        """File name stem that says what the artifact is: ``bas_s_frame_240_int8``."""
        return f"bas_{self.variant.lower()}_{self.form}_{self.image_size}_{self.precision}"

    @property
    def input_names(self) -> tuple[str, ...]:
        return IO_NAMES[self.form][0]

    @property
    def output_names(self) -> tuple[str, ...]:
        return IO_NAMES[self.form][1]


def _choice(kind: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConversionError(unknown_choice(kind, value, choices))


def validate(
    request: ConvertRequest, precisions: tuple[str, ...], target: str, calibrates: bool = True
) -> None:
    """Refuse, by name, anything this target cannot build, before loading a model.

    ``calibrates``: whether the target's int8 calibrates on frames (False where its int8
    quantizes the weights only, so that a calibration folder would be silently ignored).
    """
    _choice("variant", request.variant, tuple(VARIANTS))
    _choice("precision", request.precision, PRECISIONS)
    _choice("form", request.form, EXPORT_FORMS)
    if request.precision not in precisions:
        raise ConversionError(
            f"target {target} does not support precision {request.precision}; "
            f"it supports {', '.join(precisions)}"
        )
    if request.image_size <= 0 or request.image_size % 16:
        raise ConversionError(
            f"image size must be a positive multiple of 16, got {request.image_size}"
        )
    if request.calibration is not None and request.precision not in QUANTIZED:
        raise ConversionError(
            f"--calibration is only used with --precision {' or '.join(QUANTIZED)}"
        )
    if request.calibration is not None and not calibrates:
        raise ConversionError(
            f"--calibration is not used by target {target}: its int8 quantizes the weights "
            "only (no activations to calibrate)"
        )
    weights = Path(request.weights)
    if request.weights != "shipped" and not weights.is_file():
        problem = "is not a file" if weights.exists() else "not found"
        raise ConversionError(f"weights file {problem}: {request.weights}")
    check_output_folder(Path(request.out), marker=None, error=ConversionError)
