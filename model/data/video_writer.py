"""Videos out: H.264 MP4 (or another codec and container) written frame by frame, all or nothing.

:class:`VideoWriter` encodes H.264 (libx264, yuv420p, crf 20) in MP4 by default.
yuv420p needs even sizes, so an odd height or width is padded by one edge pixel: a reader
sees the padded size. Here, below ``runtimes``, so that the synthetic data (``--mp4``)
and ``runtimes.segment``'s overlay video are written by the same code.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from ..atomic import usual_permissions


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
            raise OSError(f"{self.path}: cannot start {codec} video ({av_reason(err)})") from None

    def write(self, image_rgb: np.ndarray, timestamp: float | None = None) -> None:
        """Append a uint8 RGB frame (gray and RGBA accepted) of the writer's size."""
        image = np.asarray(image_rgb)
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(f"expected a uint8 image, got {image.dtype} of shape {image.shape}")
        if image.shape[:2] != self.size:
            shown, expected = size_text(image.shape), size_text(self.size)
            raise ValueError(f"frame size {shown} differs from video {expected}")
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
            raise OSError(f"{self.path}: cannot finish video ({av_reason(err)})") from None
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


def size_text(shape: tuple[int, ...]) -> str:
    """An (H, W, ...) shape as people write image sizes: width x height."""
    return f"{shape[1]}x{shape[0]}"


def av_reason(err: BaseException) -> str:
    """An exception as a short line: FFmpeg errors without their errno and file name."""
    text = getattr(err, "strerror", None) if isinstance(err, av.FFmpegError) else None
    return one_line_text(text or err)


def one_line_text(text: object) -> str:
    """Any message on one line, its whitespace runs collapsed."""
    return " ".join(str(text).split())
