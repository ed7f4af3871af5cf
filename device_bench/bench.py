"""Time one BaS session on this host: load time, per-call latency, peak memory.

The artifact is opened through ``runtimes`` (the code users run), its parity record is
checked first, and only the runtime's call is timed, on held-out frames pre-processed
beforehand, the stream form carrying its state as a device would.
"""

from __future__ import annotations

import functools
import platform
import resource
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from converters.build import convert, converter_digest
from converters.parity import record_parity
from converters.registry import get_target
from converters.spec import ConvertRequest
from model.checkpoint import sha256
from model.data.synth import HELD_OUT_SEED, render_video
from model.errors import ProjectError
from model.host import cores_available, cpu_model
from model.hub import build_bas, resolve_weights
from model.info import describe
from model.provenance import library_versions
from runtimes import load, load_pytorch
from runtimes.manifest import Manifest, read_manifest, verify
from runtimes.session import Session, to_input
from runtimes.targets import Status, get_target_spec
from runtimes.timing import LatencyStats, summarise, time_calls, timed_call

from .peak import Peak, cores_used, measure_peak
from .records import RUNTIME_LIBRARIES, BenchRecord

HOST_PYTORCH_PRECISIONS = ("fp32",)  # PyTorch eager is timed on a CPU in fp32 only
Figure = tuple[str, float, str]  # metric, value, unit


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
    return {
        "cpu": cpu_model(),
        "cores": cores_available(),
        **asdict(measure_peak()),
        "os": platform.platform(),
        "python": platform.python_version(),
        **library_versions(RUNTIME_LIBRARIES),
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB: ``ru_maxrss`` is in KiB on Linux and in
    bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def cached_artifact(
    target: str, variant: str, precision: str, form: str, weights: str, cache: Path
) -> Path:
    """The artifact for these inputs: reused from ``cache`` when built from the same weights
    by the same converter code and tools (its manifest says so), else converted there; its
    parity measured once."""
    converter = get_target(target)
    request = ConvertRequest(variant, weights, precision, form, out=cache)
    path = Path(cache) / f"{request.stem}{converter.suffix}"
    wanted = sha256(resolve_weights(variant, weights))
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
    if not get_target_spec(target).converts:
        if artifact is not None:
            raise ProjectError(f"--target {target} runs the weights (--weights), not an --artifact")
        return timed_load(lambda: load_pytorch(variant, weights, form, threads=threads))
    artifact, _ = checked_artifact(target, variant, precision, form, artifact, weights, cache)
    return timed_load(lambda: load(artifact, threads=threads))


def timed_load(opener: Callable[[], Session]) -> tuple[Session, float]:
    """The session ``opener()`` returns and its load time in seconds."""
    session, load_ms = timed_call(opener)
    return session, load_ms / 1000


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
    if not manifest.parity.passed:
        failures = "; ".join(manifest.parity.failures) or "failed"
        raise FailedParity(f"{artifact} failed parity ({failures}): not timed")
    verify(artifact, manifest)  # the bytes timed are the bytes that passed parity
    return artifact, manifest


def timing_frames(manifest: Manifest) -> list:
    """Held-out frames, pre-processed once as the artifact asks, so only the runtime's call
    is timed."""
    size, preprocessing = manifest.image_size, manifest.preprocessing
    return [to_input(image, size, preprocessing) for image, _ in render_video(HELD_OUT_SEED, 0, 30)]


def time_session(
    session: Session,
    frames: list,
    iters: int,
    warmup: int = 0,
    start: int = 0,
    bar: tqdm | None = None,
) -> list[float]:
    """ms of ``iters`` calls of the session after ``warmup`` (state carried), cycling through
    ``frames`` from index ``start``; the progress bar moves outside the timed interval."""
    return time_calls(
        lambda index: session.infer(frames[index % len(frames)]),
        iters,
        warmup,
        start,
        after_each=bar.update if bar is not None else lambda: None,
    )


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
        peak_rss_mb=peak_rss_mb() if peak_rss else None,
        size_mb=manifest.artifact.bytes / 1e6,
        gflop=network_gflop(manifest),
    )


def network_gflop(manifest: Manifest) -> float:
    """One frame's forward pass of the network the artifact holds, in GFLOP."""
    network = build_bas(manifest.variant, manifest.image_size, manifest.temporal_window)
    return describe(network).flops / 1e9


def measure(session: Session, load_s: float, warmup: int, iters: int) -> Measurement:
    """Time ``iters`` calls after ``warmup``, cycling through held-out frames."""
    frames = timing_frames(session.manifest)
    session.reset()
    with progress(warmup + iters, session.runtime) as bar:
        latencies = time_session(session, frames, iters, warmup, bar=bar)
    return measurement(session, load_s, latencies)


# The latency figures of every record, in record order: ``<name>_latency`` from ``<name>_ms``
# of a summary (host and GPU: ``LatencyStats``; phones: what their tool reported).
LATENCY_FIGURES = ("median", "mean", "trimmed_mean", "p90", "p95", "p99", "min", "max", "std")


def latency_figures(latency: object) -> list[Figure]:
    """Each latency figure that ``latency`` (a summary) holds, in ms."""
    found = ((name, getattr(latency, f"{name}_ms", None)) for name in LATENCY_FIGURES)
    return [(f"{name}_latency", value, "ms") for name, value in found if value is not None]


def host_latency_figures(latency: LatencyStats, batch: int = 1) -> list[Figure]:
    """Latency per call, and frames per second counting every frame of a batch."""
    return [*latency_figures(latency), ("fps", batch * latency.fps, "fps")]


def to_records(result: Measurement, name: str, threads: int | None) -> list[BenchRecord]:
    """One record per figure, ExecuTorch-style."""
    m = result.manifest
    dice = None if m.parity is None else m.parity.masks_vs_pytorch.dice
    host = machine()
    peak = Peak.of(host).gflops(cores_used(threads, int(host["cores"])))
    achieved = result.gflop * result.latency.fps
    figures = host_latency_figures(result.latency) + [
        ("achieved_gflops", achieved, "GFLOP/s"),
        ("fp32_peak_fraction", achieved / peak, "ratio"),
        ("model_load_time", result.load_s, "s"),
        ("artifact_size", result.size_mb, "MB"),
    ]
    if result.peak_rss_mb is not None:
        figures.append(("peak_rss", result.peak_rss_mb, "MB"))
    if dice is not None:
        figures.append(("mask_dice_vs_pytorch", float(dice), "dice"))
    return artifact_records(m, result.runtime, name, threads, figures + graph_figures(m))


def graph_figures(manifest: Manifest) -> list[Figure]:
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
    figures: list[Figure],
    device: str | None = None,
    batch: int = 1,
    where: dict | None = None,
) -> list[BenchRecord]:
    """(metric, value, unit) figures of one artifact, measured on this host (or ``device``,
    described by ``where``: a GPU, a phone)."""
    host = machine() if where is None else where
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    eager = not get_target_spec(manifest.target).converts
    passed = manifest.parity is not None and manifest.parity.passed
    return [
        BenchRecord(
            name=name,
            target=manifest.target,
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
            parity_passed=None if eager else passed,
            machine=host,
            status=Status.REFERENCE if eager else Status.PASSED,
            batch=batch,
        )
        for metric, value, unit in figures
    ]
