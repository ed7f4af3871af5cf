"""What a segmented loop leaves behind, one output at a time, behind one interface.

A run hands every frame to each output of the loop (:meth:`Output.add`), then asks each
to finish (:meth:`Output.finish`), in the order of :data:`DEFAULT_OUTPUTS`: an output may
use what an earlier one recorded in :attr:`Loop.written` (the measurement report refers to
the Segmentation). An output that cannot be written for a reason of its input (a
``ProjectError``: a header highdicom cannot derive from, say) is recorded as failed with
that reason, and the others are kept: the masks and areas of a loop are never lost
because its DICOM Segmentation could not be made.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image
from pydicom.pixels import pack_bits, unpack_bits

from model.data.video_writer import VideoWriter
from model.errors import ProjectError
from model.preprocessing import as_rgb
from runtimes.session import Session

from .dicom import DicomSource
from .dicom_seg import check_segmentation, write_segmentation
from .dicom_sr import LoopMeasurements, write_measurement_report
from .report import FrameRecord, StillPicker, plot_area, write_csv
from .video import FrameSource, SourceFrame

SEGMENTATION_FILE = "segmentation.dcm"
REPORT_FILE = "measurements.dcm"


@dataclass
class Loop:
    """One source being segmented into ``folder``; ``written`` maps an output's name to
    what it wrote, for the outputs after it and for summary.json."""

    source: FrameSource
    folder: Path
    session: Session
    every: int
    records: list[FrameRecord] = field(default_factory=list)
    written: dict[str, Any] = field(default_factory=dict)
    for_archive: list[Path] = field(default_factory=list)  # DICOM results to store back
    seconds: dict[str, float] = field(default_factory=dict)  # per stage and output
    segmented_origins: list[tuple[Path, int]] = field(default_factory=list)  # SEG frames'

    @contextmanager
    def timed(self, what: str) -> Iterator[None]:
        """Add the block's seconds to ``seconds[what]`` (each key from one thread only)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[what] = self.seconds.get(what, 0.0) + time.perf_counter() - started

    @property
    def algorithm_version(self) -> str:
        """The model and runtime, as the DICOM outputs name the algorithm."""
        manifest = self.session.manifest
        return (
            f"BaS-{manifest.variant} {manifest.form} {manifest.precision} via "
            f"{self.session.runtime} ({manifest.target})"
        )


@dataclass(frozen=True)
class FrameResult:
    """One frame as its outputs see it: as decoded, its record, its mask (None: skipped)
    and the overlay drawn of it (None: skipped)."""

    frame: SourceFrame
    record: FrameRecord
    mask: np.ndarray | None
    shown: np.ndarray | None


class Output:
    """One kind of result of a loop. ``add`` sees every frame's result in order, segmented
    or skipped, in the run's writing thread; ``finish`` writes what is left and returns
    what summary.json records of it."""

    name: ClassVar[str]

    def applies_to(self, source: FrameSource) -> bool:
        return True

    def start(self, loop: Loop) -> None:
        """Called once before the first frame."""

    def add(self, loop: Loop, result: FrameResult) -> None:
        """One frame's result, in frame order."""

    def finish(self, loop: Loop) -> Any:
        """Write what is left; return the summary entry (None: nothing to record)."""
        return None

    def abort(self) -> None:
        """Release what ``start`` opened, after a failure (the staging folder goes too)."""


class MaskImages(Output):
    """``masks/<frame>.png``: each segmented frame's mask at the source's own size."""

    name = "masks"

    def start(self, loop: Loop) -> None:
        (loop.folder / "masks").mkdir(parents=True)

    def add(self, loop: Loop, result: FrameResult) -> None:
        if result.mask is not None:
            path = loop.folder / "masks" / f"{result.frame.index:06d}.png"
            Image.fromarray(result.mask.astype(np.uint8) * 255).save(path)


class OverlayVideo(Output):
    """``overlay.mp4`` at the source's timing (skipped frames shown as they are), and
    ``still.png``: the overlay of the frame with the largest lesion."""

    name = "overlay"

    def __init__(self) -> None:
        self.writer: VideoWriter | None = None
        self.still = StillPicker()

    def start(self, loop: Loop) -> None:
        fps = loop.source.fps / loop.every
        self.writer = VideoWriter(loop.folder / "overlay.mp4", fps, loop.source.size)

    def add(self, loop: Loop, result: FrameResult) -> None:
        assert self.writer is not None
        frame, shown = result.frame, result.shown
        if shown is not None:
            self.writer.write(shown, frame.timestamp)
            self.still.offer(result.record, shown)
        elif frame.image is not None:  # skipped, shown as it is so the video keeps its timing
            self.writer.write(as_rgb(frame.image), frame.timestamp)

    def finish(self, loop: Loop) -> Any:
        assert self.writer is not None
        self.writer.close()
        Image.fromarray(self.still.result()[1]).save(loop.folder / "still.png")
        return None

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


