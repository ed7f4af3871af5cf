"""Fine-tuning on one's own videos: held out by video, stopped on score or time, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from model.checkpoint import read_metadata, read_state_dict, sha256
from model.data.looks import LOOKS, restyle
from model.data.synth import write_dataset
from model.finetune import finetune_config, main
from model.hub import shipped_weights
from model.provenance import read_results

# 64 x 64 frames, 4-frame clips, batch 2: a fine-tune of seconds on the tiny videos.
SMALL = ["--set", "image_size=64", "--set", "clip_length=4", "--set", "batch_size=2"]


@pytest.fixture(scope="module")
def own_videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four short videos of an unseen seed, in another scanner's look."""
    base = tmp_path_factory.mktemp("ft")
    plain = write_dataset(base / "plain", videos=4, frames=8, seed=17)
    return restyle(plain, base / "look", LOOKS["sepia-low-range"])


def _finetune(*args: str) -> object:
    return CliRunner().invoke(main, [*SMALL, *args])


def test_finetune_writes_weights_split_and_a_before_after_table(
    own_videos: Path, tmp_path: Path
) -> None:
    run, results = tmp_path / "run", tmp_path / "results" / "finetune.json"
    args = ["--data", str(own_videos), "--out", str(run), "--set", "epochs=2"]
    result = _finetune(*args, "--test", str(own_videos), "--results", str(results))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(run / "best.safetensors")
    split = json.loads((run / "split.json").read_text())["splits"]
    assert len(split["val"]) == 1 and len(split["train"]) == 3  # a quarter, by video
    table = (run / "finetune.md").read_text()
    for row in ("per-frame Dice", "pooled Dice", "missed lesion frames", "false alarms"):
        assert f"| {row}" in table
    assert "| history's gain" in table
    report = json.loads((run / "finetune.json").read_text())
    assert report["held_out_videos"] == split["val"] and "epochs=2" in report["overrides"]
    assert report["before"]["frames"] == report["after"]["frames"] == 8
    assert report["provenance"]["command"].startswith("python -m model.finetune")
    (tested,) = report["tests"]
    assert tested["data"] == str(own_videos) and tested["after"]["frames"] == 32
    assert f"On {own_videos}:" in table
    (stored,) = read_results(results)["runs"]
    assert stored["tests"] == report["tests"] and stored["provenance"]["command"]
    metadata = read_metadata(run / "best.safetensors")
    assert metadata["init_weights_sha256"] == sha256(shipped_weights("S"))
    assert stored["started_from_sha256"] == sha256(shipped_weights("S"))
    assert (run / "last.safetensors").is_file()


def test_a_fine_tune_that_only_gets_worse_keeps_the_starting_weights(
    own_videos: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = ["--data", str(own_videos), "--out", str(run), "--set", "epochs=2"]
    result = _finetune(*args, "--set", "lr=3.0", "--set", "min_lr=3.0")
    assert result.exit_code == 0, result.output
    assert read_metadata(run / "best.safetensors")["epoch"] == "0"
    best = read_state_dict(run / "best.safetensors")
    shipped = read_state_dict(shipped_weights("S"))
    same = [key for key in shipped if key != "position" and key in best]
    assert same and all((best[key] == shipped[key]).all() for key in same)


def test_a_stopped_fine_tune_resumes_and_the_time_budget_spans_sessions(
    own_videos: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = ["--data", str(own_videos), "--out", str(run), "--set", "patience=0"]
    assert _finetune(*args, "--set", "epochs=1").exit_code == 0
    refused = _finetune(*args, "--set", "epochs=2")
    assert refused.exit_code == 2
    assert refused.stderr.strip() == (
        f"error: {run} holds a run already: add --resume to continue it, or choose another --out"
    )
    result = _finetune(*args, "--set", "epochs=2", "--resume")
    assert result.exit_code == 0, result.output
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    spent = sum(h["seconds"] for h in history) / 60
    budget = f"{spent / 2:.6f}"  # the two epochs together are over it
    result = _finetune(*args, "--set", "epochs=5", "--resume", "--minutes", budget)
    assert result.exit_code == 0, result.output
    assert "stopped before epoch 3: another epoch" in result.output
    assert len(json.loads((run / "history.json").read_text())) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--val-fraction", "1.5"], "--val-fraction must be between 0 and 1, got 1.5"),
        (["--set", "batch_size=500"], "training clips, fewer than batch_size 500"),
        (["--weights", "{missing}"], "not found"),
        (["--set", "lr"], "expected KEY=VALUE"),
    ],
)
def test_bad_fine_tune_input_is_refused_in_one_line_and_writes_nothing(
    own_videos: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    run = tmp_path / "run"
    argv = [a.format(missing=tmp_path / "none.safetensors") for a in args]
    result = _finetune("--data", str(own_videos), "--out", str(run), *argv)
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert line.startswith("error:") and "\n" not in line and message in line
    assert not run.exists()


@pytest.mark.parametrize(("native", "precision"), [(True, "bf16"), (False, "no")])
def test_the_fine_tune_trains_in_bf16_only_where_the_cpu_has_its_kernels(
    tmp_path: Path, native: bool, precision: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A time budget buys many times fewer steps where bf16 runs on reference kernels."""
    monkeypatch.setattr("model.finetune.native_bf16", lambda: native)
    args = ("S", "shipped", tmp_path, tmp_path / "run", 10.0, 0.25)
    assert finetune_config(*args, []).mixed_precision == precision
    chosen = finetune_config(*args, ["mixed_precision=bf16"])
    assert chosen.mixed_precision == "bf16"  # what the user sets wins
