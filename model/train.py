"""Train BaS on clips so that TempLP learns, with the public code's recipe by default.

    python -m model.train --config configs/bas_s.yml [--resume] [--set key=value ...]

Runs on the CPU as is and unchanged under ``accelerate launch`` on several GPUs. The
run folder holds ``last.safetensors`` (everything needed to resume, written atomically
after each epoch, read without unpickling: ``model.resume``), ``best.safetensors`` (the
weights with the best validation Dice), the split file and a JSON log of every epoch.
"""

from __future__ import annotations

import json
import math
import sys
import time
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
import yaml
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import TorchDynamoPlugin, set_seed
from torch.utils.data import DataLoader
from tqdm import tqdm

from .allocator import keep_freed_memory
from .atomic import atomic_path, check_output_folder
from .bas import BaS
from .checkpoint import save_weights, sha256
from .config import closest, get_config
from .data import (
    Augment,
    ClipDataset,
    DatasetIndex,
    discover,
    read_split,
    split_videos,
    write_split,
)
from .data.kept_back import refuse_kept_back
from .data.synth import generator_of
from .errors import ConfigError
from .host import cpu_model, native_bf16
from .hub import build_bas
from .losses import LossWeights, SegmentationLoss
from .options import command, config_file_option
from .provenance import provenance
from .resume import FILE_NAME as RESUME_FILE
from .resume import EpochRecord, Progress, read_resume_point, refuse_pickled, write_resume_point
from .typed import FieldError, from_data

# A run keeps its recipe's precision as written; where that is slow, it says so before it starts.
SLOW_BF16 = (
    "warning: bf16 autocast has no fast kernels on this CPU ({cpu}: no AVX-512 or bf16 "
    "instructions), so each step runs many times slower than in fp32; "
    "--set mixed_precision=no trains in fp32"
)


@dataclass(frozen=True)
class TrainConfig:
    """Defaults are the public code's recipe (batch 70, 200 epochs, AdamW 1e-4, cosine)."""

    variant: str = "S"
    image_size: int = 240
    temporal_window: int = 3
    temporal_gate: bool = True  # TempLP's gate (False: the plain TempLP of stages 1, 2)
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
    # TempLP's learning rate over the others': its parts start at zero inside a network
    # that may be trained already, and Adam moves a weight by at most about lr a step.
    temporal_lr_scale: float = 1.0
    restart_epochs: int = 0  # cosine restarts every N epochs after warm-up; 0: one cycle
    loss: LossWeights = LossWeights()
    augment: Augment = Augment()
    seed: int = 0
    init_weights: str = ""  # start from these weights (a later stage of a recipe); "" = random
    threads: int = 0  # CPU threads for torch; 0 leaves torch's default
    workers: int = 0  # data-loading worker processes
    preload: bool = False  # decode every training frame once, up front
    mixed_precision: str = "no"  # accelerate's: "no", "bf16" or "fp16"
    # Fast paths that leave the arithmetic as it is (``python -m model.train_bench`` times
    # them): weights in channels-last memory, the training forward through torch.compile.
    channels_last: bool = False
    compile: bool = False
    # The first ``low_res_epochs`` train on frames ``low_res`` pixels a side (0: none), at
    # under half the cost of a full-size frame; the network resamples its position
    # embedding to them, and validation stays at ``image_size``.
    low_res: int = 0
    low_res_epochs: int = 0
    # Stop early: before an epoch that would take the training time (over every session
    # of the run) past ``minutes``, or after ``patience`` epochs with no better validation
    # Dice (0: neither). ``score_initial`` validates the starting weights first, so that a
    # fine-tune keeps them when no epoch beats them.
    minutes: float = 0.0
    patience: int = 0
    score_initial: bool = False
    out: str = "runs/bas_s"

    def side_of_epoch(self, epoch: int) -> int:
        """The frame side that training epoch ``epoch`` (from 0) runs at."""
        return self.low_res if self.low_res and epoch < self.low_res_epochs else self.image_size


def _typed(kind: object, value: object, where: str = "") -> object:
    """``value`` (parsed YAML) as the annotated type ``kind`` (``model.typed``); a ConfigError
    naming the field otherwise. YAML 1.1 reads 1e-4 (no dot) as text: numbers may be text."""
    try:
        return from_data(kind, value, where, text_numbers=True)
    except FieldError as err:
        raise ConfigError(str(err)) from err


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


