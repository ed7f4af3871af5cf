"""The one timing loop and the one latency summary, for every figure the project reports.

``runtimes.fastest``, ``Session.run`` and every ``device_bench`` benchmark (host, sweep,
GPU, video, a phone tool's per-call lines) time and summarise through here, so a median
means the same thing in each: percentiles by linear interpolation (numpy's default), the
trimmed mean over the middle 80 %, warm-up calls never counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from model.errors import ProjectError

T = TypeVar("T")


def _nothing() -> None:
    return None


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter()`` reading)."""
    return (time.perf_counter() - started) * 1000


def timed_call(call: Callable[[], T]) -> tuple[T, float]:
    """``call()``'s result and its wall time in ms."""
    started = time.perf_counter()
    result = call()
    return result, elapsed_ms(started)


def time_calls(
    call: Callable[[int], object],
    iters: int,
    warmup: int = 0,
    start: int = 0,
    sync: Callable[[], None] = _nothing,
    after_each: Callable[[], None] = _nothing,
) -> list[float]:
    """ms of each of ``iters`` calls after ``warmup`` untimed ones.

    ``call(i)`` gets the call's index, counted from ``start`` across warm-up and timed calls
    (the frame to feed); ``sync`` ends each timed interval and the warm-up (a GPU's queued
    work belongs to the call that queued it); ``after_each`` runs after every call, outside
    the interval (a progress bar).
    """
    for index in range(start, start + warmup):
        call(index)
        after_each()
    sync()
    latencies = []
    for index in range(start + warmup, start + warmup + iters):
        started = time.perf_counter()
        call(index)
        sync()
        latencies.append(elapsed_ms(started))
        after_each()
    return latencies


@dataclass(frozen=True)
class LatencyStats:
    """Per-iteration latencies in milliseconds, summarised as benchmark tools report them
    (ExecuTorch's and LiteRT's reporters)."""

    iterations: int
    mean_ms: float
    median_ms: float
    trimmed_mean_ms: float  # mean of the middle 80 %: robust to a few scheduler hiccups
    p90_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float

    @property
    def fps(self) -> float:
        """Frames per second at the median latency (one frame per call)."""
        return 1000.0 / self.median_ms


def summarise(latencies_ms: list[float] | tuple[float, ...] | np.ndarray) -> LatencyStats:
    """Summarise ``latencies_ms``; percentiles by linear interpolation (numpy's default)."""
    values = np.sort(np.asarray(latencies_ms, dtype=np.float64))
    if values.size == 0:
        raise ProjectError("no latency was measured (0 iterations)")
    if not np.all(np.isfinite(values)) or values[0] < 0:
        raise ProjectError("latencies must be finite and non-negative")
    cut = int(values.size * 0.1)
    middle = values[cut : values.size - cut] if values.size - 2 * cut > 0 else values
    return LatencyStats(
        iterations=int(values.size),
        mean_ms=float(values.mean()),
        median_ms=float(np.median(values)),
        trimmed_mean_ms=float(middle.mean()),
        p90_ms=float(np.percentile(values, 90)),
        p99_ms=float(np.percentile(values, 99)),
        min_ms=float(values[0]),
        max_ms=float(values[-1]),
    )
