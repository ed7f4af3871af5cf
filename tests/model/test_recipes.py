"""The training recipes in configs/: each stage starts from the one before it, the gate comes
in at stage 3 only, and the 2-core CPU recipe learns what the GPU recipe does."""

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
    assert {(stage.variant, stage.seed, stage.data) for stage in stages} == {
        (variant, first.seed, first.data)
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
        assert differ <= HOW_IT_RUNS | RUN_PATHS, gpu.out
