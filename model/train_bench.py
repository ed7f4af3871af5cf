"""How fast training runs on this machine: each fast path as a ratio to today's loop, in one run.

    python -m model.train_bench --config configs/bas_s.yml --recipe configs/cpu/bas_s_1.yml ...

Every row times the same training step (``model.train.clip_loss``, backward, AdamW) on the
same augmented clips of the config's data, in a fresh process, adding one change to the
row before (the last rows: stage 3's gated network); the ratio is against "today's loop",
the step the shipped recipe ran before these changes (bf16 autocast as accelerate applies
it on a CPU, every frame decoded).
Then the CPU cost of the data per scored frame, and, for each ``--recipe`` stage, the
frames it scores and the compute time today's step and the stage's own (its network,
compiled or not, at each size it trains) project for them.
Figures, not a test: nothing here passes or fails. ``--results FILE`` writes them as JSON,
with their provenance (``model.provenance``): the file the docs' tables are rendered from.
"""

from __future__ import annotations

import math
import multiprocessing
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click
import torch
from torch.utils.data import DataLoader

from .allocator import keep_freed_memory
from .data import ClipDataset, discover, split_videos
from .hub import build_bas
from .losses import SegmentationLoss
from .options import command, config_file_option
from .provenance import write_results
from .tables import markdown_table
from .train import TrainConfig, clip_loss, load_config, training_clips


@dataclass(frozen=True)
class LoopSetup:
    """One way of running the same training step."""

    name: str
    image_size: int
    bf16: bool = False
    keep_freed: bool = False  # model.allocator
    channels_last: bool = False
    decode_warm: bool = True  # today's loop decoded the warm frames and dropped their logits
    compile: bool = False
    temporal_gate: bool = False  # stage 3's network: its clip runs one frame at a time


def loop_setups(image_size: int, low_res: int) -> tuple[LoopSetup, ...]:
    """The rows, each the one before plus one change; the second is today's loop.

    Stages 1 and 2 train the plain TempLP, compiled. The last rows switch to stage 3's
    gated network, then to eager as its recipe runs it, at each size that recipe trains.
    """
    plain = LoopSetup("fp32, no autocast (the public code)", image_size)
    today = replace(plain, name="today's loop: bf16 autocast", bf16=True)
    kept = replace(today, name="+ freed memory kept (glibc)", keep_freed=True)
    channels_last = replace(kept, name="+ channels-last weights", channels_last=True)
    scored = replace(channels_last, name="+ warm frames not decoded", decode_warm=False)
    compiled = replace(scored, name="+ torch.compile", compile=True)
    rows = [plain, today, kept, channels_last, scored, compiled]
    small = bool(low_res) and low_res != image_size
    if small:
        rows.append(replace(compiled, name=f"+ a {low_res} x {low_res} stage", image_size=low_res))
    gated = replace(rows[-1], name="+ TempLP's gate (stage 3's network)", temporal_gate=True)
    eager = replace(gated, name="stage 3 as its recipe runs: eager", compile=False)
    rows += [gated, eager]
    if small:
        rows.append(replace(eager, name="stage 3, eager", image_size=image_size))
    return tuple(rows)


@dataclass(frozen=True)
class StepTiming:
    setup: LoopSetup
    ms_per_frame: float  # per scored frame, median step
    first_step_s: float  # includes torch.compile's compilation


def _clips(config: TrainConfig, image_size: int, count: int) -> ClipDataset:
    """The training split's augmented clips, as the run sees them (preloaded if it preloads)."""
    index = discover(Path(config.data))
    split = split_videos(list(index.names), config.split_fractions, seed=config.seed)
    return training_clips(config, index, split["train"][: max(1, count)], image_size)


def _autocast(model: torch.nn.Module, enabled: bool) -> Callable[..., torch.Tensor]:
    """The forward as accelerate runs it on a CPU: bf16 autocast inside, fp32 logits out."""

    def forward(*args: object, **kwargs: object) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            return model(*args, **kwargs).float()

    return forward


