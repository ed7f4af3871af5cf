"""The shipped weights: pinned by sha256, loadable in every form, and still finding lesions."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import runtimes
from model import CheckpointError, build_bas
from model.atomic import OUTPUT_MARKER
from model.checkpoint import read_metadata, sha256
from model.data import discover
from model.data.synth import write_dataset
from model.demo import main as demo_main
from model.evaluate import evaluate
from model.hub import SHIPPED, ShippedWeights, shipped_weights
from model.train import TrainConfig, load_config


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory):
    """Videos from a seed that training never saw (training used seed 0)."""
    return discover(write_dataset(tmp_path_factory.mktemp("h") / "d", videos=3, frames=16, seed=99))


# Where a stage-3 run read stage 2's weights and wrote its own: the shipped files ran their
# recipe with both set on the command line (the recipe's comment says how).
RUN_PATHS = {"init_weights", "out"}


CANDIDATES = sorted(Path("model/weights/candidates").glob("*.safetensors"))


@pytest.mark.parametrize("path", CANDIDATES, ids=lambda path: path.name)
def test_each_candidate_is_listed_with_its_sha256_and_holds_its_variant(path: Path) -> None:
    """The candidates' table in the docs is the files': each row names a file and its digest."""
    rows = [line for line in Path("docs/weights.md").read_text().splitlines() if path.name in line]
    assert any(sha256(path) in row for row in rows), f"{path.name} is not listed with its sha256"
    meta = read_metadata(path)
    assert f"bas_{meta['variant'].lower()}_cpu" in path.name
    assert json.loads(meta["recipe"])["variant"] == meta["variant"]


@pytest.mark.parametrize("variant", ["S", "L"])
def test_registry_matches_the_files(variant: str) -> None:
    entry = SHIPPED[variant]
    assert sha256(entry.path) == entry.sha256
    assert Path(entry.recipe).name == f"bas_{variant.lower()}_stage3.yml"
    # the weights were trained with exactly the recipe the registry names, every field
    recipe = json.loads(read_metadata(entry.path)["recipe"])
    config = json.loads(json.dumps(asdict(load_config(Path(entry.recipe), [])), default=list))
    # fields newer than the weights: the recipe file must leave them at their defaults,
    # which do what the run did without them
    newer = set(config) - set(recipe)
    defaults = json.loads(json.dumps(asdict(TrainConfig()), default=list))
    assert set(recipe) <= set(config) and newer <= {"minutes", "patience", "score_initial"}
    assert all(config[k] == defaults[k] for k in newer)
    assert {k: v for k, v in recipe.items() if k not in RUN_PATHS} == {
        k: v for k, v in config.items() if k not in RUN_PATHS | newer
    }
    assert recipe["temporal_gate"] and read_metadata(entry.path)["temporal_gate"] == "true"


@pytest.mark.parametrize("variant", ["S", "L"])
def test_shipped_weights_segment_held_out_videos(variant: str, held_out) -> None:
    """A loose floor (the README reports the full held-out figures): catches broken weights."""
    meter, _, _ = evaluate(runtimes.load_pytorch(variant, "shipped"), held_out)
    summary = meter.summary()
    assert summary["per_frame"]["dice"] >= 0.75, summary["per_frame"]


def test_corrupt_shipped_file_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "bas_s.safetensors"
    shutil.copy(SHIPPED["S"].path, copy)
    with open(copy, "r+b") as handle:
        handle.seek(-16, 2)
        handle.write(b"\0" * 16)
    entry = ShippedWeights("S", copy.name, SHIPPED["S"].sha256, SHIPPED["S"].recipe)
    monkeypatch.setattr("model.hub.WEIGHTS_DIR", tmp_path)
    monkeypatch.setitem(SHIPPED, "S", entry)
    with pytest.raises(CheckpointError, match="is corrupt: sha256"):
        shipped_weights("S")


@pytest.mark.parametrize("size", [256, 320])
@pytest.mark.parametrize("variant", ["S", "L"])
def test_shipped_weights_run_at_other_image_sizes(variant: str, size: int) -> None:
    """Trained at 240 (15 x 15 tokens): the position embedding is resampled on load."""
    model = build_bas(variant, image_size=size, weights="shipped")
    assert model.position.shape == (1, (size // 16) ** 2, 120)
    with torch.no_grad():
        logits, _ = model.stream(torch.rand(1, 3, size, size), model.initial_state(1))
    assert logits.shape == (1, 1, size, size) and torch.isfinite(logits).all()


def test_templp_can_be_disabled_on_shipped_weights() -> None:
    model = build_bas("S", temporal_window=1, weights="shipped")
    assert model.initial_state(1).shape[1] == 0


def test_demo_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(demo_main, ["--frames", "6", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {
        OUTPUT_MARKER,  # marks the folder as ours, to replace on the next run
        "clip",
        "masks",
        "overlay.gif",
        "strip.png",
        "metrics.json",
        "metrics.md",
    }
    assert len(list((out / "masks").glob("*.png"))) == 6
    record = json.loads((out / "metrics.json").read_text())
    assert record["counts"]["frames"] == 6
    assert "| per-frame |" in result.stdout
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
