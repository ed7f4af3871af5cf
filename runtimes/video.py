"""Frames in from a recording, a folder of frame images or a dataset; H.264 video out.

Reading: :func:`open_sources` refuses an unusable input up front (:class:`InputError`, one
line naming the path) after reading headers and at most the first frame, so a bad input
fails in a second, not after minutes of inference. Past that point a single unreadable
frame never stops a run: it comes out of :meth:`FrameSource.frames` as a
:class:`SourceFrame` with ``image=None`` and ``error`` set, to be skipped and counted.
The one exception is a frame whose values have no clear meaning
(:class:`model.data.pixels.UnsupportedPixels`: float pixels outside 0..1, 32-bit integers):
how a recording is stored is shared by its frames, so the run stops with that reason.

Damage inside a video file (decided here, relied on by ``runtimes.segment``):

- a packet the decoder rejects (corrupt data, or the partial last packet of a truncated
  file) becomes one error frame, and decoding goes on with the next packet;
- a demuxer that cannot read on (the file's structure ends or breaks) ends the iteration
  cleanly after the frames still buffered in the decoder, with a logged warning and no
  error frame, since there is no frame position to put one at. Compare the frames seen
  with ``FrameSource.frame_count`` to notice it.

No PyAV exception escapes :meth:`FrameSource.frames` once the source has been opened.

Frame indices count frames in presentation order, 0-based, error frames included (a
rejected packet is counted as one frame). Timestamps come from each frame's pts, so a
variable-frame-rate recording keeps its timing, relative to the stream's start.

Writing: :class:`VideoWriter` encodes H.264 (libx264, yuv420p, crf 20) in MP4 by default.
yuv420p needs even sizes, so an odd height or width is padded by one edge pixel: a reader
sees the padded size. Odd-sized input videos (MJPEG, FFV1, 4:4:4 H.264) read as they are.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Literal

import av
import numpy as np
from av.sidedata.sidedata import Type as SideDataType
from av.video.reformatter import Interpolation

from model.atomic import usual_permissions
from model.data.layouts import (
    IMAGE_SUFFIXES,
    DatasetError,
    detect_layout,
    discover,
    natural_key,
    read_mask,
)
from model.data.pixels import (
    ImageReadError,
    UnsupportedPixels,
    displayed_size,
    read_pixels,
    scale_to_uint8,
    with_alpha,
)
from model.errors import ProjectError

from .regions import ImageRegion

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")
SourceKind = Literal["video", "frames", "dataset", "dicom"]

_log = logging.getLogger(__name__)

# FFmpeg probes content, not names: a still image renamed .mp4 opens as a one-frame
# "video" through one of these demuxers.
_IMAGE_DEMUXERS = ("image2", "image2pipe")


class InputError(ProjectError):
    """An input that cannot be segmented as it is; the one-line message names path and problem."""


@dataclass(frozen=True)
class SourceFrame:
    """One frame as decoded; ``image`` is None (and ``error`` says why) if it was unreadable."""

    index: int
    timestamp: float
    image: np.ndarray | None
    truth: np.ndarray | None = None
    error: str | None = None


@dataclass(frozen=True)
class FrameSource:
    """One video to segment: a video file, a folder of frames, or one video of a dataset.

    ``size`` is (H, W) of the first frame; ``frame_count`` is what the container or the
    folder says (None where a container does not know). ``region`` is the image region the
    file itself states, with its physical pixel size (DICOM); None where it states none or
    states one that cannot be used, and ``calibration`` says which (one line, for reports).
    Sources of other formats subclass this and override :meth:`_all_frames`.
    """

    name: str
    kind: SourceKind
    path: Path
    fps: float
    frame_count: int | None
    size: tuple[int, int]
    _images: tuple[Path, ...] = field(default=(), repr=False, compare=False)
    _truths: tuple[Path | None, ...] = field(default=(), repr=False, compare=False)
    region: ImageRegion | None = None
    calibration: str = "none: the format carries no physical pixel size"

    def frames(self, every: int = 1, max_frames: int | None = None) -> Iterator[SourceFrame]:
        """Every ``every``-th frame (by source index), at most ``max_frames`` of them."""
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        if max_frames is not None and max_frames < 0:
            raise ValueError(f"max_frames must be >= 0 or None, got {max_frames}")
        if max_frames == 0:
            return
        yielded = 0
        for frame in self._all_frames():
            if frame.index % every:
                continue
            yield frame
            yielded += 1
            if max_frames is not None and yielded >= max_frames:
                return

    def _all_frames(self) -> Iterator[SourceFrame]:
        return self._decode() if self.kind == "video" else self._read_files()

    def _read_files(self) -> Iterator[SourceFrame]:
        truths = self._truths or (None,) * len(self._images)
        for i, (image_path, truth_path) in enumerate(zip(self._images, truths, strict=True)):
            timestamp = i / self.fps
            try:
                image = load_image(image_path)
                truth = None if truth_path is None else read_mask(truth_path)
            except (InputError, DatasetError) as err:
                yield SourceFrame(i, timestamp, None, None, _one_line(err))
                continue
            if image.shape[:2] != self.size:
                problem = (
                    f"{image_path.name}: size {_wh(image.shape)} differs from {_wh(self.size)}"
                )
                yield SourceFrame(i, timestamp, None, None, problem)
            elif truth is not None and truth.shape != image.shape[:2]:
                problem = f"{truth_path}: mask size {_wh(truth.shape)} differs from the frame's"
                yield SourceFrame(i, timestamp, None, None, problem)
            else:
                yield SourceFrame(i, timestamp, image, truth)

    def _decode(self) -> Iterator[SourceFrame]:
        try:
            container = av.open(str(self.path))
        except (av.FFmpegError, OSError) as err:
            raise InputError(f"{self.path}: cannot open video ({_reason(err)})") from None
        with container:
            stream = container.streams.video[0]
            time_base = stream.time_base or Fraction(1, 1)
            start = stream.start_time or 0
            index, last = 0, -1.0 / self.fps
            # A rejected packet's frame waits here until the decoder has put out the frames
            # before it (B-frames come out late), so indices and timestamps stay in order.
            pending: list[tuple[float | None, str]] = []

            def seconds(pts: int | None) -> float:
                return last + 1.0 / self.fps if pts is None else float((pts - start) * time_base)

            def convert(frame: av.VideoFrame, timestamp: float) -> SourceFrame:
                try:
                    image = frame_rgb(frame)
                except (av.FFmpegError, ValueError) as err:
                    return SourceFrame(index, timestamp, None, None, _reason(err))
                if image.shape[:2] != self.size:  # as displayed, like self.size
                    problem = f"frame size changed to {_wh(image.shape)}"
                    return SourceFrame(index, timestamp, None, None, problem)
                return SourceFrame(index, timestamp, image)

            def failed(before: float | None) -> Iterator[SourceFrame]:
                """The pending error frames due before ``before`` (all of them for None)."""
                nonlocal index, last
                while pending:
                    when, problem = pending[0]
                    if before is not None and when is not None and when >= before:
                        return
                    pending.pop(0)
                    timestamp = last + 1.0 / self.fps if when is None else max(when, last)
                    yield SourceFrame(index, timestamp, None, None, problem)
                    last, index = timestamp, index + 1

            packets = container.demux(stream)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except (av.FFmpegError, OSError) as err:
                    _log.warning(
                        "%s: reading stopped after %d frames (%s)", self.path, index, _reason(err)
                    )
                    packet = None  # flush the frames the decoder still holds, then stop
                try:
                    decoded = stream.codec_context.decode(packet)
                except (av.FFmpegError, ValueError) as err:
                    when = None if packet is None or packet.pts is None else seconds(packet.pts)
                    pending.append((when, f"undecodable packet ({_reason(err)})"))
                    pending.sort(key=lambda p: float("inf") if p[0] is None else p[0])
                    decoded = []
                for frame in decoded:
                    timestamp = seconds(frame.pts)
                    yield from failed(timestamp)
                    yield convert(frame, timestamp)
                    last, index = timestamp, index + 1
                if packet is None:
                    break
            yield from failed(None)


def load_image(path: Path) -> np.ndarray:
    """A frame image as displayed: uint8 (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA.

    ``model.data.pixels.read_pixels`` decides every mode (one reader for segmentation,
    training and evaluation). An undecodable file is an InputError, so the frame is skipped;
    pixels with no clear meaning (float beyond 0..1, 32-bit integers, ...) raise
    ``UnsupportedPixels``, which stops the run with that reason: how frames were stored is
    shared by all of them, so the others would be read under an assumption this one broke.
    """
    try:
        return read_pixels(path)
    except ImageReadError as err:
        raise InputError(_one_line(err)) from None


# Exact YUV -> RGB: without these flags swscale's fast paths are off by up to 2 levels
# (10-bit white became 253) and treat 8- and 10-bit copies of one frame differently.
_ACCURATE = (
    Interpolation.BILINEAR
    | Interpolation.ACCURATE_RND
    | Interpolation.FULL_CHR_H_INT
    | Interpolation.FULL_CHR_H_INP
)
# More-than-8-bit gray and RGB whose samples PyAV hands over as they are (RGB order).
_NATIVE_WIDE = re.compile(r"(gray|gbra?p)(9|1[0-6])(le|be)|(rgb48|rgba64)(le|be)")


def frame_rgb(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as uint8 RGB (H, W, 3), as displayed.

    Gray and RGB of more than 8 bits: the samples by ``scale_to_uint8`` (the one rule;
    swscale's own rgb24 is off by a level). Everything else (YUV of any depth): swscale
    with accurate rounding. Alpha, where the format has it: black where 0, else dropped.
    The container's display matrix (a phone's portrait recording) is applied.
    """
    fmt = frame.format
    bits = max(c.bits for c in fmt.components)
    has_alpha = any(c.is_alpha for c in fmt.components)
    if _NATIVE_WIDE.fullmatch(fmt.name):
        samples = scale_to_uint8(frame.to_ndarray(), bits)
        if samples.ndim == 2:
            samples = np.repeat(samples[:, :, None], 3, axis=2)
    else:
        samples = frame.to_ndarray(format="rgba" if has_alpha else "rgb24", interpolation=_ACCURATE)
    if samples.shape[2] == 4:
        samples = with_alpha(samples[:, :, :3], samples[:, :, 3])[:, :, :3]
    return _as_displayed(samples, frame)


def _as_displayed(image: np.ndarray, frame: av.VideoFrame) -> np.ndarray:
    """``image`` turned and mirrored as the frame's display matrix says (FFmpeg's convention:
    source (x, y) goes to (a x + c y, b x + d y)); a matrix not made of right angles is refused.
    """
    side = frame.side_data.get(SideDataType.DISPLAYMATRIX)
    if side is None:
        return image
    matrix = np.frombuffer(bytes(side), "<i4")
    entries = matrix[[0, 1, 3, 4]] / 65536.0
    units = np.round(entries)
    if np.abs(entries - units).max() > 0.01 or np.abs(units).max() > 1 or not units.any():
        angle = np.degrees(np.arctan2(entries[1], entries[0]))
        raise UnsupportedPixels(
            f"display matrix turns by {angle:.1f} degrees or scales; only right angles are read"
        )
    a, b, c, d = units.astype(int).tolist()
    if a == 0 and d == 0:  # x and y swap: a quarter turn
        image, flip_x, flip_y = image.swapaxes(0, 1), c < 0, b < 0
    else:
        flip_x, flip_y = a < 0, d < 0
    if flip_x:
        image = image[:, ::-1]
    if flip_y:
        image = image[::-1]
    return np.ascontiguousarray(image)


def open_sources(path: Path, fps: float = 30.0) -> list[FrameSource]:
    """The videos at ``path`` (one, or one per dataset video), checked before any inference.

    ``fps`` is the frame rate of frame folders and datasets, which carry none (and of a
    video whose container states none).
    """
    path = Path(path)
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if not path.exists():
        raise InputError(f"{path}: does not exist")
    if path.is_dir():
        return _open_folder(path, fps)
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        raise InputError(f"{path}: a single image; give the folder that holds the frames")
    if suffix not in VIDEO_SUFFIXES:
        raise InputError(
            f"{path}: unsupported file type {suffix or '(no suffix)'!r}; expected a video "
            f"({', '.join(VIDEO_SUFFIXES)}), a folder of frames or a dataset folder"
        )
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    return [_open_video(path, fps)]


def _open_video(path: Path, fallback_fps: float) -> FrameSource:
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as err:
        raise InputError(
            f"{path}: not a video FFmpeg can read, or a damaged one ({_reason(err)})"
        ) from None
    with container:
        demuxer = container.format.name
        if demuxer in _IMAGE_DEMUXERS or demuxer.endswith("_pipe"):
            kind = demuxer.removesuffix("_pipe").upper()
            raise InputError(f"{path}: a still image ({kind}), not a video")
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise InputError(f"{path}: no video stream (streams: {', '.join(kinds)})")
        stream = container.streams.video[0]
        first = None
        try:
            for frame in container.decode(stream):
                first = frame
                break
        except (av.FFmpegError, OSError, ValueError) as err:
            raise InputError(
                f"{path}: first frame cannot be decoded, corrupt or truncated ({_reason(err)})"
            ) from None
        if first is None:
            raise InputError(f"{path}: no frame could be decoded (empty, corrupt or truncated)")
        try:
            size = frame_rgb(first).shape[:2]  # as displayed: a portrait phone video is tall
        except (av.FFmpegError, ValueError) as err:
            raise InputError(f"{path}: first frame cannot be converted ({_reason(err)})") from None
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else fallback_fps
        count = stream.frames or None
        if count is None and stream.duration and stream.time_base:
            count = round(float(stream.duration * stream.time_base) * fps) or None
        elif count is None and container.duration:
            count = round(container.duration / av.time_base * fps) or None
        return FrameSource(path.stem, "video", path, fps, count, size)


def image_files(folder: Path) -> list[Path]:
    """The frame images of ``folder`` (not hidden, image suffixes), in natural order."""
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    ]
    return sorted(files, key=lambda p: natural_key(p.name))


