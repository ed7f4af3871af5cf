"""Which converted artifact runs fastest here: time each on the same frames, print the winner.

    python -m runtimes.fastest DIR [--variant S] [--form stream] [--frames 12] [--threads N]

Only artifacts whose parity record passed are candidates, and only through runtimes that
can run here. Prints a Markdown table of median inference times to stderr and the fastest
artifact's path to stdout (``make demo`` segments its clip with it). A quick pick, not a
benchmark: device_bench is the place for latency figures.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from model.cli import Choice, command, frames_option, threads_option, variant_option
from model.data.synth import render_video
from model.errors import ProjectError

from . import load
from .manifest import ArtifactError, read_manifest
from .registry import get_backend

TIMING_SEED = 1  # held-out synthetic video
WARM_UP = 3


@dataclass(frozen=True)
class Timing:
    artifact: Path
    runtime: str
    precision: str
    median_ms: float


def candidates(folder: Path, variant: str, form: str) -> list[Path]:
    """Artifacts in ``folder`` of that variant and form that passed parity and can run here."""
    found = []
    for manifest_file in sorted(folder.glob("*.json")):
        artifact = manifest_file.with_suffix("")
        try:
            manifest = read_manifest(artifact)
        except ArtifactError:
            continue  # not a manifest (parity.json and the like)
        passed = manifest.parity is not None and manifest.parity.get("passed")
        runnable = get_backend(manifest.runtime).is_available()
        if manifest.variant == variant and manifest.form == form and passed and runnable:
            found.append(artifact)
    return found


def time_artifact(artifact: Path, frames: list[np.ndarray], threads: int | None) -> Timing:
    session = load(artifact, threads=threads)
    for frame in frames[:WARM_UP]:
        session.run(frame)
    session.reset()
    times = [session.run(frame).inference_ms for frame in frames]
    manifest = session.manifest
    return Timing(artifact, session.runtime, manifest.precision, statistics.median(times))


@command("python -m runtimes.fastest")
@click.argument("folder", type=click.Path(path_type=Path, exists=True, file_okay=False))
@variant_option()
@click.option("--form", type=Choice(("frame", "stream")), default="stream", show_default=True)
@frames_option(12, "Frames timed per artifact (after 3 warm-up frames).")
@threads_option
def main(folder: Path, variant: str, form: str, frames: int, threads: int | None) -> None:
    """Print the path of the fastest parity-passing artifact in FOLDER."""
    found = candidates(folder, variant, form)
    if not found:
        raise ProjectError(
            f"{folder}: no BaS-{variant} {form} artifact that passed parity and can run here"
        )
    images = [image for image, _ in render_video(TIMING_SEED, 0, frames)]
    timings = sorted((time_artifact(a, images, threads) for a in found), key=lambda t: t.median_ms)
    click.echo("| artifact | runtime | precision | median inference (ms) |", err=True)
    click.echo("|---|---|---|---|", err=True)
    for t in timings:
        click.echo(
            f"| {t.artifact.name} | {t.runtime} | {t.precision} | {t.median_ms:.1f} |", err=True
        )
    click.echo(timings[0].artifact)


if __name__ == "__main__":
    main()
