"""Frame sources and the video writer, on synthetic videos, frame folders and datasets."""

from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from model.data.synth import write_dataset
from model.data.video_writer import VideoWriter, write_video
from segmentation.video import FrameSource, InputError, SourceFrame, open_sources


def _frames(count: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    """Smooth RGB frames that differ clearly from one frame to the next (order is checkable)."""
    y, x = np.mgrid[0:height, 0:width]
    out = []
    for i in range(count):
        ramp = ((x * 2 + y + 24 * i) % 256).astype(np.uint8)
        out.append(np.stack([ramp, np.full_like(ramp, (40 * i) % 256), 255 - ramp], axis=-1))
    return out


def _noise(count: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    """Incompressible frames, so that every packet is large and a cut lands inside one."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def _read(source: FrameSource, **kwargs) -> list[SourceFrame]:
    return list(source.frames(**kwargs))


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.mark.parametrize(
    ("suffix", "codec", "fps"),
    [
        (".mp4", "libx264", 30.0),
        (".mov", "libx264", 24.0),
        (".avi", "mpeg4", 25.0),
        (".avi", "mjpeg", 25.0),
        (".mkv", "ffv1", 30000 / 1001),
    ],
)
def test_video_round_trip(tmp_path: Path, suffix: str, codec: str, fps: float) -> None:
    frames = _frames(6)
    path = write_video(tmp_path / f"clip{suffix}", frames, fps, codec=codec)
    (source,) = open_sources(path)
    assert (source.name, source.kind, source.path) == ("clip", "video", path)
    assert source.size == (48, 64)
    assert source.fps == pytest.approx(fps, rel=1e-3)
    assert source.frame_count == 6
    got = _read(source)
    assert [f.index for f in got] == list(range(6))
    assert all(f.error is None and f.truth is None for f in got)
    for f, original in zip(got, frames, strict=True):
        assert f.image is not None and f.image.dtype == np.uint8 and f.image.shape == (48, 64, 3)
        own = _mad(f.image, original)
        assert own < 4.0, f"{codec} frame {f.index} differs by {own:.2f} on average"
        others = [_mad(f.image, o) for j, o in enumerate(frames) if j != f.index]
        assert own < min(others), "frames came back out of order"
        assert f.timestamp == pytest.approx(f.index / fps, abs=1e-3)
    if codec == "ffv1":
        assert all(np.array_equal(f.image, o) for f, o in zip(got, frames, strict=True))


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_variable_frame_rate_keeps_timestamps(tmp_path: Path, suffix: str) -> None:
    times = [0.0, 0.01, 0.05, 0.1, 0.4, 0.41, 0.9, 1.3]
    codec = "libx264" if suffix == ".mp4" else "ffv1"
    path = write_video(tmp_path / f"vfr{suffix}", _frames(len(times)), 25, codec, times)
    (source,) = open_sources(path)
    got = _read(source)
    assert [f.timestamp for f in got] == pytest.approx(times, abs=1e-3)


def test_timestamps_are_relative_to_the_first_frame(tmp_path: Path) -> None:
    path = write_video(tmp_path / "late.mp4", _frames(3), 10, timestamps=[5.0, 5.1, 5.3])
    got = _read(open_sources(path)[0])
    assert [f.timestamp for f in got] == pytest.approx([0.0, 0.1, 0.3], abs=1e-3)


def test_every_and_max_frames_keep_source_indices(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", _frames(8), 20)
    (source,) = open_sources(path)
    assert [f.index for f in source.frames(every=3)] == [0, 3, 6]
    picked = _read(source, every=2, max_frames=3)
    assert [f.index for f in picked] == [0, 2, 4]
    assert [f.timestamp for f in picked] == pytest.approx([0.0, 0.1, 0.2], abs=1e-3)
    assert _read(source, max_frames=0) == []
    with pytest.raises(ValueError, match="every"):
        _read(source, every=0)


@pytest.mark.parametrize("codec", ["mjpeg", "ffv1"])
def test_odd_sized_video_reads_at_its_own_size(tmp_path: Path, codec: str) -> None:
    frames = _frames(3, 61, 79)
    (source,) = open_sources(write_video(tmp_path / "odd.avi", frames, 25, codec=codec))
    assert source.size == (61, 79)
    got = _read(source)
    assert all(f.image.shape == (61, 79, 3) for f in got)
    assert max(_mad(f.image, o) for f, o in zip(got, frames, strict=True)) < 4.0


def test_writer_pads_odd_sizes_for_h264_by_the_edge(tmp_path: Path) -> None:
    """yuv420p needs even sizes: the writer adds one edge row/column, the reader sees it."""
    frames = _frames(2, 61, 79)
    (source,) = open_sources(write_video(tmp_path / "odd.mp4", frames, 25))
    assert source.size == (62, 80)
    image = _read(source)[0].image
    assert _mad(image[:61, :79], frames[0]) < 4.0
    assert _mad(image[61, :79], frames[0][60]) < 8.0  # the last row, repeated
    assert _mad(image[:61, 79], frames[0][:, 78]) < 8.0


@pytest.mark.parametrize("size", [(580, 600), (600, 800)])
def test_scanner_sized_video(tmp_path: Path, size: tuple[int, int]) -> None:
    frames = _frames(2, *size)
    (source,) = open_sources(write_video(tmp_path / "scan.mp4", frames, 30))
    assert source.size == size
    got = _read(source)
    assert [f.image.shape for f in got] == [(*size, 3)] * 2
    assert _mad(got[1].image, frames[1]) < 4.0


def _save(folder: Path, name: str, array: np.ndarray, mode: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE)
    image.save(folder / name)
    return folder / name


def test_frame_folder_natural_order_and_modes(tmp_path: Path) -> None:
    folder = tmp_path / "exam"
    gray = [np.full((5, 7), v, np.uint8) for v in (10, 20, 30)]
    for name, array in zip(
        ["f2.png", "f10.png", "f1.png"], [gray[1], gray[2], gray[0]], strict=True
    ):
        _save(folder, name, array)
    (folder / "notes.txt").write_text("not a frame")
    (source,) = open_sources(folder, fps=10.0)
    assert (source.name, source.kind, source.size, source.frame_count) == (
        "exam",
        "frames",
        (5, 7),
        3,
    )
    got = _read(source)
    assert [int(f.image[0, 0]) for f in got] == [10, 20, 30]  # f1, f2, f10
    assert [f.timestamp for f in got] == pytest.approx([0.0, 0.1, 0.2])
    assert got[0].image.shape == (5, 7) and got[0].image.dtype == np.uint8


@pytest.mark.parametrize(
    ("array", "mode", "shape", "corner"),
    [
        (np.full((6, 9, 3), (10, 20, 30), np.uint8), None, (6, 9, 3), [10, 20, 30]),
        (np.full((6, 9, 4), (10, 20, 30, 128), np.uint8), None, (6, 9, 4), [10, 20, 30, 128]),
        (np.full((6, 9), 257 * 200, np.uint16), None, (6, 9), 200),
        (np.full((6, 9, 3), (10, 20, 30), np.uint8), "P", (6, 9, 3), [10, 20, 30]),
    ],
    ids=["RGB", "RGBA", "I;16", "P"],
)
def test_frame_folder_image_modes(
    tmp_path: Path, array: np.ndarray, mode: str | None, shape: tuple[int, ...], corner
) -> None:
    path = _save(tmp_path / "frames", "0.png", array, mode)
    if array.dtype == np.uint16:
        assert Image.open(path).mode == "I;16"
    (frame,) = _read(open_sources(tmp_path / "frames")[0])
    assert frame.image.dtype == np.uint8 and frame.image.shape == shape
    assert frame.image[0, 0].tolist() == corner


def test_odd_scanner_size_folder_and_unreadable_frame_is_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "odd"
    frames = [np.full((601, 799), v, np.uint8) for v in (0, 100, 200)]
    for i, array in enumerate(frames):
        _save(folder, f"{i}.png", array)
    (folder / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (source,) = open_sources(folder)
    assert source.size == (601, 799)
    got = _read(source)
    assert [f.index for f in got] == [0, 1, 2]
    assert got[1].image is None and "1.png" in got[1].error
    assert got[2].image.shape == (601, 799) and int(got[2].image[0, 0]) == 200


def test_dataset_folder_gives_one_source_per_video_with_truth(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ds", videos=2, frames=3, seed=0)
    sources = open_sources(root, fps=12.5)
    assert [s.name for s in sources] == ["synth_0000_0000", "synth_0000_0001"]
    for source in sources:
        assert source.kind == "dataset" and source.frame_count == 3
        got = _read(source)
        assert [f.timestamp for f in got] == pytest.approx([0.0, 0.08, 0.16])
        for f in got:
            assert f.image.shape == (*source.size, 3)
            assert f.truth is not None and f.truth.dtype == np.bool_
            assert f.truth.shape == source.size


def test_dataset_with_mixed_frame_sizes_is_refused(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ds", videos=1, frames=3, seed=0)
    frame = root / "images" / "synth_0000_0000" / "2.jpg"
    Image.open(frame).resize((50, 40)).save(frame)
    with pytest.raises(InputError) as caught:
        open_sources(root)
    message = str(caught.value)
    assert "0.jpg" in message and "2.jpg" in message and "50x40" in message
    assert "\n" not in message


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), "fltp", "mono")
        samples.sample_rate, samples.pts = 8000, 0
        for packet in [*stream.encode(samples), *stream.encode(None)]:
            container.mux(packet)
    return path


def _bad_input(tmp_path: Path, case: str) -> tuple[Path, str]:
    """(a bad input, a word its error message must contain)."""
    if case == "missing":
        return tmp_path / "nowhere.mp4", "does not exist"
    if case == "empty":
        (tmp_path / "empty.mp4").write_bytes(b"")
        return tmp_path / "empty.mp4", "empty"
    if case == "text":
        (tmp_path / "notes.mp4").write_text("hello\nworld\n")
        return tmp_path / "notes.mp4", "not a video"
    if case == "png":
        _save(tmp_path, "still.png", _frames(1)[0]).rename(tmp_path / "still.mp4")
        return tmp_path / "still.mp4", "still image (PNG)"
    if case == "audio":
        return _audio_only(tmp_path / "sound.mp4"), "no video stream"
    if case == "truncated-header":
        path = write_video(tmp_path / "cut.mp4", _noise(4), 25)
        data = path.read_bytes()
        path.write_bytes(data[: data.index(b"mdat") + 200])  # index intact, first frame cut
        return path, "first frame cannot be decoded"
    if case == "truncated-index":
        path = write_video(tmp_path / "cut.mkv", _noise(4), 25, codec="ffv1")
        path.write_bytes(path.read_bytes()[:300])
        return path, "or a damaged one"
    if case == "suffix":
        (tmp_path / "clip.gif").write_bytes(b"GIF89a")
        return tmp_path / "clip.gif", "unsupported file type '.gif'"
    if case == "single-image":
        return _save(tmp_path, "frame.png", _frames(1)[0]), "single image"
    if case == "empty-folder":
        (tmp_path / "exam" / "sub").mkdir(parents=True)
        (tmp_path / "exam" / "readme.txt").write_text("x")
        return tmp_path / "exam", "no frame images"
    if case == "mixed-sizes":
        _save(tmp_path / "exam", "a1.png", np.zeros((580, 600), np.uint8))
        _save(tmp_path / "exam", "a2.png", np.zeros((580, 600), np.uint8))
        _save(tmp_path / "exam", "a10.png", np.zeros((600, 800), np.uint8))
        return tmp_path / "exam", "a1.png is 600x580, a10.png is 800x600"
    if case == "bad-dataset":
        root = write_dataset(tmp_path / "ds", videos=1, frames=2, seed=0)
        (root / "labels" / "synth_0000_0000" / "1.png").unlink()
        _save(root / "labels" / "synth_0000_0000", "1.png", np.zeros((7, 7), np.uint8))
        return root, "mask size 7x7 differs"
    raise AssertionError(case)


BAD_INPUTS = [
    "missing",
    "empty",
    "text",
    "png",
    "audio",
    "truncated-header",
    "truncated-index",
    "suffix",
    "single-image",
    "empty-folder",
    "mixed-sizes",
    "bad-dataset",
]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_inputs_are_refused_up_front_in_one_line(tmp_path: Path, case: str) -> None:
    path, expected = _bad_input(tmp_path, case)
    with pytest.raises(InputError) as caught:
        open_sources(path)
    message = str(caught.value)
    assert expected in message
    assert message.startswith(str(path)) or path.name in message
    assert "\n" not in message and "Errno" not in message


def test_truncated_video_yields_what_it_has_then_stops(tmp_path: Path) -> None:
    """The partial last packet is an error frame; the end of the file ends the iteration."""
    path = write_video(tmp_path / "cut.mp4", _noise(12), 25)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    (source,) = open_sources(path)
    assert source.frame_count == 12  # what the container promised
    got = _read(source)
    good = [f for f in got if f.error is None]
    bad = [f for f in got if f.error is not None]
    assert 0 < len(good) < 12 and len(bad) >= 1
    assert all(f.image is None and "undecodable" in f.error for f in bad)
    assert [f.index for f in got] == list(range(len(got)))
    times = [f.timestamp for f in got]
    assert times == sorted(times)
    assert [f.index for f in source.frames(every=2)] == list(range(0, len(got), 2))


def test_corrupt_frame_mid_stream_is_skipped_and_decoding_goes_on(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.avi", _frames(8), 25, codec="mjpeg")
    data = bytearray(path.read_bytes())
    fifth = [m.start() for m in re.finditer(b"\xff\xd8", data)][4]  # JPEG start of frame 4
    data[fifth + 200 : fifth + 600] = bytes(400)
    path.write_bytes(bytes(data))
    got = _read(open_sources(path)[0])
    assert [f.index for f in got] == list(range(8))
    assert [f.error is not None for f in got] == [i == 4 for i in range(8)]
    assert got[7].image is not None and _mad(got[7].image, _frames(8)[7]) < 4.0


def test_writer_leaves_nothing_behind_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError), VideoWriter(target, 25, (48, 64)) as writer:
        writer.write(_frames(1)[0])
        raise RuntimeError("inference failed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="no frame"), VideoWriter(target, 25, (48, 64)):
        pass
    assert list(tmp_path.iterdir()) == []
    with VideoWriter(target, 25, (48, 64)) as writer:
        writer.write(_frames(1)[0])
        with pytest.raises(ValueError, match="64x40"):
            writer.write(np.zeros((40, 64, 3), np.uint8))
    assert len(_read(open_sources(target)[0])) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_writer_accepts_gray_and_rgba(tmp_path: Path) -> None:
    gray = np.full((32, 48), 120, np.uint8)
    rgba = np.dstack([np.full((32, 48, 3), 60, np.uint8), np.zeros((32, 48), np.uint8)])
    with VideoWriter(tmp_path / "out.mp4", 10, (32, 48)) as writer:
        writer.write(gray, 0.0)
        writer.write(rgba, 0.1)
    first, second = _read(open_sources(tmp_path / "out.mp4")[0])
    assert abs(int(first.image.mean()) - 120) <= 2 and abs(int(second.image.mean()) - 60) <= 2