def _header_size(path: Path) -> tuple[int, int] | None:
    """(H, W) from the image header as displayed (EXIF orientation); None if unreadable."""
    return displayed_size(path)


def _common_size(files: list[Path], what: str) -> tuple[int, int]:
    """The one size of ``files`` (unreadable ones left to fail later, as single frames)."""
    first: tuple[Path, tuple[int, int]] | None = None
    for p in files:
        size = _header_size(p)
        if size is None:
            continue
        if first is None:
            first = (p, size)
        elif size != first[1]:
            raise InputError(
                f"{p.parent}: {what} of mixed sizes (width x height): {first[0].name} is "
                f"{_wh(first[1])}, {p.name} is {_wh(size)}"
            )
    if first is None:
        raise InputError(f"{files[0].parent}: none of the {len(files)} {what} is a readable image")
    return first[1]


def _open_folder(folder: Path, fps: float) -> list[FrameSource]:
    files = image_files(folder)
    if files:
        size = _common_size(files, "frames")
        return [FrameSource(folder.name, "frames", folder, fps, len(files), size, tuple(files))]
    try:
        detect_layout(folder)
    except DatasetError:
        raise InputError(
            f"{folder}: no frame images ({', '.join(IMAGE_SUFFIXES)}) and not a dataset "
            "(images/ + labels/, img_list/ + mask_list/, or <video>/frames/ + <video>/masks/)"
        ) from None
    try:
        index = discover(folder)
    except DatasetError as err:
        raise InputError(_one_line(err)) from None
    sources = []
    for video in index.videos:
        images = [f.image for f in video.frames]
        size = _common_size(images, f"frames of video {video.name!r}")
        for frame in video.frames:
            mask_size = None if frame.mask is None else _header_size(frame.mask)
            if mask_size is not None and mask_size != size:
                raise InputError(
                    f"{frame.mask}: mask size {_wh(mask_size)} differs from frame size "
                    f"{_wh(size)} ({frame.image.name})"
                )
        truths = tuple(f.mask for f in video.frames)
        sources.append(
            FrameSource(
                video.name,
                "dataset",
                images[0].parent,
                fps,
                len(images),
                size,
                tuple(images),
                truths,
            )
        )
    return sources


