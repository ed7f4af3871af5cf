"""Segment a real recording with a converted BaS (or PyTorch BaS) and write what it found.

    python -m runtimes.segment --artifact PATH --input INPUT --out DIR [--threshold 0.5]
        [--every N] [--max-frames N] [--threads N] [--crop-to-region]

INPUT is a video file (mp4, avi, mov, ...), a folder of frame images, a dataset folder
(BUV, FLA-Net or plain layout; one output subfolder per video), a DICOM ultrasound file
(single- or multi-frame) or a folder of DICOM files (a study export: one subfolder per
series or cine loop). The stream form carries its state frame to frame; a frame-form
artifact runs frame by frame (and says so). Writes, per video: ``masks/<frame>.png`` at the
video's own resolution, ``overlay.mp4`` (same timing as the input: a DICOM file's frame
times) and its ``still.png``, ``frames.csv``, ``area.png``; where the source is calibrated
(a DICOM ultrasound region in cm), the lesion's area and bounding box in mm beside pixels;
for DICOM, ``segmentation.dcm`` (a DICOM Segmentation referencing the source frames, read
back and checked); where ground truth exists, ``metrics.json`` and ``metrics.md``
(``model.evaluate``'s meter). Everything is written in a temporary folder that becomes
``--out`` only when the run succeeds.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import click
import numpy as np
from PIL import Image
from tqdm import tqdm

from model.atomic import check_output_folder, staged_folder
from model.data.video_writer import VideoWriter
from model.drawing import draw_mask_overlay
from model.errors import ProjectError
from model.metrics import SegmentationMeter, meter_table
from model.options import (
    command,
    existing_path,
    out_option,
    runtime_option,
    threads_option,
    variant_option,
)
from model.preprocessing import as_rgb

from . import load, load_pytorch
from .dicom import DicomSource, is_dicom, scan_dicom
from .dicom_seg import check_segmentation, write_segmentation
from .regions import DETECTION_FRAMES, ImageRegion, detect_region
from .registry import RUNTIME_NAMES
from .segment_report import FrameRecord, StillPicker, plot_area, write_csv
from .session import Prediction, Session
from .video import (
    FrameSource,
    InputError,
    SourceFrame,
    image_files,
    open_sources,
)

SEGMENTATION_FILE = "segmentation.dcm"
# Logit given to pixels outside a cropped region: probability ~4e-44, never lesion.
OUTSIDE_LOGIT = -100.0


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


@dataclass(frozen=True)
class Placement:
    """Which part of each frame the network sees (``crop``; None: the whole frame, as a
    device runs what it is given), and where the lesion is measured in mm (``calibrated``)."""

    crop: ImageRegion | None
    calibrated: ImageRegion | None

    def run(self, session: Session, image: np.ndarray) -> Prediction:
        """The session's prediction at the frame's own size, cropped first if asked."""
        if self.crop is None:
            return session.run(image)
        inside = session.run(self.crop.crop(image))
        logits = self.crop.paste(inside.logits, image.shape[:2], fill=OUTSIDE_LOGIT)
        return Prediction(logits, inside.inference_ms)

    def describe(self, source: FrameSource) -> dict[str, Any]:
        """What summary.json records of the source's calibration and the crop."""
        calibrated = self.calibrated
        return {
            "calibration": source.calibration,
            "calibrated_region": None if calibrated is None else calibrated.as_box(),
            "mm_per_px": None if calibrated is None else list(calibrated.mm_per_px or ()),
            "crop": None if self.crop is None else self.crop.as_box(),
            "crop_source": None if self.crop is None else self.crop.source,
        }


def place(source: FrameSource, crop_to_region: bool) -> Placement:
    """The calibrated region where usable; with ``crop_to_region``, the region to crop to:
    the one the file states, else one detected from the first frames."""
    stated = source.region  # None where the file states none that fits (FrameSource)
    calibrated = stated if stated is not None and stated.mm_per_px is not None else None
    if not crop_to_region or stated is not None:
        return Placement(stated if crop_to_region else None, calibrated)
    frames = islice(source.frames(), DETECTION_FRAMES)
    detected = detect_region(f.image for f in frames if f.image is not None)
    if detected is None:
        why = "one frame" if source.frame_count == 1 else "nothing changes over its first frames"
        raise InputError(
            f"{source.path}: --crop-to-region: no usable image region stated, and none "
            f"detected ({why}; detection finds the pixels that change over time)"
        )
    return Placement(detected, calibrated)


