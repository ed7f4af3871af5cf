"""Train BaS on clips so that TempLP learns, with the public code's recipe by default.

    python -m model.train --config configs/bas_s.yml [--resume] [--set key=value ...]

Runs on the CPU as is and unchanged under ``accelerate launch`` on several GPUs. The
run folder holds ``last.pt`` (everything needed to resume, written atomically after
each epoch), ``best.safetensors`` (the weights with the best validation Dice), the
split file and a JSON log of every epoch.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path

import click
import numpy as np
import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm import tqdm

from .atomic import atomic_path
from .bas import BaS
from .checkpoint import save_weights
from .cli import command
from .data import Augment, ClipDataset, discover, read_split, split_videos, write_split
from .errors import ConfigError
from .hub import build_bas
from .losses import LossWeights, SegmentationLoss


@dataclass(frozen=True)
class TrainConfig:
    """Defaults are the public code's recipe (batch 70, 200 epochs, AdamW 1e-4, cosine)."""

    variant: str = "S"
    image_size: int = 240
    temporal_window: int = 3
    data: str = "data/synth_train"
    split_fractions: dict[str, float] = field(default_factory=lambda: {"train": 0.85, "val": 0.15})
    clip_length: int = 3
    clip_stride: int = 1
    # The first ``warm_frames`` of a clip only give TempLP its history (no loss), so every
    # scored frame sees the past as it would deep into a stream; a ``cold_start`` share
    # of batches drops them, scoring frames with no history as at a video's start.
    warm_frames: int = 0
    cold_start: float = 0.0
    batch_size: int = 70
    epochs: int = 200
    lr: float = 1e-4
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_epochs: int = 2
    restart_epochs: int = 0  # cosine restarts every N epochs after warm-up; 0: one cycle
    loss: LossWeights = LossWeights()
    augment: Augment = Augment()
    seed: int = 0
    init_weights: str = ""  # start from these weights (a later stage of a recipe); "" = random
    threads: int = 0  # CPU threads for torch; 0 leaves torch's default
    workers: int = 0  # data-loading worker processes
    preload: bool = False  # decode every training frame once, up front
    mixed_precision: str = "no"  # accelerate's: "no", "bf16" or "fp16"
    out: str = "runs/bas_s"


def _coerce(cls: type, values: dict) -> object:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    converted = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        if is_dataclass(default):
            value = _coerce(type(default), value)
        elif isinstance(default, tuple):
            value = tuple(value)
        converted[name] = value
    return cls(**converted)


def load_config(path: Path | None, overrides: list[str]) -> TrainConfig:
    values = yaml.safe_load(Path(path).read_text()) if path else {}
    config = _coerce(TrainConfig, values or {})
    for item in overrides:
        key, _, raw = item.partition("=")
        if not hasattr(config, key):
            raise ConfigError(f"unknown config key in --set: {key}")
        config = replace(config, **{key: type(getattr(config, key))(yaml.safe_load(raw))})
    return config


def lr_factor(step: int, warmup: int, cycle: int, floor: float) -> float:
    """Linear warm-up, then cosine decay (restarting every ``cycle`` steps) down to ``floor``."""
    if step < warmup:
        return (step + 1) / warmup
    position = (step - warmup) % cycle / cycle
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * position))


def _prepare_split(config: TrainConfig, out: Path) -> tuple[object, dict[str, list[str]]]:
    index = discover(Path(config.data))
    split_file = out / "split.json"
    if split_file.exists():
        split = read_split(split_file)
    else:
        split = split_videos(list(index.names), config.split_fractions, seed=config.seed)
        write_split(split_file, split, seed=config.seed, fractions=config.split_fractions)
    return index, split


@torch.no_grad()
def validation_dice(model: BaS, loader: DataLoader, accelerator: Accelerator) -> float:
    """Mean per-frame Dice at training resolution (empty prediction on empty mask scores 1)."""
    model.eval()
    scores = []
    for batch in loader:
        pred = model(batch["images"]) > 0
        target = batch["masks"] > 0.5
        inter = (pred & target).flatten(2).sum(-1).float()
        total = (pred.flatten(2).sum(-1) + target.flatten(2).sum(-1)).float()
        dice = torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))
        scores.append(accelerator.gather_for_metrics(dice.flatten()))
    model.train()
    return torch.cat(scores).mean().item()


def _check(config: TrainConfig) -> None:
    if not 0 <= config.warm_frames < config.clip_length:
        raise ConfigError(
            f"warm_frames must be in [0, clip_length), got {config.warm_frames} "
            f"with clip_length {config.clip_length}"
        )
    if not 0.0 <= config.cold_start <= 1.0:
        raise ConfigError(f"cold_start must be in [0, 1], got {config.cold_start}")
    if config.mixed_precision not in ("no", "bf16", "fp16"):
        raise ConfigError(
            f"mixed_precision must be no, bf16 or fp16, got {config.mixed_precision!r}"
        )