class FrameTable(Output):
    """``frames.csv`` (a row per frame) and ``area.png`` (the lesion's area over time)."""

    name = "table"

    def finish(self, loop: Loop) -> Any:
        write_csv(loop.folder / "frames.csv", loop.records)
        title = f"{loop.source.name}: lesion area, BaS through {loop.session.runtime}"
        plot_area(loop.folder / "area.png", loop.records, title, loop.source.calibration)
        return None


class DicomSegmentation(Output):
    """``segmentation.dcm``: the masks as a DICOM Segmentation of the loop, read back and
    checked. Masks are kept bit-packed until the end (an eighth of a byte a pixel)."""

    name = "dicom_segmentation"

    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes]] = []

    def applies_to(self, source: FrameSource) -> bool:
        return isinstance(source, DicomSource)

    def add(self, loop: Loop, result: FrameResult) -> None:
        if result.mask is not None:
            self.frames.append((result.frame.index, pack_bits(result.mask.astype(np.uint8))))

    def finish(self, loop: Loop) -> Any:
        source = loop.source
        assert isinstance(source, DicomSource)
        rows, columns = source.size
        origins = [source.origins[index] for index, _ in self.frames]
        masks = [
            unpack_bits(packed, as_array=True)[: rows * columns].reshape(rows, columns) > 0
            for _, packed in self.frames
        ]
        path = loop.folder / SEGMENTATION_FILE
        write_segmentation(path, origins, masks, algorithm_version=loop.algorithm_version)
        check_segmentation(path, origins, masks)
        loop.for_archive.append(path)
        loop.segmented_origins = origins
        return SEGMENTATION_FILE


class MeasurementReport(Output):
    """``measurements.dcm``: a DICOM SR (TID 1500) of the lesion over the loop: its largest
    area and where, its mean area, its bounding box, in mm where calibrated (else pixels,
    saying why), referencing the Segmentation's segment and the source images."""

    name = "dicom_measurement_report"

    def applies_to(self, source: FrameSource) -> bool:
        return isinstance(source, DicomSource)

    def finish(self, loop: Loop) -> Any:
        segmentation = loop.written.get(DicomSegmentation.name)
        if segmentation != SEGMENTATION_FILE:
            raise ProjectError("it references the DICOM Segmentation, which was not written")
        source = loop.source
        assert isinstance(source, DicomSource)
        measurements = LoopMeasurements.from_records(
            loop.records, source.origins, source.calibration
        )
        path = loop.folder / REPORT_FILE
        write_measurement_report(
            path,
            loop.folder / SEGMENTATION_FILE,
            loop.segmented_origins,
            measurements,
            loop.algorithm_version,
        )
        loop.for_archive.append(path)
        return {
            "file": REPORT_FILE,
            "units": measurements.units,
            "largest_area": round(measurements.largest_area, 2),
            "largest_frame": measurements.largest_index,
            "mean_area": round(measurements.mean_area, 2),
            "bbox": [round(measurements.bbox_width, 2), round(measurements.bbox_height, 2)],
        }


DEFAULT_OUTPUTS: tuple[type[Output], ...] = (
    MaskImages,
    OverlayVideo,
    FrameTable,
    DicomSegmentation,
    MeasurementReport,
)


def outputs_for(source: FrameSource) -> list[Output]:
    """A fresh instance of every default output that applies to ``source``."""
    made = [kind() for kind in DEFAULT_OUTPUTS]
    return [output for output in made if output.applies_to(source)]


def finish_outputs(loop: Loop, outputs: list[Output]) -> list[str]:
    """Finish each output in order; a ProjectError fails that output alone. Returns one
    line per failed output (also recorded in ``loop.written`` as ``failed: <reason>``)."""
    failed = []
    for output in outputs:
        try:
            with loop.timed(output.name):
                entry = output.finish(loop)
        except ProjectError as err:
            loop.written[output.name] = f"failed: {err}"
            failed.append(f"{loop.source.name}: {output.name} not written: {err}")
            continue
        if entry is not None:
            loop.written[output.name] = entry
    return failed
