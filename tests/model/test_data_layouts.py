"""Dataset discovery, readers and video splits, on tiny datasets written in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.data import (
    DatasetError,
    discover,
    read_frame,
    read_image,
    read_mask,
    read_split,
    split_videos,
    write_split,
)


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _image(seed: int = 0, size: tuple[int, int] = (8, 12)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def _mask(size: tuple[int, int] = (8, 12), value: int = 255) -> np.ndarray:
    mask = np.zeros(size, np.uint8)
    mask[2:5, 3:7] = value
    return mask


def _video(image_dir: Path, mask_dir: Path, stems: list[str], ext: str = "png") -> None:
    for i, stem in enumerate(stems):
        _save(image_dir / f"{stem}.{ext}", _image(i))
        _save(mask_dir / f"{stem}.png", _mask())


def test_buv_layout_sorts_frames_numerically(tmp_path: Path) -> None:
    _video(tmp_path / "images/b", tmp_path / "labels/b", ["10", "2", "1"], ext="jpg")
    _video(tmp_path / "images/a", tmp_path / "labels/a", ["0"])
    index = discover(tmp_path)
    assert index.layout == "buv"
    assert index.names == ("a", "b")
    b = index.video("b")
    assert [f.index for f in b.frames] == [1, 2, 10]
    assert [f.image.name for f in b.frames] == ["1.jpg", "2.jpg", "10.jpg"]
    assert [f.mask.name for f in b.frames if f.mask] == ["1.png", "2.png", "10.png"]
    assert index.warnings == ()


def test_fla_net_layout_uses_natural_order(tmp_path: Path) -> None:
    _video(tmp_path / "img_list/v1", tmp_path / "mask_list/v1", ["f10", "f2", "f1"], ext="jpg")
    index = discover(tmp_path)
    assert index.layout == "fla-net"
    frames = index.video("v1").frames
    assert [f.image.stem for f in frames] == ["f1", "f2", "f10"]
    assert [f.index for f in frames] == [0, 1, 2]


def test_plain_layout(tmp_path: Path) -> None:
    _video(tmp_path / "case1/frames", tmp_path / "case1/masks", ["10", "9"])
    _video(tmp_path / "case2/frames", tmp_path / "case2/masks", ["0001", "0002"])
    index = discover(tmp_path)
    assert index.layout == "plain"
    assert [f.index for f in index.video("case1").frames] == [9, 10]
    assert [f.index for f in index.video("case2").frames] == [1, 2]


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        discover(tmp_path / "nope")


def test_unrecognised_layout_names_what_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DatasetError, match="no recognised") as err:
        discover(tmp_path)
    assert all(s in str(err.value) for s in ("images/", "img_list/", "frames/"))


def test_missing_label_folder_for_a_video_is_an_error(tmp_path: Path) -> None:
    _video(tmp_path / "images/a", tmp_path / "labels/a", ["1"])
    _save(tmp_path / "images/b/1.png", _image())
    with pytest.raises(DatasetError, match="missing label folder") as err:
        discover(tmp_path)
    assert str(tmp_path / "labels/b") in str(err.value)


def test_frames_without_mask_are_kept_and_counted(tmp_path: Path) -> None:
    _video(tmp_path / "images/a", tmp_path / "labels/a", ["1", "2", "3", "4"])
    (tmp_path / "labels/a/2.png").unlink()
    (tmp_path / "labels/a/4.png").unlink()
    index = discover(tmp_path)
    video = index.video("a")
    assert len(video.frames) == 4
    assert [f.index for f in video.labelled_frames] == [1, 3]
    assert len(index.warnings) == 1
    assert "'a': 2 of 4 frames have no mask" in index.warnings[0]


def test_non_integer_buv_frame_name_is_an_error(tmp_path: Path) -> None:
    _video(tmp_path / "images/a", tmp_path / "labels/a", ["1", "frame2"])
    with pytest.raises(DatasetError, match="not an integer") as err:
        discover(tmp_path)
    assert "frame2.png" in str(err.value)


def test_empty_dataset_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "images/a").mkdir(parents=True)
    (tmp_path / "labels/a").mkdir(parents=True)
    with pytest.raises(DatasetError, match="empty dataset"):
        discover(tmp_path)


def test_empty_video_and_stray_files_are_counted(tmp_path: Path) -> None:
    _video(tmp_path / "images/a", tmp_path / "labels/a", ["1"])
    (tmp_path / "images/a/notes.txt").write_text("x")
    (tmp_path / "images/b").mkdir()
    (tmp_path / "labels/b").mkdir()
    index = discover(tmp_path)
    assert index.names == ("a",)
    assert any("1 non-image file" in w for w in index.warnings)
    assert any("'b': no frames" in w for w in index.warnings)


def test_read_image_promotes_grayscale(tmp_path: Path) -> None:
    gray = np.arange(24, dtype=np.uint8).reshape(4, 6)
    image = read_image(_save(tmp_path / "g.png", gray))
    assert image.shape == (4, 6, 3) and image.dtype == np.uint8
    assert (image == gray[..., None]).all()


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="broken.jpg"):
        read_image(bad)


@pytest.mark.parametrize("value", [1, 255, 0])
def test_read_mask_accepts_binary_encodings(tmp_path: Path, value: int) -> None:
    mask = read_mask(_save(tmp_path / "m.png", _mask(value=value)))
    assert mask.dtype == np.bool_
    assert mask.sum() == (12 if value else 0)


def test_read_mask_rejects_non_binary_values(tmp_path: Path) -> None:
    mask = _mask()
    mask[0, 0] = 128
    with pytest.raises(DatasetError, match=r"m\.png: non-binary mask, values \[0, 128, 255\]"):
        read_mask(_save(tmp_path / "m.png", mask))


def test_mask_size_must_match_image(tmp_path: Path) -> None:
    _save(tmp_path / "images/a/1.png", _image(size=(8, 12)))
    _save(tmp_path / "labels/a/1.png", _mask(size=(8, 10)))
    frame = discover(tmp_path).video("a").frames[0]
    with pytest.raises(DatasetError, match="mask size 10x8 differs from image size 12x8"):
        read_frame(frame)


NAMES = [f"video{i:02d}" for i in range(20)]


def test_split_is_deterministic_disjoint_and_complete() -> None:
    split = split_videos(NAMES, seed=3)
    assert split == split_videos(list(reversed(NAMES)), seed=3)
    assert [len(v) for v in split.values()] == [14, 3, 3]
    assert sorted(sum(split.values(), [])) == NAMES
    assert split != split_videos(NAMES, seed=4)


def test_split_keeps_every_split_non_empty() -> None:
    split = split_videos(["a", "b", "c"])
    assert all(len(v) == 1 for v in split.values())
    with pytest.raises(DatasetError, match="cannot split 2 video"):
        split_videos(["a", "b"])
    assert split_videos(["a", "b"], {"train": 0.5, "val": 0.5, "test": 0.0})["test"] == []


def test_split_rejects_bad_fractions() -> None:
    with pytest.raises(DatasetError, match="sum to 1"):
        split_videos(NAMES, {"train": 0.7, "val": 0.2})


def test_split_file_round_trip(tmp_path: Path) -> None:
    fractions = {"train": 0.6, "val": 0.2, "test": 0.2}
    split = split_videos(NAMES, fractions, seed=7)
    path = tmp_path / "out/split.json"
    write_split(path, split, seed=7, fractions=fractions)
    assert read_split(path) == split
    record = json.loads(path.read_text())
    assert record["seed"] == 7 and record["fractions"] == fractions
    assert [p.name for p in path.parent.iterdir()] == ["split.json"]


def test_split_file_with_a_video_in_two_splits_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "split.json"
    with pytest.raises(DatasetError, match="'a' is in both 'train' and 'test'"):
        write_split(path, {"train": ["a"], "test": ["a"]}, seed=0, fractions={"train": 1.0})
    path.write_text(json.dumps({"splits": {"train": ["a", "b"], "val": ["b"]}}))
    with pytest.raises(DatasetError, match="'b' is in both"):
        read_split(path)
