"""Fine-tune BaS on your own labelled videos, on a laptop's CPU, in minutes.

    python -m model.finetune --variant S [--weights shipped|PATH] --data DIR --out RUN
        [--minutes 10] [--val-fraction 0.25] [--resume] [--set KEY=VALUE ...]

Starts from the given weights (the shipped ones by default) and trains on the videos of
``DIR`` (any layout ``model.data`` reads), holding out a share of them by video. It
stops on the held-out score (no better in ``patience`` epochs), on the time budget, or
after ``epochs``, whichever comes first, and keeps the weights that scored best on the
held-out videos, the starting weights included: a fine-tune never ships worse than it
started. ``RUN`` holds what ``model.train`` writes (``best.safetensors``, the resume point,
``split.json``, ``history.json``) and ``finetune.md`` / ``finetune.json``: the held-out
videos scored, streaming, before and after (per-frame and pooled Dice, missed lesion
frames, false alarms, and what history adds over the same weights without it).
``--resume`` continues a stopped run; the time budget counts every session of it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import click

from .atomic import atomic_path
from .checkpoint import sha256
from .data import discover, read_split
from .data.clips import Augment
from .data.framing import ScreenAugment
from .errors import ConfigError
from .evaluate import headline_scores, optional_difference
from .host import native_bf16
from .hub import resolve_weights
from .options import command, variant_option, weights_option
from .provenance import add_run, provenance
from .tables import markdown_table
from .train import TrainConfig, load_config, read_history, train, training_seconds

# Stage 3's clips and augmentation (configs/cpu/bas_s_3.yml) at a tenth of its learning
# rate, held constant: the starting weights are already good, the time budget rather
# than a schedule ends the run, and the held-out score picks the epoch to keep.
RECIPE = TrainConfig(
    temporal_gate=True,
    split_fractions={"train": 0.75, "val": 0.25},
    clip_length=10,
    clip_stride=2,
    warm_frames=2,
    cold_start=0.15,
    batch_size=8,
    epochs=100,
    lr=5e-5,
    min_lr=5e-5,
    warmup_epochs=0,
    augment=Augment(weak=0.2, screen=ScreenAugment(screen=0.5, overlay=0.5)),
    preload=True,
    mixed_precision="bf16",
    channels_last=True,
    minutes=10.0,
    patience=4,
    score_initial=True,
)

# What one run of a results file is: a re-run with these the same replaces it.
RUN_KEY = ("variant", "started_from", "data", "overrides")

ROWS = (
    ("per-frame Dice (%)", "per_frame"),
    ("pooled Dice (%)", "pooled"),
    ("missed lesion frames", "missed_frames"),
    ("false alarms (frames)", "false_alarm_frames"),
    ("history's gain, per-frame Dice (points)", "history_gain"),
)


def finetune_config(
    variant: str,
    weights: str,
    data: Path,
    out: Path,
    minutes: float,
    val_fraction: float,
    overrides: list[str],
) -> TrainConfig:
    """The fine-tune's TrainConfig: ``RECIPE`` for this variant, data and run, then ``--set``."""
    if not 0 < val_fraction < 1:
        raise ConfigError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    config = replace(
        RECIPE,
        variant=variant,
        data=str(data),
        init_weights=str(resolve_weights(variant, weights)),
        split_fractions={"train": 1 - val_fraction, "val": val_fraction},
        minutes=minutes,
        out=str(out),
        # a time budget buys a tenth of the steps where bf16 runs on reference kernels
        mixed_precision=RECIPE.mixed_precision if native_bf16() else "no",
    )
    return load_config(None, overrides, base=config)


def scores(
    config: TrainConfig, weights: Path, data: Path, videos: list[str] | None = None
) -> dict[str, Any]:
    """``evaluate.headline_scores`` of ``weights`` at the run's image size and window."""
    return headline_scores(
        config.variant, weights, data, config.image_size, config.temporal_window, videos
    )


PERCENT = ("per_frame", "pooled", "history_gain")


def _cell(key: str, value: float | None, signed: bool = False) -> str:
    """A percentage (Dice, or its points for history's gain) or a count, as the table shows."""
    if value is None:
        return "n/a"
    sign = "+" if signed or key == "history_gain" else ""
    return f"{100 * value:{sign}.2f}" if key in PERCENT else f"{int(value):{sign}d}"


