"""One cell of the matrix: its artifact built, its parity checked, its row of the table.

``converters.all`` builds the cells one after another here, or hands each to a Ray task
(``converters.distributed``); both run this, so both write the same artifacts and rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.checkpoint import CheckpointError
from runtimes.manifest import ParityRecord, read_manifest
from runtimes.targets import QUANTIZED, Cell, Status

from .build import convert
from .parity import DEFAULT_FRAMES, ParityData, arm64_runtime, record_parity
from .registry import get_target
from .spec import ConversionError, ConvertRequest


@dataclass(frozen=True)
class MatrixResult:
    target: str
    variant: str
    precision: str
    form: str
    status: Status
    artifact: str | None = None
    seconds: float | None = None
    bytes: int | None = None
    parity: ParityRecord | None = None
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.target} BaS-{self.variant} {self.precision} {self.form}"


@dataclass(frozen=True)
class MatrixOptions:
    """What every cell of one matrix shares: the weights, the int8 calibration frames, and
    what parity runs on (``frames`` of ``parity_data``'s videos; ARM64 kernels too)."""

    weights: str = "shipped"
    frames: int | None = DEFAULT_FRAMES
    arm64: bool = False
    calibration: Path | None = None  # used by the cells that calibrate their int8
    parity_data: ParityData = ParityData()

    def request(self, cell: Cell, out: Path) -> ConvertRequest:
        """The cell's conversion request; the calibration folder only where it is used."""
        calibrates = cell.precision in QUANTIZED and get_target(cell.target).calibrates
        calibration = self.calibration if calibrates else None
        return ConvertRequest(
            cell.variant, self.weights, cell.precision, cell.form, calibration=calibration, out=out
        )


SHIPPED = MatrixOptions()  # the shipped weights, parity on the synthetic held-out videos


def build_cell(cell: Cell, out: Path, options: MatrixOptions) -> MatrixResult:
    """Convert one cell into ``out`` and check its parity (on ARM64 kernels too, with
    ``options.arm64``, where its target has an emulated runtime)."""
    key = (cell.target, cell.variant, cell.precision, cell.form)
    target = get_target(cell.target)
    if not target.is_available():
        return MatrixResult(*key, status=Status.NOT_RUN_HERE)
    try:
        artifact = convert(target, options.request(cell, out))
    except (ConversionError, CheckpointError) as err:
        return MatrixResult(*key, status=Status.FAILED_TO_CONVERT, error=str(err))
    on_arm64 = options.arm64 and arm64_runtime(read_manifest(artifact)) is not None
    record = record_parity(artifact, options.frames, arm64=on_arm64, data=options.parity_data)
    return result_of(artifact, record)


def result_of(artifact: Path, record: ParityRecord) -> MatrixResult:
    """One row of the table, from an artifact's manifest and its parity record."""
    manifest = read_manifest(artifact)
    return MatrixResult(
        manifest.target,
        manifest.variant,
        manifest.precision,
        manifest.form,
        status=Status.PASSED if record.passed else Status.FAILED_PARITY,
        artifact=str(artifact),
        seconds=manifest.conversion_seconds,
        bytes=manifest.artifact.bytes,
        parity=record,
        error="; ".join(record.failures) or None,
    )
