"""Time one BaS session on this host: load time, per-call latency, peak memory.

The artifact is opened through ``runtimes`` (the code users run), its parity record is
checked first, and only the runtime's call is timed, on held-out frames pre-processed
beforehand, the stream form carrying its state as a device would.
"""

from __future__ import annotations

import functools
import os
import platform
import resource
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from tqdm import tqdm

from model.checkpoint import sha256
from model.data.synth import render_video
from model.errors import ProjectError
from model.hub import build_bas, shipped_weights
from model.info import describe
from runtimes import load, load_pytorch
from runtimes.manifest import Manifest, read_manifest, verify
from runtimes.session import Session, to_input

from .peak import Peak, cores_used, measure_peak
from .records import BenchRecord
from .stats import LatencyStats, summarise

TIMING_SEED = 1  # held-out synthetic video, as parity uses
TARGET_OF_RUNTIME = {"torch": "pytorch"}


class FailedParity(ProjectError):
    """An artifact without a passed parity record: never timed."""


@dataclass(frozen=True)
class Measurement:
    manifest: Manifest
    runtime: str
    load_s: float
    latency: LatencyStats
    peak_rss_mb: float | None  # process peak; None in a sweep (every session in one process)
    size_mb: float
    gflop: float  # one frame's forward pass


@functools.cache
def machine() -> dict[str, str | int | float]:
    """What the figures were measured on: CPU model, cores, clock, fp32 peak, OS, libraries."""
    model_name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    found: dict[str, str | int | float] = {
        "cpu": model_name,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0,
        **asdict(measure_peak()),
        "os": platform.platform(),
        "python": platform.python_version(),
    }
    for dist in ("torch", "onnxruntime", "ai-edge-litert", "executorch", "coremltools"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found


def cached_artifact(
    target: str, variant: str, precision: str, form: str, weights: str, cache: Path
) -> Path:
    """The artifact for these inputs: reused from ``cache`` when built from the same weights
    by the same converter code and tools (its manifest says so), else converted there; its
    parity measured once."""
    from converters.build import convert, converter_digest
    from converters.parity import record_parity
    from converters.registry import get_target
    from converters.spec import ConvertRequest

    converter = get_target(target)
    request = ConvertRequest(variant, weights, precision, form, out=cache)
    path = Path(cache) / f"{request.stem}{converter.suffix}"
    wanted = sha256(shipped_weights(variant) if weights == "shipped" else Path(weights))
    tools = {**converter.versions(), "converters": converter_digest()}
    try:
        manifest = read_manifest(path)
        fresh = manifest.weights.sha256 == wanted and manifest.tools == tools
    except ProjectError:
        fresh = False
    if not fresh:
        path = convert(converter, request)
    if read_manifest(path).parity is None:
        record_parity(path)
    return path


def open_session(
    target: str,
    variant: str,
    form: str,
    artifact: Path | None,
    threads: int | None,
    weights: str = "shipped",
    precision: str = "fp32",
    cache: Path = Path("artifacts/bench"),
) -> tuple[Session, float]:
    """The session to time and its load time; an artifact must have passed parity."""
    if target == "torch":
        if artifact is not None:
            raise ProjectError("--target torch runs the weights (--weights), not an --artifact")
        started = time.perf_counter()
        session = load_pytorch(variant, weights, form, threads=threads)
        return session, time.perf_counter() - started
    artifact, _ = checked_artifact(target, variant, precision, form, artifact, weights, cache)
    started = time.perf_counter()
    session = load(artifact, threads=threads)
    return session, time.perf_counter() - started


def checked_artifact(
    target: str,
    variant: str,
    precision: str,
    form: str,
    artifact: Path | None,
    weights: str = "shipped",
    cache: Path = Path("artifacts/bench"),
) -> tuple[Path, Manifest]:
    """The artifact to time (given, or converted and cached) if it is what was asked, is the
    file that passed parity, and passed it; refused otherwise. Not loaded: a phone's format
    may not run on this host."""
    if artifact is None:
        artifact = cached_artifact(target, variant, precision, form, weights, cache)
    artifact = Path(artifact)
    manifest = read_manifest(artifact)
    if manifest.target != target:
        raise ProjectError(f"{artifact} is an artifact for {manifest.target}, not {target}")
    if manifest.variant != variant or manifest.form != form:
        raise ProjectError(
            f"{artifact} is BaS-{manifest.variant} {manifest.form} form, "
            f"not BaS-{variant} {form} as asked"
        )
    if manifest.precision != precision:
        raise ProjectError(f"{artifact} is {manifest.precision}, not --precision {precision}")
    if manifest.parity is None:
        raise FailedParity(f"{artifact} has no parity record: run converters.parity on it first")
    if not manifest.parity.get("passed"):
        failures = "; ".join(manifest.parity.get("failures", [])) or "failed"
        raise FailedParity(f"{artifact} failed parity ({failures}): not timed")
    verify(artifact, manifest)  # the bytes timed are the bytes that passed parity
    return artifact, manifest


def timing_frames(size: int) -> list:
    """Held-out frames, pre-processed once, so only the runtime's call is timed."""
    return [to_input(image, size) for image, _ in render_video(TIMING_SEED, 0, 30)]


def timed_calls(
    session: Session, frames: list, count: int, start: int = 0, bar: tqdm | None = None
) -> list[float]:
    """``count`` calls of the session (state carried), each timed alone, in ms; the progress
    bar moves between calls, outside the timed interval."""
    latencies = []
    for i in range(start, start + count):
        frame = frames[i % len(frames)]
        started = time.perf_counter()
        session.infer(frame)
        latencies.append((time.perf_counter() - started) * 1000)
        if bar is not None:
            bar.update()
    return latencies


def progress(total: int, what: str) -> tqdm:
    """A progress bar on stderr, shown only on a terminal (as runtimes.segment's)."""
    return tqdm(total=total, unit="call", desc=what, disable=None, mininterval=0.5)


def measurement(
    session: Session, load_s: float, latencies: list[float], peak_rss: bool = True
) -> Measurement:
    """The figures of one session from its timed calls; ``peak_rss`` only when it ran alone."""
    manifest = session.manifest
    return Measurement(
        manifest=manifest,
        runtime=session.runtime,
        load_s=load_s,
        latency=summarise(latencies),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if peak_rss else None,
        size_mb=manifest.artifact.bytes / 1e6,
        gflop=network_gflop(manifest),
    )


def network_gflop(manifest: Manifest) -> float:
    """One frame's forward pass of the network the artifact holds, in GFLOP."""
    network = build_bas(manifest.variant, manifest.image_size, manifest.temporal_window)
    return describe(network).flops / 1e9


def measure(session: Session, load_s: float, warmup: int, iters: int) -> Measurement:
    """Time ``iters`` calls after ``warmup``, cycling through held-out frames."""
    frames = timing_frames(session.manifest.image_size)
    session.reset()
    with progress(warmup + iters, session.runtime) as bar:
        timed_calls(session, frames, warmup, bar=bar)
        latencies = timed_calls(session, frames, iters, warmup, bar)
    return measurement(session, load_s, latencies)


def to_records(result: Measurement, name: str, threads: int | None) -> list[BenchRecord]:
    """One record per figure, ExecuTorch-style."""
    m = result.manifest
    dice = ((m.parity or {}).get("masks_vs_pytorch") or {}).get("dice")
    host = machine()
    peak = Peak.of(host).gflops(cores_used(threads, int(host["cores"])))
    latency = result.latency
    figures = [
        ("median_latency", latency.median_ms, "ms"),
        ("mean_latency", latency.mean_ms, "ms"),
        ("trimmed_mean_latency", latency.trimmed_mean_ms, "ms"),
        ("p90_latency", latency.p90_ms, "ms"),
        ("p99_latency", latency.p99_ms, "ms"),
        ("min_latency", latency.min_ms, "ms"),
        ("max_latency", latency.max_ms, "ms"),
        ("fps", latency.fps, "fps"),
        ("achieved_gflops", result.gflop * latency.fps, "GFLOP/s"),
        ("fp32_peak_fraction", result.gflop * latency.fps / peak, "ratio"),
        ("model_load_time", result.load_s, "s"),
        ("artifact_size", result.size_mb, "MB"),
    ]
    if result.peak_rss_mb is not None:
        figures.append(("peak_rss", result.peak_rss_mb, "MB"))
    if dice is not None:
        figures.append(("mask_dice_vs_pytorch", float(dice), "dice"))
    return artifact_records(m, result.runtime, name, threads, figures + graph_figures(m))


def graph_figures(manifest: Manifest) -> list[tuple[str, float, str]]:
    """What a delegate would see in the file, from its manifest: float compute ops, Q/DQ ops
    and delegate partitions (where the converter could tell)."""
    graph = manifest.graph
    if graph is None:
        return []
    figures = [
        ("graph_ops", graph.ops, "ops"),
        ("float_compute_ops", graph.float_compute_ops, "ops"),
        ("quantize_ops", graph.quantize_ops, "ops"),
        ("dequantize_ops", graph.dequantize_ops, "ops"),
    ]
    if graph.partitions is not None:
        figures.append(("delegate_partitions", graph.partitions, "partitions"))
    return figures


def artifact_records(
    manifest: Manifest,
    runtime: str,
    name: str,
    threads: int | None,
    figures: list[tuple[str, float, str]],
    device: str | None = None,
    batch: int = 1,
    where: dict | None = None,
) -> list[BenchRecord]:
    """(metric, value, unit) figures of one artifact, measured on this host (or ``device``,
    described by ``where``: a GPU, a phone)."""
    host = machine() if where is None else where
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    parity = manifest.parity or {}
    eager = manifest.target == "pytorch"
    return [
        BenchRecord(
            name=name,
            target="torch" if eager else manifest.target,
            variant=manifest.variant,
            precision=manifest.precision,
            form=manifest.form,
            metric=metric,
            value=float(value),
            unit=unit,
            device=device or f"host: {host['cpu']}",
            timestamp=stamp,
            runtime=runtime,
            threads=threads,
            artifact_sha256=manifest.artifact.sha256,
            parity_passed=None if eager else bool(parity.get("passed")),
            machine=host,
            status="reference" if eager else "passed",
            batch=batch,
        )
        for metric, value, unit in figures
    ]
