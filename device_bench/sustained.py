"""Sustained FPS over a real video: decode, pre-processing, inference, post-processing.

Per-call latency on pre-processed frames (``run``) says what a runtime can do; this says what
a user gets over minutes, and whether it drifts (thermal throttling, allocator growth, a
state that grows). The video is looped, from a fresh state each pass, until enough frames ran.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.atomic import atomic_path
from model.errors import ProjectError
from runtimes.session import Session
from runtimes.timing import LatencyStats, elapsed_ms, summarise, timed_call
from segmentation.video import FrameSource, SourceFrame

MIN_FRAMES = 300
DRIFT_WINDOW = 100  # frames compared at the start and the end


@dataclass(frozen=True)
class VideoRun:
    """Per-frame milliseconds of each stage, in the order the frames ran."""

    decode_ms: tuple[float, ...]
    inference_ms: tuple[float, ...]  # the runtime's call alone
    frame_ms: tuple[float, ...]  # decode + pre-processing + inference + post-processing
    wall_s: float
    passes: int  # how many times the video was played

    @property
    def frames(self) -> int:
        return len(self.frame_ms)

    @property
    def sustained_fps(self) -> float:
        return self.frames / self.wall_s

    @property
    def drift(self) -> float:
        """Median frame time of the last frames over that of the first: > 1 is slowing down."""
        window = min(DRIFT_WINDOW, self.frames // 3) or 1
        first = float(np.median(self.frame_ms[:window]))
        return float(np.median(self.frame_ms[-window:])) / first

    def stats(self) -> dict[str, LatencyStats]:
        return {
            "decode": summarise(self.decode_ms),
            "inference": summarise(self.inference_ms),
            "frame": summarise(self.frame_ms),
        }


def _looped(sources: list[FrameSource], count: int) -> Iterator[tuple[int, SourceFrame]]:
    """(pass, frame) for ``count`` readable frames, the sources played in turn and again."""
    yielded = 0
    passes = 0
    while yielded < count:
        passes += 1
        before = yielded
        for source in sources:
            for frame in source.frames():
                if frame.image is None:
                    continue
                yield passes, frame
                yielded += 1
                if yielded >= count:
                    return
        if yielded == before:
            raise ProjectError(f"{sources[0].path}: no frame could be decoded")


def sustained(session: Session, sources: list[FrameSource], count: int) -> VideoRun:
    """Run ``count`` frames of ``sources`` through ``session`` as runtimes.segment does."""
    decode, inference, total = [], [], []
    frames = _looped(sources, count)
    started = time.perf_counter()
    passes = 0
    with tqdm(total=count, unit="frame", desc="video", disable=None, mininterval=0.5) as bar:
        while True:
            frame_started = time.perf_counter()
            played, decode_ms = timed_call(lambda: next(frames, None))
            if played is None:
                break
            if played[0] != passes:  # a new pass starts a new video: fresh state
                session.reset()
                passes = played[0]
            prediction = session.run(played[1].image)
            prediction.mask()
            total.append(elapsed_ms(frame_started))
            decode.append(decode_ms)
            inference.append(prediction.inference_ms)
            bar.update()
    wall_s = elapsed_ms(started) / 1000
    return VideoRun(tuple(decode), tuple(inference), tuple(total), wall_s, passes)


def plot_latency(path: Path, run: VideoRun, title: str) -> None:
    """Frame and inference latency over the run, with a rolling median: does it drift?"""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    index = np.arange(run.frames)
    window = 25
    for values, label, colour in (
        (run.frame_ms, "frame (decode to mask)", "tab:blue"),
        (run.inference_ms, "inference", "tab:orange"),
    ):
        axes.plot(index, values, color=colour, alpha=0.25, linewidth=0.8)
        rolling = [float(np.median(values[max(0, i - window + 1) : i + 1])) for i in index]
        axes.plot(index, rolling, color=colour, linewidth=1.6, label=f"{label}, rolling median")
    axes.set_xlabel("frame")
    axes.set_ylabel("latency (ms)")
    axes.set_ylim(bottom=0, top=float(np.percentile(run.frame_ms, 99)) * 1.3)
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    with atomic_path(Path(path)) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
