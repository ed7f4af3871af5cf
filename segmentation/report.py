"""What a person looks at after a run: a per-frame CSV, a lesion-area plot and the still.

The overlays themselves are ``model.drawing.draw_mask_overlay`` (the demo draws them too).

The still that sums a run up is the overlay of the frame with the largest lesion area
(:class:`StillPicker`), the frame where a reader can best judge the segmentation.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.atomic import atomic_path
from model.drawing import checked_mask
from model.metrics import overlap_scores

from .regions import ImageRegion, PhysicalSize, bbox_size, measure

CSV_COLUMNS = (
    "frame",
    "timestamp_s",
    "status",
    "lesion_area_px",
    "mean_probability",
    "inference_ms",
)
# Where the source is calibrated (a DICOM ultrasound region in cm): the lesion in mm.
PHYSICAL_COLUMNS = ("lesion_area_mm2", "bbox_width_mm", "bbox_height_mm")


@dataclass(frozen=True)
class FrameRecord:
    """One row of the per-frame CSV.

    ``status`` is "ok" or "skipped: <reason>"; ``mean_probability`` is None when the mask is
    empty (no lesion, nothing to average); ``dice`` is None without ground truth;
    ``physical`` is None where the source carries no usable calibration.
    """

    index: int
    timestamp: float
    status: str = "ok"
    lesion_area_px: int = 0
    mean_probability: float | None = None
    inference_ms: float | None = None
    dice: float | None = None
    physical: PhysicalSize | None = None
    bbox_px: tuple[int, int] = (0, 0)  # width, height of the mask's bounding box

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def skipped(cls, index: int, timestamp: float, reason: str) -> FrameRecord:
        """A frame that was not segmented, with why (kept on one CSV line)."""
        return cls(index, timestamp, f"skipped: {' '.join(str(reason).split())}")

    @classmethod
    def measure(
        cls,
        index: int,
        timestamp: float,
        mask: np.ndarray,
        probability: np.ndarray | None,
        inference_ms: float,
        truth: np.ndarray | None = None,
        calibrated: ImageRegion | None = None,
    ) -> FrameRecord:
        """A segmented frame's record: area, mean probability inside the mask, Dice vs truth,
        and the lesion in mm inside a ``calibrated`` region.

        Dice follows ``model.metrics``: 1 when both masks are empty.
        """
        mask = np.asarray(mask, dtype=bool)
        area = int(np.count_nonzero(mask))
        mean = None
        if probability is not None and area:
            mean = float(np.asarray(probability, dtype=np.float64)[mask].mean())
        dice = None
        if truth is not None:
            truth = checked_mask(truth, mask.shape, "truth")
            tp = int(np.count_nonzero(mask & truth))
            dice = overlap_scores(tp, area - tp, int(np.count_nonzero(truth)) - tp)["dice"]
        physical = None if calibrated is None else measure(mask, calibrated)
        return cls(
            index, timestamp, "ok", area, mean, float(inference_ms), dice, physical, bbox_size(mask)
        )


def _number(value: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}f}"


def _physical_cells(size: PhysicalSize | None) -> list[str]:
    if size is None:
        return [""] * len(PHYSICAL_COLUMNS)
    return [f"{size.area_mm2:.2f}", f"{size.bbox_width_mm:.2f}", f"{size.bbox_height_mm:.2f}"]


def write_csv(path: Path, records: Sequence[FrameRecord]) -> None:
    """One row per frame; millimetre columns only when the source is calibrated, a ``dice``
    column only when some frame had ground truth."""
    with_mm = any(r.physical is not None for r in records)
    with_dice = any(r.dice is not None for r in records)
    header = [
        *CSV_COLUMNS,
        *(PHYSICAL_COLUMNS if with_mm else ()),
        *(["dice"] if with_dice else []),
    ]
    with atomic_path(Path(path)) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for r in records:
            row = [
                r.index,
                f"{r.timestamp:.3f}",
                r.status,
                r.lesion_area_px if r.ok else "",
                _number(r.mean_probability, 4),
                _number(r.inference_ms, 2),
            ]
            if with_mm:
                row += _physical_cells(r.physical)
            writer.writerow([*row, _number(r.dice, 4)] if with_dice else row)


def plot_area(
    path: Path, records: Sequence[FrameRecord], title: str, calibration: str | None = None
) -> None:
    """Lesion area over time as a 1000x360 PNG, skipped frames marked, gaps left open.

    In mm² where every segmented frame was measured in a calibrated region, else in pixels
    (and the axis says there is no calibration); ``calibration`` (which region, or why
    none) goes under the title.
    """
    # The object API with the Agg canvas: no display, no global pyplot state, and importing
    # this module does not import matplotlib.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    times = [r.timestamp for r in records]
    in_mm = any(r.ok for r in records) and all(r.physical is not None for r in records if r.ok)
    areas = [_area(r, in_mm) for r in records]
    marker = "." if len(records) <= 200 else None
    axes.plot(
        times,
        areas,
        color="tab:green",
        marker=marker,
        markersize=3,
        linewidth=1.2,
        label="lesion area",
    )
    skipped = [r.timestamp for r in records if not r.ok]
    if skipped:
        axes.plot(
            skipped,
            [0] * len(skipped),
            "x",
            color="tab:red",
            markersize=6,
            label=f"skipped ({len(skipped)})",
            clip_on=False,
        )
    axes.set_xlabel("time (s)")
    axes.set_ylabel("lesion area (mm²)" if in_mm else "lesion area (px; no calibration)")
    if calibration:
        axes.set_title(f"{title}\n{calibration}", fontsize=9)
    else:
        axes.set_title(title)
    axes.set_ylim(bottom=0)
    if times:
        axes.set_xlim(min(times), max(times) if max(times) > min(times) else min(times) + 1)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper right")
    figure.tight_layout()
    with atomic_path(Path(path)) as tmp:
        figure.savefig(tmp, format="png", dpi=100)


def _area(record: FrameRecord, in_mm: bool) -> float:
    if not record.ok:
        return math.nan
    if in_mm and record.physical is not None:
        return record.physical.area_mm2
    return float(record.lesion_area_px)


class StillPicker:
    """Keeps, as frames go by, the overlay of the largest lesion (the first, on ties or none)."""

    def __init__(self) -> None:
        self.record: FrameRecord | None = None
        self.image: np.ndarray | None = None

    def offer(self, record: FrameRecord, image: np.ndarray) -> None:
        if record.ok and (
            self.record is None or record.lesion_area_px > self.record.lesion_area_px
        ):
            self.record, self.image = record, image

    def result(self) -> tuple[FrameRecord, np.ndarray]:
        if self.record is None or self.image is None:
            raise ValueError("no frame was segmented, so there is no still to show")
        return self.record, self.image
