"""How an archive run scales: one synthetic archive segmented by the command without Ray,
then on an embedded Ray with 1 and with 2 workers (1 thread each), and the projection to
a cluster from those measured costs.

The projection's model: ``time = startup + loops * per_loop / (workers * efficiency)``,
``workers = nodes * cores / threads``. ``startup`` is Ray's start plus a worker's (its
process, imports and session); ``per_loop`` is one worker's time a loop (the command's own
time a loop plus Ray's overhead a loop, both measured); ``efficiency`` is what 2 workers
on this host reach of twice 1 worker (they share its caches, memory bandwidth and the
driver's core), taken to hold inside every node; nodes share nothing but the driver, whose
work a loop is one message each way. Figures are printed, never asserted.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from model.data.synth import HELD_OUT_SEED, write_dataset
from model.tables import markdown_table
from runtimes.session import Session
from segmentation.archive import run_archive
from segmentation.run import run_segment

THREADS = 1  # per worker, and for the command without Ray


@dataclass(frozen=True)
class Timing:
    """One run over the archive: ``loops_s`` from the first worker ready (without Ray:
    the session loaded) to the last loop written; ``startup_s`` before that."""

    name: str
    workers: int
    loops: int
    frames: int
    wall_s: float
    startup_s: float
    loops_s: float
    ray_start_s: float | None = None

    @property
    def loops_per_minute(self) -> float:
        return self.loops * 60 / self.loops_s

    @property
    def fps(self) -> float:
        return self.frames / self.loops_s


@dataclass(frozen=True)
class Scaling:
    """The three runs and what follows from them."""

    plain: Timing
    one: Timing
    two: Timing

    @property
    def startup_s(self) -> float:
        """Ray's start and a worker's, as a cluster run pays it once."""
        return self.one.startup_s

    @property
    def overhead_per_loop_s(self) -> float:
        return (self.one.loops_s - self.plain.loops_s) / self.one.loops

    @property
    def per_loop_s(self) -> float:
        return self.one.loops_s / self.one.loops

    @property
    def two_vs_one(self) -> float:
        return self.two.loops_per_minute / self.one.loops_per_minute

    @property
    def efficiency(self) -> float:
        return self.two_vs_one / 2

    def projected_s(self, loops: int, nodes: int, cores: int) -> float:
        workers = nodes * cores // THREADS
        return self.startup_s + loops * self.per_loop_s / (workers * self.efficiency)


def measure(open_session: Callable[..., Session], loops: int, frames: int, folder: Path) -> Scaling:
    """The archive (``loops`` synthetic loops of ``frames`` frames, written before any
    clock starts) through the command without Ray, then 1 and 2 embedded Ray workers."""
    videos = write_dataset(
        folder / "archive", loops, frames, HELD_OUT_SEED, workers=os.cpu_count() or 1, mp4=True
    )
    videos = videos / "videos"
    started = time.perf_counter()
    session = open_session(threads=THREADS)
    loaded = time.perf_counter()
    totals = run_segment(session, videos, folder / "plain")
    done = time.perf_counter()
    plain = Timing(
        "without Ray", 1, loops, totals.segmented, done - started, loaded - started, done - loaded
    )
    runs = []
    for workers in (1, 2):
        archived = run_archive(open_session, videos, folder / f"ray_{workers}", workers)
        runs.append(
            Timing(
                f"Ray, {workers} worker{'s' if workers > 1 else ''}",
                workers,
                len(archived.done),
                archived.frames,
                archived.wall_s,
                archived.ray_start_s + archived.workers_ready_s,
                archived.loops_s,
                archived.ray_start_s,
            )
        )
    return Scaling(plain, *runs)


def run_scaling(open_session: Callable[..., Session], loops: int, frames: int) -> Scaling:
    with tempfile.TemporaryDirectory(prefix="bas-scaling-") as folder:
        return measure(open_session, loops, frames, Path(folder))


def scaling_report(scaling: Scaling, archive_loops: int, nodes: list[int], cores: int) -> str:
    """The runs' table, the costs they give, and the projection's table."""
    runs = markdown_table(
        (
            *("run", "workers", "loops", "frames", "wall (s)", "Ray start (s)"),
            *("start-up to first worker (s)", "loops phase (s)", "loops/min", "frames/s"),
        ),
        [
            (
                t.name,
                t.workers,
                t.loops,
                t.frames,
                f"{t.wall_s:.1f}",
                "-" if t.ray_start_s is None else f"{t.ray_start_s:.1f}",
                f"{t.startup_s:.1f}",
                f"{t.loops_s:.1f}",
                f"{t.loops_per_minute:.1f}",
                f"{t.fps:.1f}",
            )
            for t in (scaling.plain, scaling.one, scaling.two)
        ],
        "lrrrrrrrrr",
    )
    plain_loop = scaling.plain.loops_s / scaling.plain.loops
    ray_start = scaling.one.ray_start_s or 0.0
    overhead = scaling.overhead_per_loop_s
    costs = "\n".join(
        (
            f"Ray start-up: {ray_start:.1f} s, then {scaling.startup_s - ray_start:.1f} s until "
            f"a worker holds its session (without Ray: {scaling.plain.startup_s:.1f} s to load it)",
            f"Ray's overhead a loop: {overhead:+.2f} s ({overhead / plain_loop:+.1%} of the "
            f"{plain_loop:.2f} s a loop takes without Ray)",
            f"2 workers vs 1: x{scaling.two_vs_one:.2f} loops a minute (efficiency "
            f"{scaling.efficiency:.0%})",
            "projection: time = startup + loops * per_loop / (nodes * cores / threads * "
            f"efficiency) = {scaling.startup_s:.1f} s + loops * {scaling.per_loop_s:.2f} s / "
            f"(nodes * cores / {THREADS} * {scaling.efficiency:.2f}), loops of "
            f"{scaling.one.frames // max(scaling.one.loops, 1)} frames",
        )
    )
    projected = markdown_table(
        ("nodes", "cores each", "workers", "loops", "projected time (h)", "loops/min"),
        [
            (
                n,
                cores,
                n * cores // THREADS,
                archive_loops,
                f"{scaling.projected_s(archive_loops, n, cores) / 3600:.2f}",
                f"{archive_loops * 60 / scaling.projected_s(archive_loops, n, cores):.0f}",
            )
            for n in nodes
        ],
        "rrrrrr",
    )
    return f"{runs}\n\n{costs}\n\n{projected}"
