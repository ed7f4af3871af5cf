"""Build the matrix (targets x variants x precisions x forms) and check every artifact's parity.

    python -m converters.all [--variants S,L] [--targets ...] [--precisions ...] [--forms ...]

Each list option takes comma-separated values, repeats, or both: ``--variants S,L`` is
``--variants S --variants L``.

Prints a Markdown table (and writes it, with a verdict line, as ``parity.md`` and
``parity.json`` in ``--out``, each atomically). Every option, the output folder and each
cell's request are checked before any work; a combination that leaves no cell to build
is refused. Exits non-zero if any conversion failed or any artifact missed its parity
gate, naming each (and the reports say FAILED).
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from model.atomic import atomic_path
from model.checkpoint import CheckpointError
from model.config import VARIANTS
from model.forms import EXPORT_FORMS
from model.options import command, frames_option, list_option, out_option, weights_option
from model.tables import markdown_table
from runtimes.manifest import ParityRecord, read_manifest, write_json_atomic
from runtimes.targets import CONVERTED, PRECISIONS, Cell, Status, matrix

from .build import check_replaceable, convert
from .command import quiet_toolchains
from .parity import DEFAULT_FRAMES, arm64_option, arm64_runtime, record_parity
from .registry import get_target
from .spec import ConversionError, ConvertRequest, validate


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


def matrix_cells(
    variants: list[str], targets: list[str], precisions: list[str], forms: list[str]
) -> list[Cell]:
    """The table's cells among those asked for, target by target (the report's row order)."""
    cells = matrix(tuple(variants), tuple(targets), tuple(precisions), tuple(forms))
    return sorted(cells, key=lambda cell: targets.index(cell.target))


def check_matrix(
    variants: list[str],
    targets: list[str],
    precisions: list[str],
    forms: list[str],
    out: Path,
    weights: str = "shipped",
) -> list[Cell]:
    """The cells to build, each request refused by name before any work; never none."""
    cells = matrix_cells(variants, targets, precisions, forms)
    if not cells:
        supported = "; ".join(
            f"{name} builds {', '.join(get_target(name).precisions)}" for name in targets
        )
        raise ConversionError(
            f"no cell to build: none of {', '.join(targets)} builds precision "
            f"{' or '.join(precisions)} ({supported})"
        )
    for cell in cells:
        target = get_target(cell.target)
        request = ConvertRequest(cell.variant, weights, cell.precision, cell.form, out=out)
        validate(request, target.precisions, cell.target, target.calibrates)
        check_replaceable(out / f"{request.stem}{target.suffix}")
    for report in ("parity.md", "parity.json"):
        if (out / report).is_dir():
            raise ConversionError(f"{out / report} is a folder; the report cannot be written")
    return cells


def build_matrix(
    cells: list[Cell],
    out: Path,
    weights: str = "shipped",
    frames: int = DEFAULT_FRAMES,
    arm64: bool = False,
) -> list[MatrixResult]:
    """Convert and check each cell of ``check_matrix``, in order.

    ``arm64``: cells whose target has an emulated ARM64 runtime are checked there too.
    """
    results = []
    for cell in cells:
        key = (cell.target, cell.variant, cell.precision, cell.form)
        target = get_target(cell.target)
        if not target.is_available():
            results.append(MatrixResult(*key, status=Status.NOT_RUN_HERE))
            continue
        request = ConvertRequest(cell.variant, weights, cell.precision, cell.form, out=out)
        try:
            artifact = convert(target, request)
        except (ConversionError, CheckpointError) as err:
            results.append(MatrixResult(*key, status=Status.FAILED_TO_CONVERT, error=str(err)))
            continue
        on_arm64 = arm64 and arm64_runtime(read_manifest(artifact)) is not None
        record = record_parity(artifact, frames, arm64=on_arm64)
        results.append(result_of(artifact, record))
    return results


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


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _figures(record: ParityRecord | None) -> tuple[str, str, str]:
    """Max abs logit error, mask Dice vs PyTorch (pooled / per-frame mean) and lesions found by
    one side only (missed / false) of one parity record, or dashes."""
    if record is None:
        return "-", "-", "-"
    masks = record.masks_vs_pytorch
    return (
        _fmt(record.logits.max_abs_err, ".2e"),
        f"{_fmt(masks.pooled_dice, '.4f')} / {_fmt(masks.dice, '.4f')}",
        f"{_fmt(masks.missed_findings, 'd')} / {_fmt(masks.false_findings, 'd')}",
    )


MATRIX_HEADER = (
    *("target", "variant", "precision", "form", "status", "max abs err"),
    "mask Dice vs PyTorch (pooled / per-frame)",
    "lesions missed / false",
    "Dice vs GT (target / PyTorch)",
    *("ARM64 max abs err", "ARM64 mask Dice", "ARM64 lesions missed / false", "ARM64 frames"),
    *("size (MB)", "conversion (s)"),
)


def _row(r: MatrixResult) -> list[str]:
    p = r.parity
    gt = None if p is None else p.dice_vs_ground_truth
    truth = "-" if gt is None else f"{_fmt(gt.target, '.4f')} / {_fmt(gt.pytorch, '.4f')}"
    arm = None if p is None else p.arm64
    size = None if r.bytes is None else r.bytes / 1e6
    return [
        *(r.target, r.variant, r.precision, r.form, r.status),
        *_figures(p),
        truth,
        *_figures(arm),
        str(arm.frames) if arm else "-",
        _fmt(size, ".2f"),
        _fmt(r.seconds, ".1f"),
    ]


def markdown(results: list[MatrixResult]) -> str:
    return markdown_table(MATRIX_HEADER, [_row(r) for r in results])


def summary(results: list[MatrixResult], bad: list[MatrixResult]) -> str:
    """The verdict line under the table: every cell that failed counted, never a silent pass."""
    not_run = sum(r.status == Status.NOT_RUN_HERE for r in results)
    skipped = f"; {not_run} {Status.NOT_RUN_HERE} (not built)" if not_run else ""
    if bad:
        return f"FAILED: {len(bad)} of {len(results)} cells failed{skipped}"
    return f"passed: {len(results) - not_run} of {len(results)} cells{skipped}"


@command("python -m converters.all")
@list_option("--variants", tuple(VARIANTS), "BaS variants.")
@list_option("--targets", CONVERTED, "Targets.")
@list_option("--precisions", PRECISIONS, "Precisions (each target builds those it supports).")
@list_option("--forms", EXPORT_FORMS, "Forms.")
@weights_option
@frames_option(DEFAULT_FRAMES, "Frames each parity check compares (whole videos of 20).")
@arm64_option
@out_option("artifacts", "Folder for the artifacts, parity.md and parity.json.")
def main(
    variants: list[str],
    targets: list[str],
    precisions: list[str],
    forms: list[str],
    weights: str,
    frames: int,
    arm64: bool,
    out: Path,
) -> None:
    """Build the matrix of artifacts and check each one's parity; exit 1 if any failed."""
    cells = check_matrix(variants, targets, precisions, forms, out, weights)
    with quiet_toolchains():
        results = build_matrix(cells, out, weights, frames, arm64)
    table = markdown(results)
    bad = [r for r in results if r.status not in (Status.PASSED, Status.NOT_RUN_HERE)]
    verdict = summary(results, bad)
    with atomic_path(out / "parity.md") as tmp:
        tmp.write_text(f"{table}\n\n{verdict}\n")
    write_json_atomic(
        out / "parity.json",
        {
            "passed": not bad,
            "summary": verdict,
            "failed": [r.label for r in bad],
            "results": [asdict(r) for r in results],
        },
    )
    print(table)
    for r in bad:
        print(f"FAILED {r.label}: {r.status}: {r.error}", file=sys.stderr)
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
