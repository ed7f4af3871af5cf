"""What every phone platform shares: the device, the request, a tool's figures and records.

``android`` and ``ios`` build on this module (and ``devices`` dispatches to them through
its table of platforms): a device as ``--device`` names it, what was asked to be timed,
the artifact a phone may be sent, a device tool's command line, latency figures as the
tool reports them and their records, named as the host's are.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.errors import ProjectError
from runtimes.manifest import Manifest
from runtimes.targets import phone_targets
from runtimes.timing import LatencyStats

from .bench import Figure, artifact_records, checked_artifact, latency_figures, network_gflop
from .records import BenchRecord


@dataclass(frozen=True)
class Device:
    """Where to time: this host, its CUDA GPU, or a phone named by serial / UDID."""

    kind: str  # host | cuda | a phone platform (android | ios)
    id: str = ""  # adb serial or iOS UDID

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}" if self.id else self.kind


@dataclass(frozen=True)
class RunRequest:
    """What ``device_bench run`` was asked to time, handed to a device as one value."""

    target: str
    variant: str = "S"
    precision: str = "fp32"
    form: str = "frame"
    threads: int | None = None
    warmup: int = 10
    iters: int = 100
    artifact: Path | None = None  # None: converted into (or reused from) ``cache``
    weights: str = "shipped"
    cache: Path = Path("artifacts/bench")


@dataclass(frozen=True)
class PhoneOptions:
    """``device_bench run``'s options that only some phone platforms take."""

    delegate: str = "xnnpack"  # android .tflite: benchmark_model's delegate
    tool: str | None = None  # android: the benchmark binary's path on the phone
    golden: Path | None = None  # android: a golden bundle to score the phone's masks with

    def given(self) -> list[str]:
        """The flags set to something other than their default."""
        default = PhoneOptions()
        return [
            f"--{name}"
            for name in ("delegate", "tool", "golden")
            if getattr(self, name) != getattr(default, name)
        ]


@dataclass(frozen=True)
class DeviceRun:
    """What a device run produced: its records (appended by the caller) and a summary line."""

    records: tuple[BenchRecord, ...]
    summary: str


PhoneRunner = Callable[[Device, Path, Manifest, RunRequest, PhoneOptions], DeviceRun]


@dataclass(frozen=True)
class PhonePlatform:
    """One row of ``devices.PHONES``: how ``--device NAME:ID`` is checked and run."""

    name: str  # as --device writes it, and as runtimes.targets' ``phone`` column names it
    usage: str  # how --help writes it ("android:SERIAL")
    id_name: str  # what the id is ("adb serial")
    id_source: str  # where a user finds it ("`adb devices`")
    find_tool: Callable[[], str]  # the host tool it needs, refused before any conversion
    run: PhoneRunner
    options: tuple[str, ...] = ()  # the PhoneOptions flags it takes


def artifact_for_phone(device: Device, request: RunRequest) -> tuple[Path, Manifest]:
    """The artifact to ship to the phone: the host's refusals (``bench.checked_artifact``),
    and the targets the phone's platform runs (``runtimes.targets``)."""
    allowed = phone_targets(device.kind)
    if request.target not in allowed:
        raise ProjectError(
            f"--device {device.kind} runs --target {' or '.join(allowed)}, not {request.target}"
        )
    return checked_artifact(
        request.target,
        request.variant,
        request.precision,
        request.form,
        request.artifact,
        request.weights,
        request.cache,
    )


def run_command(
    command: Sequence[str],
    what: str,
    timeout: float,
    runner: Callable[..., subprocess.CompletedProcess] = subprocess.run,
    **kwargs: Any,
) -> subprocess.CompletedProcess[str]:
    """A device tool's command line, its output captured as text; one line if it hangs."""
    try:
        return runner(
            list(command),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
            **kwargs,
        )
    except subprocess.TimeoutExpired as err:
        raise ProjectError(f"{what} did not finish in {timeout:.0f} s") from err


def last_line(text: str) -> str:
    """The last non-empty line of a tool's output, for a one-line error."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "(no output)"


@dataclass(frozen=True)
class ToolTiming:
    """Latency figures as a device tool reported them, in ms; None where it reports none."""

    tool: str
    iterations: int
    mean_ms: float
    median_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    std_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    trimmed_mean_ms: float | None = None
    init_s: float | None = None
    memory_delta_mb: float | None = None  # benchmark_model: max RSS growth since the start
    peak_memory_mb: float | None = None  # benchmark_model --report_peak_memory_footprint
    warmup_included: bool = False  # the mean counts the warm-up calls (no per-call lines)
    missing: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def of_calls(
        cls, tool: str, stats: LatencyStats, init_s: float | None, missing: tuple[str, ...]
    ) -> ToolTiming:
        """From per-call latencies the tool printed, summarised as the host's are."""
        return cls(
            tool=tool,
            iterations=stats.iterations,
            mean_ms=stats.mean_ms,
            median_ms=stats.median_ms,
            min_ms=stats.min_ms,
            max_ms=stats.max_ms,
            p90_ms=stats.p90_ms,
            p99_ms=stats.p99_ms,
            trimmed_mean_ms=stats.trimmed_mean_ms,
            init_s=init_s,
            missing=missing,
        )


def phone_records(
    timing: ToolTiming,
    manifest: Manifest,
    device: str,
    runtime: str,
    threads: int | None,
    machine: dict[str, Any],
) -> list[BenchRecord]:
    """One record per figure the tool reported, named as the host's are (``bench.to_records``);
    FPS and GFLOP/s at the median only where the tool reports a median."""
    with_warmup = "mean_latency_with_warmup" if timing.warmup_included else "mean_latency"
    figures: list[tuple[str, float | None, str]] = [
        (with_warmup if metric == "mean_latency" else metric, value, unit)
        for metric, value, unit in latency_figures(timing)
    ]
    if timing.median_ms:
        fps = 1000.0 / timing.median_ms
        gflops = network_gflop(manifest) * fps
        figures += [("fps", fps, "fps"), ("achieved_gflops", gflops, "GFLOP/s")]
    figures += [
        ("model_load_time", timing.init_s, "s"),
        ("peak_memory_footprint", timing.peak_memory_mb, "MB"),
        ("memory_footprint_delta", timing.memory_delta_mb, "MB"),
        ("artifact_size", manifest.artifact.bytes / 1e6, "MB"),
        ("iterations", float(timing.iterations), "count"),
    ]
    known: list[Figure] = [(m, value, unit) for m, value, unit in figures if value is not None]
    return artifact_records(
        manifest, runtime, manifest.artifact.file, threads, known, device, where=machine
    )


def summary_line(
    manifest: Manifest, runtime: str, where: str, timing: ToolTiming, dice: float | None
) -> str:
    """One line: the headline figures, and which figures the tool did not report."""
    head = f"{manifest.target} BaS-{manifest.variant} {manifest.precision} {manifest.form} "
    head += f"on {where} via {runtime}: "
    if timing.median_ms is not None:
        head += f"median {timing.median_ms:.2f} ms, "
    head += f"mean {timing.mean_ms:.2f} ms"
    head += " (warm-up calls included)" if timing.warmup_included else ""
    head += f" over {timing.iterations} calls"
    if timing.peak_memory_mb is not None:
        head += f", peak memory {timing.peak_memory_mb:.1f} MB"
    if dice is not None:
        head += f", mask Dice vs PyTorch on device {dice:.5f}"
    if timing.missing:
        head += f"; not reported by {timing.tool}: {', '.join(timing.missing)}"
    return head
