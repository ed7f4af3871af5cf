"""Clip loading, mask resizing and clip-level augmentation, on tiny PNG datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from model.data import (
    Augment,
    ClipDataset,
    DatasetError,
    DatasetIndex,
    Frame,
    discover,
    load_resized,
    native_frames,
)

SIZE = 16


def _only(**probabilities: float) -> Augment:
    """An Augment that applies exactly the named changes with the given probabilities."""
    return Augment(**{**dict.fromkeys(Augment.PROBABILITIES, 0.0), **probabilities})


def _dataset(root: Path, lengths: dict[str, int], size: tuple[int, int] = (20, 24)) -> DatasetIndex:
    """BUV layout: distinct random frames, each with a box mask that moves with the frame."""
    rng = np.random.default_rng(0)
    for name, length in lengths.items():
        for i in range(length):
            (root / "images" / name).mkdir(parents=True, exist_ok=True)
            (root / "labels" / name).mkdir(parents=True, exist_ok=True)
            image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            mask = np.zeros(size, np.uint8)
            mask[2 + i : 10 + i, 3:15] = 255
            Image.fromarray(image).save(root / "images" / name / f"{i}.png")
            Image.fromarray(mask).save(root / "labels" / name / f"{i}.png")
    return discover(root)


def test_nearest_mask_resize_stays_binary_and_does_not_dilate(tmp_path: Path) -> None:
    mask = np.zeros((100, 100), np.uint8)
    mask[20:60, 30:50] = 1
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(tmp_path / "i.png")
    Image.fromarray(mask).save(tmp_path / "m.png")
    frame = Frame(0, tmp_path / "i.png", tmp_path / "m.png")
    _, small = load_resized(frame, 50)
    assert small.dtype == np.bool_ and small.shape == (50, 50)
    assert small.sum() == 20 * 10  # exactly a quarter: no dilation
    _, odd = load_resized(frame, 37)
    expected = 800 * (37 / 100) ** 2
    assert abs(int(odd.sum()) - expected) <= 37 / 100 * 60 + 1  # within one row and column


def test_clip_shapes_and_ranges(tmp_path: Path) -> None:
    index = _dataset(tmp_path, {"a": 4})
    item = ClipDataset(index, ["a"], clip_length=3, image_size=SIZE)[0]
    assert item["images"].shape == (3, 3, SIZE, SIZE) and item["images"].dtype == torch.float32
    assert item["masks"].shape == (3, 1, SIZE, SIZE) and item["masks"].dtype == torch.float32
    assert item["images"].min() >= 0.0 and item["images"].max() <= 1.0
    assert set(item["masks"].unique().tolist()) == {0.0, 1.0}
    assert item["video"] == "a" and item["frames"].tolist() == [0, 1, 2]


def test_clips_never_cross_videos_and_respect_stride(tmp_path: Path) -> None:
    index = _dataset(tmp_path, {"a": 4, "b": 5})
    data = ClipDataset(index, ["a", "b"], clip_length=3, image_size=SIZE)
    assert [(v, [f.index for f in fs]) for v, fs in data.clips] == [
        ("a", [0, 1, 2]),
        ("a", [1, 2, 3]),
        ("b", [0, 1, 2]),
        ("b", [1, 2, 3]),
        ("b", [2, 3, 4]),
    ]
    strided = ClipDataset(index, ["b"], clip_length=2, image_size=SIZE, stride=2)
    assert [[f.index for f in fs] for _, fs in strided.clips] == [[0, 1], [2, 3]]


def test_short_videos_and_unlabelled_gaps_are_skipped_with_a_warning(tmp_path: Path) -> None:
    _dataset(tmp_path, {"long": 6, "short": 2})
    (tmp_path / "labels/long/2.png").unlink()  # runs [0, 1] and [3, 4, 5]
    index = discover(tmp_path)
    data = ClipDataset(index, ["long", "short"], clip_length=3, image_size=SIZE)
    assert [[f.index for f in fs] for _, fs in data.clips] == [[3, 4, 5]]
    assert len(data.warnings) == 1 and "1 video(s)" in data.warnings[0]
    assert "short" in data.warnings[0]
    with pytest.raises(DatasetError, match="no run of 3"):
        ClipDataset(index, ["short"], clip_length=3, image_size=SIZE)
    with pytest.raises(DatasetError, match="no such video"):
        ClipDataset(index, ["missing"], image_size=SIZE)


def test_flip_is_applied_to_every_frame(tmp_path: Path) -> None:
    index = _dataset(tmp_path, {"a": 3})
    plain = ClipDataset(index, ["a"], image_size=SIZE)[0]
    flipped = ClipDataset(index, ["a"], image_size=SIZE, augment=_only(hflip=1.0))[0]
    assert torch.equal(flipped["images"], plain["images"].flip(-1))
    assert torch.equal(flipped["masks"], plain["masks"].flip(-1))
    assert not torch.equal(flipped["masks"], plain["masks"])


def test_rotation_is_applied_to_every_frame(tmp_path: Path) -> None:
    index = _dataset(tmp_path, {"a": 3})
    plain = ClipDataset(index, ["a"], image_size=SIZE)[0]
    turned = ClipDataset(index, ["a"], image_size=SIZE, augment=_only(rotate=1.0))[0]
    matches = [
        k
        for k in (1, 2, 3)
        if torch.equal(turned["images"], plain["images"].rot90(k, (-2, -1)))
        and torch.equal(turned["masks"], plain["masks"].rot90(k, (-2, -1)))
    ]
    assert len(matches) == 1


@pytest.mark.parametrize("change", ["brightness", "contrast"])
def test_photometric_change_is_identical_across_frames(tmp_path: Path, change: str) -> None:
    index = _dataset(tmp_path, {"a": 3})
    plain = ClipDataset(index, ["a"], image_size=SIZE)[0]["images"]
    changed = ClipDataset(index, ["a"], image_size=SIZE, augment=_only(**{change: 1.0}))[0]
    changed = changed["images"]
    # Unclipped pixels: brightness adds one shift, contrast scales about 0.5 by one factor.
    keep = (changed > 0) & (changed < 1) & ((plain - 0.5).abs() > 0.1)
    brightness = change == "brightness"
    values = (changed - plain if brightness else (changed - 0.5) / (plain - 0.5))[keep]
    neutral = 0.0 if brightness else 1.0
    assert values.max() - values.min() < 1e-4 and abs(values.mean().item() - neutral) > 1e-3
    assert all(keep[t].any() for t in range(3))


def test_cutmix_pastes_image_and_mask_together_from_another_frame(tmp_path: Path) -> None:
    index = _dataset(tmp_path, {"a": 2})
    plain = ClipDataset(index, ["a"], clip_length=2, image_size=SIZE)[0]
    mixed = ClipDataset(index, ["a"], clip_length=2, image_size=SIZE, augment=_only(cutmix=1.0))[0]
    changed = (mixed["images"] != plain["images"]).any(dim=1)  # (T, H, W)
    dst = int(changed.flatten(1).any(dim=1).int().argmax())
    src = 1 - dst
    assert not changed[src].any() and changed[dst].any()
    box = changed[dst]
    assert torch.equal(mixed["images"][dst][:, box], plain["images"][src][:, box])
    assert torch.equal(mixed["masks"][dst][:, box], plain["masks"][src][:, box])
    assert torch.equal(mixed["masks"][dst][:, ~box], plain["masks"][dst][:, ~box])


def test_augmentation_is_reproducible_per_seed_and_epoch(tmp_path: Path) -> None:
    index = _dataset(tmp_path, {"a": 4})
    augment = Augment(brightness=1.0, blur=1.0)

    def draw(seed: int, epoch: int) -> torch.Tensor:
        data = ClipDataset(index, ["a"], image_size=SIZE, augment=augment, seed=seed)
        data.set_epoch(epoch)
        return data[1]["images"]

    assert torch.equal(draw(0, 0), draw(0, 0))
    assert not torch.equal(draw(0, 0), draw(0, 1))
    assert not torch.equal(draw(0, 0), draw(1, 0))


def test_dataloader_batches_clips(tmp_path: Path) -> None:
    index = _dataset(tmp_path, {"a": 4, "b": 3})
    data = ClipDataset(index, ["a", "b"], image_size=SIZE, augment=Augment())
    batch = next(iter(DataLoader(data, batch_size=3)))
    assert batch["images"].shape == (3, 3, 3, SIZE, SIZE)
    assert batch["masks"].shape == (3, 3, 1, SIZE, SIZE)
    assert batch["video"] == ["a", "a", "b"]
    assert set(batch["masks"].unique().tolist()) <= {0.0, 1.0}


def test_native_frames_keep_native_size_and_unlabelled_frames(tmp_path: Path) -> None:
    _dataset(tmp_path, {"a": 3}, size=(20, 24))
    (tmp_path / "labels/a/1.png").unlink()
    video = discover(tmp_path).video("a")
    frames = list(native_frames(video))
    assert [i for i, _, _ in frames] == [0, 1, 2]
    assert all(image.shape == (20, 24, 3) and image.dtype == np.uint8 for _, image, _ in frames)
    assert frames[1][2] is None and frames[0][2].shape == (20, 24)
    assert [i for i, _, _ in native_frames(video, labelled_only=True)] == [0, 2]


def test_augment_rejects_bad_probabilities() -> None:
    with pytest.raises(ValueError, match="hflip"):
        Augment(hflip=1.5)
    with pytest.raises(ValueError, match="blur_sigma"):
        Augment(blur_sigma=(2.0, 1.0))


def test_weak_frames_lose_evidence_but_keep_their_masks(tmp_path: Path) -> None:
    index = _dataset(tmp_path, {"a": 6})
    plain = ClipDataset(index, ["a"], clip_length=6, image_size=SIZE)[0]
    weak = ClipDataset(index, ["a"], clip_length=6, image_size=SIZE, augment=_only(weak=1.0))[0]
    assert torch.equal(weak["images"][0], plain["images"][0])  # the first frame keeps its own
    assert all(not torch.equal(weak["images"][t], plain["images"][t]) for t in range(1, 6))
    assert torch.equal(weak["masks"], plain["masks"])


def test_preloaded_frames_equal_decoded_ones(tmp_path: Path) -> None:
    index = _dataset(tmp_path, {"a": 4, "b": 3})
    lazy = ClipDataset(index, ["a", "b"], clip_length=2, image_size=SIZE)
    eager = ClipDataset(index, ["a", "b"], clip_length=2, image_size=SIZE, preload=True)
    for i in range(len(lazy)):
        assert torch.equal(lazy[i]["images"], eager[i]["images"])
        assert torch.equal(lazy[i]["masks"], eager[i]["masks"])
