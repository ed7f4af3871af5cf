"""The synthetic ultrasound generator: determinism, realism checks, BUV layout, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import ndimage

from model.data import discover, read_frame
from model.data.synth import (
    GENERATOR_FILE,
    WIDENINGS,
    ScannerSettings,
    draw_settings,
    focused_beam,
    generator_of,
    main,
    render_video,
    write_dataset,
)
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


def test_each_widening_has_its_own_draws_and_none_is_the_classic_video() -> None:
    """A widening's settings are the same whichever others are on, and turning none on
    draws the classic settings (every field at its default)."""
    classic = draw_settings(0, 4, frozenset())
    assert classic == ScannerSettings()
    everything = draw_settings(0, 4, frozenset(WIDENINGS))
    for name, fields in [
        ("convex", ["convex_radius", "convex_half_angle"]),
        ("focus", ["focus_depth", "focus_width", "focus_range"]),
        ("dynamic-range", ["dynamic_range_db"]),
        ("orientation", ["layer_slope"]),
    ]:
        alone = draw_settings(0, 4, frozenset([name]))
        for field in fields:
            assert getattr(alone, field) == getattr(everything, field)
    with pytest.raises(ProjectError, match="unknown widening tilt: one of convex, focus"):
        draw_settings(0, 4, frozenset(["tilt"]))


def test_a_share_widens_some_videos_with_their_own_settings_and_leaves_the_rest_classic() -> None:
    every = frozenset(WIDENINGS)
    drawn = [draw_settings(0, index, every, share=0.5) for index in range(60)]
    classic = [settings == ScannerSettings() for settings in drawn]
    assert 15 < sum(classic) < 45
    for index, settings in enumerate(drawn):
        assert settings in (ScannerSettings(), draw_settings(0, index, every))
    with pytest.raises(ProjectError, match=r"widened share of the videos must be in \(0, 1\]"):
        draw_settings(0, 4, every, share=0.0)


@pytest.mark.parametrize("widening", ["focus", "dynamic-range", "orientation"])
def test_focus_range_and_orientation_change_the_image_not_the_lesion(widening: str) -> None:
    for (classic, classic_mask), (wide, wide_mask) in zip(
        _video(0, 5, frames=3), render_video(0, 5, 3, frozenset([widening])), strict=True
    ):
        assert np.array_equal(classic_mask, wide_mask)
        assert np.abs(classic.astype(int) - wide).mean() > 2


def test_a_convex_probe_images_from_its_curved_face_and_lesions_stay_dark() -> None:
    convex = [i for i in range(30) if draw_settings(0, i, frozenset(["convex"])).convex_radius]
    assert len(convex) >= 5  # a third of the videos
    darker = 0
    for index in convex[:5]:
        frames = list(render_video(0, index, 6, frozenset(["convex"])))
        settings = draw_settings(0, index, frozenset(["convex"]))
        in_view = ndimage.binary_opening(frames[0][0][..., 0] > 0, iterations=2)
        height, width = in_view.shape
        first_row = in_view.argmax(axis=0)
        # The face bulges into the image: its middle starts lower than points out on it.
        out = int(0.6 * settings.convex_radius * height * np.sin(settings.convex_half_angle))
        middle = width // 2
        assert first_row[middle] > max(first_row[middle - out], first_row[middle + out]) + 2
        for image, mask in frames:
            if mask.sum() >= 50:
                ring = ndimage.binary_dilation(mask, iterations=8) & ~mask & (image[..., 0] > 0)
                darker += image[..., 0][mask].mean() < image[..., 0][ring].mean()
    assert darker >= 15


def test_a_focused_beam_resolves_finest_at_its_focus() -> None:
    """Speckle from white scatterers is narrowest across the beam at the focus and widens
    as the beam does, by sqrt(1 + ((d - f) / z)^2)."""
    settings = ScannerSettings(focus_depth=60.0, focus_width=1.5, focus_range=40.0)
    rng = np.random.default_rng(0)
    white = rng.standard_normal((256, 4096)) + 1j * rng.standard_normal((256, 4096))
    beam = focused_beam(white, settings)

    def lateral_width(rows: slice) -> float:
        field = beam[rows]  # the beam's own lateral autocorrelation, over many lines
        spectrum = np.abs(np.fft.fft(field, axis=1)) ** 2
        correlation = np.fft.ifft(spectrum, axis=1).real.mean(axis=0)
        return float(np.sum(np.abs(correlation[:40]) / correlation[0]) * 2 - 1)

    at_focus, deep = lateral_width(slice(55, 66)), lateral_width(slice(175, 186))
    expected = np.sqrt(1 + ((180 - 60) / 40) ** 2)
    assert deep / at_focus == pytest.approx(expected, rel=0.15)
    # the energy the beam spreads wider is fainter: amplitude ~ 1 / sqrt(width)
    power = np.mean(np.abs(beam) ** 2, axis=1)
    assert power[180] / power[60] == pytest.approx(1 / expected, rel=0.1)


def test_the_dataset_says_how_it_was_drawn_and_the_command_takes_widenings(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    argv = ["--videos", "1", "--frames", "2", "--seed", "3"]
    result = runner.invoke(main, [*argv, "--widen", "focus,convex", "--out", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    assert generator_of(tmp_path / "w") == {
        "generator": "model.data.synth.render_video",
        "seed": 3,
        "first_index": 0,
        "videos": 1,
        "frames": 2,
        "widen": ["convex", "focus"],
        "widen_share": 1.0,
    }
    result = runner.invoke(
        main, [*argv, "--widen", "all", "--widen-share", "0.5", "--out", str(tmp_path / "a")]
    )
    assert generator_of(tmp_path / "a")["widen"] == sorted(WIDENINGS)
    assert generator_of(tmp_path / "a")["widen_share"] == 0.5
    result = runner.invoke(main, [*argv, "--widen-share", "0", "--out", str(tmp_path / "z")])
    assert result.exit_code == 2 and "--widen-share" in result.stderr
    assert not (tmp_path / "z").exists()
    result = runner.invoke(main, [*argv, "--widen", "focus,gain", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "unknown widening gain: one of convex, focus, dynamic-range, orientation" in (
        result.stderr
    )
    assert not (tmp_path / "x").exists()
    (tmp_path / "w" / GENERATOR_FILE).write_text("{not json")
    with pytest.raises(ProjectError, match="generator.json: unreadable"):
        generator_of(tmp_path / "w")
    assert generator_of(tmp_path) is None
