"""``converters.all --workers``: the cells as Ray tasks on an embedded Ray give, cell for
cell, the artifacts, manifests, parity records and table of the local run (two ONNX cells
of BaS-S, fp32, frame and stream form: the cheapest pair that covers both forms).

Both runs compute PyTorch's side with one thread (as ``make test`` does everywhere): the
logit errors of the records are sums in fp32, whose last digits follow the thread count.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from converters import all as convert_all
from converters.parity import MIN_FRAMES

CELLS = ["--targets", "onnx", "--variants", "S", "--precisions", "fp32", "--forms", "frame,stream"]
TIMES = {"artifact", "seconds", "conversion_seconds", "created"}  # where and when, not what


def _run(out: Path, *extra: str) -> dict:
    args = [*CELLS, "--frames", str(MIN_FRAMES), "--out", str(out), *extra]
    result = CliRunner().invoke(convert_all.main, args)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return json.loads((out / "parity.json").read_text())


def _without(record: object, keys: set[str]) -> object:
    """``record`` with ``keys`` left out at every depth, and paths reduced to file names."""
    if isinstance(record, dict):
        return {k: _without(v, keys) for k, v in record.items() if k not in keys}
    if isinstance(record, list):
        return [_without(v, keys) for v in record]
    return Path(record).name if isinstance(record, str) and record.startswith("/") else record


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch):
    """PyTorch on one thread here and in Ray's workers (which inherit OMP_NUM_THREADS)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_the_matrix_on_ray_is_the_local_matrix_cell_for_cell(tmp_path: Path) -> None:
    local = _run(tmp_path / "local")
    spread = _run(tmp_path / "spread", "--workers", "2")
    assert [r["form"] for r in spread["results"]] == ["frame", "stream"]
    assert _without(spread, TIMES) == _without(local, TIMES)
    for row in local["results"]:
        name = Path(row["artifact"]).name
        for suffix in ("", ".json"):
            here = tmp_path / "local" / f"{name}{suffix}"
            there = tmp_path / "spread" / f"{name}{suffix}"
            if suffix:
                assert _without(json.loads(there.read_text()), TIMES) == _without(
                    json.loads(here.read_text()), TIMES
                )
            else:
                assert there.read_bytes() == here.read_bytes()
    tables = [(tmp_path / o / "parity.md").read_text().splitlines() for o in ("local", "spread")]
    assert [line.rsplit("|", 2)[0] for line in tables[1]] == [
        line.rsplit("|", 2)[0] for line in tables[0]
    ]


def test_ray_address_needs_workers(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        convert_all.main, [*CELLS, "--out", str(tmp_path), "--ray-address", "h:1"]
    )
    assert result.exit_code == 2 and "--ray-address needs --workers" in result.output
