"""Training's resume point: tensors in a safetensors file, the rest as typed JSON in its header.

A ``torch.save`` file is a pickle, and unpickling runs whatever code the file names; a
resume point travels with a run folder, so it must be as safe to open as a weights file.
Tensors (the network's, the optimizer's moments) go through ``checkpoint.read_state_dict``
(sniffed, never unpickled, NaN refused); the optimizer's hyper-parameters and the
schedule's counters are checked against the fresh optimizer and schedule of the run that
resumes: same groups, same keys, same kinds of value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from .atomic import atomic_path
from .checkpoint import CheckpointError, check_keys, read_metadata, read_state_dict
from .typed import FieldError, from_data

FORMAT = "bas-deploy-resume/1"
FILE_NAME = "last.safetensors"
PICKLED = "last.pt"  # what earlier versions wrote: never read


class ResumeError(CheckpointError):
    """A resume point that cannot be used by the run asking for it."""


@dataclass(frozen=True)
class EpochRecord:
    """One line of a run's history."""

    epoch: int
    loss: float
    val_dice: float
    seconds: float


@dataclass(frozen=True)
class Progress:
    """How far a run got: the epochs done, the best validation Dice and every epoch's record."""

    epoch: int
    best: float
    history: tuple[EpochRecord, ...]


def write_resume_point(
    path: Path,
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    progress: Progress,
) -> Path:
    """Write the resume point atomically: one file, readable without running code."""
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in network.state_dict().items()}
    state = optimizer.state_dict()
    for param, values in state["state"].items():
        for name, value in values.items():
            if not isinstance(value, torch.Tensor):
                raise ResumeError(f"optimizer state {param}.{name} is not a tensor: {value!r}")
            tensors[f"optimizer.{param}.{name}"] = value.detach().contiguous().cpu()
    header = {
        "progress": asdict(progress),
        "param_groups": state["param_groups"],
        "scheduler": scheduler.state_dict(),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={"format": FORMAT, "state": json.dumps(header)})
    return path


def refuse_pickled(folder: Path) -> None:
    """A run folder that holds only an earlier version's pickled resume point cannot resume."""
    if (folder / PICKLED).exists() and not (folder / FILE_NAME).exists():
        raise ResumeError(
            f"{folder / PICKLED} is a pickled resume point of an earlier version, and "
            "unpickling can run code: it is not read. Start the run again in a new folder"
        )


def read_resume_point(
    path: Path,
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> Progress:
    """Load the resume point into the run's network, optimizer and schedule; how far it got.

    Everything is checked before anything is loaded: a refused file changes nothing.
    """
    path = Path(path)
    metadata = read_metadata(path)
    if metadata.get("format") != FORMAT:
        raise ResumeError(f"{path} is not a resume point ({FORMAT}): it has no such format tag")
    try:
        header = json.loads(metadata["state"])
        progress = from_data(Progress, header["progress"], "progress")
    except (KeyError, TypeError, ValueError, FieldError) as err:
        raise ResumeError(f"{path}: its training state is damaged ({err})") from err
    tensors = read_state_dict(path)
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    check_keys(network.state_dict(), model_state, str(path))
    fresh = optimizer.state_dict()
    groups = _like(fresh["param_groups"], header.get("param_groups"), "param_groups", path)
    schedule = _like(scheduler.state_dict(), header.get("scheduler"), "scheduler", path)
    moments = _optimizer_moments(tensors, optimizer, path)
    network.load_state_dict(model_state, strict=True)
    optimizer.load_state_dict({"state": moments, "param_groups": groups})
    scheduler.load_state_dict(schedule)
    return progress


def _optimizer_moments(
    tensors: Mapping[str, torch.Tensor], optimizer: torch.optim.Optimizer, path: Path
) -> dict[int, dict[str, torch.Tensor]]:
    """The per-parameter state, each tensor a scalar or of its parameter's shape."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    moments: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        if not key.startswith("optimizer."):
            if not key.startswith("model."):
                raise ResumeError(f"{path}: unexpected tensor {key}")
            continue
        index, _, name = key.removeprefix("optimizer.").partition(".")
        if not index.isdigit() or int(index) >= len(params) or not name:
            raise ResumeError(f"{path}: tensor {key} names no parameter of the optimizer")
        shape = params[int(index)].shape
        if tensor.numel() != 1 and tensor.shape != shape:
            raise ResumeError(
                f"{path}: tensor {key} has shape {tuple(tensor.shape)}, its parameter "
                f"{tuple(shape)}"
            )
        moments.setdefault(int(index), {})[name] = tensor
    return moments


def _like(template: Any, value: Any, where: str, path: Path) -> Any:
    """``value`` (parsed JSON) if it has ``template``'s structure and kinds of value."""

    def fail(expected: str) -> ResumeError:
        return ResumeError(
            f"{path}: {where} must be {expected}, got {value!r} (a resume point of another "
            "optimizer, schedule or recipe)"
        )

    if isinstance(template, Mapping):
        if not isinstance(value, Mapping) or set(value) != set(template):
            raise fail(f"a mapping with keys {', '.join(sorted(map(str, template)))}")
        return {k: _like(template[k], value[k], f"{where}.{k}", path) for k in template}
    if isinstance(template, list | tuple):
        if not isinstance(value, list) or len(value) != len(template):
            raise fail(f"a list of {len(template)}")
        pairs = enumerate(zip(template, value, strict=True))
        items = [_like(t, v, f"{where}[{i}]", path) for i, (t, v) in pairs]
        return type(template)(items)
    if isinstance(template, bool) or template is None:
        if not (value is None or isinstance(value, bool)):
            raise fail("true, false or null")
        return value
    if isinstance(template, int | float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail("a number")
        if isinstance(template, int) and not float(value).is_integer():
            raise fail("an integer")
        return type(template)(value)
    if not isinstance(value, type(template)):
        raise fail(type(template).__name__)
    return value
