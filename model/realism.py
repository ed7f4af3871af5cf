"""B-mode realism: which scanner changes, drawn into training, hold on ultrasound we did not draw.

    python -m model.realism [--variant S] [--rows none,convex,...] [--base STAGE2.safetensors]
        [--work reports/realism] [--results results/realism.json]

Each row trains stage 3 of the 2-core recipe (``configs/cpu/bas_{s,l}_3.yml``: TempLP's
gate trained in, one epoch at 160 x 160 and one at 240) from the same stage-2 weights, on
the recipe's 128 videos of seed 0 drawn with that row's scanner changes
(``model.data.synth --widen``; ``none`` is the recipe's own set, ``all`` draws every
change, ``all@0.5`` draws them into half the videos and leaves the rest classic), and
scores its best weights, streaming at native resolution, on three sets no row trains on:

- **kept back**: video formed another way (``model.data.kept_back``, seed 21), which
  training refuses;
- **unseen**: the classic generator's seed 31, with history's gain over every frame and
  over the frames darkened as when the probe loses contact (1 in 5);
- **held out**: seed 1 (``data/synth_test``), where the recipe's goals are set.

The row ``shipped`` scores the shipped weights, untrained, for reference. Each row is one
run in the results file (running a row again replaces it); a stopped row resumes its
training where it stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .checkpoint import read_metadata, sha256
from .data.contact import LostContact
from .data.kept_back import render_kept_back
from .data.synth import TRAINING_SEED, WIDENINGS, write_dataset
from .errors import ConfigError
from .evaluate import headline_scores
from .hub import shipped_weights
from .options import command, variant_option
from .provenance import add_run
from .train import TrainConfig, load_config, read_history, train, training_seconds

SHIPPED_ROW, CLASSIC_ROW, EVERY_ROW = "shipped", "none", "all"
ROWS = (SHIPPED_ROW, CLASSIC_ROW, *WIDENINGS, EVERY_ROW)
SHARE_MARK = "@"  # a widened row on a share of the videos, the rest classic: all@0.5
KEPT_BACK_SEED, UNSEEN_SEED = 21, 31
TEST_VIDEOS, TEST_FRAMES = 6, 40
TRAINING_DATA = Path("data/synth_train")  # make data: 128 videos x 60 frames of seed 0
TRAINING_VIDEOS, TRAINING_FRAMES = 128, 60
HELD_OUT_DATA = Path("data/synth_test")
DARKENED = LostContact(every=5)
RUN_KEY = ("variant", "row")
TESTS = ("kept_back", "unseen", "held_out")


def widenings_of(row: str) -> frozenset[str]:
    """The scanner changes a row's training set draws."""
    name = row.partition(SHARE_MARK)[0]
    if name == EVERY_ROW:
        return frozenset(WIDENINGS)
    return frozenset() if name in (CLASSIC_ROW, SHIPPED_ROW) else frozenset([name])


def share_of(row: str) -> float:
    """The share of a row's training videos drawn with its changes (``all@0.5``: half)."""
    _, mark, share = row.partition(SHARE_MARK)
    return float(share) if mark else 1.0


def stage3_config(variant: str, row: str, base: Path, data: Path, work: Path) -> TrainConfig:
    """Stage 3 of the 2-core recipe, from ``base`` on ``data``, in the row's run folder (one
    per variant: the drawn sets are shared, the runs are not)."""
    recipe = Path(f"configs/cpu/bas_{variant.lower()}_3.yml")
    out = work / f"run_{variant.lower()}_{row}"
    overrides = [f"data={data}", f"init_weights={base}", f"out={out}"]
    return load_config(recipe, overrides)


def scoring_sets(work: Path) -> dict[str, Path]:
    """The sets every row is scored on, the drawn ones drawn once into ``work``."""
    for data in (TRAINING_DATA, HELD_OUT_DATA):
        if not data.is_dir():
            raise ConfigError(f"{data} is missing: `make data` draws it")
    kept_back, unseen = work / f"kept_back_{KEPT_BACK_SEED}", work / f"unseen_{UNSEEN_SEED}"
    if not kept_back.is_dir():
        write_dataset(kept_back, TEST_VIDEOS, TEST_FRAMES, KEPT_BACK_SEED, render=render_kept_back)
    if not unseen.is_dir():
        write_dataset(unseen, TEST_VIDEOS, TEST_FRAMES, UNSEEN_SEED)
    return dict(zip(TESTS, (kept_back, unseen, HELD_OUT_DATA), strict=True))