@dataclass(frozen=True)
class RunOptions:
    """How every frame of a run is segmented and which frames are taken."""

    threshold: float = 0.5
    every: int = 1
    max_frames: int | None = None
    crop_to_region: bool = False


class SourceRun:
    """One video's frames through the session, into ``folder``: masks, overlay, records."""

    def __init__(
        self, session: Session, source: FrameSource, folder: Path, options: RunOptions
    ) -> None:
        self.session, self.source, self.folder, self.options = session, source, folder, options
        self.placement = place(source, options.crop_to_region)
        self.records: list[FrameRecord] = []
        self.still = StillPicker()

    def frame(self, frame: SourceFrame, writer: VideoWriter, meter: SegmentationMeter) -> bool:
        """Segment one frame (or record why not); True if it was segmented."""
        reason = _skip_reason(frame)
        if reason is not None:
            self.records.append(FrameRecord.skipped(frame.index, frame.timestamp, reason))
            if frame.image is not None:  # shown as it is, so the video keeps its timing
                writer.write(as_rgb(frame.image), frame.timestamp)
            return False
        prediction = self.placement.run(self.session, frame.image)
        mask = prediction.mask(self.options.threshold)
        Image.fromarray(mask.astype(np.uint8) * 255).save(self._mask_path(frame.index))
        shown = draw_mask_overlay(frame.image, mask, frame.truth)
        writer.write(shown, frame.timestamp)
        record = FrameRecord.measure(
            frame.index,
            frame.timestamp,
            mask,
            prediction.probability,
            prediction.inference_ms,
            frame.truth,
            self.placement.calibrated,
        )
        self.records.append(record)
        if frame.truth is not None:
            meter.update(mask, frame.truth, self.source.name)
        self.still.offer(record, shown)
        return True

    def _mask_path(self, index: int) -> Path:
        return self.folder / "masks" / f"{index:06d}.png"

    def finish(self) -> dict[str, Any]:
        """Still, CSV, area plot (and for DICOM, the Segmentation); the source's summary."""
        Image.fromarray(self.still.result()[1]).save(self.folder / "still.png")
        write_csv(self.folder / "frames.csv", self.records)
        title = f"{self.source.name}: lesion area, BaS through {self.session.runtime}"
        plot_area(self.folder / "area.png", self.records, title, self.source.calibration)
        summary = {"name": self.source.name, **self.placement.describe(self.source)}
        if isinstance(self.source, DicomSource):
            summary["timing"] = self.source.timing
            summary["dicom_segmentation"] = self._write_segmentation()
        return summary

    def _write_segmentation(self) -> str:
        """The masks as a DICOM Segmentation of the loop, read back and checked."""
        done = [r.index for r in self.records if r.ok]
        origins = [self.source.origins[i] for i in done]
        masks = [np.asarray(Image.open(self._mask_path(i))) > 0 for i in done]
        manifest = self.session.manifest
        version = (
            f"BaS-{manifest.variant} {manifest.form} {manifest.precision} via "
            f"{self.session.runtime} ({manifest.target})"
        )
        path = self.folder / SEGMENTATION_FILE
        write_segmentation(path, origins, masks, algorithm_version=version)
        check_segmentation(path, origins, masks)
        return SEGMENTATION_FILE


