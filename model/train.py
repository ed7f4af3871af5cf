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
import os
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
from .config import closest, get_config
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


def _kind(default: object) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, tuple):
        return f"a list of {len(default)} numbers"
    if isinstance(default, dict) or is_dataclass(default):
        return "a mapping"
    return "text"


def _convert(name: str, value: object, default: object) -> object:
    """``value`` (parsed YAML) as the type of the field's ``default``; else a ConfigError."""
    if is_dataclass(default):
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a mapping of its fields, got {value!r}")
        return _coerce(type(default), value, f"{name}.")
    wrong = ConfigError(f"{name} must be {_kind(default)}, got {value!r}")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise wrong
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong
        if isinstance(value, float) and not value.is_integer():
            raise wrong
        return int(value)
    if isinstance(default, float):
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as text
            try:
                return float(value)
            except ValueError:
                raise wrong from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong
        return float(value)
    if isinstance(default, tuple):
        if not isinstance(value, list | tuple) or len(value) != len(default):
            raise wrong
        pairs = zip(value, default, strict=True)
        return tuple(_convert(f"{name}[{i}]", v, d) for i, (v, d) in enumerate(pairs))
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise wrong
        sample = next(iter(default.values()), 0.0)
        return {str(k): _convert(f"{name}.{k}", v, sample) for k, v in value.items()}
    if isinstance(value, bool):
        raise ConfigError(
            f"{name} must be text, got {value!r} (YAML reads yes/no/on/off as true/false: "
            "quote the value)"
        )
    if not isinstance(value, str | int | float):
        raise wrong
    return str(value)


def _coerce(cls: type, values: dict, prefix: str = "") -> object:
    """A ``cls`` dataclass from a mapping; every value checked against the field's type."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(str(k) for k in set(values) - set(known))
    if unknown:
        hint = closest(unknown[0], list(known)) if len(unknown) == 1 else ""
        raise ConfigError(f"unknown {cls.__name__} keys: {', '.join(unknown)}{hint}")
    defaults = cls()
    converted = {
        name: _convert(f"{prefix}{name}", value, getattr(defaults, name))
        for name, value in values.items()
    }
    try:
        return cls(**converted)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:  # a field's own check (ScreenAugment's, say)
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {err}") from err


def _read_yaml(path: Path) -> dict:
    """The config file's mapping; a ConfigError naming the file if it is not one."""
    try:
        values = yaml.safe_load(Path(path).read_text())
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path} is not text: {err.reason}") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML: {problem}{where}") from err
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(
            f"config file {path} must be a mapping of TrainConfig fields, "
            f"got {type(values).__name__}"
        )
    return values


def load_config(path: Path | None, overrides: list[str]) -> TrainConfig:
    values = _read_yaml(path) if path else {}
    try:
        config = _coerce(TrainConfig, values)
    except ConfigError as err:
        raise ConfigError(f"config file {path}: {err}" if path else str(err)) from err
    for item in overrides:
        key, equals, raw = item.partition("=")
        key = key.strip()
        if not equals:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set epochs=10")
        if key not in {f.name for f in fields(TrainConfig)}:
            raise ConfigError(f"unknown config key in --set: {key}")
        default = getattr(config, key)
        if isinstance(default, str):
            value: object = raw  # text as given: no YAML reading of "no", "1e-3" and the like
        else:
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError as err:
                raise ConfigError(f"--set {key}: {raw!r} is not a valid YAML value") from err
        try:
            config = replace(config, **{key: _convert(key, value, default)})
        except ConfigError as err:
            raise ConfigError(f"--set {item}: {err}") from err
    return config


def lr_factor(step: int, warmup: int, cycle: int, floor: float) -> float:
    """Linear warm-up, then cosine decay (restarting every ``cycle`` steps) down to ``floor``."""
    if step < warmup:
        return (step + 1) / warmup
    position = (step - warmup) % cycle / cycle
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * position))


def _prepare_split(config: TrainConfig, out: Path) -> tuple[object, dict[str, list[str]], bool]:
    """The dataset and the run's split (its own, when resuming); writes nothing.

    The third value says whether the split is new (to be written once the run starts).
    """
    index = discover(Path(config.data))
    split_file = out / "split.json"
    if split_file.exists():
        split, fresh = read_split(split_file), False
    else:
        split = split_videos(list(index.names), config.split_fractions, seed=config.seed)
        fresh = True
    for subset in ("train", "val"):
        if not split.get(subset):
            raise ConfigError(f"the split has no {subset} videos: split_fractions needs {subset}")
        for name in split[subset]:
            index.video(name)  # a DatasetError naming a video the split lists and data lacks
    return index, split, fresh


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
    """Every value the run will use, refused by name before any file or folder is written."""
    get_config(config.variant, image_size=config.image_size, temporal_window=config.temporal_window)
    for name in ("epochs", "batch_size", "clip_length", "clip_stride"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(config, name)}")
    for name in ("warmup_epochs", "restart_epochs", "threads", "workers"):
        if getattr(config, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(config, name)}")
    if not config.lr > 0 or not 0 <= config.min_lr <= config.lr or config.weight_decay < 0:
        raise ConfigError(
            f"need lr > 0, 0 <= min_lr <= lr and weight_decay >= 0, got lr {config.lr}, "
            f"min_lr {config.min_lr}, weight_decay {config.weight_decay}"
        )
    if config.init_weights and not Path(config.init_weights).is_file():
        raise ConfigError(f"init_weights file not found: {config.init_weights}")
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


def _check_out(out: Path) -> None:
    """The run folder: absent, empty, or an earlier run of this project (it holds split.json)."""
    blocker = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    if not blocker.is_dir():
        raise ConfigError(f"run folder {out} cannot be made: {blocker} is a file")
    if out.is_dir() and any(out.iterdir()) and not (out / "split.json").is_file():
        raise ConfigError(
            f"run folder {out} is not empty and holds no run of this project (no split.json); "
            "choose another out (nothing was changed)"
        )
    if not os.access(blocker, os.W_OK | os.X_OK):
        raise ConfigError(f"run folder {out} cannot be written ({blocker} is read-only)")


def _hardware() -> str:
    """What trained the weights, for their metadata."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA), torch {torch.__version__}"
    return f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"


def _one_thread(_: int) -> None:
    """Data workers use one thread each: many workers times many threads oversubscribe."""
    torch.set_num_threads(1)


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Train; every value, the data and the run folder are checked before anything is written."""
    _check(config)
    out = Path(config.out)
    _check_out(out)
    index, split, fresh_split = _prepare_split(config, out)
    accelerator = Accelerator(mixed_precision=config.mixed_precision)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its kernels
    set_seed(config.seed)

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
    out.mkdir(parents=True, exist_ok=True)  # only now: a refused run leaves no folder behind
    if fresh_split:
        write_split(out / "split.json", split, seed=config.seed, fractions=config.split_fractions)
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
