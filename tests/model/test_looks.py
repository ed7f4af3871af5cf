"""Another scanner's look: every frame changed, the layout, names and masks kept."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from model.data import discover, read_image
from model.data.looks import LOOKS, main, restyle
from model.data.synth import write_dataset


def test_a_look_changes_every_frame_and_keeps_the_masks(tmp_path) -> None:
    plain = write_dataset(tmp_path / "plain", videos=2, frames=3, seed=4)
    look = restyle(plain, tmp_path / "look", LOOKS["sepia-low-range"])
    before, after = discover(plain), discover(look)
    assert after.layout == before.layout and after.names == before.names
    for video, styled in zip(before.videos, after.videos, strict=True):
        for frame, other in zip(video.frames, styled.frames, strict=True):
            assert other.mask.read_bytes() == frame.mask.read_bytes()
            image, shown = read_image(frame.image), read_image(other.image)
            assert shown.shape == image.shape
            red, blue = shown[..., 0].astype(int), shown[..., 2].astype(int)
            assert (red >= blue).all() and (red > blue).mean() > 0.9  # sepia
            assert shown.min() >= round(0.3 * 0.68 * 255) - 1  # the raised black level


def test_an_unknown_look_is_refused_in_one_line(tmp_path) -> None:
    plain = write_dataset(tmp_path / "plain", videos=1, frames=1, seed=4)
    result = CliRunner().invoke(
        main, ["--look", "sepia", "--data", str(plain), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "'sepia' is not one of sepia-low-range" in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name", sorted(LOOKS))
def test_each_look_keeps_the_frame_in_range(name: str) -> None:
    frame = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    shown = LOOKS[name].apply(frame)
    assert shown.dtype == np.uint8 and shown.shape == frame.shape
