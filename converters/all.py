"""Build the matrix (targets x variants x precisions x forms) and check every artifact's parity.

    python -m converters.all [--variants S L] [--targets ...] [--precisions ...] [--forms ...]

Prints a Markdown table (and writes it with a JSON record to ``--out``). Exits non-zero
if any conversion failed or any artifact missed its parity gate, naming each.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.checkpoint import CheckpointError

from .build import convert
from .manifest import read_manifest
from .parity import record_parity
from .registry import TARGET_NAMES, get_target
from .spec import FORMS, PRECISIONS, ConversionError, ConvertRequest


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


def build_matrix(
    variants: list[str],
    targets: list[str],
    precisions: list[str],
    forms: list[str],
    out: Path,
    weights: str = "shipped",
    frames: int = 60,
) -> list[MatrixResult]:
    results = []
    for key in matrix(variants, targets, precisions, forms):
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
        record = record_parity(artifact, frames)
        results.append(result_of(artifact, record))
    return results


def result_of(artifact: Path, record: dict[str, Any]) -> MatrixResult:
    """One row of the table, from an artifact's manifest and its parity record."""
    manifest = read_manifest(artifact)
    return MatrixResult(
        manifest["target"],
        manifest["variant"],
        manifest["precision"],
        manifest["form"],
        status="passed" if record["passed"] else "failed parity",
        artifact=str(artifact),
        seconds=manifest["conversion_seconds"],
        bytes=manifest["artifact"]["bytes"],
        parity=record,
        error="; ".join(record["failures"]) or None,
    )


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(results: list[MatrixResult]) -> str:
    lines = [
        "| target | variant | precision | form | status | max abs err | mask Dice vs PyTorch "
        "| Dice vs GT (target / PyTorch) | size (MB) | conversion (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        p = r.parity or {}
        logits, masks = p.get("logits", {}), p.get("masks_vs_pytorch", {})
        gt = p.get("dice_vs_ground_truth", {})
        truth = f"{_fmt(gt.get('target'), '.4f')} / {_fmt(gt.get('pytorch'), '.4f')}" if gt else "-"
        size = None if r.bytes is None else r.bytes / 1e6
        lines.append(
            f"| {r.target} | {r.variant} | {r.precision} | {r.form} | {r.status} "
            f"| {_fmt(logits.get('max_abs_err'), '.2e')} | {_fmt(masks.get('dice'), '.5f')} "
            f"| {truth} | {_fmt(size, '.2f')} | {_fmt(r.seconds, '.1f')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["S", "L"])
    parser.add_argument("--targets", nargs="+", default=list(TARGET_NAMES))
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS))
    parser.add_argument("--forms", nargs="+", default=list(FORMS))
    parser.add_argument("--weights", default="shipped")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("artifacts"))
    args = parser.parse_args(argv)
    try:
        for name in args.targets:
            get_target(name)
        results = build_matrix(
            args.variants,
            args.targets,
            args.precisions,
            args.forms,
            args.out,
            args.weights,
            args.frames,
        )
    except (ConversionError, CheckpointError) as err:
        parser.exit(2, f"error: {err}\n")
    table = markdown(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "parity.md").write_text(table + "\n")
    (args.out / "parity.json").write_text(json.dumps([r.__dict__ for r in results], indent=1))
    print(table)
    bad = [r for r in results if r.status not in ("passed", "unavailable")]
    for r in bad:
        print(
            f"FAILED {r.target} BaS-{r.variant} {r.precision} {r.form}: {r.status}: {r.error}",
            file=sys.stderr,
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
