"""Which converted artifact runs fastest here: time each on the same frames, print the winner.

    python -m runtimes.fastest DIR [--variant S] [--form stream] [--frames 12] [--threads N]

Only artifacts whose parity record passed are candidates, and only through runtimes that
can run here. Prints a Markdown table of median inference times to stderr and the fastest
artifact's path to stdout (``make demo`` segments its clip with it). A quick pick, not a
benchmark: device_bench is the place for latency figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from model.data.synth import HELD_OUT_SEED, render_video
from model.errors import ProjectError
from model.forms import EXPORT_FORMS
from model.options import Choice, command, frames_option, threads_option, variant_option
from model.tables import markdown_table

from . import load
from .manifest import ArtifactError, read_manifest
from .registry import get_backend
from .session import to_input
from .timing import summarise, time_calls

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
        passed = manifest.parity is not None and manifest.parity.passed
        runnable = get_backend(manifest.runtime).is_available()
        if manifest.variant == variant and manifest.form == form and passed and runnable:
            found.append(artifact)
    return found


def time_artifact(artifact: Path, frames: list[np.ndarray], threads: int | None) -> Timing:
    """The median of the runtime's call over ``frames`` (pre-processed first, as
    ``Session.run`` times it), after up to WARM_UP untimed frames and a fresh state."""
    session = load(artifact, threads=threads)
    manifest = session.manifest
    inputs = [to_input(frame, manifest.image_size, manifest.preprocessing) for frame in frames]
    time_calls(lambda i: session.infer(inputs[i]), 0, min(WARM_UP, len(inputs)))
    session.reset()
    times = time_calls(lambda i: session.infer(inputs[i]), len(inputs))
    median = summarise(times).median_ms
    return Timing(artifact, session.runtime, session.manifest.precision, median)


@command("python -m runtimes.fastest")
@click.argument("folder", type=click.Path(path_type=Path, exists=True, file_okay=False))
@variant_option()
@click.option("--form", type=Choice(EXPORT_FORMS), default="stream", show_default=True)
@frames_option(12, "Frames timed per artifact (after 3 warm-up frames).")
@threads_option
def main(folder: Path, variant: str, form: str, frames: int, threads: int | None) -> None:
    """Print the path of the fastest parity-passing artifact in FOLDER."""
    found = candidates(folder, variant, form)
    if not found:
        raise ProjectError(
            f"{folder}: no BaS-{variant} {form} artifact that passed parity and can run here"
        )
    images = [image for image, _ in render_video(HELD_OUT_SEED, 0, frames)]
    timings = sorted((time_artifact(a, images, threads) for a in found), key=lambda t: t.median_ms)
    header = ("artifact", "runtime", "precision", "median inference (ms)")
    rows = [(t.artifact.name, t.runtime, t.precision, f"{t.median_ms:.1f}") for t in timings]
    click.echo(markdown_table(header, rows), err=True)
    click.echo(timings[0].artifact)


if __name__ == "__main__":
    main()