def load_config(
    path: Path | None, overrides: list[str], base: TrainConfig | None = None
) -> TrainConfig:
    """The run's config: the YAML file's fields over ``base`` (the defaults), then each
    ``--set``."""
    values = _read_yaml(path) if path else {}
    try:
        config = _typed(TrainConfig, {**(asdict(base) if base else {}), **values})
    except ConfigError as err:
        raise ConfigError(f"config file {path}: {err}" if path else str(err)) from err
    for item in overrides:
        key, equals, raw = item.partition("=")
        if not equals:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set epochs=10")
        try:
            config = _with_field(config, key.strip().split("."), raw, key.strip())
        except ConfigError as err:
            raise ConfigError(f"--set {item}: {err}") from err
    return config


def _with_field(config: Any, path: list[str], raw: str, key: str) -> Any:
    """``config`` (a dataclass) with the field at ``path`` (``augment.weak``: a field of a
    field) set from the ``--set`` text ``raw``."""
    head, *rest = path
    kinds = typing.get_type_hints(type(config))
    if head not in kinds:
        raise ConfigError(f"unknown config key {key}{closest(head, list(kinds))}")
    if rest:
        inner = getattr(config, head)
        if not is_dataclass(inner):
            raise ConfigError(f"{head} has no fields: {key} names none")
        return replace(config, **{head: _with_field(inner, rest, raw, key)})
    if kinds[head] is str:
        value: object = raw  # text as given: no YAML reading of "no", "1e-3" and the like
    else:
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"{raw!r} is not a valid YAML value") from err
    try:
        return replace(config, **{head: _typed(kinds[head], value, key)})
    except (TypeError, ValueError) as err:  # a field's own check
        raise ConfigError(str(err)) from err


def lr_factor(step: int, warmup: int, cycle: int, floor: float) -> float:
    """Linear warm-up, then cosine decay (restarting every ``cycle`` steps) down to ``floor``."""
    if step < warmup:
        return (step + 1) / warmup
    position = (step - warmup) % cycle / cycle
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * position))


