"""Training (tiny, end to end, resumable), its schedule and loss, and the evaluation command."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from model import build_bas
from model.allocator import keep_freed_memory
from model.checkpoint import read_metadata, save_weights, sha256
from model.data import discover, native_frames, split_videos
from model.data.synth import write_dataset
from model.evaluate import main as evaluate_main
from model.losses import SegmentationLoss
from model.train import TrainConfig, load_config, lr_factor, train, training_data
from model.train_bench import (
    LoopSetup,
    StepTiming,
    _recipe_step,
    _stage_minutes,
    loop_setups,
    scored_frames_per_epoch,
    time_step,
)
from runtimes import from_model, stream_masks
from runtimes.session import to_input, to_native
from tests.support.training import tiny_train_config


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("d") / "synth", videos=4, frames=6, seed=11)


def _tiny_config(data: Path, tmp_path: Path, **changes: object) -> TrainConfig:
    """One epoch at 32 x 32 on the tiny dataset, batches of 2, split 3:1 by video."""
    split = {"train": 0.75, "val": 0.25}
    return tiny_train_config(data, tmp_path / "run", batch_size=2, split_fractions=split, **changes)


def test_schedule_warms_up_then_decays_to_the_floor() -> None:
    assert lr_factor(0, warmup=4, cycle=10, floor=0.01) == pytest.approx(0.25)
    assert lr_factor(3, warmup=4, cycle=10, floor=0.01) == pytest.approx(1.0)
    assert lr_factor(4, warmup=4, cycle=10, floor=0.01) == pytest.approx(1.0)
    assert lr_factor(13, warmup=4, cycle=10, floor=0.01) < 0.05
    assert lr_factor(14, warmup=4, cycle=10, floor=0.01) == pytest.approx(1.0)  # restart


def test_loss_rewards_the_right_mask() -> None:
    loss = SegmentationLoss()
    target = torch.zeros(2, 1, 8, 8)
    target[0, 0, 2:6, 2:6] = 1
    right = torch.where(target > 0, 10.0, -10.0)
    assert loss(right, target) < 0.01
    assert loss(-right, target) > 1.0


def test_config_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text("variant: L\nbatch_size: 3\naugment: {hflip: 0.0, blur_sigma: [0.5, 1.0]}\n")
    config = load_config(path, ["epochs=2"])
    assert (config.variant, config.batch_size, config.epochs) == ("L", 3, 2)
    assert config.augment.blur_sigma == (0.5, 1.0) and config.augment.hflip == 0.0
    nested = load_config(path, ["augment.weak=0.4", "augment.screen.overlay=1.0"])
    assert nested.augment.weak == 0.4 and nested.augment.screen.overlay == 1.0
    assert nested.augment.blur_sigma == (0.5, 1.0)  # the file's other augment fields stay
    with pytest.raises(ValueError, match=r"unknown config key augment.wek \(did you mean 'weak'"):
        load_config(path, ["augment.wek=0.4"])
    with pytest.raises(ValueError, match="epochs has no fields: epochs.x names none"):
        load_config(path, ["epochs.x=1"])
    path.write_text("variant: L\nbatchsize: 3\n")
    with pytest.raises(ValueError, match="unknown TrainConfig keys: batchsize"):
        load_config(path, [])


def test_trains_resumes_and_the_weights_evaluate(tiny_data: Path, tmp_path: Path) -> None:
    config = _tiny_config(tiny_data, tmp_path, variant="L", lr=1e-3, clip_stride=2)
    best = train(config)
    assert best.is_file() and (tmp_path / "run" / "last.safetensors").is_file()
    train(replace(config, epochs=2), resume=True)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    split = json.loads((tmp_path / "run" / "split.json").read_text())["splits"]
    assert not set(split["train"]) & set(split["val"])

    model = build_bas("L", image_size=32, weights=best)
    assert isinstance(model, torch.nn.Module)
    result = CliRunner().invoke(
        evaluate_main,
        ["--variant", "L", "--weights", str(best), "--data", str(tiny_data), "--image-size", "32"],
    )
    assert result.exit_code == 0, result.output
    out = result.stdout.strip().splitlines()
    assert any(line.startswith("| per-frame") for line in out)
    record = json.loads(out[-1])
    assert record["counts"]["frames"] == 24 and record["counts"]["videos"] == 4
    assert 0.0 <= record["per_frame"]["dice"] <= 1.0
    assert record["weights_sha256"] == sha256(best)  # which file the figures are of


def test_evaluate_reports_bad_input_in_one_line(tiny_data: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        evaluate_main, ["--weights", str(tmp_path / "none.safetensors"), "--data", str(tmp_path)]
    )
    assert result.exit_code == 2
    err = result.stderr.strip()
    assert err.startswith("error:") and "not found" in err and "\n" not in err
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"splits": {"train": ["a"], "val": ["b"]}}))
    result = runner.invoke(evaluate_main, ["--data", str(tiny_data), "--split", str(split)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: split file {split} has no subset 'test'; it has train, val"
    )


def test_nested_augment_config_and_checks_of_the_temporal_fields(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(
        "clip_length: 6\nwarm_frames: 2\n"
        "augment: {weak: 0.3, screen: {screen: 0.5, overlay: 1.0}}\n"
    )
    config = load_config(path, [])
    assert config.augment.weak == 0.3 and config.augment.screen.overlay == 1.0
    with pytest.raises(ValueError, match="warm_frames must be in"):
        train(replace(config, warm_frames=6, out=str(tmp_path / "run")))
    with pytest.raises(ValueError, match="mixed_precision"):
        train(replace(config, mixed_precision="fp8", out=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()


def test_warm_frames_train_with_history_and_cold_starts(tiny_data: Path, tmp_path: Path) -> None:
    config = _tiny_config(tiny_data, tmp_path, clip_length=4, warm_frames=2, cold_start=0.5)
    best = train(config)
    assert json.loads(read_metadata(best)["recipe"])["warm_frames"] == 2
    assert read_metadata(best)["trained_on"].startswith("CPU")


def test_templp_trains_at_its_own_rate_and_the_weights_say_which_templp(
    tiny_data: Path, tmp_path: Path
) -> None:
    config = _tiny_config(tiny_data, tmp_path, temporal_gate=False, temporal_lr_scale=10)
    best = train(config)
    assert read_metadata(best)["temporal_gate"] == "false"
    state = json.loads(read_metadata(tmp_path / "run" / "last.safetensors")["state"])
    others, temporal = state["param_groups"]
    assert len(temporal["params"]) == 2  # the plain TempLP: frame weights and P
    assert temporal["lr"] == pytest.approx(10 * others["lr"])
    assert build_bas("S", image_size=32, weights=best).temporal.gated  # loads, gate closed
    with pytest.raises(ValueError, match="temporal_lr_scale must be > 0"):
        train(replace(config, temporal_lr_scale=0.0, out=str(tmp_path / "refused")))
    assert not (tmp_path / "refused").exists()


@pytest.mark.slow
def test_evaluate_without_history_in_screens_and_with_lost_contact(tiny_data: Path) -> None:
    model = build_bas("S", image_size=32)
    with torch.no_grad():  # a TempLP that uses the past, so history changes the masks
        model.temporal.frame_weights.fill_(1.0)
        model.temporal.project.weight.normal_(0, 2.0)
    index = discover(tiny_data)
    frames = [image for _, image, _ in native_frames(index.videos[0])]
    streamed = list(stream_masks(from_model(model, "stream"), frames))
    alone = list(stream_masks(from_model(model, "frame"), frames))
    assert np.array_equal(streamed[0], alone[0])  # the first frame has no history either way
    for image, mask in zip(frames, alone, strict=True):
        logits = model.forward_frame(torch.from_numpy(to_input(image, 32))).detach().numpy()
        assert np.array_equal(mask, to_native(logits, image.shape[:2]) > 0)
    assert any(not np.array_equal(a, b) for a, b in zip(streamed, alone, strict=True))

    weights = save_weights(model, Path(tiny_data).parent / "w.safetensors", {"variant": "S"})
    args = ["--variant", "S", "--weights", str(weights), "--data", str(tiny_data)]
    args += ["--image-size", "32", "--no-history", "--screen", "Letterbox", "--screen", "small"]
    args += ["--lost-contact", "2"]
    result = CliRunner().invoke(evaluate_main, args)
    assert result.exit_code == 0, result.output
    out = result.stdout.strip().splitlines()
    assert "frame form (no history)" in out[0]
    assert any(line.startswith("| letterbox |") for line in out)
    record = json.loads(out[-1])
    assert record["history"] is False and set(record["screens"]) == {"letterbox", "small"}
    assert 0.0 <= record["screens"]["small"]["agreement_dice"] <= 1.0
    assert record["screens"]["small"]["counts"]["frames"] == record["counts"]["frames"]
    lost = record["lost_contact"]
    assert lost["every"] == 2 and lost["all"]["counts"]["frames"] == record["counts"]["frames"]
    assert lost["darkened"]["counts"]["frames"] == record["counts"]["frames"] // 2
    assert any(line.startswith("| darkened frames |") for line in out)
    assert lost["previous_mask"]["counts"]["frames"] == lost["darkened"]["counts"]["frames"]


@pytest.mark.parametrize("gated", [True, False])
def test_clip_forward_skips_the_logits_of_history_frames(gated: bool) -> None:
    model = build_bas("S", image_size=32, temporal_gate=gated).eval()
    clips = torch.rand(2, 5, 3, 32, 32)
    with torch.no_grad():
        model.temporal.project.weight.normal_(0, 0.5)  # a TempLP whose history matters
        if gated:  # and an open gate: frame t takes frame t-1's prediction
            model.temporal.prior.weight.normal_(0, 0.5)
            model.temporal.gate.bias.fill_(2.0)
        assert torch.allclose(model(clips, first_output=2), model(clips)[:, 2:], atol=1e-6)
        with pytest.raises(ValueError, match="first_output needs a clip"):
            model(clips[:, 0], first_output=1)


def test_smaller_frames_take_the_position_embedding_as_loading_resamples_it(
    tmp_path: Path,
) -> None:
    model = build_bas("S", image_size=64).eval()
    with torch.no_grad():
        model.position.normal_()
    path = save_weights(model, tmp_path / "w.safetensors", {"variant": "S"})
    small = build_bas("S", image_size=32, weights=path)  # model.hub.fit_position
    frames = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(frames), small(frames), atol=1e-5)
    model.train()
    model(frames).square().mean().backward()
    assert model.position.grad is not None and model.position.grad.abs().sum() > 0


def test_low_resolution_epochs_come_first_then_full_size(tiny_data: Path, tmp_path: Path) -> None:
    config = _tiny_config(
        tiny_data,
        tmp_path,
        image_size=48,
        low_res=32,
        low_res_epochs=1,
        epochs=2,
        clip_length=3,
        warm_frames=1,
        channels_last=True,
    )
    index = discover(tiny_data)
    split = split_videos(list(index.names), config.split_fractions, seed=config.seed)
    data = training_data(config, index, split)
    assert [data.for_epoch(config, epoch).dataset.image_size for epoch in (0, 1)] == [32, 48]
    assert data.val_loader.dataset.image_size == 48
    all_low = training_data(replace(config, low_res_epochs=2), index, split)
    assert list(all_low.train_loaders) == [32]  # no full-size clips decoded for nothing
    best = train(config)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert json.loads(read_metadata(best)["recipe"])["low_res"] == 32
    assert build_bas("S", image_size=48, weights=best).position.shape[1] == 9


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"low_res": 40, "low_res_epochs": 1}, "low_res must be 0 or a multiple of 16 below"),
        ({"low_res": 48, "low_res_epochs": 1}, "low_res must be 0 or a multiple of 16 below"),
        ({"low_res": 32, "low_res_epochs": 3}, "low_res_epochs must be in"),
        ({"low_res_epochs": 1}, "low_res_epochs must be in"),
    ],
)
def test_low_resolution_fields_are_checked_before_anything_is_written(
    tmp_path: Path, changes: dict, message: str
) -> None:
    config = replace(TrainConfig(image_size=48, epochs=2, out=str(tmp_path / "run")), **changes)
    with pytest.raises(ValueError, match=message):
        train(config)
    assert not (tmp_path / "run").exists()


def test_freed_memory_is_kept_and_given_back_on_request() -> None:
    assert keep_freed_memory() is True  # glibc, as on every Linux host this project runs on
    assert keep_freed_memory(False) is True


def test_training_benchmark_rows_and_its_recipe_projection(tiny_data: Path, tmp_path: Path) -> None:
    setups = loop_setups(240, 160)
    assert setups[1].name.startswith("today's loop")
    for before, after in zip(setups, setups[1:], strict=False):  # one change a row
        changed = [
            f for f in fields(LoopSetup) if getattr(before, f.name) != getattr(after, f.name)
        ]
        assert len(changed) == 2, changed  # the name and one setting
    # each stage is projected with the step it runs: its network, compiled or not, its sizes
    timings = [StepTiming(setup, float(row), 0.0) for row, setup in enumerate(setups)]
    plain_stage = replace(TrainConfig(), compile=True, temporal_gate=False)
    gated_stage = replace(TrainConfig(), compile=False, temporal_gate=True)
    assert [setups[i].name for i in (5, 6, 8, 9)] == [
        "+ torch.compile",
        "+ a 160 x 160 stage",
        "stage 3 as its recipe runs: eager",
        "stage 3, eager",
    ]
    assert _recipe_step(timings, plain_stage) == {240: 5.0, 160: 6.0}
    assert _recipe_step(timings, gated_stage) == {160: 8.0, 240: 9.0}
    config = _tiny_config(tiny_data, tmp_path, image_size=48, clip_length=3, warm_frames=1)
    config = replace(config, low_res=32, low_res_epochs=1, epochs=3)
    index = discover(tiny_data)
    split = split_videos(list(index.names), config.split_fractions, seed=config.seed)
    loader = training_data(config, index, split).train_loaders[48]
    per_epoch = len(loader) * config.batch_size * 2
    assert scored_frames_per_epoch(config) == per_epoch
    assert _stage_minutes(config, {32: 1.0, 48: 3.0}) == pytest.approx(per_epoch * 7 / 60_000)
    for setup in (setups[3], setups[-1]):  # real steps, the plain and the gated network
        small = replace(setup, image_size=48)
        timing = time_step(config, small, batch=1, steps=1)
        assert timing.ms_per_frame > 0 and timing.setup == small


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_its_kernels_is_named_before_the_first_step(
    tiny_data: Path, tmp_path: Path, native: bool, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The run keeps its recipe's precision; where bf16 has no fast kernels, it says so."""
    monkeypatch.setattr("model.train.native_bf16", lambda: native)
    train(_tiny_config(tiny_data, tmp_path, mixed_precision="bf16"))
    warned = [line for line in capsys.readouterr().err.splitlines() if "bf16 autocast" in line]
    assert len(warned) == (0 if native else 1)
    if warned:
        assert warned[0].startswith("warning: ") and "--set mixed_precision=no" in warned[0]
