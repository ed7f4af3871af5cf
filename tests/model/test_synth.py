"""The synthetic ultrasound generator: determinism, realism checks, BUV layout, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import ndimage

from model.data import discover, read_frame
from model.data.synth import main, render_video, write_dataset
from model.errors import ProjectError


def _video(seed: int, index: int, frames: int = 6) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(render_video(seed, index, frames))


def test_same_seed_same_video_other_seed_other_video() -> None:
    a, b = _video(0, 3), _video(0, 3)
    for (ia, ma), (ib, mb) in zip(a, b, strict=True):
        assert np.array_equal(ia, ib) and np.array_equal(ma, mb)
    other = _video(1, 3)
    assert not np.array_equal(a[0][0], other[0][0])


def test_a_video_depends_only_on_seed_and_index() -> None:
    first = _video(0, 2, frames=3)
    longer = _video(0, 2, frames=6)
    for (ia, ma), (ib, mb) in zip(first, longer[:3], strict=True):
        assert np.array_equal(ia, ib) and np.array_equal(ma, mb)


def test_frames_are_grey_rgb_with_binary_masks() -> None:
    image, mask = _video(0, 0, frames=1)[0]
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert np.array_equal(image[..., 0], image[..., 2])
    assert mask.dtype == bool and mask.shape == image.shape[:2]


def test_lesions_are_hypoechoic_and_move() -> None:
    """Inside the mask is darker than a ring around it; the mask changes between frames."""
    darker, moved = 0, 0
    for index in range(6):
        frames = _video(7, index, frames=12)
        masks = [m for _, m in frames]
        for image, mask in frames:
            if mask.sum() < 50:
                continue
            ring = ndimage.binary_dilation(mask, iterations=8) & ~mask & (image[..., 0] > 0)
            darker += image[..., 0][mask].mean() < image[..., 0][ring].mean()
        moved += any(not np.array_equal(masks[0], m) for m in masks[1:])
    assert darker >= 20
    assert moved >= 5


@pytest.mark.slow
def test_some_frames_have_no_lesion() -> None:
    """The probe slides and sweeps, so the lesion leaves the view in some videos."""
    empty = sum(not m.any() for i in range(12) for _, m in _video(3, i, frames=30)[::3])
    assert empty > 0


def test_writes_the_buv_layout(tmp_path: Path) -> None:
    out = write_dataset(tmp_path / "synth", videos=2, frames=4, seed=5)
    index = discover(out)
    assert index.layout == "buv"
    assert len(index.videos) == 2 and all(len(v.labelled_frames) == 4 for v in index.videos)
    image, mask = read_frame(index.videos[0].frames[0])
    expected_image, expected_mask = _video(5, 0, frames=1)[0]
    assert np.array_equal(mask, expected_mask)
    assert np.abs(image.astype(int) - expected_image).mean() < 4  # JPEG


def test_refuses_a_non_empty_output_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(ProjectError, match="is not empty and is not an earlier output"):
        write_dataset(out, videos=1, frames=2, seed=0)
    assert (out / "keep.txt").read_text() == "user data"
    with pytest.raises(ValueError, match="at least one video"):
        write_dataset(tmp_path / "other", videos=0, frames=2, seed=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth"]


def test_command_line(tmp_path: Path) -> None:
    runner = CliRunner()
    argv = ["--videos", "1", "--frames", "2", "--out", str(tmp_path / "d")]
    result = runner.invoke(main, [*argv, "--seed", "0"])
    assert result.exit_code == 0, result.output
    assert "wrote 1 videos x 2 frames" in result.stdout
    result = runner.invoke(main, argv)  # our own earlier output: replaced
    assert result.exit_code == 0, result.output
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    result = runner.invoke(main, [*argv[:4], "--out", str(tmp_path / "mine")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error:") and "not empty" in result.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    result = runner.invoke(main, [*argv[2:], "--videos", "0"])
    assert result.exit_code == 2 and "'--videos'" in result.stderr


def test_workers_render_the_same_dataset(tmp_path: Path) -> None:
    one = write_dataset(tmp_path / "one", videos=3, frames=2, seed=4)
    two = write_dataset(tmp_path / "two", videos=3, frames=2, seed=4, workers=2)
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    assert all((one / f).read_bytes() == (two / f).read_bytes() for f in files)
