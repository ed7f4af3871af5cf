"""``device_bench``: time BaS per target and precision on this host, and report the figures.

device_bench run --target tflite [--variant S] [--precision fp32] [--form frame]
device_bench report [reports/bench/results.jsonl]
device_bench archive [--loops 16] [--frames 60] [--nodes 1 --nodes 4] [--cores 16]
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import click

from model.config import VARIANTS
from model.forms import EXPORT_FORMS
from model.options import (
    Choice,
    ProjectCommand,
    form_option,
    list_option,
    threads_option,
    variant_option,
    weights_option,
)
from runtimes import load, load_pytorch
from runtimes.manifest import read_manifest
from runtimes.targets import PRECISIONS, TARGETS, get_target_spec
from segmentation.sources import open_input, opened_sources

from .android import DELEGATES
from .bench import HOST_PYTORCH_PRECISIONS, artifact_records, measure, open_session, to_records
from .devices import DeviceType, run_on_device
from .golden import export_bundle
from .loop_bench import bench_loop
from .loop_bench import table as loop_table
from .node_load import file_path_seconds, run_load
from .phone import Device, PhoneOptions, RunRequest
from .records import RESULTS, TARGET_ALIASES, append_records, read_records
from .report import chart as draw_chart
from .report import markdown
from .scaling import run_scaling, scaling_report
from .sustained import DRIFT_WINDOW, MIN_FRAMES, plot_latency, sustained
from .sweep import run_sweep, status_record, sweep_cells


def target_alias(token: str) -> str:
    """A target's older name as the table names it (``--target torch`` is ``pytorch``)."""
    return TARGET_ALIASES.get(token.lower(), token)


warmup_option = click.option(
    "--warmup", type=click.IntRange(min=0), default=10, show_default=True, help="Untimed calls."
)
iters_option = click.option(
    "--iters", type=click.IntRange(min=1), default=100, show_default=True, help="Timed calls."
)
cache_option = click.option(
    "--cache",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("artifacts/bench"),
    show_default=True,
    help="Where converted artifacts are kept and reused.",
)
results_option = click.option(
    "--results",
    type=click.Path(path_type=Path, dir_okay=False),
    default=RESULTS,
    show_default=True,
    help="JSON-lines file the records are appended to.",
)


class _Group(click.Group):
    command_class = ProjectCommand


@click.group(
    cls=_Group, name="device_bench", context_settings={"token_normalize_func": target_alias}
)
def main() -> None:
    """Latency, FPS and memory of BaS per target and precision (timed through runtimes)."""


@main.command("run")
@click.option("--target", type=Choice(tuple(TARGETS)), required=True)
@variant_option()
@click.option("--precision", type=Choice(PRECISIONS), default="fp32")
@form_option(EXPORT_FORMS)
@threads_option
@warmup_option
@iters_option
@click.option(
    "--artifact",
    type=click.Path(path_type=Path, exists=True),
    help="A converted artifact (with a passed parity record); default: convert, cached.",
)
@weights_option
@cache_option
@results_option
@click.option(
    "--device",
    type=DeviceType(),
    default="host",
    show_default=True,
    help="host, cuda, android:SERIAL (adb) or ios:UDID (macOS with Xcode).",
)
@click.option(
    "--delegate",
    type=Choice(DELEGATES),
    default="xnnpack",
    show_default=True,
    help="android .tflite: benchmark_model's delegate.",
)
@click.option("--tool", help="android: the benchmark binary's path on the phone.")
@click.option(
    "--golden",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="android: a `device_bench golden` bundle to score the phone's masks with.",
)
def run(
    target: str,
    variant: str,
    precision: str,
    form: str,
    threads: int | None,
    warmup: int,
    iters: int,
    artifact: Path | None,
    weights: str,
    cache: Path,
    results: Path,
    device: Device,
    delegate: str,
    tool: str | None,
    golden: Path | None,
) -> None:
    """Time one target on this host (or --device); append one record per figure to --results."""
    spec = get_target_spec(target)
    allowed = spec.precisions if device.kind == "cuda" else HOST_PYTORCH_PRECISIONS
    if not spec.converts and precision not in allowed:
        raise click.UsageError(f"--target {target} runs {' or '.join(allowed)} only on {device}")
    if results.exists() and not results.is_file():
        raise click.UsageError(f"--results {results} is not a file")
    options = PhoneOptions(delegate, tool, golden)
    if device.kind != "host" or options.given():
        request = RunRequest(
            target, variant, precision, form, threads, warmup, iters, artifact, weights, cache
        )
        click.echo(run_on_device(device, request, results, options))
        return
    session, load_s = open_session(
        target, variant, form, artifact, threads, weights, precision, cache
    )
    result = measure(session, load_s, warmup, iters)
    name = Path(session.manifest.artifact.file).name
    append_records(results, to_records(result, name, threads))
    latency = result.latency
    click.echo(
        f"{target} BaS-{variant} {precision} {form} via {result.runtime}: median "
        f"{latency.median_ms:.2f} ms, p90 {latency.p90_ms:.2f} ms, {latency.fps:.1f} FPS, "
        f"load {result.load_s:.2f} s, peak RSS {result.peak_rss_mb or 0:.0f} MB; "
        f"{iters} iterations; appended to {results}"
    )


