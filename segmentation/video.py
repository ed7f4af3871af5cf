"""Frames in from a recording, a folder of frame images or a dataset (videos out: the writer).

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

Writing video is ``model.data.video_writer``'s (the synthetic data writes MP4s too).
Odd-sized input videos (MJPEG, FFV1, 4:4:4 H.264) read as they are.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from av.sidedata.sidedata import Type as SideDataType
from av.video.reformatter import Interpolation

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
from model.data.video_writer import av_reason, one_line_text, size_text
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
    notes: tuple[str, ...] = ()  # one line each, for the run to warn about once

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
                yield SourceFrame(i, timestamp, None, None, one_line_text(err))
                continue
            if image.shape[:2] != self.size:
                shown, expected = size_text(image.shape), size_text(self.size)
                problem = f"{image_path.name}: size {shown} differs from {expected}"
                yield SourceFrame(i, timestamp, None, None, problem)
            elif truth is not None and truth.shape != image.shape[:2]:
                shown = size_text(truth.shape)
                problem = f"{truth_path}: mask size {shown} differs from the frame's"
                yield SourceFrame(i, timestamp, None, None, problem)
            else:
                yield SourceFrame(i, timestamp, image, truth)

    def _converted(self, frame: av.VideoFrame, index: int, timestamp: float) -> SourceFrame:
        """A decoded frame as RGB, or an error frame saying why it cannot be one."""
        try:
            image = frame_rgb(frame)
        except (av.FFmpegError, ValueError) as err:
            return SourceFrame(index, timestamp, None, None, av_reason(err))
        if image.shape[:2] != self.size:  # as displayed, like self.size
            problem = f"frame size changed to {size_text(image.shape)}"
            return SourceFrame(index, timestamp, None, None, problem)
        return SourceFrame(index, timestamp, image)

    def _decode(self) -> Iterator[SourceFrame]:
        try:
            container = av.open(str(self.path))
        except (av.FFmpegError, OSError) as err:
            raise InputError(f"{self.path}: cannot open video ({av_reason(err)})") from None
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
                        "%s: reading stopped after %d frames (%s)", self.path, index, av_reason(err)
                    )
                    packet = None  # flush the frames the decoder still holds, then stop
                try:
                    decoded = stream.codec_context.decode(packet)
                except (av.FFmpegError, ValueError) as err:
                    when = None if packet is None or packet.pts is None else seconds(packet.pts)
                    pending.append((when, f"undecodable packet ({av_reason(err)})"))
                    pending.sort(key=lambda p: float("inf") if p[0] is None else p[0])
                    decoded = []
                for frame in decoded:
                    timestamp = seconds(frame.pts)
                    yield from failed(timestamp)
                    yield self._converted(frame, index, timestamp)
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
        raise InputError(one_line_text(err)) from None


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
            f"{path}: not a video FFmpeg can read, or a damaged one ({av_reason(err)})"
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
                f"{path}: first frame cannot be decoded, corrupt or truncated ({av_reason(err)})"
            ) from None
        if first is None:
            raise InputError(f"{path}: no frame could be decoded (empty, corrupt or truncated)")
        try:
            size = frame_rgb(first).shape[:2]  # as displayed: a portrait phone video is tall
        except (av.FFmpegError, ValueError) as err:
            reason = av_reason(err)
            raise InputError(f"{path}: first frame cannot be converted ({reason})") from None
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
                f"{size_text(first[1])}, {p.name} is {size_text(size)}"
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
        raise InputError(one_line_text(err)) from None
    sources = []
    for video in index.videos:
        images = [f.image for f in video.frames]
        size = _common_size(images, f"frames of video {video.name!r}")
        for frame in video.frames:
            mask_size = None if frame.mask is None else _header_size(frame.mask)
            if mask_size is not None and mask_size != size:
                raise InputError(
                    f"{frame.mask}: mask size {size_text(mask_size)} differs from frame size "
                    f"{size_text(size)} ({frame.image.name})"
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
