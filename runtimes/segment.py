"""Segment a real recording with a converted BaS (or PyTorch BaS) and write what it found.

    python -m runtimes.segment --artifact PATH --input INPUT --out DIR [--threshold 0.5]
        [--every N] [--max-frames N] [--threads N]

INPUT is a video file (mp4, avi, mov, ...), a folder of frame images, or a dataset folder
(BUV, FLA-Net or plain layout; one output subfolder per video). The stream form carries
its state frame to frame; a frame-form artifact runs frame by frame (and says so). Writes,
per video: ``masks/<frame>.png`` at the video's own resolution, ``overlay.mp4`` (same
timing as the input) and its ``still.png``, ``frames.csv``, ``area.png``; where ground truth
exists, ``metrics.json`` and ``metrics.md`` (``model.evaluate``'s meter). Everything is
written in a temporary folder that becomes ``--out`` only when the run succeeds.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np
from PIL import Image
from tqdm import tqdm

from model.atomic import check_output_folder, staged_folder
from model.cli import (
    command,
    existing_path,
    out_option,
    runtime_option,
    threads_option,
    variant_option,
)
from model.errors import ProjectError
from model.metrics import SegmentationMeter, markdown_table

from . import load, load_pytorch
from .registry import RUNTIME_NAMES
from .report import FrameRecord, StillPicker, overlay, plot_area, write_csv
from .session import Session, as_rgb
from .video import FrameSource, SourceFrame, VideoWriter, open_sources


@dataclass
class RunTotals:
    """What the summary line reports: frames, skips, and where the time went."""

    segmented: int = 0
    skipped: int = 0
    inference_s: float = 0.0
    wall_s: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def end_to_end_fps(self) -> float:
        return self.segmented / self.wall_s if self.wall_s else 0.0

    @property
    def inference_fps(self) -> float:
        return self.segmented / self.inference_s if self.inference_s else 0.0


def _skip_reason(frame: SourceFrame) -> str | None:
    if frame.error is not None:
        return frame.error
    if int(frame.image.max()) == int(frame.image.min()):
        return f"constant frame (every pixel {int(frame.image.max())}): no image to segment"
    return None


def segment_source(
    session: Session,
    source: FrameSource,
    folder: Path,
    threshold: float,
    every: int,
    max_frames: int | None,
    meter: SegmentationMeter,
    totals: RunTotals,
) -> list[FrameRecord]:
    """One video through the session: masks, overlay video, still, CSV and area plot."""
    session.reset()
    (folder / "masks").mkdir(parents=True)
    records: list[FrameRecord] = []
    still = StillPicker()
    expected = source.frame_count and -(-source.frame_count // every)
    total = min(filter(None, (expected, max_frames)), default=None)
    started = time.perf_counter()
    fps = source.fps / every
    with (
        VideoWriter(folder / "overlay.mp4", fps, source.size) as writer,
        tqdm(total=total, unit="frame", desc=source.name, disable=None, mininterval=0.5) as bar,
    ):
        for frame in source.frames(every, max_frames):
            bar.update()
            reason = _skip_reason(frame)
            if reason is not None:
                records.append(FrameRecord.skipped(frame.index, frame.timestamp, reason))
                totals.warnings.append(f"skipped {source.name} frame {frame.index}: {reason}")
                if frame.image is not None:  # shown as it is, so the video keeps its timing
                    writer.write(as_rgb(frame.image), frame.timestamp)
                continue
            prediction = session.run(frame.image)
            mask = prediction.mask(threshold)
            Image.fromarray(mask.astype(np.uint8) * 255).save(
                folder / "masks" / f"{frame.index:06d}.png"
            )
            shown = overlay(frame.image, mask, frame.truth)
            writer.write(shown, frame.timestamp)
            record = FrameRecord.measure(
                frame.index,
                frame.timestamp,
                mask,
                prediction.probability,
                prediction.inference_ms,
                frame.truth,
            )
            records.append(record)
            if frame.truth is not None:
                meter.update(mask, frame.truth, source.name)
            still.offer(record, shown)
            totals.segmented += 1
            totals.inference_s += prediction.inference_ms / 1000
            bar.set_postfix(fps=f"{totals.segmented / (time.perf_counter() - started):.1f}")
        if still.record is None:
            raise ProjectError(
                f"{source.path}: no frame could be segmented ({len(records)} skipped)"
            )
    seen = records[-1].index + 1
    if total is not None and len(records) < total and seen + every <= (source.frame_count or 0):
        totals.warnings.append(  # a container's count can be an estimate: warn, don't fail
            f"{source.name}: the video ended at frame {seen} of the {source.frame_count} its "
            "container announces (truncated?)"
        )
    totals.wall_s += time.perf_counter() - started  # per-frame work; the plot below is once a video
    Image.fromarray(still.result()[1]).save(folder / "still.png")
    write_csv(folder / "frames.csv", records)
    plot_area(
        folder / "area.png", records, f"{source.name}: lesion area, BaS through {session.runtime}"
    )
    totals.skipped += sum(not r.ok for r in records)
    return records


def run_segment(
    session: Session,
    input_path: Path,
    out: Path,
    threshold: float = 0.5,
    every: int = 1,
    max_frames: int | None = None,
    fps: float = 30.0,
) -> RunTotals:
    """Every video of ``input_path`` through ``session``, results staged then moved to ``out``."""
    check_output_folder(out)
    sources = open_sources(input_path, fps)
    totals, meter = RunTotals(), SegmentationMeter()
    with staged_folder(out) as staging:
        for source in sources:
            folder = staging if len(sources) == 1 else staging / source.name
            segment_source(session, source, folder, threshold, every, max_frames, meter, totals)
        summary = {
            "input": str(input_path),
            "videos": [s.name for s in sources],
            "target": session.manifest.target,
            "runtime": session.runtime,
            "variant": session.manifest.variant,
            "form": session.manifest.form,
            "precision": session.manifest.precision,
            "threshold": threshold,
            "frames_segmented": totals.segmented,
            "frames_skipped": totals.skipped,
            "end_to_end_fps": round(totals.end_to_end_fps, 2),
            "inference_fps": round(totals.inference_fps, 2),
        }
        (staging / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        if meter.videos:
            metrics = meter.summary()
            (staging / "metrics.json").write_text(json.dumps(metrics, indent=1, allow_nan=False))
            (staging / "metrics.md").write_text(markdown_table(metrics) + "\n")
    return totals


@command("python -m runtimes.segment")
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
    "input_path",
    type=click.Path(path_type=Path),
    required=True,
    help="Video file, folder of frames, or dataset folder.",
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
@threads_option
def main(
    artifact: Path | None,
    variant: str,
    weights: str,
    runtime: str | None,
    input_path: Path,
    out: Path,
    threshold: float,
    every: int,
    max_frames: int | None,
    fps: float,
    threads: int | None,
) -> None:
    """Segment a recording with BaS through any runtime; write masks, overlay video, CSV, plot."""
    if artifact is None:
        if runtime not in (None, "pytorch"):
            raise ProjectError(f"--runtime {runtime} needs --artifact (without it, PyTorch runs)")
        session = load_pytorch(variant, weights, "stream", threads=threads)
    else:
        session = load(artifact, threads=threads, runtime=runtime)
    manifest = session.manifest
    if manifest.form == "frame":
        click.echo("note: frame-form artifact: each frame runs alone (no temporal state)", err=True)
    totals = run_segment(session, input_path, out, threshold, every, max_frames, fps)
    for warning in totals.warnings[:10]:
        click.echo(f"warning: {warning}", err=True)
    if len(totals.warnings) > 10:
        click.echo(f"warning: ... and {len(totals.warnings) - 10} more (frames.csv)", err=True)
    click.echo(
        f"BaS-{manifest.variant} {manifest.form} {manifest.precision} via {session.runtime}: "
        f"{totals.segmented} frames segmented, {totals.skipped} skipped; "
        f"end-to-end {totals.end_to_end_fps:.1f} FPS, inference {totals.inference_fps:.1f} FPS; "
        f"wrote {out}"
    )


if __name__ == "__main__":
    main()
