"""Resume points: safetensors plus typed JSON, restored exactly, never unpickled."""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from model.checkpoint import CheckpointError, read_metadata
from model.data.synth import write_dataset
from model.resume import (
    EpochRecord,
    Progress,
    ResumeError,
    read_resume_point,
    write_resume_point,
)
from model.train import train, training_seconds
from tests.support.training import tiny_train_config


def _run(lr: float = 1e-3) -> tuple[torch.nn.Module, torch.optim.Optimizer, object]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    optimizer = torch.optim.AdamW(
        [{"params": net[0].parameters()}, {"params": net[1].parameters(), "lr": 10 * lr}],
        lr=lr,
        betas=(0.9, 0.95),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    return net, optimizer, scheduler


def _step(net: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: object) -> None:
    net(torch.randn(5, 3)).square().mean().backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


PROGRESS = Progress(epoch=2, best=0.5, history=(EpochRecord(1, 0.9, 0.4, 3.0),) * 2)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, torch.nn.Module, torch.optim.Optimizer, object]:
    net, optimizer, scheduler = _run()
    for _ in range(3):
        _step(net, optimizer, scheduler)
    path = write_resume_point(tmp_path / "last.safetensors", net, optimizer, scheduler, PROGRESS)
    return path, net, optimizer, scheduler


def test_a_resumed_run_continues_exactly_where_it_stopped(saved: tuple) -> None:
    path, net, optimizer, scheduler = saved
    other, other_optimizer, other_scheduler = _run()
    assert read_resume_point(path, other, other_optimizer, other_scheduler) == PROGRESS
    assert training_seconds([asdict(record) for record in PROGRESS.history]) == 6.0
    torch.manual_seed(1)
    _step(net, optimizer, scheduler)
    torch.manual_seed(1)
    _step(other, other_optimizer, other_scheduler)
    for a, b in zip(net.state_dict().values(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert scheduler.get_last_lr() == other_scheduler.get_last_lr()
    assert optimizer.state_dict()["param_groups"] == other_optimizer.state_dict()["param_groups"]


def _rewrite(path: Path, edit_header=None, edit_tensors=None) -> None:
    tensors, metadata = load_file(path), read_metadata(path)
    header = json.loads(metadata["state"])
    if edit_header:
        edit_header(header)
    if edit_tensors:
        edit_tensors(tensors)
    save_file(tensors, path, metadata={**metadata, "state": json.dumps(header)})


def _set_lr_text(header: dict) -> None:
    header["param_groups"][0]["lr"] = "0.1; import os"


def _drop_group(header: dict) -> None:
    header["param_groups"].pop()


def _history_text(header: dict) -> None:
    header["progress"]["history"][0]["loss"] = "low"


def _scheduler_key(header: dict) -> None:
    header["scheduler"]["lr_lambdas"] = "os.system"


def _misshapen_moment(tensors: dict) -> None:
    tensors["optimizer.0.exp_avg"] = torch.zeros(7)


def _nan_moment(tensors: dict) -> None:
    tensors["optimizer.0.exp_avg"][0, 0] = float("nan")


def _stray_tensor(tensors: dict) -> None:
    tensors["optimizer.99.exp_avg"] = torch.zeros(1)


@pytest.mark.parametrize(
    ("edit_header", "edit_tensors", "message"),
    [
        (_set_lr_text, None, r"param_groups\[0\]\.lr must be a number"),
        (_drop_group, None, "param_groups must be a list of 2"),
        (_history_text, None, "history.*loss must be a number"),
        (_scheduler_key, None, r"scheduler\.lr_lambdas must be a list of 2"),
        (None, _misshapen_moment, r"optimizer\.0\.exp_avg has shape \(7,\)"),
        (None, _nan_moment, "NaN or infinite"),
        (None, _stray_tensor, "names no parameter"),
    ],
)
def test_a_damaged_resume_point_is_refused_and_changes_nothing(
    saved: tuple, edit_header, edit_tensors, message: str
) -> None:
    path = saved[0]
    _rewrite(path, edit_header, edit_tensors)
    net, optimizer, scheduler = _run()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(CheckpointError, match=message):
        read_resume_point(path, net, optimizer, scheduler)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not optimizer.state_dict()["state"]


def test_weights_or_a_torch_save_file_are_not_a_resume_point(tmp_path: Path) -> None:
    net, optimizer, scheduler = _run()
    weights = tmp_path / "weights.safetensors"
    save_file(dict(net.state_dict()), weights)
    with pytest.raises(ResumeError, match="is not a resume point"):
        read_resume_point(weights, net, optimizer, scheduler)
    pickled = tmp_path / "last.safetensors"
    torch.save({"model": net.state_dict()}, pickled)
    with pytest.raises(ResumeError, match="is not a resume point"):
        read_resume_point(pickled, net, optimizer, scheduler)


class _Payload:
    """Unpickling this runs code: it writes a file."""

    def __init__(self, flag: Path) -> None:
        self.flag = flag

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.flag, "code ran"))


def test_train_resume_never_unpickles_an_old_resume_point(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "d", videos=2, frames=4, seed=3)
    run = tmp_path / "run"
    config = tiny_train_config(data, run)
    train(config)
    (run / "last.safetensors").rename(run / "moved.safetensors")
    flag = tmp_path / "flag"
    (run / "last.pt").write_bytes(pickle.dumps(_Payload(flag)))
    with pytest.raises(ResumeError, match="pickled resume point of an earlier version"):
        train(replace(config, epochs=2), resume=True)
    assert not flag.exists()
    assert len(json.loads((run / "history.json").read_text())) == 1
