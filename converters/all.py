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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.atomic import atomic_path
from model.checkpoint import CheckpointError
from model.cli import command, frames_option, list_option, out_option, weights_option
from model.config import VARIANTS
from runtimes.manifest import read_manifest, write_json_atomic

from .build import check_replaceable, convert
from .cli import quiet_toolchains
from .parity import DEFAULT_FRAMES, arm64_option, arm64_runtime, record_parity
from .registry import TARGET_NAMES, get_target
from .spec import FORMS, PRECISIONS, ConversionError, ConvertRequest, validate


@dataclass(frozen=True)
class MatrixResult:
    target: str
    variant: str
    precision: str
    form: str
    status: str  # "passed", "failed parity", "conversion failed", "unavailable"
    artifact: str | None = None
    seconds: float | None = None
    bytes: int | None = None
    parity: dict[str, Any] | None = None
    error: str | None = None


def matrix(
    variants: list[str], targets: list[str], precisions: list[str], forms: list[str]
) -> list[tuple[str, str, str, str]]:
    """(target, variant, precision, form) for every precision each target supports."""
    return [
        (name, variant, precision, form)
        for name in targets
        for variant in variants
        for precision in precisions
        if precision in get_target(name).precisions
        for form in forms
    ]


def check_matrix(
    variants: list[str],
    targets: list[str],
    precisions: list[str],
    forms: list[str],
    out: Path,
    weights: str = "shipped",
) -> list[tuple[str, str, str, str]]:
    """The cells to build, each request refused by name before any work; never none."""
    cells = matrix(variants, targets, precisions, forms)
    if not cells:
        supported = "; ".join(
            f"{name} builds {', '.join(get_target(name).precisions)}" for name in targets
        )
        raise ConversionError(
            f"no cell to build: none of {', '.join(targets)} builds precision "
            f"{' or '.join(precisions)} ({supported})"
        )
    for name, variant, precision, form in cells:
        target = get_target(name)
        request = ConvertRequest(variant, weights, precision, form, out=out)
        validate(request, target.precisions, name, target.calibrates)
        check_replaceable(out / f"{request.stem}{target.suffix}")
    for report in ("parity.md", "parity.json"):
        if (out / report).is_dir():
            raise ConversionError(f"{out / report} is a folder; the report cannot be written")
    return cells


def build_matrix(
    cells: list[tuple[str, str, str, str]],
    out: Path,
    weights: str = "shipped",
    frames: int = DEFAULT_FRAMES,
    arm64: bool = False,
) -> list[MatrixResult]:
    """Convert and check each cell of ``check_matrix``, in order.

    ``arm64``: cells whose target has an emulated ARM64 runtime are checked there too.
    """
    results = []
    for key in cells:
        name, variant, precision, form = key
        target = get_target(name)
        if not target.is_available():
            results.append(MatrixResult(*key, status="unavailable"))
            continue
        request = ConvertRequest(variant, weights, precision, form, out=out)
        try:
            artifact = convert(target, request)
        except (ConversionError, CheckpointError) as err:
            results.append(MatrixResult(*key, status="conversion failed", error=str(err)))
            continue
        on_arm64 = arm64 and arm64_runtime(read_manifest(artifact)) is not None
        record = record_parity(artifact, frames, arm64=on_arm64)
        results.append(result_of(artifact, record))
    return results


def result_of(artifact: Path, record: dict[str, Any]) -> MatrixResult:
    """One row of the table, from an artifact's manifest and its parity record."""
    manifest = read_manifest(artifact)
    return MatrixResult(
        manifest.target,
        manifest.variant,
        manifest.precision,
        manifest.form,
        status="passed" if record["passed"] else "failed parity",
        artifact=str(artifact),
        seconds=manifest.conversion_seconds,
        bytes=manifest.artifact.bytes,
        parity=record,
        error="; ".join(record["failures"]) or None,
    )


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _figures(record: dict[str, Any] | None) -> tuple[str, str, str]:
    """Max abs logit error, mask Dice vs PyTorch (pooled / per-frame mean) and lesions found by
    one side only (missed / false) of one parity record, or dashes."""
    if not record:
        return "-", "-", "-"
    masks = record["masks_vs_pytorch"]
    return (
        _fmt(record["logits"]["max_abs_err"], ".2e"),
        f"{_fmt(masks['pooled_dice'], '.4f')} / {_fmt(masks['dice'], '.4f')}",
        f"{_fmt(masks['missed_findings'], 'd')} / {_fmt(masks['false_findings'], 'd')}",
    )


def markdown(results: list[MatrixResult]) -> str:
    lines = [
        "| target | variant | precision | form | status | max abs err "
        "| mask Dice vs PyTorch (pooled / per-frame) | lesions missed / false "
        "| Dice vs GT (target / PyTorch) | ARM64 max abs err | ARM64 mask Dice "
        "| ARM64 lesions missed / false | ARM64 frames | size (MB) | conversion (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        p = r.parity or {}
        gt = p.get("dice_vs_ground_truth", {})
        truth = f"{_fmt(gt.get('target'), '.4f')} / {_fmt(gt.get('pytorch'), '.4f')}" if gt else "-"
        arm = p.get("arm64")
        size = None if r.bytes is None else r.bytes / 1e6
        cells = [
            r.target,
            r.variant,
            r.precision,
            r.form,
            r.status,
            *_figures(p),
            truth,
            *_figures(arm),
            str(arm["frames"]) if arm else "-",
            _fmt(size, ".2f"),
            _fmt(r.seconds, ".1f"),
        ]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


def summary(results: list[MatrixResult], bad: list[MatrixResult]) -> str:
    """The verdict line under the table: every cell that failed counted, never a silent pass."""
    unavailable = sum(r.status == "unavailable" for r in results)
    skipped = f"; {unavailable} unavailable here (not built)" if unavailable else ""
    if bad:
        return f"FAILED: {len(bad)} of {len(results)} cells failed{skipped}"
    return f"passed: {len(results) - unavailable} of {len(results)} cells{skipped}"


@command("python -m converters.all")
@list_option("--variants", tuple(VARIANTS), "BaS variants.")
@list_option("--targets", TARGET_NAMES, "Targets.")
@list_option("--precisions", PRECISIONS, "Precisions (each target builds those it supports).")
@list_option("--forms", FORMS, "Forms.")
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
    bad = [r for r in results if r.status not in ("passed", "unavailable")]
    verdict = summary(results, bad)
    with atomic_path(out / "parity.md") as tmp:
        tmp.write_text(f"{table}\n\n{verdict}\n")
    write_json_atomic(
        out / "parity.json",
        {
            "passed": not bad,
            "summary": verdict,
            "failed": [f"{r.target} BaS-{r.variant} {r.precision} {r.form}" for r in bad],
            "results": [r.__dict__ for r in results],
        },
    )
    print(table)
    for r in bad:
        print(
            f"FAILED {r.target} BaS-{r.variant} {r.precision} {r.form}: {r.status}: {r.error}",
            file=sys.stderr,
        )
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
