"""Overlays, the per-frame CSV, the lesion-area plot and the choice of the still."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.drawing import FILL, FILL_ALPHA, TRUTH, draw_mask_overlay
from segmentation.report import FrameRecord, StillPicker, plot_area, write_csv


def _disk(shape: tuple[int, int], centre: tuple[int, int], radius: float) -> np.ndarray:
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (y - centre[0]) ** 2 + (x - centre[1]) ** 2 <= radius**2


def test_overlay_tints_inside_outlines_the_border_and_leaves_the_rest() -> None:
    image = np.full((41, 53), 100, np.uint8)
    mask = _disk((41, 53), (20, 25), 10)
    out = draw_mask_overlay(image, mask)
    assert out.shape == (41, 53, 3) and out.dtype == np.uint8
    assert (out[~mask] == 100).all()
    tint = np.rint((1 - FILL_ALPHA) * 100 + FILL_ALPHA * np.array(FILL)).astype(np.uint8)
    assert out[20, 25].tolist() == tint.tolist()  # the centre: translucent fill
    assert out[20, 15].tolist() == list(FILL)  # on the border: solid contour
    assert out[20, 16].tolist() == list(FILL)  # the contour is two pixels wide
    assert out[20, 17].tolist() == tint.tolist()
    assert (image == 100).all()  # the input is not modified


def test_overlay_outlines_truth_and_accepts_rgb_and_rgba() -> None:
    rgb = np.zeros((30, 30, 3), np.uint8)
    rgb[..., 0] = 50
    truth = np.zeros((30, 30), bool)
    truth[5:15, 5:15] = True
    empty = np.zeros((30, 30), bool)
    out = draw_mask_overlay(rgb, empty, truth)
    assert out[5, 10].tolist() == list(TRUTH) and out[6, 10].tolist() == list(TRUTH)
    assert out[10, 10].tolist() == [50, 0, 0]  # inside the truth, away from its outline
    assert out[20, 20].tolist() == [50, 0, 0]
    rgba = np.dstack([rgb, np.full((30, 30), 7, np.uint8)])
    assert np.array_equal(draw_mask_overlay(rgba, empty), rgb)
    assert np.array_equal(
        draw_mask_overlay(rgb[..., :1], empty), np.repeat(rgb[..., :1], 3, axis=2)
    )


def test_overlay_refuses_a_mask_of_another_size() -> None:
    with pytest.raises(ValueError, match="mask shape"):
        draw_mask_overlay(np.zeros((10, 12), np.uint8), np.zeros((12, 10), bool))
    with pytest.raises(ValueError, match="uint8"):
        draw_mask_overlay(np.zeros((10, 12), np.float32), np.zeros((10, 12), bool))


def test_demo_and_segment_draw_with_one_overlay() -> None:
    from model import demo
    from segmentation import run

    assert demo.draw_mask_overlay is run.draw_mask_overlay


def test_measure_area_probability_and_dice() -> None:
    mask = np.zeros((8, 8), bool)
    mask[2:4, 2:6] = True  # 8 px
    probability = np.where(mask, 0.75, 0.1)
    truth = np.zeros((8, 8), bool)
    truth[2:4, 4:8] = True  # 8 px, 4 shared
    record = FrameRecord.measure(3, 0.1, mask, probability, 12.345, truth)
    assert (record.index, record.status, record.lesion_area_px) == (3, "ok", 8)
    assert record.mean_probability == pytest.approx(0.75)
    assert record.dice == pytest.approx(2 * 4 / 16)
    none = FrameRecord.measure(4, 0.2, np.zeros((8, 8), bool), probability, 1.0, np.zeros((8, 8)))
    assert none.mean_probability is None and none.dice == 1.0  # both empty: a correct "no lesion"
    assert FrameRecord.measure(5, 0.3, mask, None, 1.0).dice is None


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_csv_columns_and_formatting(tmp_path: Path) -> None:
    records = [
        FrameRecord(0, 0.0, "ok", 120, 0.812345, 12.3456),
        FrameRecord.skipped(1, 1 / 30, "undecodable packet, corrupt\ndata"),
        FrameRecord(2, 2 / 30, "ok", 0, None, 9.0),
    ]
    write_csv(tmp_path / "frames.csv", records)
    header = (tmp_path / "frames.csv").read_text().splitlines()[0]
    assert header == "frame,timestamp_s,status,lesion_area_px,mean_probability,inference_ms"
    rows = _rows(tmp_path / "frames.csv")
    assert rows[0] == {
        "frame": "0",
        "timestamp_s": "0.000",
        "status": "ok",
        "lesion_area_px": "120",
        "mean_probability": "0.8123",
        "inference_ms": "12.35",
    }
    assert rows[1]["timestamp_s"] == "0.033"
    assert rows[1]["status"] == "skipped: undecodable packet, corrupt data"
    assert rows[1]["lesion_area_px"] == rows[1]["inference_ms"] == ""
    assert rows[2]["lesion_area_px"] == "0" and rows[2]["mean_probability"] == ""


def test_csv_has_dice_only_with_ground_truth(tmp_path: Path) -> None:
    records = [FrameRecord(0, 0.0, "ok", 5, 0.5, 1.0, dice=0.91234), FrameRecord(1, 0.1, "ok", 5)]
    write_csv(tmp_path / "frames.csv", records)
    rows = _rows(tmp_path / "frames.csv")
    assert [r["dice"] for r in rows] == ["0.9123", ""]


def test_plot_area_writes_a_png_of_the_expected_size(tmp_path: Path) -> None:
    records = [FrameRecord(i, i / 10, "ok", 100 + 10 * i, 0.8, 5.0) for i in range(20)]
    records[7] = FrameRecord.skipped(7, 0.7, "unreadable")
    plot_area(tmp_path / "area.png", records, "exam 3")
    with Image.open(tmp_path / "area.png") as image:
        assert image.format == "PNG" and image.size == (1000, 360)
        pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10  # something was drawn
    plot_area(tmp_path / "one.png", [FrameRecord.skipped(0, 0.0, "x")], "nothing segmented")
    assert Image.open(tmp_path / "one.png").size == (1000, 360)


def test_still_is_the_largest_lesion_else_the_first_frame() -> None:
    records = [
        FrameRecord(0, 0.0, "ok", 10),
        FrameRecord(1, 0.1, "ok", 40),
        FrameRecord.skipped(2, 0.2, "unreadable"),
        FrameRecord(3, 0.3, "ok", 40),
    ]
    picker = StillPicker()
    for record in records:
        picker.offer(record, np.full((2, 2, 3), record.index, np.uint8))
    record, image = picker.result()
    assert record.index == 1 and image[0, 0, 0] == 1
    picker = StillPicker()
    picker.offer(FrameRecord.skipped(0, 0.0, "x"), np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="no frame"):
        picker.result()
    picker.offer(FrameRecord(5, 0.5, "ok", 0), np.zeros((2, 2, 3), np.uint8))
    assert picker.result()[0].index == 5
