"""Build the matrix (targets x variants x precisions x forms) and check every artifact's parity.

    python -m converters.all [--variants S,L] [--targets ...] [--precisions ...] [--forms ...]
        [--workers N [--ray-address ADDR]]

Each list option takes comma-separated values, repeats, or both: ``--variants S,L`` is
``--variants S --variants L``.

Prints a Markdown table (and writes it, with a verdict line, as ``parity.md`` and
``parity.json`` in ``--out``, each atomically; ``--results PATH`` writes ``parity.json``'s
document there too, with the run's provenance, ``model.provenance``). Every option, the
output folder and each cell's request are checked before any work; a combination that
leaves no cell to build is refused. Exits non-zero if any conversion failed or any
artifact missed its parity gate, naming each (and the reports say FAILED).

With ``--workers`` the cells run as Ray tasks (:mod:`converters.distributed`), N at a
time, on an embedded Ray or the cluster ``--ray-address`` (or ``RAY_ADDRESS``) names; the
artifacts, manifests and reports are those of the local run. Without it Ray is not
imported.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import click

from model.atomic import atomic_path
from model.checkpoint import sha256
from model.cluster import cluster_address, ray_address_option, workers_option
from model.config import VARIANTS
from model.errors import ProjectError
from model.forms import EXPORT_FORMS
from model.hub import resolve_weights
from model.options import (
    command,
    existing_path,
    frames_option,
    list_option,
    out_option,
    weights_option,
)
from model.provenance import write_results
from model.tables import markdown_table
from runtimes.manifest import ParityRecord, write_json_atomic
from runtimes.targets import CONVERTED, PRECISIONS, Cell, Status, matrix

from .build import check_replaceable
from .cell import SHIPPED, MatrixOptions, MatrixResult, build_cell
from .command import quiet_toolchains
from .distributed import build_matrix_on_ray
from .parity import FRAMES_HELP, arm64_option, parity_data_of, parity_data_options
from .registry import get_target
from .spec import ConversionError, validate


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
    options: MatrixOptions = SHIPPED,
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
        request = options.request(cell, out)
        validate(request, target.precisions, cell.target, target.calibrates)
        check_replaceable(out / f"{request.stem}{target.suffix}")
    for report in ("parity.md", "parity.json"):
        if (out / report).is_dir():
            raise ConversionError(f"{out / report} is a folder; the report cannot be written")
    return cells


def build_matrix(
    cells: list[Cell], out: Path, options: MatrixOptions = SHIPPED
) -> list[MatrixResult]:
    """Convert and check each cell of ``check_matrix``, in order.

    ``options.arm64``: cells whose target has an emulated ARM64 runtime are checked there too.
    """
    return [build_cell(cell, out, options) for cell in cells]


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
@click.option(
    "--calibration",
    type=existing_path,
    help="Dataset folder of int8 calibration frames (the targets whose int8 calibrates).",
)
@frames_option(None, FRAMES_HELP)
@arm64_option
@parity_data_options
@out_option("artifacts", "Folder for the artifacts, parity.md and parity.json.")
@workers_option
@ray_address_option
@click.option(
    "--results",
    "results_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write parity.json, with its provenance, here (results/parity.json).",
)
def main(
    variants: list[str],
    targets: list[str],
    precisions: list[str],
    forms: list[str],
    weights: str,
    calibration: Path | None,
    frames: int | None,
    arm64: bool,
    data: Path | None,
    split: Path | None,
    subset: str | None,
    out: Path,
    workers: int | None,
    ray_address: str | None,
    results_file: Path | None,
) -> None:
    """Build the matrix of artifacts and check each one's parity; exit 1 if any failed."""
    if workers is None and ray_address is not None:
        raise ProjectError("--ray-address needs --workers")
    parity_data = parity_data_of(data, split, subset)
    options = MatrixOptions(weights, frames, arm64, calibration, parity_data)
    cells = check_matrix(variants, targets, precisions, forms, out, options)
    parity_data.check()
    if results_file is not None and results_file.is_dir():
        raise ConversionError(f"--results {results_file} is a folder; name a file")
    if workers is None:
        with quiet_toolchains():
            results = build_matrix(cells, out, options)
    else:
        address = cluster_address(ray_address)
        results = build_matrix_on_ray(cells, out, options, workers, address)
    table = markdown(results)
    bad = [r for r in results if r.status not in (Status.PASSED, Status.NOT_RUN_HERE)]
    verdict = summary(results, bad)
    with atomic_path(out / "parity.md") as tmp:
        tmp.write_text(f"{table}\n\n{verdict}\n")
    report = {
        "weights_sha256": {v: sha256(resolve_weights(v, weights)) for v in variants},
        "passed": not bad,
        "summary": verdict,
        "failed": [r.label for r in bad],
        "results": [asdict(r) for r in results],
    }
    write_json_atomic(out / "parity.json", report)
    if results_file is not None:
        libraries = sorted({d for name in targets for d in get_target(name).distributions})
        write_results(results_file, report, libraries)
    print(table)
    for r in bad:
        print(f"FAILED {r.label}: {r.status}: {r.error}", file=sys.stderr)
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
