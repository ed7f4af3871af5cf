"""``device_bench``: time BaS per target and precision on this host, and report the figures.

device_bench run --target tflite [--variant S] [--precision fp32] [--form frame]
device_bench report [reports/bench/results.jsonl]
"""

from __future__ import annotations

from pathlib import Path

import click

from model.cli import (
    Choice,
    ProjectCommand,
    form_option,
    list_option,
    threads_option,
    variant_option,
    weights_option,
)

from .bench import measure, open_session, to_records
from .records import RESULTS, append_records, read_records
from .report import chart as draw_chart
from .report import markdown
from .sweep import run_sweep, status_record, sweep_cells

TARGETS = ("torch", "onnx", "tflite", "coreml", "executorch")

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


@click.group(cls=_Group, name="device_bench")
def main() -> None:
    """Latency, FPS and memory of BaS per target and precision (timed through runtimes)."""


@main.command("run")
@click.option("--target", type=Choice(TARGETS), required=True)
@variant_option()
@click.option("--precision", type=Choice(("fp32", "fp16", "int8")), default="fp32")
@form_option(("frame", "stream"))
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
) -> None:
    """Time one target on this host; append one record per figure to --results."""
    if target == "torch" and precision != "fp32":
        raise click.UsageError("--target torch runs fp32 only")
    if results.exists() and not results.is_file():
        raise click.UsageError(f"--results {results} is not a file")
    session, load_s = open_session(
        target, variant, form, artifact, threads, weights, precision, cache
    )
    if session.manifest.precision != precision:
        raise click.UsageError(
            f"the artifact is {session.manifest.precision}, not --precision {precision}"
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
@list_option("--targets", TARGETS, "Targets.")
@list_option("--variants", ("S", "L"), "BaS variants.")
@list_option("--precisions", ("fp32", "fp16", "int8"), "Precisions.")
@list_option("--forms", ("frame", "stream"), "Forms.")
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
    for cell, status, reason in refused:
        click.echo(f"not timed ({status}): {' '.join(cell)}: {reason}", err=True)
    if not timed:
        raise click.UsageError("no cell could be timed here")
    records = [r for name, result in timed for r in to_records(result, name, threads)]
    records += [status_record(cell, status, note, threads) for cell, status, note in refused]
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
def report(results: Path, chart: Path | None) -> None:
    """A Markdown table of the latest figures per artifact and runtime in RESULTS, and a chart."""
    records = read_records(results)
    click.echo(markdown(records))
    chart = chart or results.with_name("fps.png")
    if chart.exists() and not chart.is_file():
        raise click.UsageError(f"--chart {chart} is not a file")
    draw_chart(records, chart)
    click.echo(f"\nchart: {chart}")


if __name__ == "__main__":
    main()
