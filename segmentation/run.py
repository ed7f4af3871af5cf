"""Segment every loop of an input through a session and write what it found.

The command is :mod:`segmentation.cli`; this is the work it does, also used by ``device_bench``
and the tests. Each loop is segmented frame by frame (the stream form carries its state;
a frame-form artifact runs each frame alone) and handed, frame by frame, to its outputs
(:mod:`segmentation.outputs`). Everything is written in a temporary folder that becomes
``out`` only when the run ends; a loop that fails for its own reason (its retrieval broke
off, nothing in it could be segmented) is listed in ``summary.json`` and in
:attr:`RunTotals.failed`, and the others are kept (and stored, with ``store``).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from model.atomic import check_output_folder, staged_folder
from model.drawing import draw_mask_overlay
from model.errors import ProjectError
from model.metrics import SegmentationMeter, meter_table
from runtimes.session import Prediction, Session

from .outputs import FrameResult, Loop, finish_outputs, outputs_for
from .pipeline import Pipeline
from .regions import DETECTION_FRAMES, ImageRegion, detect_region
from .report import FrameRecord
from .sources import Batch, Input, open_input
from .video import FrameSource, InputError, SourceFrame

# Logit given to pixels outside a cropped region: probability ~4e-44, never lesion.
OUTSIDE_LOGIT = -100.0


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
    overlap: bool = True  # False: every stage in line, to measure what overlapping gains


@dataclass
class RunTotals:
    """What the summary line reports: frames, skips, where the time went, what failed."""

    segmented: int = 0
    skipped: int = 0
    inference_s: float = 0.0
    wall_s: float = 0.0
    warnings: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # a line per loop or output not done
    stored: int = 0  # DICOM objects stored into the archive

    @property
    def end_to_end_fps(self) -> float:
        return self.segmented / self.wall_s if self.wall_s else 0.0

    @property
    def inference_fps(self) -> float:
        return self.segmented / self.inference_s if self.inference_s else 0.0


def segment_source(
    session: Session,
    source: FrameSource,
    folder: Path,
    options: RunOptions,
    meter: SegmentationMeter,
    totals: RunTotals,
) -> Loop:
    """One video through the session, every frame handed to each of its outputs.

    Three stages overlap (:class:`~segmentation.pipeline.Pipeline`): frames are decoded
    ahead in one thread, segmented in this one (the session is used from one thread only),
    and drawn and written behind in a third, in order, through bounded queues, so that
    decoding and encoding run while the network does. ``loop.seconds`` says where the
    time went: each stage, each output.
    """
    session.reset()
    placement = place(source, options.crop_to_region)
    loop = Loop(source, folder, session, options.every)
    outputs = outputs_for(source)
    every, max_frames = options.every, options.max_frames
    expected = source.frame_count and -(-source.frame_count // every)
    total = min(filter(None, (expected, max_frames)), default=None)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    segmented = 0

    def write(item: tuple[SourceFrame, FrameRecord, np.ndarray | None]) -> None:
        frame, record, mask = item
        with loop.timed("draw"):
            shown = None if mask is None else draw_mask_overlay(frame.image, mask, frame.truth)
        result = FrameResult(frame, record, mask, shown)
        for output in outputs:
            with loop.timed(output.name):
                output.add(loop, result)

    try:
        for output in outputs:
            output.start(loop)
        with (
            tqdm(total=total, unit="frame", desc=source.name, disable=None, mininterval=0.5) as bar,
            Pipeline(source.frames(every, max_frames), write, overlap=options.overlap) as frames,
        ):
            for frame in frames:
                bar.update()
                with loop.timed("inference"):
                    mask = _segment_frame(loop, placement, frame, options.threshold, meter)
                frames.put((frame, loop.records[-1], mask))
                if mask is not None:
                    segmented += 1
                    totals.inference_s += loop.records[-1].inference_ms / 1000
                    bar.set_postfix(fps=f"{segmented / (time.perf_counter() - started):.1f}")
        loop.seconds["decode"] = frames.decode_s
        if not segmented:
            first = (
                loop.records[0].status.removeprefix("skipped: ") if loop.records else "none read"
            )
            raise ProjectError(
                f"{source.path}: no frame could be segmented ({len(loop.records)} skipped; "
                f"first: {first})"
            )
    except BaseException:
        for output in outputs:
            output.abort()
        raise
    totals.segmented += segmented
    totals.warnings += source.notes
    totals.warnings += _warnings(source, loop.records, total, every)
    totals.wall_s += time.perf_counter() - started  # per-frame work; the plots are once a loop
    totals.skipped += sum(not r.ok for r in loop.records)
    totals.failed += finish_outputs(loop, outputs)
    loop.written.update(placement.describe(source))
    loop.written["seconds"] = {k: round(v, 3) for k, v in loop.seconds.items()}
    return loop


def _segment_frame(
    loop: Loop,
    placement: Placement,
    frame: SourceFrame,
    threshold: float,
    meter: SegmentationMeter,
) -> np.ndarray | None:
    """The frame's mask, its record appended to the loop's; None (and why, recorded) if
    the frame cannot be segmented."""
    reason = _skip_reason(frame)
    if reason is not None:
        loop.records.append(FrameRecord.skipped(frame.index, frame.timestamp, reason))
        return None
    prediction = placement.run(loop.session, frame.image)
    mask = prediction.mask(threshold)
    loop.records.append(
        FrameRecord.measure(
            frame.index,
            frame.timestamp,
            mask,
            prediction.probability,
            prediction.inference_ms,
            frame.truth,
            placement.calibrated,
        )
    )
    if frame.truth is not None:
        meter.update(mask, frame.truth, loop.source.name)
    return mask


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


def summary_entry(loop: Loop) -> dict[str, Any]:
    """What summary.json says of one loop: its name, what its outputs wrote, its timing."""
    entry: dict[str, Any] = {"name": loop.source.name, **loop.written}
    timing = getattr(loop.source, "timing", None)
    if timing:
        entry["timing"] = timing
    return entry


def _store(batch: Batch, loop: Loop, totals: RunTotals) -> None:
    """The loop's DICOM results into its study; a refusal fails this loop alone."""
    if batch.study is None or not loop.for_archive:
        return
    try:
        stored = batch.study.store(loop.for_archive)
    except ProjectError as err:
        loop.written["stored"] = f"failed: {err}"
        totals.failed.append(f"{loop.source.name}: not stored: {err}")
        return
    loop.written["stored"] = stored
    totals.stored += len(stored)


