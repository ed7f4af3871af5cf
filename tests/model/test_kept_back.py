"""The kept-back scanner: another image formation, drawn apart from training's and refused by it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import ndimage

from model.data.kept_back import KEPT_BACK_STREAM, draw_scanner, main, render_kept_back
from model.data.synth import draw_spec, generator_of, render_video, write_dataset
from model.errors import ConfigError
from model.train import train
from tests.support.training import tiny_train_config


def _video(seed: int, index: int, frames: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(render_kept_back(seed, index, frames))


def test_its_videos_are_its_own_and_repeatable() -> None:
    first, again = _video(21, 2, 3), _video(21, 2, 3)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
    classic = next(iter(render_video(21, 2, 1)))
    assert first[0][0].shape != classic[0].shape or not np.array_equal(first[0][1], classic[1])


def test_lesions_are_darker_than_the_tissue_around_them() -> None:
    darker = scored = 0
    for index in range(6):
        for image, mask in _video(21, index, 10)[::3]:
            if mask.sum() < 50:
                continue
            ring = ndimage.binary_dilation(mask, iterations=8) & ~mask & (image[..., 0] > 0)
            scored += 1
            darker += image[..., 0][mask].mean() < image[..., 0][ring].mean()
    assert scored >= 8 and darker >= 0.8 * scored


def _behind_against_beside(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean grey in a band below the lesion, over that beside it at the same depths."""
    grey = image[..., 0].astype(float)
    rows = np.flatnonzero(mask.any(axis=1))
    columns = np.flatnonzero(mask.any(axis=0))
    band = slice(rows[-1] + 5, rows[-1] + 35)
    centre = slice(columns[0] + len(columns) // 4, columns[-1] - len(columns) // 4 + 1)
    beside = np.r_[
        max(columns[0] - 40, 0) : max(columns[0] - 15, 0), columns[-1] + 15 : columns[-1] + 40
    ]
    behind, around = grey[band, centre], grey[band][:, beside[beside < grey.shape[1]]]
    behind, around = behind[behind > 0], around[around > 0]
    return behind.mean() / around.mean() if behind.size > 50 and around.size > 50 else np.nan


def test_attenuation_shadows_or_enhances_what_lies_behind_a_lesion() -> None:
    """The shadow is not drawn: a lesion that attenuates more than the tissue leaves the
    echoes behind it fainter, one that attenuates less leaves them brighter."""
    shadowed, enhanced = [], []
    for index in range(16):
        rng = np.random.default_rng((23, index, KEPT_BACK_STREAM))
        draw_spec(rng)
        scanner = draw_scanner(rng)
        ratios = [
            _behind_against_beside(image, mask)
            for image, mask in _video(23, index, 4)
            if mask.sum() >= 200
        ]
        ratio = np.nanmean(ratios) if ratios and not np.all(np.isnan(ratios)) else np.nan
        if not np.isnan(ratio):
            (shadowed if scanner.lesion_attenuation > 1 else enhanced).append(ratio)
    assert len(shadowed) >= 3 and len(enhanced) >= 3
    assert np.median(shadowed) < 0.95 < 1.02 < np.median(enhanced)


def test_training_refuses_a_kept_back_dataset(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "kept", videos=2, frames=3, seed=21, render=render_kept_back)
    with pytest.raises(ConfigError, match="kept-back scanner video .* never for training"):
        train(tiny_train_config(data, tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_set_drawn_by_python_dash_m_names_its_generator_by_module(tmp_path: Path) -> None:
    """Run as ``python -m``, the module is ``__main__``; the record still names it, so
    training still refuses the set."""
    for module, out in [("model.data.kept_back", "kept"), ("model.data.synth", "classic")]:
        argv = [sys.executable, "-m", module, "--videos", "1", "--frames", "1"]
        subprocess.run([*argv, "--out", str(tmp_path / out)], check=True, capture_output=True)
    assert generator_of(tmp_path / "kept")["generator"] == "model.data.kept_back.render_kept_back"
    assert generator_of(tmp_path / "classic")["generator"] == "model.data.synth.render_video"
    with pytest.raises(ConfigError, match="kept-back scanner video .* never for training"):
        train(tiny_train_config(tmp_path / "kept", tmp_path / "run"))


def test_command_line_writes_a_kept_back_dataset(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["--videos", "1", "--frames", "2", "--out", str(tmp_path / "k")]
    )
    assert result.exit_code == 0, result.output
    assert "wrote 1 kept-back videos x 2 frames" in result.stdout
    drawn = generator_of(tmp_path / "k")
    assert drawn["generator"] == "model.data.kept_back.render_kept_back" and drawn["seed"] == 21