def before_after_table(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Markdown: each held-out figure before, after, and the change."""
    rows = []
    for label, key in ROWS:
        a, b = before[key], after[key]
        change = optional_difference(b, a)
        rows.append([label, _cell(key, a), _cell(key, b), _cell(key, change, signed=True)])
    return markdown_table(("held-out videos, streaming", "before", "after", "change"), rows)


def finetune(
    config: TrainConfig,
    resume: bool = False,
    tests: tuple[Path, ...] = (),
    overrides: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Fine-tune, then score the held-out videos (and each folder of ``tests``, videos the
    fine-tune never saw) before and after; the report, also written to ``out``/finetune.json
    and finetune.md. ``overrides``: the ``--set`` items that made ``config``, for the report."""
    out = Path(config.out)
    for folder in tests:
        discover(folder)  # a DatasetError before any training, not after it
    best = train(config, resume=resume)
    held_out = read_split(out / "split.json")["val"]
    start, data = Path(config.init_weights), Path(config.data)
    before = scores(config, start, data, held_out)
    after = scores(config, best, data, held_out)
    tested = [
        {
            "data": str(folder),
            "before": scores(config, start, folder),
            "after": scores(config, best, folder),
        }
        for folder in tests
    ]
    history = read_history(out)
    report = {
        "variant": config.variant,
        "started_from": config.init_weights,
        "started_from_sha256": sha256(start),
        "weights": str(best),
        "data": config.data,
        "overrides": list(overrides),
        "held_out_videos": held_out,
        "epochs": len(history),
        "training_minutes": round(training_seconds(history) / 60, 2),
        "before": before,
        "after": after,
        "tests": tested,
        "recipe": asdict(config),
    }
    text = "\n\n".join(
        [
            _heading(report),
            before_after_table(before, after),
            *(f"On {t['data']}:\n\n{before_after_table(t['before'], t['after'])}" for t in tested),
        ]
    )
    with atomic_path(out / "finetune.json") as tmp:
        tmp.write_text(json.dumps({"provenance": provenance(), **report}, indent=1) + "\n")
    with atomic_path(out / "finetune.md") as tmp:
        tmp.write_text(text + "\n")
    return report


def _heading(report: dict[str, Any]) -> str:
    videos = ", ".join(report["held_out_videos"])
    return (
        f"BaS-{report['variant']} fine-tuned from {report['started_from']} on {report['data']}: "
        f"{report['epochs']} epochs, {report['training_minutes']:.1f} min of training; "
        f"held out: {videos} ({report['after']['frames']} labelled frames)"
    )


@command("python -m model.finetune")
@variant_option()
@weights_option
@click.option(
    "--data",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    required=True,
    help="Your labelled videos: a BUV, FLA-Net or plain dataset folder.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Run folder (resume point, best.safetensors, finetune.md).",
)
@click.option(
    "--minutes",
    type=click.FloatRange(min=0),
    default=RECIPE.minutes,
    show_default=True,
    help="Training time budget, over every session of the run (0: no limit).",
)
@click.option(
    "--val-fraction",
    type=float,
    default=RECIPE.split_fractions["val"],
    show_default=True,
    help="Share of the videos held out (by video) to pick the epoch and to score.",
)
@click.option(
    "--test",
    "tests",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    multiple=True,
    help="Also score this labelled folder, never trained on, before and after (repeatable).",
)
@click.option("--resume", is_flag=True, help="Continue a stopped run in OUT.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one TrainConfig field of the recipe (repeatable), e.g. --set lr=1e-4 or "
    "--set augment.weak=0.4.",
)
@click.option(
    "--results",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also add the report, with its provenance, to this file's runs (results/finetune.json).",
)
def main(
    variant: str,
    weights: str,
    data: Path,
    out: Path,
    minutes: float,
    val_fraction: float,
    tests: tuple[Path, ...],
    resume: bool,
    overrides: tuple[str, ...],
    results: Path | None,
) -> None:
    """Fine-tune BaS on your labelled videos; prints the before/after table and the weights."""
    config = finetune_config(variant, weights, data, out, minutes, val_fraction, list(overrides))
    if (out / "split.json").exists() and not resume:
        raise ConfigError(
            f"{out} holds a run already: add --resume to continue it, or choose another --out"
        )
    if results is not None and results.is_dir():
        raise ConfigError(f"--results {results} is a folder; name a file")
    report = finetune(config, resume, tests, overrides)
    if results is not None:
        add_run(results, report, RUN_KEY)
    print((out / "finetune.md").read_text().rstrip())
    print(report["weights"])


if __name__ == "__main__":
    main()
