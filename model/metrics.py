"""Binary lesion-segmentation metrics with explicit aggregation and an explicit empty-mask rule.

Inputs are numpy bool masks (H, W) at native resolution: P is the prediction, G the ground truth.
Per frame: Dice = 2|P∩G|/(|P|+|G|), IoU = |P∩G|/|P∪G|, precision = |P∩G|/|P|,
recall = |P∩G|/|G|, and HD95 in pixels: the 95th percentile (numpy's linear interpolation)
of the pooled symmetric boundary distances, i.e. the distances from every boundary pixel of P
to the nearest boundary pixel of G and vice versa (MedPy's ``hd95``; MONAI instead takes the
larger of the two directed percentiles). A boundary pixel is a mask pixel with a 4-neighbour
outside the mask or outside the image.

Empty-mask rule (``EmptyCase``), applied identically to frames and to pooled counts:

====================  ======  ======  =========  ======  ======
case                  Dice    IoU     precision  recall  HD95
====================  ======  ======  =========  ======  ======
``BOTH`` empty        1       1       1          1       0
``TARGET`` empty      0       0       0          NaN     NaN
``PREDICTION`` empty  0       0       NaN        0       NaN
====================  ======  ======  =========  ======  ======

Both empty is a correct "no lesion" and scores perfectly. Otherwise a ratio whose denominator
is zero is undefined (NaN) rather than forced to 0 or 1, because either choice misreports a
false alarm or a miss (recall 1 for a false alarm would reward it). HD95 needs both boundaries.
NaN values are left out of every mean and the affected frames are counted in
``SegmentationMeter.counts``, so a reader sees how many frames each mean rests on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
from scipy import ndimage

from .tables import markdown_table

OVERLAP_METRICS: tuple[str, ...] = ("dice", "iou", "precision", "recall")
METRICS: tuple[str, ...] = (*OVERLAP_METRICS, "hd95")


class EmptyCase(Enum):
    """Which masks of a frame are empty; decides which metrics are defined (module docstring)."""

    NEITHER = "neither"
    BOTH = "both"
    TARGET = "target"
    PREDICTION = "prediction"


def empty_case(pred_pixels: int, target_pixels: int) -> EmptyCase:
    """The empty case of a frame (or pooled counts) with these foreground pixel counts."""
    if pred_pixels and target_pixels:
        return EmptyCase.NEITHER
    if pred_pixels:
        return EmptyCase.TARGET
    if target_pixels:
        return EmptyCase.PREDICTION
    return EmptyCase.BOTH


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def overlap_scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Dice, IoU, precision and recall from confusion counts, under the empty-mask rule."""
    if tp + fp + fn == 0:
        return dict.fromkeys(OVERLAP_METRICS, 1.0)
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn),
        "iou": _ratio(tp, tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
    }


def _check_masks(pred: np.ndarray, target: np.ndarray) -> None:
    # Refuse non-bool input: silently thresholding probabilities at "nonzero" would be a bug.
    for name, mask in (("pred", pred), ("target", target)):
        if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.ndim != 2:
            raise TypeError(f"{name} must be a 2-D numpy bool array, got {_describe(mask)}")
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {pred.shape} differs from target shape {target.shape}")


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.ndim}-D array of {value.dtype}"
    return type(value).__name__