def _hardware() -> str:
    """What trained the weights, for their metadata."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA), torch {torch.__version__}"
    return f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"


def _one_thread(_: int) -> None:
    """Data workers use one thread each: many workers times many threads oversubscribe."""
    torch.set_num_threads(1)


def train(config: TrainConfig, resume: bool = False) -> Path:
    _check(config)
    accelerator = Accelerator(mixed_precision=config.mixed_precision)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its kernels
    set_seed(config.seed)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    index, split = _prepare_split(config, out)

    train_set = ClipDataset(
        index,
        split["train"],
        config.clip_length,
        config.image_size,
        config.augment,
        stride=config.clip_stride,
        seed=config.seed,
        preload=config.preload,
    )
    val_set = ClipDataset(
        index, split["val"], config.clip_length, config.image_size, stride=config.clip_length
    )
    train_loader = DataLoader(
        train_set,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(config.seed),
        num_workers=config.workers,
        worker_init_fn=_one_thread,
    )
    val_loader = DataLoader(
        val_set,
        batch_size=config.batch_size,
        num_workers=config.workers,
        worker_init_fn=_one_thread,
    )

    model = build_bas(
        config.variant,
        config.image_size,
        config.temporal_window,
        weights=config.init_weights or None,
    ).train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )
    steps_per_epoch = len(train_loader)
    warmup = config.warmup_epochs * steps_per_epoch
    cycle_epochs = config.restart_epochs or (config.epochs - config.warmup_epochs)
    cycle = max(1, cycle_epochs * steps_per_epoch)
    floor = config.min_lr / config.lr
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup, cycle, floor)
    )
    model, optimizer, train_loader, val_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, val_loader, scheduler
    )
    criterion = SegmentationLoss(config.loss)

    start_epoch, best, history = 0, -1.0, []
    last = out / "last.pt"
    if resume and last.exists():
        saved = torch.load(last, map_location="cpu", weights_only=False)
        accelerator.unwrap_model(model).load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        start_epoch, best, history = saved["epoch"], saved["best"], saved["history"]
        accelerator.print(f"resumed from {last} at epoch {start_epoch}")

    metadata = {
        "variant": config.variant,
        "image_size": str(config.image_size),
        "temporal_window": str(config.temporal_window),
        "recipe": json.dumps(asdict(config), default=list),
        "trained_on": _hardware(),
    }
    cold = np.random.default_rng([config.seed, 1])
    for epoch in range(start_epoch, config.epochs):
        train_set.set_epoch(epoch)
        started, total, count = time.time(), 0.0, 0
        bar = tqdm(
            train_loader,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not accelerator.is_local_main_process,
            mininterval=5,
        )
        for batch in bar:
            images, masks, warm = batch["images"], batch["masks"], config.warm_frames
            if warm and cold.random() < config.cold_start:
                images, masks, warm = images[:, warm:], masks[:, warm:], 0
            loss = criterion(model(images)[:, warm:], masks[:, warm:])
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            total, count = total + loss.item(), count + 1
            bar.set_postfix(loss=f"{total / count:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        dice = validation_dice(model, val_loader, accelerator)
        record = {
            "epoch": epoch + 1,
            "loss": total / max(count, 1),
            "val_dice": dice,
            "seconds": round(time.time() - started, 1),
        }
        history.append(record)
        accelerator.print(json.dumps(record))
        if accelerator.is_main_process:
            net = accelerator.unwrap_model(model)
            if dice > best:
                best = dice
                save_weights(
                    net,
                    out / "best.safetensors",
                    {**metadata, "epoch": str(epoch + 1), "val_dice": f"{dice:.4f}"},
                )
            resume_point = {
                "model": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch + 1,
                "best": best,
                "history": history,
            }
            with atomic_path(last) as tmp:
                torch.save(resume_point, tmp)
            (out / "history.json").write_text(json.dumps(history, indent=1))
    accelerator.wait_for_everyone()
    return out / "best.safetensors"


@command("python -m model.train")
@click.option(
    "--config",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="YAML file of TrainConfig fields.",
)
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one top-level config field (repeatable).",
)
def main(config: Path | None, resume: bool, overrides: tuple[str, ...]) -> None:
    """Train BaS on clips; prints the path of the best weights."""
    best = train(load_config(config, list(overrides)), resume=resume)
    print(best)


if __name__ == "__main__":
    main()