class VideoWriter:
    """An H.264 MP4 (or another codec/container) written frame by frame, all or nothing.

    Frames go to a temporary file beside ``path`` that replaces ``path`` only when the
    writer closes without error, so an interrupted run leaves no broken video. Timestamps
    (seconds) become the frames' pts, relative to the first, so a variable-frame-rate
    source keeps its timing; without them frames are ``1 / fps`` apart. An odd height or
    width is padded by one edge pixel for yuv420p codecs.
    """

    # codec: (pixel format, encoder options, needs even height and width)
    CODECS: dict[str, tuple[str, dict[str, str], bool]] = {
        "libx264": ("yuv420p", {"crf": "20", "preset": "fast"}, True),
        "mpeg4": ("yuv420p", {"flags": "+qscale", "global_quality": str(3 * 118)}, True),
        "mjpeg": ("yuvj420p", {"flags": "+qscale", "global_quality": str(3 * 118)}, False),
        "ffv1": ("bgr0", {}, False),
    }
    CONTAINERS: dict[str, str] = {
        ".mp4": "mp4",
        ".m4v": "mp4",
        ".mov": "mov",
        ".avi": "avi",
        ".mkv": "matroska",
    }

    def __init__(
        self, path: Path, fps: float, size: tuple[int, int], codec: str = "libx264"
    ) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in self.CONTAINERS:
            raise ValueError(f"{path}: cannot write {suffix!r}; use one of {list(self.CONTAINERS)}")
        if codec not in self.CODECS:
            raise ValueError(f"unknown codec {codec!r}; use one of {list(self.CODECS)}")
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        height, width = size
        if height < 1 or width < 1:
            raise ValueError(f"size must be positive (H, W), got {size}")
        pix_fmt, options, even = self.CODECS[codec]
        self.size = (int(height), int(width))
        self.fps = fps
        self._pad = (height % 2, width % 2) if even else (0, 0)
        rate = Fraction(fps).limit_denominator(1001)
        # AVI is constant-rate (one slot per 1/fps); MPEG-4 part 2 caps the time base at
        # 65535 ticks/s; elsewhere 1/90000 s resolves any real timestamp.
        if suffix == ".avi":
            self._time_base = 1 / rate
        elif codec == "mpeg4":
            self._time_base = Fraction(1, 1000)
        else:
            self._time_base = Fraction(1, 90000)
        self._step = max(1, round(1 / (rate * self._time_base)))
        self._first: float | None = None
        self._last_pts: int | None = None
        self.frames_written = 0

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.path.stem}.", suffix=suffix, dir=self.path.parent
        )
        os.close(fd)
        self._tmp = Path(tmp)
        container_options = {"movflags": "+faststart"} if suffix in (".mp4", ".m4v", ".mov") else {}
        try:
            self._container = av.open(
                str(self._tmp), "w", format=self.CONTAINERS[suffix], options=container_options
            )
            stream = self._container.add_stream(codec, rate=rate)
            stream.height = height + self._pad[0]
            stream.width = width + self._pad[1]
            stream.pix_fmt = pix_fmt
            stream.time_base = self._time_base
            stream.codec_context.time_base = self._time_base
            stream.options = dict(options)
            self._stream = stream
        except (av.FFmpegError, OSError, ValueError) as err:
            self._tmp.unlink(missing_ok=True)
            raise OSError(f"{self.path}: cannot start {codec} video ({_reason(err)})") from None

    def write(self, image_rgb: np.ndarray, timestamp: float | None = None) -> None:
        """Append a uint8 RGB frame (gray and RGBA accepted) of the writer's size."""
        image = np.asarray(image_rgb)
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(f"expected a uint8 image, got {image.dtype} of shape {image.shape}")
        if image.shape[:2] != self.size:
            raise ValueError(f"frame size {_wh(image.shape)} differs from video {_wh(self.size)}")
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        elif image.shape[2] == 4:
            image = image[:, :, :3]
        elif image.shape[2] != 3:
            raise ValueError(f"expected gray, RGB or RGBA, got {image.shape[2]} channels")
        if any(self._pad):
            image = np.pad(image, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = self._next_pts(timestamp)
        frame.time_base = self._time_base
        self._mux(self._stream.encode(frame))
        self.frames_written += 1

    def _next_pts(self, timestamp: float | None) -> int:
        if timestamp is None:
            pts = 0 if self._last_pts is None else self._last_pts + self._step
        else:
            if self._first is None:
                self._first = timestamp
            pts = round((timestamp - self._first) / self._time_base)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # repeated or backwards timestamps: keep the order
        self._last_pts = pts
        return pts

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self._container.mux(packet)

    def close(self) -> None:
        """Finish the file and move it into place; a video with no frame is an error."""
        if self._tmp is None:
            return
        if not self.frames_written:
            self.abort()
            raise ValueError(f"{self.path}: no frame written")
        try:
            self._mux(self._stream.encode(None))
            self._container.close()
        except (av.FFmpegError, OSError) as err:
            self.abort()
            raise OSError(f"{self.path}: cannot finish video ({_reason(err)})") from None
        usual_permissions(self._tmp)
        os.replace(self._tmp, self.path)
        self._tmp = None

    def abort(self) -> None:
        """Drop the partial file; ``path`` is left as it was."""
        if self._tmp is None:
            return
        with contextlib.suppress(av.FFmpegError, OSError, ValueError):
            self._container.close()
        self._tmp.unlink(missing_ok=True)
        self._tmp = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(
    path: Path,
    frames: list[np.ndarray],
    fps: float,
    codec: str = "libx264",
    timestamps: list[float] | None = None,
) -> Path:
    """Write ``frames`` in one go (tests make their input videos with this)."""
    if not frames:
        raise ValueError(f"{path}: no frames to write")
    if timestamps is not None and len(timestamps) != len(frames):
        raise ValueError(f"{len(timestamps)} timestamps for {len(frames)} frames")
    with VideoWriter(path, fps, frames[0].shape[:2], codec) as writer:
        for i, image in enumerate(frames):
            writer.write(image, None if timestamps is None else timestamps[i])
    return Path(path)


def _wh(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}"


def _reason(err: BaseException) -> str:
    """An exception as a short line: FFmpeg errors without their errno and file name."""
    text = getattr(err, "strerror", None) if isinstance(err, av.FFmpegError) else None
    return _one_line(text or err)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())
