"""The training recipes in configs/: each stage starts from the one before it, the gate comes
in at stage 3 only, and the 2-core CPU recipe learns what the GPU recipe does, its stage 3
on a widened set."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from model.train import TrainConfig, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

# The fields by which configs/cpu/ may differ from the GPU recipe: how a step runs on the
# CPU (its fast paths, lower-resolution epochs, loading in-process) and where it writes.
HOW_IT_RUNS = {"workers", "channels_last", "compile", "low_res", "low_res_epochs"}
RUN_PATHS = {"init_weights", "out"}
# And what the CPU recipe's stage 3 trains on: the same videos with every scanner change drawn
# into half of them (the realism ablation's all@0.5 row, docs/realism.md).
WIDENED = "data/synth_train_widened"
MAKEFILE = CONFIGS.parent / "Makefile"


def _stages(variant: str) -> dict[str, list[TrainConfig]]:
    name = f"bas_{variant.lower()}"
    files = {
        "gpu": [f"{name}.yml", f"{name}_stage2.yml", f"{name}_stage3.yml"],
        "cpu": [f"cpu/{name}_{stage}.yml" for stage in (1, 2, 3)],
    }
    return {kind: [load_config(CONFIGS / f, []) for f in paths] for kind, paths in files.items()}


@pytest.mark.parametrize("kind", ["gpu", "cpu"])
@pytest.mark.parametrize("variant", ["S", "L"])
def test_each_stage_starts_from_the_last(variant: str, kind: str) -> None:
    first, *later = stages = _stages(variant)[kind]
    assert not first.init_weights
    for before, stage in zip(stages, later, strict=False):
        assert stage.init_weights == f"{before.out}/best.safetensors"
    assert len({stage.out for stage in stages}) == len(stages)
    assert {(stage.variant, stage.seed) for stage in stages} == {(variant, first.seed)}
    *trunk, last = stages
    assert {stage.data for stage in trunk} == {"data/synth_train"}
    assert last.data == (WIDENED if kind == "cpu" else "data/synth_train")


def test_the_widened_set_is_the_training_videos_with_changes_in_half() -> None:
    """make data draws the training set; make data-widened draws the same videos, widened."""
    make = MAKEFILE.read_text().replace("\\\n", " ")
    draws = {}
    for line in make.splitlines():
        if "-m model.data.synth " in line and "$(PY)" in line:
            words = line.split("-m model.data.synth ")[1].split()
            options = dict(zip(words[::2], words[1::2], strict=True))
            draws[options.pop("--out")] = options
    assert draws[WIDENED] == {
        **draws["data/synth_train"],
        "--widen": "all",
        "--widen-share": "0.5",
    }


@pytest.mark.parametrize("kind", ["gpu", "cpu"])
@pytest.mark.parametrize("variant", ["S", "L"])
def test_the_gate_is_trained_in_at_stage_3_only(variant: str, kind: str) -> None:
    """Stages 1 and 2 train the paper's plain TempLP; the shipped files are stage 3's."""
    assert [stage.temporal_gate for stage in _stages(variant)[kind]] == [False, False, True]


@pytest.mark.parametrize("variant", ["S", "L"])
def test_the_cpu_recipe_differs_only_in_how_it_runs(variant: str) -> None:
    stages = _stages(variant)
    for gpu, cpu in zip(stages["gpu"], stages["cpu"], strict=True):
        gpu_fields, cpu_fields = asdict(gpu), asdict(cpu)
        differ = {key for key in gpu_fields if gpu_fields[key] != cpu_fields[key]}
        widened = {"data"} if cpu.data == WIDENED else set()
        assert differ <= HOW_IT_RUNS | RUN_PATHS | widened, gpu.out
    assert stages["cpu"][-1].data == WIDENED