@main.command("sweep")
@list_option("--targets", tuple(TARGETS), "Targets.")
@list_option("--variants", tuple(VARIANTS), "BaS variants.")
@list_option("--precisions", PRECISIONS, "Precisions.")
@list_option("--forms", EXPORT_FORMS, "Forms.")
@threads_option
@warmup_option
@iters_option
@click.option("--rounds", type=click.IntRange(min=1), default=5, show_default=True)
@weights_option
@cache_option
@results_option
def sweep(
    targets: list[str],
    variants: list[str],
    precisions: list[str],
    forms: list[str],
    threads: int | None,
    warmup: int,
    iters: int,
    rounds: int,
    weights: str,
    cache: Path,
    results: Path,
) -> None:
    """Every cell available here in one process, timed in interleaved rounds (drift hits all).

    Cells whose artifact failed parity are listed and not timed.
    """
    cells = sweep_cells(targets, variants, precisions, forms)
    timed, refused = run_sweep(cells, threads, warmup, iters, rounds, weights, cache)
    for not_timed in refused:
        cell = not_timed.cell
        click.echo(f"not timed ({not_timed.status}): {cell.label}: {not_timed.reason}", err=True)
    if not timed:
        raise click.UsageError("no cell could be timed here")
    records = [r for name, result in timed for r in to_records(result, name, threads)]
    records += [status_record(not_timed, threads) for not_timed in refused]
    append_records(results, records)
    click.echo(markdown(records))


@main.command("report")
@click.argument(
    "results", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=RESULTS
)
@click.option(
    "--chart",
    type=click.Path(path_type=Path, dir_okay=False),
    help="PNG of FPS per target and precision, S beside L  [default: fps.png beside RESULTS]",
)
@click.option("--short", is_flag=True, help="Only latency, FPS, speed-up and Dice columns.")
def report(results: Path, chart: Path | None, short: bool) -> None:
    """A Markdown table of the latest figures per artifact and runtime in RESULTS, and a chart."""
    records = read_records(results)
    click.echo(markdown(records, short))
    chart = chart or results.with_name("fps.png")
    draw_chart(records, chart)
    click.echo(f"\nchart: {chart}")


