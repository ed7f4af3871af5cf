"""Latency statistics as benchmark tools report them (ExecuTorch's and LiteRT's reporters)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.errors import ProjectError


@dataclass(frozen=True)
class LatencyStats:
    """Per-iteration latencies in milliseconds, summarised."""

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


def summarise(latencies_ms: list[float] | np.ndarray) -> LatencyStats:
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