def run_segment(
    session: Session,
    input_spec: str | Path,
    out: Path,
    options: RunOptions | None = None,
    fps: float = 30.0,
    store: bool = False,
) -> RunTotals:
    """Every loop of ``input_spec`` through ``session``, results staged then moved to ``out``;
    with ``store``, each loop's DICOM results go into its study on the archive it came from."""
    options = options or RunOptions()
    check_output_folder(out)
    opened = open_input(input_spec, fps)
    if store and not opened.from_archive:
        raise ProjectError(
            "--store needs a DICOMweb --input (results go back where loops came from)"
        )
    totals, meter = RunTotals(), SegmentationMeter()
    with staged_folder(out) as staging:
        loops = [
            loop
            for batch in opened.batches
            for loop in _run_batch(batch, opened, staging, session, options, meter, totals, store)
        ]
        if not loops:
            raise ProjectError(
                f"{opened.description}: no loop could be segmented ({'; '.join(totals.failed)})"
            )
        manifest = session.manifest
        summary = {
            "input": str(input_spec),
            "videos": [loop.source.name for loop in loops],
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
            "sources": [summary_entry(loop) for loop in loops],
            "failed": totals.failed,
        }
        (staging / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        if meter.videos:
            metrics = meter.summary()
            (staging / "metrics.json").write_text(json.dumps(metrics, indent=1, allow_nan=False))
            (staging / "metrics.md").write_text(meter_table(metrics) + "\n")
    return totals


def _run_batch(
    batch: Batch,
    opened: Input,
    staging: Path,
    session: Session,
    options: RunOptions,
    meter: SegmentationMeter,
    totals: RunTotals,
    store: bool,
) -> list[Loop]:
    """A batch's loops; in an archive, a batch or loop that fails is listed, not fatal."""
    loops = []
    try:
        with batch.open() as found:
            totals.warnings += found.left_out
            for source in found.sources:
                folder = staging / source.name if opened.subfolders else staging
                try:
                    loop = segment_source(session, source, folder, options, meter, totals)
                except ProjectError as err:
                    if not opened.from_archive:
                        raise
                    shutil.rmtree(folder, ignore_errors=True)  # made by this run, in staging
                    totals.failed.append(f"{source.name}: {err}")
                    continue
                if store:
                    _store(batch, loop, totals)
                loops.append(loop)
    except ProjectError as err:
        if not opened.from_archive:
            raise
        totals.failed.append(f"{batch.name}: {err}")
    return loops
