"""converters.sensitivity: the int8 report per unit of BaS (ExecuTorch's quantizer, in PyTorch)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from converters import sensitivity
from model.hub import build_bas


def test_units_are_bas_s_stages_or_blocks_never_the_float_modules() -> None:
    model = build_bas("S", weights="shipped")
    stages = sensitivity.units(model)
    assert stages[0] == "model.stem" and "model.decoder1" in stages and stages[-1] == "model.head"
    assert "model.temporal" not in stages  # TempLP stays float in every int8 file
    blocks = sensitivity.units(model, "blocks")
    assert "model.decoder1.2" in blocks and "model.decoder1" not in blocks
    for name in blocks:
        model.get_submodule(name.removeprefix("model."))  # each names a real submodule


@pytest.mark.slow
def test_report_scores_the_baseline_and_each_unit_kept_float() -> None:
    model = build_bas("S", weights="shipped")
    scores = sensitivity.sensitivity(model, "frame", ["model.head"], per_video=1)
    assert [s.unit for s in scores] == ["", "model.head"]
    assert scores[1].float_params == sum(p.numel() for p in model.head.parameters())
    for s in scores:
        assert 0.5 < s.pooled_dice <= 1.0 and 0.0 <= s.frame_dice <= 1.0
    table = sensitivity.markdown(scores).splitlines()
    assert table[2].startswith("| nothing (all int8) | 0 |") and "| model.head | 769 |" in table[3]


def test_out_folder_refused_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(sensitivity.main, ["--out", str(tmp_path)])
    assert result.exit_code != 0
    assert f"--out {tmp_path} is a folder" in result.output
