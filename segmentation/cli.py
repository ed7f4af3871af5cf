"""The segmentation command: recordings and archived studies in, masks and reports out.

    python -m segmentation --artifact PATH --input INPUT --out DIR [--threshold 0.5]
        [--every N] [--max-frames N] [--threads N] [--crop-to-region] [--store]
    python -m segmentation --input ARCHIVE --out DIR --workers N [--ray-address ADDR]
        [--threads-per-worker T] [...]

(``python -m runtimes.segment`` is the same command, kept for the scripts that call it.)

INPUT is a video file (mp4, avi, mov, ...), a folder of frame images, a dataset folder
(BUV, FLA-Net or plain layout; one output subfolder per video), a DICOM ultrasound file
(single- or multi-frame), a folder of DICOM files (a study export: one subfolder per
series or cine loop), or a DICOMweb study or series URL or study search: the ultrasound
series found there are retrieved one at a time and segmented as files would be, and with
``--store`` each loop's DICOM Segmentation and measurement report go back into its study.
Writes, per loop, what :mod:`segmentation.outputs` lists; where ground truth exists,
``metrics.json`` and ``metrics.md``; and ``summary.json``. Exit status: 0 when every loop
went through, 1 when some did not (each listed on a ``failed:`` line), 2 for an input or
option that cannot be used (one ``error:`` line, nothing written).

With ``--workers`` the loops are spread over Ray workers (:mod:`segmentation.archive`):
each loop's outputs in ``DIR/<loop>`` as soon as it is done, a re-run skipping those, and
``summary.json`` and ``summary.csv`` with a row per loop. Without it Ray is not imported.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import click

from model.cluster import cluster_address, ray_address_option, workers_option
from model.errors import ProjectError
from model.options import (
    PIPELINE_THREADS,
    command,
    default_threads,
    existing_path,
    out_option,
    runtime_option,
    threads_option_saying,
    variant_option,
)
from runtimes import load, load_pytorch
from runtimes.registry import RUNTIME_NAMES

from .archive import DONE_BEFORE, ArchiveTotals, run_archive
from .run import RunOptions, run_segment

PARTIAL_EXIT = 1  # some loops or outputs were not done; the rest was written


@command("python -m segmentation")
@click.option(
    "--artifact",
    type=existing_path,
    help="Converted artifact (its manifest beside it). Without it: PyTorch BaS, --weights.",
)
@variant_option()
@click.option(
    "--weights", default="shipped", show_default=True, help="PyTorch weights, without --artifact."
)
@runtime_option(RUNTIME_NAMES)
@click.option(
    "--input",
    "input_spec",
    required=True,
    help="Video file, folder of frames, dataset folder, DICOM file or folder of DICOM files, "
    "or a DICOMweb study or series URL or study search (http://HOST:PORT/ROOT/studies/UID, "
    "http://HOST:PORT/ROOT/studies?ModalitiesInStudy=US&StudyDate=20260101-).",
)
@out_option(help_text="Output folder: new, empty, or an earlier output of this command.")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.5,
    show_default=True,
    help="Lesion where the probability exceeds this.",
)
@click.option("--every", type=click.IntRange(min=1), default=1, help="Every N-th frame.")
@click.option("--max-frames", type=click.IntRange(min=1), help="At most N frames per video.")
@click.option(
    "--fps",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Frame rate of a folder of frames (videos carry their own).",
)
@click.option(
    "--crop-to-region",
    is_flag=True,
    help="Segment only the image region: the calibrated one a DICOM file states, else one "
    "detected where pixels change over time. Default: the whole frame, as a device runs it.",
)
@click.option(
    "--store",
    is_flag=True,
    help="With a DICOMweb --input: store each loop's DICOM Segmentation and measurement "
    "report into its study on the same server (STOW-RS).",
)
@threads_option_saying(PIPELINE_THREADS)
@workers_option
@ray_address_option
@click.option(
    "--threads-per-worker",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="With --workers: inference threads (and CPUs reserved) per worker.",
)
def main(
    artifact: Path | None,
    variant: str,
    weights: str,
    runtime: str | None,
    input_spec: str,
    out: Path,
    threshold: float,
    every: int,
    max_frames: int | None,
    fps: float,
    crop_to_region: bool,
    store: bool,
    threads: int | None,
    workers: int | None,
    ray_address: str | None,
    threads_per_worker: int,
) -> None:
    """Segment recordings or archived studies with BaS through any runtime; write masks,
    overlay video, CSV, plots, and for DICOM a Segmentation and a measurement report."""
    if artifact is None:
        if runtime not in (None, "pytorch"):
            raise ProjectError(f"--runtime {runtime} needs --artifact (without it, PyTorch runs)")
        open_session = partial(load_pytorch, variant, weights, "stream")
    else:
        open_session = partial(load, artifact, runtime=runtime)
    options = RunOptions(threshold, every, max_frames, crop_to_region)
    if workers is not None:
        if store:
            raise ProjectError("--store runs without --workers (results go back one at a time)")
        if threads is not None:
            raise ProjectError("--threads with --workers: use --threads-per-worker")
        address = cluster_address(ray_address)
        archived = run_archive(
            open_session, input_spec, out, workers, options, fps, threads_per_worker, address
        )
        _report_archive(archived, workers, out)
        return
    if ray_address is not None:
        raise ProjectError("--ray-address needs --workers")
    session = open_session(threads=threads or default_threads())
    manifest = session.manifest
    if manifest.form == "frame":
        click.echo("note: frame-form artifact: each frame runs alone (no temporal state)", err=True)
    totals = run_segment(session, input_spec, out, options, fps, store)
    _warn(totals.warnings, "frames.csv")
    click.echo(
        f"BaS-{manifest.variant} {manifest.form} {manifest.precision} via {session.runtime}: "
        f"{totals.segmented} frames segmented, {totals.skipped} skipped; "
        f"end-to-end {totals.end_to_end_fps:.1f} FPS, inference {totals.inference_fps:.1f} FPS; "
        f"{f'stored {totals.stored} DICOM objects; ' if store else ''}wrote {out}"
    )
    _exit_if_failed(totals.failed)


def _warn(warnings: list[str], listed_in: str) -> None:
    """The first ten warnings, and how many more ``listed_in`` holds."""
    for warning in warnings[:10]:
        click.echo(f"warning: {warning}", err=True)
    if len(warnings) > 10:
        click.echo(f"warning: ... and {len(warnings) - 10} more ({listed_in})", err=True)


def _exit_if_failed(failed: list[str]) -> None:
    """A ``failed:`` line for each loop or output not done; then exit status 1."""
    for failure in failed:
        click.echo(f"failed: {failure}", err=True)
    if failed:
        raise SystemExit(PARTIAL_EXIT)


def _report_archive(totals: ArchiveTotals, workers: int, out: Path) -> None:
    """The archive run's warnings, one line of totals, and a line per loop that failed."""
    _warn(totals.warnings, "summary.json")
    model, done, loops_s = totals.model, totals.done, totals.loops_s
    if model["form"] == "frame":
        click.echo("note: frame-form artifact: each frame runs alone (no temporal state)", err=True)
    before = sum(row.status == DONE_BEFORE for row in totals.rows)
    rate = (
        f"{len(done) * 60 / loops_s:.1f} loops a minute, {totals.frames / loops_s:.1f} frames a "
        "second end to end; "
        if loops_s
        else ""
    )
    click.echo(
        f"BaS-{model['variant']} {model['form']} {model['precision']} via {model['runtime']}: "
        f"{len(done)} loops segmented ({totals.frames} frames) on {workers} "
        f"workers, {before} done before, {len(totals.failed)} failed or incomplete; {rate}"
        f"wrote {out} (summary.csv)"
    )
    _exit_if_failed(totals.failed)
