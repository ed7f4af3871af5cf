"""Where ``device_bench run --device`` times: the option's type, the checks, the dispatch.

Shared by every device that is not this host's CPU: the ``--device`` value, the artifact
a phone may be sent, latency figures as a device's own tool reports them, their records,
and the dispatch to ``android``, ``ios`` and ``gpu``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from model.errors import ProjectError
from runtimes.manifest import Manifest

from .bench import artifact_records, network_gflop
from .bench import checked_artifact as checked_on_host
from .records import BenchRecord, append_records
from .stats import LatencyStats

PHONE_TARGETS = {"android": ("tflite", "executorch"), "ios": ("coreml",)}


# --- the --device option --------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    """Where to time: this host, its CUDA GPU, or a phone named by serial / UDID."""

    kind: str  # host | cuda | android | ios
    id: str = ""  # adb serial or iOS UDID

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}" if self.id else self.kind


class DeviceType(click.ParamType):
    """``host``, ``cuda``, ``android:SERIAL`` or ``ios:UDID``; anything else one line."""

    name = "device"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[host|cuda|android:SERIAL|ios:UDID]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, Device):
            return value
        text = str(value).strip()
        kind, sep, ident = text.partition(":")
        kind = kind.lower()
        if kind in ("host", "cuda"):
            if sep:
                self.fail(f"{text!r}: {kind} takes no id (write just '{kind}')", param, ctx)
            return Device(kind)
        if kind in ("android", "ios"):
            what = "adb serial" if kind == "android" else "device UDID"
            where = "`adb devices`" if kind == "android" else "`xcrun devicectl list devices`"
            if not ident.strip():
                self.fail(f"{text!r} names no device: write {kind}:<{what}> ({where})", param, ctx)
            if any(c.isspace() for c in ident) or ident.startswith("-"):
                self.fail(f"{text!r}: {ident!r} is not a usable {what} ({where})", param, ctx)
            return Device(kind, ident)
        self.fail(
            f"{text!r} is not a device: use host, cuda, android:SERIAL or ios:UDID", param, ctx
        )


# --- which artifact ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRequest:
    """What ``device_bench run`` was asked to time, handed to a device as one value."""

    target: str
    variant: str
    precision: str
    form: str
    threads: int | None
    warmup: int
    iters: int
    artifact: Path | None  # None: converted into (or reused from) ``cache``
    weights: str
    cache: Path


def checked_artifact(device: Device, request: RunRequest) -> tuple[Path, Manifest]:
    """The artifact to ship to the phone: given or cached, what was asked, and parity passed.

    The host's refusals (``bench.checked_artifact``), and the targets a phone runs.
    """
    allowed = PHONE_TARGETS[device.kind]
    if request.target not in allowed:
        raise ProjectError(
            f"--device {device.kind} runs --target {' or '.join(allowed)}, not {request.target}"
        )
    return checked_on_host(
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


# --- what a device's tool reported ---------------------------------------------------------


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


def last_line(text: str) -> str:
    """The last non-empty line of a tool's output, for a one-line error."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "(no output)"


@dataclass(frozen=True)
class DeviceRun:
    """What a device run produced: its records (appended by the caller) and a summary line."""

    records: tuple[BenchRecord, ...]
    summary: str


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
    figures: list[tuple[str, float | None, str]] = [
        ("median_latency", timing.median_ms, "ms"),
        ("mean_latency", None if timing.warmup_included else timing.mean_ms, "ms"),
        ("mean_latency_with_warmup", timing.mean_ms if timing.warmup_included else None, "ms"),
        ("trimmed_mean_latency", timing.trimmed_mean_ms, "ms"),
        ("p90_latency", timing.p90_ms, "ms"),
        ("p95_latency", timing.p95_ms, "ms"),
        ("p99_latency", timing.p99_ms, "ms"),
        ("min_latency", timing.min_ms, "ms"),
        ("max_latency", timing.max_ms, "ms"),
        ("std_latency", timing.std_ms, "ms"),
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
    known = [(metric, value, unit) for metric, value, unit in figures if value is not None]
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


# --- the dispatch behind `device_bench run --device` ------------------------------------------


def run_on_device(
    device: Device,
    request: RunRequest,
    results: Path,
    delegate: str = "xnnpack",
    tool: str | None = None,
    golden: Path | None = None,
) -> str:
    """Time on ``device`` (not the host); append its records to ``results`` only once the
    whole run has succeeded; return the line to print."""
    if device.kind != "android":
        for flag, value, default in (
            ("--delegate", delegate, "xnnpack"),
            ("--tool", tool, None),
            ("--golden", golden, None),
        ):
            if value != default:
                raise ProjectError(f"{flag} is for --device android:SERIAL, not {device}")
    if device.kind == "cuda":
        from .gpu import run_cuda

        if request.artifact is not None:
            raise ProjectError("--device cuda converts its own artifact; --artifact is host-only")
        cuda_records, summary = run_cuda(
            target=request.target,
            variant=request.variant,
            precision=request.precision,
            form=request.form,
            warmup=request.warmup,
            iters=request.iters,
            weights=request.weights,
        )
        done = DeviceRun(tuple(cuda_records), summary)
    elif device.kind == "ios":
        from .ios import find_xcrun, run_ios

        find_xcrun()  # refused here before any conversion
        path, manifest = checked_artifact(device, request)
        done = run_ios(device, path, manifest, request.warmup, request.iters)
    else:
        from .android import find_adb, run_android

        find_adb()  # refused here before any conversion
        path, manifest = checked_artifact(device, request)
        done = run_android(
            device,
            path,
            manifest,
            request.threads,
            request.warmup,
            request.iters,
            delegate,
            tool,
            golden,
        )
    append_records(results, list(done.records))
    return f"{done.summary}; appended to {results}"