@main.command("node-load")
@click.option("--node", required=True, help="The node under load, AE@HOST:PORT.")
@click.option("--results-root", required=True, help="DICOMweb root of the node's destination.")
@click.option(
    "--input",
    "template",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    required=True,
    help="One DICOM ultrasound loop; each pushed copy is a study of its own.",
)
@click.option("--loops", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--associations", type=click.IntRange(1, 64), default=8, show_default=True)
@click.option(
    "--timeout", "timeout_s", type=click.FloatRange(min=1), default=600.0, show_default=True
)
@click.option(
    "--artifact",
    type=click.Path(path_type=Path, exists=True),
    help="The node's artifact: the file path's time on the loop is measured with it first.",
)
@threads_option
def node_load(
    node: str,
    results_root: str,
    template: Path,
    loops: int,
    associations: int,
    timeout_s: float,
    artifact: Path | None,
    threads: int | None,
) -> None:
    """A DICOM node under load: copies of a loop pushed over concurrent associations, each
    followed to its SEG and SR at the destination; with --artifact, the file path first."""
    if artifact is not None:
        session = load(artifact, threads=threads)
        seconds = file_path_seconds(session, template)
        click.echo(f"file path, same loop, {session.runtime}: {seconds:.2f} s")
    single = run_load(node, results_root, template, 1, 1, timeout_s)
    click.echo(f"one loop alone: {single.summary()}")
    loaded = run_load(node, results_root, template, loops, associations, timeout_s)
    click.echo(f"under load: {loaded.summary()}")
    if len(loaded.complete) != loops or len(single.complete) != 1:
        raise SystemExit(1)


@main.command("archive")
@click.option(
    "--artifact",
    type=click.Path(path_type=Path, exists=True),
    help="A converted artifact  [default: PyTorch, stream form]",
)
@variant_option()
@weights_option
@click.option("--loops", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--frames", type=click.IntRange(min=1), default=60, show_default=True)
@click.option(
    "--nodes",
    "nodes",
    type=click.IntRange(min=1),
    multiple=True,
    default=(1, 2, 4, 8),
    show_default=True,
    help="Cluster sizes to project to (repeat).",
)
@click.option(
    "--cores", type=click.IntRange(min=1), default=16, show_default=True, help="Cores a node."
)
@click.option(
    "--archive-loops",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Loops in the projected archive (each as long as the measured ones).",
)
def archive(
    artifact: Path | None,
    variant: str,
    weights: str,
    loops: int,
    frames: int,
    nodes: tuple[int, ...],
    cores: int,
    archive_loops: int,
) -> None:
    """An archive's scaling: synthetic loops segmented without Ray, then by 1 and by 2
    embedded Ray workers of 1 thread; Ray's costs, and the projection to a cluster."""
    if artifact is None:
        open_session = partial(load_pytorch, variant, weights, "stream")
    else:
        open_session = partial(load, artifact)
    scaling = run_scaling(open_session, loops, frames)
    click.echo(scaling_report(scaling, archive_loops, list(nodes), cores))


@main.command("loop")
@click.option("--artifact", type=click.Path(path_type=Path, exists=True), required=True)
@click.option(
    "--input",
    "input_spec",
    required=True,
    help="Any input the segmentation command reads (a video, DICOM, a study URL).",
)
@click.option("--rounds", type=click.IntRange(1, 20), default=3, show_default=True)
@threads_option
def loop(artifact: Path, input_spec: str, rounds: int, threads: int | None) -> None:
    """The segmentation command's own run of an input, its stages in line against
    overlapped: end-to-end and inference-only FPS, and where the time went."""
    session = load(artifact, threads=threads)
    figures = bench_loop(session, input_spec, rounds)
    click.echo(f"{artifact.name} via {session.runtime}, {rounds} rounds each, medians:")
    click.echo(loop_table(figures))


@main.command("video")
@click.option(
    "--artifact",
    type=click.Path(path_type=Path, exists=True),
    help="A converted artifact with a passed parity record  [default: PyTorch, stream form]",
)
@click.option(
    "--input",
    "input_spec",
    required=True,
    help="Any input the segmentation command reads: a video, a folder of frames, a dataset, "
    "DICOM files, or a DICOMweb study, series or search URL.",
)
@click.option(
    "--frames",
    type=click.IntRange(min=MIN_FRAMES),
    default=MIN_FRAMES,
    show_default=True,
    help="Frames to run; the video is looped (fresh state each pass) until reached.",
)
@variant_option()
@weights_option
@threads_option
@results_option
@click.option(
    "--plot",
    type=click.Path(path_type=Path, dir_okay=False),
    help="PNG of latency over time  [default: <artifact>_video.png beside --results]",
)
def video(
    artifact: Path | None,
    input_spec: str,
    frames: int,
    variant: str,
    weights: str,
    threads: int | None,
    results: Path,
    plot: Path | None,
) -> None:
    """Sustained FPS over a video through the segmentation command's path, and its drift."""
    if results.exists() and not results.is_file():
        raise click.UsageError(f"--results {results} is not a file")
    opened = open_input(input_spec)
    if artifact is None:
        session, _ = open_session("pytorch", variant, "stream", None, threads, weights)
    else:
        manifest = read_manifest(artifact)
        session, _ = open_session(
            manifest.target,
            manifest.variant,
            manifest.form,
            artifact,
            threads,
            precision=manifest.precision,
        )
    manifest = session.manifest
    name = Path(manifest.artifact.file).name
    plot = plot or results.with_name(f"{Path(name).stem}_video.png")
    with opened_sources(opened) as sources:
        timed = sustained(session, sources, frames)
    stats = timed.stats()
    figures = [
        ("sustained_fps", timed.sustained_fps, "fps"),
        ("video_frame_median_latency", stats["frame"].median_ms, "ms"),
        ("video_frame_p90_latency", stats["frame"].p90_ms, "ms"),
        ("video_inference_median_latency", stats["inference"].median_ms, "ms"),
        ("video_decode_median_latency", stats["decode"].median_ms, "ms"),
        ("video_drift", timed.drift, "ratio"),
        ("video_frames", float(timed.frames), "frames"),
    ]
    title = (
        f"BaS-{manifest.variant} {manifest.form} {manifest.precision} via {session.runtime}, "
        f"{timed.frames} frames of {opened.name}"
    )
    plot_latency(plot, timed, title)
    append_records(results, artifact_records(manifest, session.runtime, name, threads, figures))
    click.echo(
        f"{title}: sustained {timed.sustained_fps:.1f} FPS; per frame median "
        f"{stats['frame'].median_ms:.2f} ms (inference {stats['inference'].median_ms:.2f}, "
        f"decode {stats['decode'].median_ms:.2f}); drift x{timed.drift:.2f} (last "
        f"{min(DRIFT_WINDOW, timed.frames // 3)} frames vs first); plot {plot}; "
        f"appended to {results}"
    )


@main.command("golden")
@click.option(
    "--artifact",
    type=click.Path(path_type=Path, exists=True),
    required=True,
    help="The converted artifact the bundle is for.",
)
@click.option(
    "--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="Folder."
)
@click.option(
    "--frames", type=click.IntRange(min=1), default=8, show_default=True, help="Held-out frames."
)
@click.option("--weights", default=None, help="The artifact's weights  [default: its manifest's]")
def golden(artifact: Path, out: Path, frames: int, weights: str | None) -> None:
    """Frames pre-processed as the artifact takes them (raw files a phone's tool reads) and
    PyTorch's masks for them, to score the phone's outputs (--golden)."""
    written = export_bundle(artifact, out, frames, weights)
    click.echo(f"golden bundle of {frames} frames for {artifact.name}: {written}")


if __name__ == "__main__":
    main()