def training_set(row: str, work: Path) -> Path:
    """The row's training set: the recipe's own for ``none``, drawn into ``work`` otherwise."""
    widen = widenings_of(row)
    if not widen:
        return TRAINING_DATA
    data = work / f"train_{row}"
    if not data.is_dir():
        write_dataset(
            data,
            TRAINING_VIDEOS,
            TRAINING_FRAMES,
            TRAINING_SEED,
            workers=2,
            widen=widen,
            share=share_of(row),
        )
    return data


def score(config: TrainConfig, weights: Path, tests: dict[str, Path]) -> dict[str, Any]:
    """``weights`` on every test set (and its darkened frames on the unseen one)."""
    return {
        name: headline_scores(
            config.variant,
            weights,
            data,
            config.image_size,
            config.temporal_window,
            lost_contact=DARKENED if name == "unseen" else None,
        )
        for name, data in tests.items()
    }


def run_row(variant: str, row: str, base: Path, work: Path) -> dict[str, Any]:
    """Train the row (resuming where it stopped) and score it: its results-file record."""
    tests = scoring_sets(work)
    if row == SHIPPED_ROW:
        weights = shipped_weights(variant)
        config = stage3_config(variant, row, weights, TRAINING_DATA, work)
        trained: dict[str, Any] = {}
    else:
        config = stage3_config(variant, row, base, training_set(row, work), work)
        out = Path(config.out)
        weights = train(config, resume=(out / "split.json").exists())
        history = read_history(out)
        trained = {
            "started_from_sha256": sha256(base),
            "epochs": len(history),
            "training_minutes": round(training_seconds(history) / 60, 2),
        }
    return {
        "variant": variant,
        "row": row,
        "widen": sorted(widenings_of(row)),
        "widen_share": share_of(row),
        "weights_sha256": sha256(weights),
        **trained,
        **score(config, weights, tests),
    }


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def _rows(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in names if name.partition(SHARE_MARK)[0] not in ROWS]
    if unknown or not names:
        raise click.BadParameter(f"unknown row {', '.join(unknown)}: rows are {', '.join(ROWS)}")
    for name in names:
        if SHARE_MARK in name and not _is_share(name):
            raise click.BadParameter(
                f"{name}: a share follows a widened row, above 0 and under 1 ({EVERY_ROW}@0.5)"
            )
    return names


def _is_share(row: str) -> bool:
    if not widenings_of(row):
        return False
    try:
        return 0.0 < share_of(row) < 1.0
    except ValueError:
        return False


@command("python -m model.realism")
@variant_option()
@click.option(
    "--rows",
    default=",".join(ROWS),
    show_default=True,
    callback=_rows,
    help="Comma-separated rows to train and score, in this order; ROW@SHARE draws a widened "
    "row's changes into that share of the videos only (all@0.5).",
)
@click.option(
    "--base",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Stage 2's weights every row starts from "
    "[default: model/weights/candidates/bas_<variant>_cpu_stage2.safetensors].",
)
@click.option(
    "--work",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("reports/realism"),
    show_default=True,
    help="Folder of the drawn sets and the rows' runs (a stopped row resumes from it).",
)
@click.option(
    "--results",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("results/realism.json"),
    show_default=True,
    help="Results file each row is added to as it finishes.",
)
def main(variant: str, rows: tuple[str, ...], base: Path | None, work: Path, results: Path) -> None:
    """Train stage 3 once per scanner change drawn into its data; score each on ultrasound
    no row trains on."""
    base = base or Path(f"model/weights/candidates/bas_{variant.lower()}_cpu_stage2.safetensors")
    if set(rows) - {SHIPPED_ROW}:  # the base is checked before any set is drawn
        if not base.is_file():
            raise ConfigError(
                f"no stage-2 weights at {base}: `make train-cpu VARIANT={variant}` writes "
                f"runs/cpu/bas_{variant.lower()}_2/best.safetensors; pass it as --base"
            )
        held = read_metadata(base).get("variant", variant)
        if held != variant:
            raise ConfigError(f"{base} holds BaS-{held} weights, not BaS-{variant}")
    for row in rows:
        record = run_row(variant, row, base, work)
        add_run(results, record, RUN_KEY)
        figures = ", ".join(f"{name} {_percent(record[name]['per_frame'])}" for name in TESTS)
        print(f"{row}: per-frame Dice streaming: {figures}")


if __name__ == "__main__":
    main()