def segment_source(
    session: Session,
    source: FrameSource,
    folder: Path,
    options: RunOptions,
    meter: SegmentationMeter,
    totals: RunTotals,
) -> dict[str, Any]:
    """One video through the session: masks, overlay video, still, CSV and area plot."""
    session.reset()
    run = SourceRun(session, source, folder, options)
    (folder / "masks").mkdir(parents=True)
    every, max_frames = options.every, options.max_frames
    expected = source.frame_count and -(-source.frame_count // every)
    total = min(filter(None, (expected, max_frames)), default=None)
    started = time.perf_counter()
    with (
        VideoWriter(folder / "overlay.mp4", source.fps / every, source.size) as writer,
        tqdm(total=total, unit="frame", desc=source.name, disable=None, mininterval=0.5) as bar,
    ):
        for frame in source.frames(every, max_frames):
            bar.update()
            if run.frame(frame, writer, meter):
                totals.segmented += 1
                totals.inference_s += run.records[-1].inference_ms / 1000
                bar.set_postfix(fps=f"{totals.segmented / (time.perf_counter() - started):.1f}")
        if run.still.record is None:
            first = run.records[0].status.removeprefix("skipped: ") if run.records else "none read"
            raise ProjectError(
                f"{source.path}: no frame could be segmented ({len(run.records)} skipped; "
                f"first: {first})"
            )
    totals.warnings += _warnings(source, run.records, total, every)
    totals.wall_s += time.perf_counter() - started  # per-frame work; the plot below is once a video
    totals.skipped += sum(not r.ok for r in run.records)
    return run.finish()


def _warnings(
    source: FrameSource, records: list[FrameRecord], total: int | None, every: int
) -> list[str]:
    found = [
        f"skipped {source.name} frame {r.index}: {r.status.removeprefix('skipped: ')}"
        for r in records
        if not r.ok
    ]
    seen = records[-1].index + 1
    if total is not None and len(records) < total and seen + every <= (source.frame_count or 0):
        found.append(  # a container's count can be an estimate: warn, don't fail
            f"{source.name}: the video ended at frame {seen} of the {source.frame_count} its "
            "container announces (truncated?)"
        )
    return found


def open_input(path: Path, fps: float) -> tuple[list[FrameSource], list[str]]:
    """The sources of a DICOM file or folder (a folder of DICOM files and no frame images)
    or of anything ``runtimes.video`` reads, and a warning per file left out."""
    path = Path(path)
    dicom = (path.is_file() and is_dicom(path)) or (
        path.is_dir()
        and not image_files(path)
        and any(p.is_file() and is_dicom(p) for p in path.rglob("*"))
    )
    if not dicom:
        return open_sources(path, fps), []
    found = scan_dicom(path, fps)
    return list(found.sources), [f"left out {p}: {why}" for p, why in found.skipped]


def run_segment(
    session: Session,
    input_path: Path,
    out: Path,
    options: RunOptions | None = None,
    fps: float = 30.0,
) -> RunTotals:
    """Every video of ``input_path`` through ``session``, results staged then moved to ``out``."""
    options = options or RunOptions()
    check_output_folder(out)
    sources, left_out = open_input(input_path, fps)
    totals, meter = RunTotals(warnings=left_out), SegmentationMeter()
    with staged_folder(out) as staging:
        per_source = []
        for source in sources:
            folder = staging if len(sources) == 1 else staging / source.name
            per_source.append(segment_source(session, source, folder, options, meter, totals))
        manifest = session.manifest
        summary = {
            "input": str(input_path),
            "videos": [s.name for s in sources],
            "target": manifest.target,
            "runtime": session.runtime,
            "variant": manifest.variant,
            "form": manifest.form,
            "precision": manifest.precision,
            "threshold": options.threshold,
            "frames_segmented": totals.segmented,
            "frames_skipped": totals.skipped,
            "end_to_end_fps": round(totals.end_to_end_fps, 2),
            "inference_fps": round(totals.inference_fps, 2),
            "sources": per_source,
        }
        (staging / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        if meter.videos:
            metrics = meter.summary()
            (staging / "metrics.json").write_text(json.dumps(metrics, indent=1, allow_nan=False))
            (staging / "metrics.md").write_text(meter_table(metrics) + "\n")
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
    help="Video file, folder of frames, dataset folder, DICOM file or folder of DICOM files.",
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
    crop_to_region: bool,
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
    options = RunOptions(threshold, every, max_frames, crop_to_region)
    totals = run_segment(session, input_path, out, options, fps)
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
