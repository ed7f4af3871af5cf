"""Metrics against hand-computed values, including every empty-mask case and each aggregation."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from model.metrics import (
    EmptyCase,
    SegmentationMeter,
    frame_scores,
    hd95,
    meter_table,
    overlap_scores,
)


def mask(shape: tuple[int, int], *pixels: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    for row, col in pixels:
        out[row, col] = True
    return out


def square(shape: tuple[int, int], top: int, left: int, side: int) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    out[top : top + side, left : left + side] = True
    return out


EMPTY = np.zeros((6, 6), dtype=bool)


def test_offset_squares() -> None:
    # Two 2x2 squares sharing one column: |P∩G| = 2, |P| = |G| = 4, |P∪G| = 6.
    # Every pixel is a boundary pixel; per side two distances are 0 and two are 1,
    # so the pooled distances are 0,0,0,0,1,1,1,1 and their 95th percentile is 1.
    s = frame_scores(square((6, 6), 1, 1, 2), square((6, 6), 1, 2, 2))
    assert (s.tp, s.fp, s.fn) == (2, 2, 2)
    assert s.dice == pytest.approx(0.5)
    assert s.iou == pytest.approx(1 / 3)
    assert s.precision == pytest.approx(0.5)
    assert s.recall == pytest.approx(0.5)
    assert s.hd95 == pytest.approx(1.0)


def test_single_pixels_apart() -> None:
    # A 3-4-5 triangle: both directed distances are 5.
    s = frame_scores(mask((6, 6), (0, 0)), mask((6, 6), (3, 4)))
    assert (s.dice, s.iou, s.precision, s.recall) == (0.0, 0.0, 0.0, 0.0)
    assert s.hd95 == pytest.approx(5.0)


def test_pixel_inside_square() -> None:
    # P is the centre of a 3x3 G. G's boundary is its 8 outer pixels (the centre is interior).
    # Distances: P -> G is 1; G -> P is 1 for 4 edge pixels and sqrt(2) for 4 corners.
    # Sorted pooled distances: five 1s then four sqrt(2)s; percentile 95 is at index 7.6.
    s = frame_scores(mask((5, 5), (2, 2)), square((5, 5), 1, 1, 3))
    assert s.dice == pytest.approx(2 / 10)
    assert s.iou == pytest.approx(1 / 9)
    assert s.precision == pytest.approx(1.0)
    assert s.recall == pytest.approx(1 / 9)
    assert s.hd95 == pytest.approx(math.sqrt(2))


def test_identical_masks() -> None:
    m = square((8, 8), 2, 1, 4)
    s = frame_scores(m, m)
    assert s.values() == (1.0, 1.0, 1.0, 1.0, 0.0)
    assert s.case is EmptyCase.NEITHER


def test_hd95_ignores_a_few_far_outliers() -> None:
    # 76 boundary pixels agree exactly; one stray predicted pixel 20 px away is 1 of 153
    # distances, above the 95th percentile, so HD95 stays 0 (plain Hausdorff would be 20).
    target = square((40, 40), 0, 0, 20)
    pred = target.copy()
    pred[39, 20] = True
    assert hd95(pred, target) == 0.0


def test_both_empty_is_a_correct_no_lesion() -> None:
    s = frame_scores(EMPTY, EMPTY)
    assert s.case is EmptyCase.BOTH
    assert s.values() == (1.0, 1.0, 1.0, 1.0, 0.0)


def test_false_alarm_on_empty_target() -> None:
    s = frame_scores(mask((6, 6), (2, 2)), EMPTY)
    assert s.case is EmptyCase.TARGET
    assert (s.dice, s.iou, s.precision) == (0.0, 0.0, 0.0)
    assert math.isnan(s.recall)
    assert math.isnan(s.hd95)


def test_missed_lesion() -> None:
    s = frame_scores(EMPTY, mask((6, 6), (2, 2)))
    assert s.case is EmptyCase.PREDICTION
    assert (s.dice, s.iou, s.recall) == (0.0, 0.0, 0.0)
    assert math.isnan(s.precision)
    assert math.isnan(s.hd95)


def test_empty_cases_in_means_and_counts() -> None:
    meter = SegmentationMeter()
    lesion = square((6, 6), 1, 1, 2)
    meter.update(EMPTY, EMPTY, "v")  # all 1, HD95 0
    meter.update(lesion, EMPTY, "v")  # false alarm: recall and HD95 left out
    meter.update(EMPTY, lesion, "v")  # miss: precision and HD95 left out
    meter.update(lesion, lesion, "v")  # all 1, HD95 0
    per_frame = meter.per_frame()
    assert per_frame["dice"] == pytest.approx(2 / 4)
    assert per_frame["iou"] == pytest.approx(2 / 4)
    assert per_frame["precision"] == pytest.approx(2 / 3)
    assert per_frame["recall"] == pytest.approx(2 / 3)
    assert per_frame["hd95"] == 0.0
    assert meter.counts() == {
        "frames": 4,
        "videos": 1,
        "empty_target_frames": 2,
        "both_empty_frames": 1,
        "false_alarm_frames": 1,
        "missed_frames": 1,
        "hd95_undefined_frames": 2,
    }


def test_pooled_counts_follow_the_same_rule() -> None:
    assert overlap_scores(0, 0, 0) == dict.fromkeys(("dice", "iou", "precision", "recall"), 1.0)
    false_alarm = overlap_scores(0, 3, 0)
    assert false_alarm["precision"] == 0.0
    assert math.isnan(false_alarm["recall"])


def two_video_meter() -> SegmentationMeter:
    # Video a: one perfect 2x2 frame. Video b: two frames with single pixels 3 px apart.
    meter = SegmentationMeter()
    lesion = square((6, 6), 1, 1, 2)
    meter.update(lesion, lesion, "a")
    for _ in range(2):
        meter.update(mask((6, 6), (0, 0)), mask((6, 6), (0, 3)), "b")
    return meter


def test_aggregations_differ() -> None:
    meter = two_video_meter()
    # Per-frame Dice (1 + 0 + 0) / 3; per-video (1 + 0) / 2; pooled tp=4, fp=2, fn=2.
    assert meter.per_frame()["dice"] == pytest.approx(1 / 3)
    assert meter.per_video()["dice"] == pytest.approx(1 / 2)
    pooled = meter.pooled()
    assert pooled["dice"] == pytest.approx(8 / 12)
    assert pooled["iou"] == pytest.approx(4 / 8)
    assert pooled["precision"] == pytest.approx(4 / 6)
    assert pooled["recall"] == pytest.approx(4 / 6)
    assert "hd95" not in pooled
    assert meter.per_frame()["hd95"] == pytest.approx((0 + 3 + 3) / 3)
    assert meter.per_video()["hd95"] == pytest.approx((0 + 3) / 2)
    assert meter.per_video_scores()["b"]["dice"] == 0.0


def test_temporal_stability_uses_predictions_only() -> None:
    meter = SegmentationMeter()
    shape = (6, 6)
    preds = [square(shape, 1, 1, 2), square(shape, 1, 2, 2), EMPTY, EMPTY]
    for pred in preds:  # consecutive IoUs: 2/6, 0 (one empty), 1 (both empty)
        meter.update(pred, EMPTY, "clip")
    meter.update(EMPTY, EMPTY, "single")  # one frame: no consecutive pair, left out
    stability = meter.temporal_stability()
    assert stability["clip"] == pytest.approx((1 / 3 + 0 + 1) / 3)
    assert math.isnan(stability["single"])
    assert meter.mean_temporal_stability() == pytest.approx(4 / 9)


def test_summary_is_strict_json_and_table_renders() -> None:
    meter = two_video_meter()
    meter.update(mask((6, 6), (2, 2)), EMPTY, "c")  # recall undefined in every frame of c
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = meter.summary()
    json.dumps(summary, allow_nan=False)
    assert summary["per_video"]["recall"] == pytest.approx((1 + 0) / 2)
    assert summary["temporal_stability"]["per_video"]["a"] is None
    assert summary["counts"]["hd95_undefined_frames"] == 1

    table = meter_table(summary).splitlines()
    assert table[0] == (
        "| aggregation | Dice (%) | IoU (%) | Precision (%) | Recall (%) | HD95 (px) |"
    )
    assert table[2] == "| per-frame | 25.00 | 25.00 | 25.00 | 33.33 | 2.00 |"
    assert table[3] == "| per-video | 33.33 | 33.33 | 33.33 | 50.00 | 1.50 |"
    assert table[4] == "| pooled | 61.54 | 44.44 | 57.14 | 66.67 | n/a |"
    assert table[6] == "Temporal stability (%, mean IoU of consecutive predictions): 100.00"


def test_rejects_non_bool_and_mismatched_masks() -> None:
    with pytest.raises(TypeError, match="bool"):
        frame_scores(np.ones((4, 4)), np.ones((4, 4), dtype=bool))
    with pytest.raises(ValueError, match="shape"):
        frame_scores(np.ones((4, 4), dtype=bool), np.ones((4, 5), dtype=bool))
