"""One cell of the matrix: its artifact built, its parity checked, its row of the table.

``converters.all`` builds the cells one after another here, or hands each to a Ray task
(``converters.distributed``); both run this, so both write the same artifacts and rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.checkpoint import CheckpointError
from runtimes.manifest import ParityRecord, read_manifest
from runtimes.targets import Cell, Status

from .build import convert
from .parity import arm64_runtime, record_parity
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


def build_cell(cell: Cell, out: Path, weights: str, frames: int, arm64: bool) -> MatrixResult:
    """Convert one cell into ``out`` and check its parity on ``frames`` frames (and on
    ARM64 kernels too, with ``arm64``, where its target has an emulated runtime)."""
    key = (cell.target, cell.variant, cell.precision, cell.form)
    target = get_target(cell.target)
    if not target.is_available():
        return MatrixResult(*key, status=Status.NOT_RUN_HERE)
    request = ConvertRequest(cell.variant, weights, cell.precision, cell.form, out=out)
    try:
        artifact = convert(target, request)
    except (ConversionError, CheckpointError) as err:
        return MatrixResult(*key, status=Status.FAILED_TO_CONVERT, error=str(err))
    on_arm64 = arm64 and arm64_runtime(read_manifest(artifact)) is not None
    return result_of(artifact, record_parity(artifact, frames, arm64=on_arm64))


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
