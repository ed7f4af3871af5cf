"""Which parts of BaS cost how much mask agreement when quantised to int8, for any weights.

    python -m converters.sensitivity --variant S --form frame [--weights W] [--units blocks]

BaS is quantised as ExecuTorch's int8 is (PT2E with XNNPACK's quantizer, calibrated on the
converters' calibration frames) and run fake-quantised in PyTorch: once with every unit
int8, then once per unit with that unit alone kept float. Each run is scored against
float PyTorch on the parity set (``converters.parity``), so a row says how much keeping
that unit float wins back, and what it costs in weights kept float. LiteRT's int8
calibrates its own ranges: the ranking carries over, the figures do not. Prints a
Markdown table (and writes it with ``--out``, atomically).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click
import torch

from model.atomic import atomic_path
from model.bas import BaS
from model.forms import EXPORT_FORMS, FrameForm, StreamForm
from model.hub import build_bas
from model.options import (
    Choice,
    command,
    form_option,
    frames_option,
    variant_option,
    weights_option,
)
from model.tables import markdown_table

from .calibration import calibration_clips
from .executorch import FLOAT_MODULES, quantize_pt2e
from .parity import DEFAULT_FRAMES, ParityData, compare
from .spec import ConversionError

GRANULARITIES = ("stages", "blocks")


@dataclass(frozen=True)
class UnitScore:
    unit: str  # the submodule kept float ("" for the all-int8 baseline)
    float_params: int  # weights it keeps float
    pooled_dice: float
    frame_dice: float
    missed: int
    false: int


def units(model: BaS, granularity: str = "stages") -> list[str]:
    """Quantised submodules by name as the exported form sees them (``model.decoder1``):
    BaS's stages, or with ``blocks`` each block of a stage. Always-float modules are left out."""
    names = []
    for name, child in model.named_children():
        if isinstance(child, FLOAT_MODULES) or not any(True for _ in child.parameters()):
            continue
        if granularity == "blocks" and isinstance(child, torch.nn.Sequential):
            names += [f"model.{name}.{index}" for index in range(len(child))]
        else:
            names.append(f"model.{name}")
    return names


def _params(model: BaS, unit: str) -> int:
    return sum(p.numel() for p in model.get_submodule(unit.removeprefix("model.")).parameters())


def sensitivity(
    model: BaS,
    form: str,
    unit_names: list[str],
    frames: int = DEFAULT_FRAMES,
    per_video: int | None = None,
) -> list[UnitScore]:
    """The all-int8 baseline, then each unit kept float alone, scored against float ``model``."""
    model = model.eval()
    module = (FrameForm if form == "frame" else StreamForm)(model).eval()
    size = model.config.image_size
    frame = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    example = (frame,) if form == "frame" else (frame, model.initial_state(1))
    calibration = list(calibration_clips(model, form, None, size))
    videos, source = ParityData().load(frames, per_video or frames)
    scores = []
    for unit in ["", *unit_names]:
        quantized = quantize_pt2e(module, example, calibration, (unit,) if unit else ())

        def run(inputs: dict, q: torch.nn.Module = quantized) -> dict:
            out = q(*(torch.from_numpy(inputs[name]) for name in ("frame", "state")[: len(inputs)]))
            out = out if isinstance(out, tuple) else (out,)
            return dict(zip(("logits", "new_state"), (t.numpy() for t in out), strict=False))

        masks = compare(model, run, form, videos, source).masks_vs_pytorch
        scores.append(
            UnitScore(
                unit,
                _params(model, unit) if unit else 0,
                masks.pooled_dice,
                masks.dice,
                masks.missed_findings,
                masks.false_findings,
            )
        )
    return scores


def markdown(scores: list[UnitScore]) -> str:
    """Units by what keeping them float wins back (per-frame Dice), the baseline first."""
    base, rows = scores[0], sorted(scores[1:], key=lambda s: s.frame_dice, reverse=True)
    header = (
        "kept float",
        "float weights",
        "mask Dice vs PyTorch (pooled / per-frame)",
        "gain (pooled / per-frame, points)",
        "lesions missed / false",
    )
    return markdown_table(
        header,
        [
            (
                s.unit or "nothing (all int8)",
                f"{s.float_params:,}",
                f"{s.pooled_dice:.4f} / {s.frame_dice:.4f}",
                "-"
                if s is base
                else f"{100 * (s.pooled_dice - base.pooled_dice):+.2f} / "
                f"{100 * (s.frame_dice - base.frame_dice):+.2f}",
                f"{s.missed} / {s.false}",
            )
            for s in [base, *rows]
        ],
    )


@command("python -m converters.sensitivity")
@variant_option()
@form_option(EXPORT_FORMS)
@weights_option
@click.option(
    "--units",
    "granularity",
    type=Choice(GRANULARITIES),
    default="stages",
    show_default=True,
    help="Keep float one stage at a time, or one block of a stage at a time.",
)
@frames_option(DEFAULT_FRAMES, "Parity-set frames each run is scored on (videos of 20).")
@click.option("--out", type=click.Path(path_type=Path), help="Also write the table here.")
def main(
    variant: str, form: str, weights: str, granularity: str, frames: int, out: Path | None
) -> None:
    """Report how much mask agreement each part of BaS loses to int8 (ExecuTorch's quantizer)."""
    if out is not None and out.is_dir():
        raise ConversionError(f"--out {out} is a folder; give a file for the table")
    model = build_bas(variant, weights=weights)
    table = markdown(sensitivity(model, form, units(model, granularity), frames))
    if out is not None:
        with atomic_path(out) as tmp:
            tmp.write_text(table + "\n")
    click.echo(table)


if __name__ == "__main__":
    main()