def _prepare_split(
    config: TrainConfig, out: Path
) -> tuple[DatasetIndex, dict[str, list[str]], bool]:
    """The dataset and the run's split (its own, when resuming); writes nothing.

    The third value says whether the split is new (to be written once the run starts).
    """
    index = discover(Path(config.data))
    refuse_kept_back(index.root)
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
    for name in ("warmup_epochs", "restart_epochs", "threads", "workers", "patience"):
        if getattr(config, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(config, name)}")
    if not config.lr > 0 or not 0 <= config.min_lr <= config.lr or config.weight_decay < 0:
        raise ConfigError(
            f"need lr > 0, 0 <= min_lr <= lr and weight_decay >= 0, got lr {config.lr}, "
            f"min_lr {config.min_lr}, weight_decay {config.weight_decay}"
        )
    if not (config.minutes >= 0 and math.isfinite(config.minutes)):
        raise ConfigError(f"minutes must be >= 0 (0: no time limit), got {config.minutes}")
    if not config.temporal_lr_scale > 0:
        raise ConfigError(f"temporal_lr_scale must be > 0, got {config.temporal_lr_scale}")
    if config.init_weights and not Path(config.init_weights).is_file():
        raise ConfigError(f"init_weights file not found: {config.init_weights}")
    if not 0 <= config.warm_frames < config.clip_length:
        raise ConfigError(
            f"warm_frames must be in [0, clip_length), got {config.warm_frames} "
            f"with clip_length {config.clip_length}"
        )
    low_res_fits = 16 <= config.low_res < config.image_size and config.low_res % 16 == 0
    if config.low_res and not low_res_fits:
        raise ConfigError(
            f"low_res must be 0 or a multiple of 16 below image_size {config.image_size}, "
            f"got {config.low_res}"
        )
    if not 0 <= config.low_res_epochs <= (config.epochs if config.low_res else 0):
        raise ConfigError(
            f"low_res_epochs must be in [0, epochs] with a low_res, got {config.low_res_epochs}"
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


@dataclass
class _Run:
    """What every epoch works with, after ``accelerator.prepare``."""

    config: TrainConfig
    out: Path
    accelerator: Accelerator
    model: BaS
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    criterion: SegmentationLoss
    metadata: dict[str, str]  # of the weights file
    best: float = -1.0  # validation Dice of the best weights so far
    history: list[dict[str, float]] = field(default_factory=list)


def training_clips(
    config: TrainConfig, index: DatasetIndex, videos: list[str], side: int
) -> ClipDataset:
    """The augmented training clips of ``videos`` at ``side`` x ``side``, preprocessed as the
    network's config says (``BaSConfig.preprocessing``)."""
    return ClipDataset(
        index,
        videos,
        config.clip_length,
        side,
        config.augment,
        stride=config.clip_stride,
        seed=config.seed,
        preload=config.preload,
        preprocessing=get_config(config.variant).preprocessing,
    )


@dataclass
class TrainingData:
    """The training clips at each side the run trains at, and the validation clips."""

    train_sets: dict[int, ClipDataset]
    train_loaders: dict[int, DataLoader]
    val_loader: DataLoader

    def for_epoch(self, config: TrainConfig, epoch: int) -> DataLoader:
        """The loader of ``epoch``'s side, its augmentation drawn for that epoch."""
        side = config.side_of_epoch(epoch)
        self.train_sets[side].set_epoch(epoch)
        return self.train_loaders[side]


def training_data(
    config: TrainConfig, index: DatasetIndex, split: dict[str, list[str]]
) -> TrainingData:
    """The training clips (augmented) at each side an epoch trains at, and the validation
    clips at full size, preprocessed as the network's config says (``BaSConfig.preprocessing``).
    """
    preprocessing = get_config(config.variant).preprocessing
    sides = dict.fromkeys(config.side_of_epoch(epoch) for epoch in range(config.epochs))
    train_sets = {side: training_clips(config, index, split["train"], side) for side in sides}
    val_set = ClipDataset(
        index,
        split["val"],
        config.clip_length,
        config.image_size,
        stride=config.clip_length,
        preprocessing=preprocessing,
    )
    train_loaders = {
        side: DataLoader(
            clips,
            batch_size=config.batch_size,
            shuffle=True,
            drop_last=True,
            generator=torch.Generator().manual_seed(config.seed),
            num_workers=config.workers,
            worker_init_fn=_one_thread,
        )
        for side, clips in train_sets.items()
    }
    val_loader = DataLoader(
        val_set,
        batch_size=config.batch_size,
        num_workers=config.workers,
        worker_init_fn=_one_thread,
    )
    return TrainingData(train_sets, train_loaders, val_loader)


def _optimizer(
    model: BaS, config: TrainConfig, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW, with a linear warm-up then cosine decay (``lr_factor``) stepped every batch."""
    temporal = [p for name, p in model.named_parameters() if name.startswith("temporal.")]
    others = [p for name, p in model.named_parameters() if not name.startswith("temporal.")]
    groups = [{"params": others}, {"params": temporal, "lr": config.lr * config.temporal_lr_scale}]
    optimizer = torch.optim.AdamW(
        groups, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )
    warmup = config.warmup_epochs * steps_per_epoch
    cycle_epochs = config.restart_epochs or (config.epochs - config.warmup_epochs)
    cycle = max(1, cycle_epochs * steps_per_epoch)
    floor = config.min_lr / config.lr
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup, cycle, floor)
    )
    return optimizer, scheduler


def _resume(run: _Run, last: Path) -> int:
    """Load the resume point into ``run``; the epoch to start from."""
    progress = read_resume_point(last, _network(run), run.optimizer, run.scheduler)
    run.best, run.history = progress.best, [asdict(record) for record in progress.history]
    run.accelerator.print(f"resumed from {last} at epoch {progress.epoch}")
    return progress.epoch


def _weights_metadata(config: TrainConfig) -> dict[str, str]:
    """What the weights file says of how it was made (and from which weights it started)."""
    metadata = {
        "variant": config.variant,
        "image_size": str(config.image_size),
        "temporal_window": str(config.temporal_window),
        "temporal_gate": str(config.temporal_gate).lower(),
        "recipe": json.dumps(asdict(config), default=list),
        "trained_on": _hardware(),
    }
    if config.init_weights:
        metadata["init_weights_sha256"] = sha256(Path(config.init_weights))
    drawn = generator_of(Path(config.data))
    if drawn is not None:  # synthetic data: its generator, seed and widenings
        metadata["data_generator"] = json.dumps(drawn)
    return metadata


def clip_loss(
    model: Callable[..., torch.Tensor],
    criterion: SegmentationLoss,
    images: torch.Tensor,
    masks: torch.Tensor,
    warm: int,
) -> torch.Tensor:
    """The loss of clips (B, T, ...) whose first ``warm`` frames only give history."""
    return criterion(model(images, first_output=warm), masks[:, warm:])


def _network(run: _Run) -> BaS:
    """The network itself: without the wrappers of distribution and of torch.compile."""
    return run.accelerator.unwrap_model(run.model, keep_torch_compile=False)


def _train_epoch(run: _Run, loader: DataLoader, epoch: int, cold: np.random.Generator) -> float:
    """One pass over the training clips; the mean loss."""
    config, accelerator = run.config, run.accelerator
    total, count = 0.0, 0
    bar = tqdm(
        loader,
        desc=f"epoch {epoch + 1}/{config.epochs}",
        disable=not accelerator.is_local_main_process,
        mininterval=5,
    )
    for batch in bar:
        images, masks, warm = batch["images"], batch["masks"], config.warm_frames
        if warm and cold.random() < config.cold_start:
            images, masks, warm = images[:, warm:], masks[:, warm:], 0
        loss = clip_loss(run.model, run.criterion, images, masks, warm)
        run.optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        run.optimizer.step()
        run.scheduler.step()
        total, count = total + loss.item(), count + 1
        bar.set_postfix(loss=f"{total / count:.4f}", lr=f"{run.scheduler.get_last_lr()[0]:.2e}")
    return total / max(count, 1)


def _keep_if_best(run: _Run, epochs_done: int, dice: float) -> None:
    """Write the network as ``best.safetensors`` if its validation Dice is the best yet, with
    what made it: the command, date, machine and versions (the commit among them) and the
    training time so far, over every session of the run."""
    if dice > run.best:
        run.best = dice
        seconds = training_seconds(run.history)
        save_weights(
            _network(run),
            run.out / "best.safetensors",
            {
                **run.metadata,
                "epoch": str(epochs_done),
                "val_dice": f"{dice:.4f}",
                "training_seconds": f"{seconds:.0f}",
                "provenance": json.dumps(provenance()),
            },
        )


def _save_epoch(run: _Run, epoch: int, dice: float) -> None:
    """The best weights (if this epoch's are), the resume point and the history (main process)."""
    net = _network(run)
    _keep_if_best(run, epoch + 1, dice)
    history = tuple(EpochRecord(**record) for record in run.history)
    progress = Progress(epoch=epoch + 1, best=run.best, history=history)
    write_resume_point(run.out / RESUME_FILE, net, run.optimizer, run.scheduler, progress)
    with atomic_path(run.out / "history.json") as tmp:
        tmp.write_text(json.dumps(run.history, indent=1))


def _prepared_run(
    config: TrainConfig, out: Path, index: DatasetIndex, split: dict[str, list[str]]
) -> tuple[_Run, TrainingData]:
    """The accelerator, the loaders and the run (network, optimizer, schedule), prepared."""
    # Static shapes: a run has four (warm and cold-start clips, at low and full size), and
    # shape-generic kernels would serve all of them more slowly.
    dynamo = TorchDynamoPlugin(backend="inductor", dynamic=False) if config.compile else None
    # accelerate keeps one state per process and refuses a second mixed precision; a process
    # may train more than once (a fine-tune after a training, in one session), each run with
    # its own. The distributed part of the state (PartialState) is kept.
    AcceleratorState._reset_state()
    accelerator = Accelerator(mixed_precision=config.mixed_precision, dynamo_plugin=dynamo)
    if config.mixed_precision == "bf16" and accelerator.device.type == "cpu" and not native_bf16():
        print(SLOW_BF16.format(cpu=cpu_model()), file=sys.stderr)
    if config.threads:
        torch.set_num_threads(config.threads)
    keep_freed_memory()
    torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its kernels
    set_seed(config.seed)
    data = training_data(config, index, split)
    model = build_bas(
        config.variant,
        config.image_size,
        config.temporal_window,
        weights=config.init_weights or None,
        temporal_gate=config.temporal_gate,
    ).train()
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    steps_per_epoch = len(next(iter(data.train_loaders.values())))  # the same at every side
    if not steps_per_epoch:
        clips = len(next(iter(data.train_sets.values())))
        raise ConfigError(
            f"{clips} training clips, fewer than batch_size {config.batch_size}: "
            "lower batch_size, or give more or longer videos"
        )
    optimizer, scheduler = _optimizer(model, config, steps_per_epoch)
    sides = list(data.train_loaders)
    model, optimizer, data.val_loader, scheduler, *loaders = accelerator.prepare(
        model, optimizer, data.val_loader, scheduler, *data.train_loaders.values()
    )
    data.train_loaders = dict(zip(sides, loaders, strict=True))
    criterion = SegmentationLoss(config.loss)
    metadata = _weights_metadata(config)
    run = _Run(config, out, accelerator, model, optimizer, scheduler, criterion, metadata)
    return run, data


def read_history(out: Path) -> list[dict[str, float]]:
    """The epochs a run in ``out`` has trained (its history.json), each with its seconds."""
    return json.loads((Path(out) / "history.json").read_text())


def training_seconds(history: list[dict[str, float]]) -> float:
    """A run's training time so far, over every session of it: its epochs' seconds."""
    return sum(record["seconds"] for record in history)


def _stop_reason(config: TrainConfig, history: list[dict[str, float]], best: float) -> str:
    """Why the run stops before its next epoch ("" to go on): time budget or patience."""
    if not history:
        return ""
    spent = training_seconds(history)
    if config.minutes and spent + history[-1]["seconds"] > 60 * config.minutes:
        return (
            f"another epoch (the last took {history[-1]['seconds']:.0f} s) would take the "
            f"training time past {config.minutes:g} min ({spent / 60:.1f} min so far)"
        )
    improved = [i for i, record in enumerate(history) if record["val_dice"] >= best]
    since = len(history) - 1 - improved[-1] if improved else len(history)
    if config.patience and since >= config.patience:
        return f"no better validation Dice in {config.patience} epochs"
    return ""


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Train; every value, the data and the run folder are checked before anything is written."""
    _check(config)
    out = Path(config.out)
    check_output_folder(out, marker="split.json", what="run folder", error=ConfigError)
    index, split, fresh_split = _prepare_split(config, out)
    run, data = _prepared_run(config, out, index, split)
    if resume:
        refuse_pickled(out)
    last = out / RESUME_FILE
    start_epoch = _resume(run, last) if resume and last.exists() else 0
    out.mkdir(parents=True, exist_ok=True)  # only now: a refused run leaves no folder behind
    if fresh_split:
        write_split(out / "split.json", split, seed=config.seed, fractions=config.split_fractions)
    cold = np.random.default_rng([config.seed, 1])
    if config.score_initial and start_epoch == 0:
        dice = validation_dice(_network(run), data.val_loader, run.accelerator)
        run.accelerator.print(json.dumps({"epoch": 0, "val_dice": dice}))
        if run.accelerator.is_main_process:
            _keep_if_best(run, 0, dice)
    for epoch in range(start_epoch, config.epochs):
        reason = _stop_reason(config, run.history, run.best)
        if reason:
            run.accelerator.print(f"stopped before epoch {epoch + 1}: {reason}")
            break
        started = time.time()
        loss = _train_epoch(run, data.for_epoch(config, epoch), epoch, cold)
        dice = validation_dice(_network(run), data.val_loader, run.accelerator)
        record = {
            "epoch": epoch + 1,
            "loss": loss,
            "val_dice": dice,
            "seconds": round(time.time() - started, 1),
        }
        run.history.append(record)
        run.accelerator.print(json.dumps(record))
        if run.accelerator.is_main_process:
            _save_epoch(run, epoch, dice)
    run.accelerator.wait_for_everyone()
    return out / "best.safetensors"


@command("python -m model.train")
@config_file_option("--config", "YAML file of TrainConfig fields.")
@click.option("--resume", is_flag=True, help=f"Continue from OUT/{RESUME_FILE}.")
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
