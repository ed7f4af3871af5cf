"""Which converted artifact runs fastest here: time each on the same frames, print the winner.

    python -m runtimes.fastest DIR [--variant S] [--form stream] [--frames 12] [--threads N]

Only artifacts whose parity record passed are candidates, and only through runtimes that
can run here: each artifact of the variant and form asked for that is left out is named on
stderr with the reason (``left out: NAME: reason``). Each runtime is timed at the thread
count ``segmentation`` runs with by default (``--threads`` for another), so that the pick
is the fastest for the run that follows. Prints a Markdown table of median inference
times to stderr and the fastest artifact's path to stdout (``make demo`` segments its clip
with it). A quick pick, not a benchmark: device_bench is the place for latency figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from model.data.synth import HELD_OUT_SEED, render_video
from model.errors import ProjectError, one_line
from model.forms import EXPORT_FORMS
from model.options import (
    PIPELINE_THREADS,
    Choice,
    command,
    default_threads,
    frames_option,
    threads_option_saying,
    variant_option,
)
from model.tables import markdown_table

from . import load
from .manifest import ArtifactError, read_manifest
from .registry import get_backend
from .session import to_input
from .targets import TARGETS
from .timing import summarise, time_calls

WARM_UP = 3


@dataclass(frozen=True)
class Timing:
    artifact: Path
    runtime: str
    precision: str
    median_ms: float


@dataclass(frozen=True)
class LeftOut:
    artifact: Path
    reason: str

    @property
    def line(self) -> str:
        return f"left out: {self.artifact.name}: {self.reason}"


def _is_manifest(path: Path) -> bool:
    """A JSON file beside its artifact, or named as one's manifest (``X.onnx.json``): not
    parity.json or another report that shares the folder."""
    artifact = path.with_suffix("")
    return artifact.exists() or any(spec.suffix == artifact.suffix for spec in TARGETS.values())


def candidates(folder: Path, variant: str, form: str) -> tuple[list[Path], list[LeftOut]]:
    """Artifacts in ``folder`` of that variant and form that passed parity and can run here,
    and those that did not, each with why (a manifest that cannot be read: of any variant)."""
    found, left_out = [], []
    for manifest_file in sorted(p for p in folder.glob("*.json") if _is_manifest(p)):
        artifact = manifest_file.with_suffix("")
        try:
            manifest = read_manifest(artifact)
            backend = get_backend(manifest.runtime)
        except ArtifactError as err:
            left_out.append(LeftOut(artifact, one_line(err)))
            continue
        if manifest.variant != variant or manifest.form != form:
            continue
        if not artifact.exists():
            left_out.append(LeftOut(artifact, f"not found beside its manifest {manifest_file}"))
        elif manifest.parity is None:
            left_out.append(LeftOut(artifact, "no parity record (python -m converters.parity)"))
        elif not manifest.parity.passed:
            failures = "; ".join(manifest.parity.failures) or "no figure recorded"
            left_out.append(LeftOut(artifact, f"parity failed: {failures}"))
        elif not backend.is_available():
            reason = f"{manifest.runtime} {backend.unavailable_reason()}"
            left_out.append(LeftOut(artifact, f"its runtime cannot run here: {reason}"))
        else:
            found.append(artifact)
    return found, left_out


def time_artifact(artifact: Path, frames: list[np.ndarray], threads: int) -> Timing:
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
@threads_option_saying(f"as python -m segmentation runs, {PIPELINE_THREADS}")
def main(folder: Path, variant: str, form: str, frames: int, threads: int | None) -> None:
    """Print the path of the fastest parity-passing artifact in FOLDER."""
    threads = threads or default_threads()
    found, left_out = candidates(folder, variant, form)
    for entry in left_out:
        click.echo(entry.line, err=True)
    images = [image for image, _ in render_video(HELD_OUT_SEED, 0, frames)] if found else []
    timings = []
    for artifact in found:
        try:
            timings.append(time_artifact(artifact, images, threads))
        except ArtifactError as err:  # not the file its manifest describes, and the like
            click.echo(LeftOut(artifact, one_line(err)).line, err=True)
    if not timings:
        raise ProjectError(
            f"{folder}: no BaS-{variant} {form} artifact that passed parity and can run here"
        )
    timings.sort(key=lambda t: t.median_ms)
    median = f"median inference, {threads} thread{'s' if threads > 1 else ''} (ms)"
    rows = [(t.artifact.name, t.runtime, t.precision, f"{t.median_ms:.1f}") for t in timings]
    click.echo(markdown_table(("artifact", "runtime", "precision", median), rows), err=True)
    click.echo(timings[0].artifact)


if __name__ == "__main__":
    main()