def _boundary(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hd95(pred: np.ndarray, target: np.ndarray) -> float:
    """95th-percentile symmetric boundary distance in pixels; 0 if both empty, NaN if one is."""
    _check_masks(pred, target)
    case = empty_case(int(pred.any()), int(target.any()))
    if case is EmptyCase.BOTH:
        return 0.0
    if case is not EmptyCase.NEITHER:
        return math.nan
    pred_edge, target_edge = _boundary(pred), _boundary(target)
    to_target = ndimage.distance_transform_edt(~target_edge)[pred_edge]
    to_pred = ndimage.distance_transform_edt(~pred_edge)[target_edge]
    return float(np.percentile(np.concatenate([to_target, to_pred]), 95))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two masks; 1 when both are empty (used for consecutive predictions)."""
    _check_masks(a, b)
    union = int(np.count_nonzero(a | b))
    return int(np.count_nonzero(a & b)) / union if union else 1.0


@dataclass(frozen=True)
class FrameScores:
    """Confusion counts and metrics of one frame; NaN marks an undefined metric."""

    tp: int
    fp: int
    fn: int
    case: EmptyCase
    dice: float
    iou: float
    precision: float
    recall: float
    hd95: float

    def values(self) -> tuple[float, ...]:
        """The metrics in ``METRICS`` order."""
        return tuple(getattr(self, name) for name in METRICS)


def frame_scores(pred: np.ndarray, target: np.ndarray) -> FrameScores:
    """All per-frame metrics of one prediction against its ground truth."""
    _check_masks(pred, target)
    tp = int(np.count_nonzero(pred & target))
    fp = int(np.count_nonzero(pred)) - tp
    fn = int(np.count_nonzero(target)) - tp
    return FrameScores(
        tp=tp,
        fp=fp,
        fn=fn,
        case=empty_case(tp + fp, tp + fn),
        hd95=hd95(pred, target),
        **overlap_scores(tp, fp, fn),
    )


def _nanmean(values: Iterable[float]) -> float:
    """Mean of the defined values; NaN (without numpy's warning) when there are none."""
    defined = [v for v in values if not math.isnan(v)]
    return sum(defined) / len(defined) if defined else math.nan


def _mean_scores(rows: list[tuple[float, ...]]) -> dict[str, float]:
    return {name: _nanmean(row[i] for row in rows) for i, name in enumerate(METRICS)}


@dataclass
class _Video:
    frames: list[FrameScores]
    last_pred: np.ndarray
    stability: list[float]


class SegmentationMeter:
    """Accumulates frames of one or more videos and aggregates them three named ways.

    ``per_frame``: mean over all frames (long videos weigh more). ``per_video``: mean over
    videos of each video's per-frame mean (every video weighs the same). ``pooled``: overlap
    metrics of the confusion counts summed over all frames (large lesions weigh more; no HD95).
    Every mean leaves out NaN (undefined) values; see the module docstring.
    """

    def __init__(self) -> None:
        self._videos: dict[str, _Video] = {}

    def update(self, pred: np.ndarray, target: np.ndarray, video: str) -> FrameScores:
        """Score one frame; frames of a video must arrive in temporal order."""
        scores = frame_scores(pred, target)
        record = self._videos.get(video)
        if record is None:
            self._videos[video] = _Video([scores], pred.copy(), [])
        else:
            record.stability.append(iou(record.last_pred, pred))
            record.frames.append(scores)
            record.last_pred = pred.copy()
        return scores

    @property
    def videos(self) -> tuple[str, ...]:
        """The videos scored so far, in the order they came."""
        return tuple(self._videos)

    def _frames(self) -> list[FrameScores]:
        return [frame for record in self._videos.values() for frame in record.frames]

    def per_frame(self) -> dict[str, float]:
        """Mean of each metric over all frames."""
        return _mean_scores([frame.values() for frame in self._frames()])

    def per_video_scores(self) -> dict[str, dict[str, float]]:
        """Each video's per-frame mean of each metric."""
        return {
            name: _mean_scores([frame.values() for frame in record.frames])
            for name, record in self._videos.items()
        }

    def per_video(self) -> dict[str, float]:
        """Mean over videos of each video's per-frame mean."""
        return _mean_scores([tuple(s.values()) for s in self.per_video_scores().values()])

    def pooled(self) -> dict[str, float]:
        """Overlap metrics of the confusion counts summed over all frames."""
        frames = self._frames()
        return overlap_scores(
            sum(f.tp for f in frames), sum(f.fp for f in frames), sum(f.fn for f in frames)
        )

    def temporal_stability(self) -> dict[str, float]:
        """Per video, mean IoU of consecutive predictions; NaN for a one-frame video."""
        return {name: _nanmean(record.stability) for name, record in self._videos.items()}

    def mean_temporal_stability(self) -> float:
        """Mean over videos (with at least two frames) of their temporal stability."""
        return _nanmean(self.temporal_stability().values())

    def counts(self) -> dict[str, int]:
        """How many frames and videos each mean rests on, and how many frames were empty."""
        cases = [frame.case for frame in self._frames()]
        both = cases.count(EmptyCase.BOTH)
        false_alarm = cases.count(EmptyCase.TARGET)
        missed = cases.count(EmptyCase.PREDICTION)
        return {
            "frames": len(cases),
            "videos": len(self._videos),
            "empty_target_frames": both + false_alarm,
            "both_empty_frames": both,
            "false_alarm_frames": false_alarm,
            "missed_frames": missed,
            "hd95_undefined_frames": false_alarm + missed,
        }

    def summary(self) -> dict[str, object]:
        """Every aggregation and count as a plain dict; undefined values become ``None``."""
        return {
            "per_frame": _jsonable(self.per_frame()),
            "per_video": _jsonable(self.per_video()),
            "pooled": _jsonable(self.pooled()),
            "temporal_stability": {
                "mean": _jsonable_value(self.mean_temporal_stability()),
                "per_video": _jsonable(self.temporal_stability()),
            },
            "counts": self.counts(),
        }


def _jsonable_value(value: float) -> float | None:
    return None if math.isnan(value) else value


def _jsonable(scores: Mapping[str, float]) -> dict[str, float | None]:
    return {name: _jsonable_value(value) for name, value in scores.items()}


_AGGREGATIONS: tuple[tuple[str, str], ...] = (
    ("per_frame", "per-frame"),
    ("per_video", "per-video"),
    ("pooled", "pooled"),
)
_HEADERS: tuple[str, ...] = ("Dice (%)", "IoU (%)", "Precision (%)", "Recall (%)", "HD95 (px)")


def _cell(value: float | None, percent: bool) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.2f}" if percent else f"{value:.2f}"


def meter_table(summary: Mapping[str, Any]) -> str:
    """A ``SegmentationMeter.summary()`` for people: its Markdown table, then its counts."""
    rows = [
        [label, *(_cell(summary[key].get(name), name != "hd95") for name in METRICS)]
        for key, label in _AGGREGATIONS
    ]
    stability = summary["temporal_stability"]["mean"]
    counts = summary["counts"]
    return "\n".join(
        [
            markdown_table(("aggregation", *_HEADERS), rows),
            "",
            f"Temporal stability (%, mean IoU of consecutive predictions): "
            f"{_cell(stability, True)}",
            ", ".join(f"{name.replace('_', ' ')}: {value}" for name, value in counts.items()),
        ]
    )