def time_step(config: TrainConfig, setup: LoopSetup, batch: int, steps: int) -> StepTiming:
    """The median time of ``steps`` training steps on ``batch`` clips, after one untimed step."""
    keep_freed_memory(setup.keep_freed)
    torch.manual_seed(config.seed)
    clips = _clips(config, setup.image_size, batch)
    items = [clips[i * len(clips) // batch] for i in range(batch)]
    images = torch.stack([item["images"] for item in items])
    masks = torch.stack([item["masks"] for item in items])
    model = build_bas(
        config.variant,
        setup.image_size,
        config.temporal_window,
        temporal_gate=setup.temporal_gate,
    ).train()
    if setup.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )
    criterion = SegmentationLoss(config.loss)
    forward = _autocast(torch.compile(model, dynamic=False) if setup.compile else model, setup.bf16)
    warm = config.warm_frames

    def step() -> float:
        started = time.perf_counter()
        if setup.decode_warm:
            loss = criterion(forward(images)[:, warm:], masks[:, warm:])
        else:
            loss = clip_loss(forward, criterion, images, masks, warm)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - started

    first = step()
    median = statistics.median(step() for _ in range(steps))
    scored = batch * (config.clip_length - warm)
    return StepTiming(setup, 1000 * median / scored, first)


def time_step_alone(config: TrainConfig, setup: LoopSetup, batch: int, steps: int) -> StepTiming:
    """``time_step`` in a fresh process: no row inherits another's heap, caches or threads."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        return pool.submit(time_step, config, setup, batch, steps).result()


def data_ms_per_frame(config: TrainConfig, image_size: int, batches: int, batch: int) -> float:
    """CPU time of loading and augmenting clips, per scored frame, in the main process."""
    clips = _clips(config, image_size, 4 * batch)
    loader = iter(DataLoader(clips, batch_size=batch, shuffle=True, num_workers=0))
    started = time.process_time()
    for _ in range(batches):
        next(loader)
    spent = time.process_time() - started
    return 1000 * spent / (batches * batch * (config.clip_length - config.warm_frames))


def scored_frames_per_epoch(config: TrainConfig) -> int:
    """Frames that carry a loss in one epoch of ``config``'s training split."""
    index = discover(Path(config.data))
    split = split_videos(list(index.names), config.split_fractions, seed=config.seed)
    clips = ClipDataset(index, split["train"], config.clip_length, 16, stride=config.clip_stride)
    steps = len(clips) // config.batch_size
    return steps * config.batch_size * (config.clip_length - config.warm_frames)


def step_results(timings: list[StepTiming]) -> list[dict[str, Any]]:
    """Each row's figures, the ratio against today's loop (the second row) included."""
    today = timings[1].ms_per_frame
    return [
        {
            "step": t.setup.name,
            "image_size": t.setup.image_size,
            "ms_per_scored_frame": t.ms_per_frame,
            "x_today": today / t.ms_per_frame,
            "first_step_s": t.first_step_s,
        }
        for t in timings
    ]


def step_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: ``step_results``' rows, as printed and as the docs render them."""
    cells = [
        (
            r["step"],
            r["image_size"],
            f"{r['ms_per_scored_frame']:.1f}",
            f"{r['x_today']:.2f}",
            f"{r['first_step_s']:.0f}",
        )
        for r in rows
    ]
    header = ("training step", "size", "ms / scored frame", "x today", "first step s")
    return markdown_table(header, cells, "lrrrr")


def _stage_minutes(stage: TrainConfig, ms: dict[int, float]) -> float:
    """Compute minutes of ``stage`` at ``ms`` per scored frame by side (NaN: a side not timed)."""
    per_epoch = scored_frames_per_epoch(stage)
    sides = [stage.side_of_epoch(epoch) for epoch in range(stage.epochs)]
    return sum(per_epoch * ms.get(side, math.nan) for side in sides) / 60_000


def _recipe_step(timings: list[StepTiming], stage: TrainConfig) -> dict[int, float]:
    """ms per scored frame by side of the step ``stage`` runs: its network, compiled or not."""
    runs = (stage.compile, stage.temporal_gate)
    return {
        t.setup.image_size: t.ms_per_frame
        for t in timings
        if not t.setup.decode_warm and (t.setup.compile, t.setup.temporal_gate) == runs
    }


def recipe_results(recipe: list[TrainConfig], timings: list[StepTiming]) -> list[dict[str, Any]]:
    """Each stage's scored frames and compute minutes with today's step and its own."""
    today = timings[1].ms_per_frame
    rows = []
    for stage in recipe:
        full_size = replace(stage, low_res=0, low_res_epochs=0)  # as today's loop ran it
        low = f"{stage.low_res_epochs} at {stage.low_res}" if stage.low_res_epochs else "none"
        rows.append(
            {
                "stage": stage.out,
                "epochs": stage.epochs,
                "low_res_epochs": low,
                "scored_frames": scored_frames_per_epoch(stage) * stage.epochs,
                "today_min": _stage_minutes(full_size, {stage.image_size: today}),
                "its_step_min": _stage_minutes(stage, _recipe_step(timings, stage)),
            }
        )
    return rows


def recipe_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: ``recipe_results``' rows and the whole recipe's total."""
    cells: list[tuple[object, ...]] = [
        (
            r["stage"],
            r["epochs"],
            r["low_res_epochs"],
            f"{r['scored_frames']:,}",
            *(f"{r[k]:.0f}" for k in ("today_min", "its_step_min")),
        )
        for r in rows
    ]
    totals = (sum(r[k] for r in rows) for k in ("today_min", "its_step_min"))
    cells.append(("whole recipe", "", "", "", *(f"{m:.0f}" for m in totals)))
    header = ("stage", "epochs", "low-res epochs", "scored frames", "today min", "its step min")
    return markdown_table(header, cells, "lrrrrr")


@command("python -m model.train_bench")
@config_file_option("--config", "The recipe whose step is timed (variant, clips, data).", True)
@config_file_option(
    "--recipe", "A stage config whose compute to project (repeatable, in order).", multiple=True
)
@click.option(
    "--batch", type=click.IntRange(min=1), default=8, show_default=True, help="Clips a step."
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Timed steps a row, after one untimed (the median is shown).",
)
@click.option(
    "--low-res",
    type=click.IntRange(min=0),
    default=160,
    show_default=True,
    help="Also time the steps of the recipe's lower-resolution epochs at this side (0: not).",
)
@click.option(
    "--results",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the figures, with their provenance, to this JSON file "
    "(results/train_bench.json).",
)
def main(
    config: Path,
    recipe: tuple[Path, ...],
    batch: int,
    steps: int,
    low_res: int,
    results: Path | None,
) -> None:
    """Time the training step with each fast path, as ratios to today's loop."""
    train_config = load_config(config, [])
    stages = [load_config(path, []) for path in recipe]
    if low_res % 16:
        raise click.BadParameter("must be a multiple of 16", param_hint="--low-res")
    print(
        f"BaS-{train_config.variant}, {batch} clips of {train_config.clip_length} frames "
        f"({train_config.warm_frames} warm), {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}; median of {steps} steps",
        flush=True,
    )
    started = time.perf_counter()
    timings = []
    for setup in loop_setups(train_config.image_size, low_res):
        timings.append(time_step_alone(train_config, setup, batch, steps))
        print(f"  {setup.name}: {timings[-1].ms_per_frame:.1f} ms", flush=True)
    rows = step_results(timings)
    print(step_table(rows))
    sizes = sorted({t.setup.image_size for t in timings})
    data = {size: data_ms_per_frame(train_config, size, 4, batch) for size in sizes}
    print(
        "\ndata (loading and augmenting, one process): "
        + ", ".join(f"{ms:.2f} ms of CPU per scored frame at {size}" for size, ms in data.items())
    )
    projected = recipe_results(stages, timings)
    if stages:
        print()
        print(recipe_table(projected))
    if results is not None:
        figures = {
            "variant": train_config.variant,
            "config": str(config),
            "batch": batch,
            "clip_length": train_config.clip_length,
            "warm_frames": train_config.warm_frames,
            "threads": torch.get_num_threads(),
            "timed_steps": steps,
            "seconds": round(time.perf_counter() - started, 1),
            "steps": rows,
            "data_ms_per_scored_frame": {str(size): ms for size, ms in data.items()},
            "recipe": projected,
        }
        write_results(results, figures)


if __name__ == "__main__":
    main()
