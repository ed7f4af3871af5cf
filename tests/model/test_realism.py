"""``model.realism``: each row's training set, its stage-3 run and its scores on sets no row
trains on, added to the results file; the docs table rendered from it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bas_deploy.results import load_json, realism_table
from model import realism
from model.checkpoint import sha256
from model.data.synth import generator_of, write_dataset
from model.provenance import add_run, read_results
from model.train import TrainConfig, train
from tests.support.training import tiny_train_config


def test_rows_draw_their_changes_and_train_stage_3_of_the_recipe(tmp_path: Path) -> None:
    assert realism.widenings_of("none") == frozenset()
    assert realism.widenings_of("focus") == {"focus"}
    assert realism.widenings_of("all") == set(realism.WIDENINGS)
    assert realism.widenings_of("all@0.5") == set(realism.WIDENINGS)
    assert (realism.share_of("all"), realism.share_of("focus@0.25")) == (1.0, 0.25)
    config = realism.stage3_config("L", "focus", Path("w.safetensors"), Path("d"), tmp_path)
    assert config.variant == "L" and config.temporal_gate and config.epochs == 2
    assert (config.init_weights, config.data) == ("w.safetensors", "d")
    assert config.out == str(tmp_path / "run_l_focus")


def test_a_row_trains_scores_and_lands_in_the_results_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole row on tiny sets: a widened training set drawn, stage 3 from the base
    weights, scores on the kept-back, unseen and held-out sets, the record and its table."""
    held_out = write_dataset(tmp_path / "held_out", videos=2, frames=3, seed=1)
    classic = write_dataset(tmp_path / "train", videos=2, frames=3, seed=0)
    for name, value in [
        ("TRAINING_DATA", classic),
        ("HELD_OUT_DATA", held_out),
        ("TEST_VIDEOS", 2),
        ("TEST_FRAMES", 3),
        ("TRAINING_VIDEOS", 2),
        ("TRAINING_FRAMES", 3),
    ]:
        monkeypatch.setattr(realism, name, value)
    base_weights = train(tiny_train_config(classic, tmp_path / "base", temporal_gate=False))

    def tiny_stage3(variant: str, row: str, start: Path, data: Path, work: Path) -> TrainConfig:
        return tiny_train_config(
            data, work / f"run_{row}", init_weights=str(start), temporal_gate=True, epochs=2
        )

    monkeypatch.setattr(realism, "stage3_config", tiny_stage3)
    work, results = tmp_path / "work", tmp_path / "results" / "realism.json"
    argv = ["--rows", "focus", "--base", str(base_weights), "--work", str(work)]
    result = CliRunner().invoke(realism.main, [*argv, "--results", str(results)])
    assert result.exit_code == 0, result.output
    last = result.stdout.splitlines()[-1]
    assert last.startswith("focus: per-frame Dice streaming: kept_back ")
    assert generator_of(work / "train_focus")["widen"] == ["focus"]
    assert generator_of(work / "kept_back_21")["generator"].endswith("render_kept_back")
    (run,) = read_results(results)["runs"]
    assert (run["variant"], run["row"], run["widen"], run["epochs"]) == ("S", "focus", ["focus"], 2)
    assert run["started_from_sha256"] == sha256(base_weights)
    assert run["weights_sha256"] == sha256(work / "run_focus" / "best.safetensors")
    assert run["unseen"]["frames"] == 6 and run["held_out"]["frames"] == 6
    assert "darkened_history_gain" in run["unseen"]
    assert "darkened_history_gain" not in run["kept_back"]
    assert run["provenance"]["command"].startswith("python -m model.realism")
    (row,) = [line for line in realism_table(load_json(results)).splitlines()[2:]]
    assert row.startswith("| BaS-S | focus: 2 epochs, ")
    assert run["widen_share"] == 1.0
    add_run(results, {**run, "row": "focus@0.5", "widen_share": 0.5}, realism.RUN_KEY)
    (_, halved) = realism_table(load_json(results)).splitlines()[2:]
    assert halved.startswith("| BaS-S | focus in 50% of the videos: 2 epochs, ")
    again = CliRunner().invoke(realism.main, [*argv, "--results", str(results)])
    assert again.exit_code == 0, again.output  # the finished run resumes and is scored again
    assert len(read_results(results)["runs"]) == 2


def test_bad_rows_and_a_missing_base_are_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = CliRunner().invoke(realism.main, ["--rows", "focus,gain"])
    assert result.exit_code == 2
    assert "unknown row gain: rows are shipped, none, convex" in result.stderr
    for row in ("none@0.5", "focus@1", "all@half"):
        result = CliRunner().invoke(realism.main, ["--rows", row])
        assert result.exit_code == 2
        assert f"{row}: a share follows a widened row, above 0 and under 1" in result.stderr
    missing = tmp_path / "stage2.safetensors"
    argv = ["--variant", "L", "--rows", "none", "--work", str(tmp_path)]
    with monkeypatch.context() as elsewhere:  # a checkout without the candidate files
        elsewhere.chdir(tmp_path)
        result = CliRunner().invoke(realism.main, argv)
    assert result.exit_code == 2
    assert "no stage-2 weights at model/weights/candidates/bas_l_cpu_stage2" in result.stderr
    result = CliRunner().invoke(realism.main, ["--base", str(missing)])
    assert result.exit_code == 2 and "does not exist" in result.stderr
    missing.write_text("junk\n")  # a corrupt base: refused before any set is drawn
    argv = ["--rows", "none", "--base", str(missing), "--work", str(tmp_path)]
    result = CliRunner().invoke(realism.main, argv)
    assert result.exit_code == 2 and "is not a safetensors or PyTorch checkpoint" in result.stderr
    argv = ["--variant", "L", "--rows", "none", "--base", "model/weights/bas_s.safetensors"]
    result = CliRunner().invoke(realism.main, [*argv, "--work", str(tmp_path)])
    assert result.exit_code == 2 and "holds BaS-S weights, not BaS-L" in result.stderr
    assert not (tmp_path / "kept_back_21").exists()
