"""Parameter and FLOP report: reference counts, per-stage rows that add up, and the CLI."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from safetensors.torch import load_file, save_file
from torch import nn

from model.bas import BaS
from model.checkpoint import read_metadata
from model.config import get_config
from model.data.synth import write_dataset
from model.hub import shipped_weights
from model.info import ModelInfo, describe, main
from model.train import train
from tests.support.training import tiny_train_config


def info(variant: str, **overrides: object) -> ModelInfo:
    return describe(BaS(get_config(variant, **overrides)))


@pytest.fixture(scope="module")
def s240() -> ModelInfo:
    return info("S", image_size=240)


def test_reference_counts_at_240(s240: ModelInfo) -> None:
    # Public single-frame network 1,189,971 + TempLP 2,448 - head GroupNorm 2, + the gate
    # (1x1, 49 -> 48 channels, 2,400) and the prior (3x3, 1 -> 48, 432).
    assert s240.params == 1_192_417 + 2_832
    assert 1.4e9 <= s240.flops <= 1.6e9
    assert info("L", image_size=240).params == 1_003_873 + 2_832


def test_stages_add_up(s240: ModelInfo) -> None:
    assert sum(row.params for row in s240.rows) == s240.params
    assert sum(row.flops for row in s240.rows) == s240.flops


@pytest.fixture(scope="module")
def s64_model() -> BaS:
    return BaS(get_config("S", image_size=64))


@pytest.fixture(scope="module")
def s64(s64_model: BaS) -> ModelInfo:
    return describe(s64_model)


def test_rows_at_64(s64: ModelInfo) -> None:
    assert [row.name for row in s64.rows] == [
        "Stem",
        "Stage 2",
        "Stage 3",
        "Decoder 1",
        "Decoder 2",
        "Head",
    ]
    assert [(row.height, row.width, row.stride) for row in s64.rows] == [
        (16, 16, 4),
        (8, 8, 8),
        (4, 4, 16),
        (8, 8, 8),
        (16, 16, 4),
        (64, 64, 1),
    ]
    assert [row.channels for row in s64.rows] == [48, 96, 120, 96, 48, 1]
    assert [row.blocks for row in s64.rows] == [0, 3, 3, 3, 1, 0]
    stem, head = s64.rows[0], s64.rows[-1]
    # Stem: 4x4 patchify conv 3->48 plus TempLP's 1x1 projection 48->48, both at 16x16.
    assert stem.flops == 2 * 16 * 16 * (48 * 3 * 4 * 4 + 48 * 48)
    # Head: 4x4 transposed conv 48->1 from 16x16 input.
    assert head.flops == 2 * 16 * 16 * 48 * 4 * 4
    assert sum(row.flops for row in s64.rows) == s64.flops
    assert sum(row.params for row in s64.rows) == s64.params


def test_leaves_model_state_alone(s64_model: BaS, s64: ModelInfo) -> None:
    assert s64_model.training
    assert s64_model.stage2[0].lci.norm_in.num_batches_tracked.item() == 0


def test_without_temporal_window(s64: ModelInfo) -> None:
    single = info("S", image_size=64, temporal_window=1)
    # TempLP: 3x48 frame weights + 48x48 projection, and its gate (49x48 + 48) and prior (48x9)
    assert s64.params - single.params == 2_448 + 2_832
    assert single.rows[0].flops == 2 * 16 * 16 * 48 * 3 * 4 * 4
    assert s64.flops - single.flops == 2 * 16 * 16 * 48 * 48


def test_rejects_parts_outside_the_stage_table() -> None:
    model = BaS(get_config("S", image_size=64))
    model.extra = nn.Identity()
    with pytest.raises(ValueError, match="stage table"):
        describe(model)


def test_cli_prints_report() -> None:
    result = CliRunner().invoke(main, ["--variant", "L", "--image-size", "64"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "BaS-L, 64x64 input, temporal window 3" in out
    # L at 240 minus the position embedding it loses at 64: (15^2 - 4^2) tokens x 120 channels.
    assert f"parameters: {1_006_705 - (15**2 - 4**2) * 120:,}" in out
    assert "Decoder 2" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--variant", "XL"], "'XL' is not one of S, L (did you mean 'L'?)"),
        (["--variant", "S", "--image-size", "100"], "positive multiple of 16, got 100"),
    ],
)
def test_cli_rejects_bad_config(argv: list[str], message: str) -> None:
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2
    error_lines = [line for line in result.stderr.splitlines() if "error:" in line.lower()]
    assert len(error_lines) == 1
    assert message in error_lines[0]


def test_info_says_how_the_shipped_weights_were_made() -> None:
    result = CliRunner().invoke(main, ["--variant", "S"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(
        line.startswith("weights: ") and "bas_s.safetensors (sha256 " in line for line in lines
    )
    assert "  recipe file: configs/bas_s_stage3.yml" in lines
    assert any(line.startswith("  kept: epoch ") for line in lines)
    none = CliRunner().invoke(main, ["--variant", "S", "--weights", "none"])
    assert none.exit_code == 0 and "weights:" not in none.stdout


def test_info_shows_the_provenance_training_writes(tmp_path) -> None:
    data = write_dataset(tmp_path / "d", videos=2, frames=3, seed=5)
    best = train(tiny_train_config(data, tmp_path / "run", variant="L"))
    result = CliRunner().invoke(main, ["--variant", "L", "--weights", str(best)])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert f"weights: {best} (sha256 " in text and "  kept: epoch 1, validation Dice " in text
    assert "  training time: " in text and "  command: " in text and "  date: " in text
    assert "bf16 kernels, " in text  # whether this CPU ran bf16 fast, or not
    assert ", batch 1, fp32, on " in text  # the precision it trained in
    drawn = "  data drawn by: model.data.synth.render_video, seed 5, 2 videos x 3 frames"
    assert f"{drawn}, widened: none" in text
    wrong = CliRunner().invoke(main, ["--variant", "S", "--weights", str(best)])
    assert wrong.exit_code == 2
    assert wrong.stderr.strip() == f"error: {best} holds BaS-L weights, not BaS-S"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("recipe", "{not json", "Expecting property name"),
        ("training_seconds", "x", "invalid literal for int()"),
        ("provenance", "[1, 2]", "'list' object has no attribute 'get'"),
        ("data_generator", "[1, 2]", "'list' object has no attribute 'get'"),
    ],
)
def test_damaged_weights_metadata_is_named_in_one_line(tmp_path, field, value, message) -> None:
    shipped = shipped_weights("S")
    damaged = tmp_path / "damaged.safetensors"
    save_file(load_file(shipped), damaged, {**read_metadata(shipped), field: value})
    result = CliRunner().invoke(main, ["--variant", "S", "--weights", str(damaged)])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert line.startswith(f"error: {damaged}: its metadata is damaged (") and message in line
    assert "\n" not in line
