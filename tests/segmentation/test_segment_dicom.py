"""``runtimes.segment`` on DICOM ultrasound: pydicom's own example cine loop (from the
installed package), calibrated copies of it, the image region, and the Segmentation written
back, read again with pydicom alone."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import av
import numpy as np
import pydicom
import pytest
from click.testing import CliRunner, Result
from PIL import Image
from pydicom import examples

from segmentation.cli import main
from tests.support.matrix import PORTABLE_RUNTIMES

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
CINE = Path(examples.ybr_color.filename)  # US multi-frame, 30 x 240 x 320, JPEG YBR_FULL_422
# The file's region (x 84..595, y 31..414 at 0.051 mm) was written for a 640 x 480 frame and
# the file holds the loop at 320 x 240, so it is not used. The calibrated copy carries it
# halved: the same region at the frame's own scale.
DELTA_CM = 0.0102
FITTED = (42, 15, 297, 207)  # MinX0, MinY0, MaxX1, MaxY1: inclusive, inside the frame


def _segment(*args: object) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


def _rows(out: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(out / "frames.csv", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _masks(out: Path) -> dict[int, np.ndarray]:
    return {int(p.stem): np.asarray(Image.open(p)) > 0 for p in sorted((out / "masks").iterdir())}


def _calibrated_copy(folder: Path) -> Path:
    """The example loop with its region halved to the frame's scale (pixels untouched)."""
    ds = pydicom.dcmread(CINE)
    region = ds.SequenceOfUltrasoundRegions[0]
    region.RegionLocationMinX0, region.RegionLocationMinY0 = FITTED[:2]
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = FITTED[2:]
    region.PhysicalDeltaX = region.PhysicalDeltaY = DELTA_CM
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "calibrated.dcm"
    ds.save_as(path)
    return path


@pytest.fixture(scope="module")
def cine_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cine") / "out"
    _segment("--input", CINE, "--out", out)
    return out


def test_a_cine_loop_keeps_its_frame_times_and_says_it_has_no_usable_calibration(
    cine_run: Path,
) -> None:
    columns, rows = _rows(cine_run)
    assert len(rows) == 30 and all(r["status"] == "ok" for r in rows)
    assert "lesion_area_mm2" not in columns
    frame_time = float(pydicom.dcmread(CINE, stop_before_pixels=True).FrameTime) / 1000
    assert [float(r["timestamp_s"]) for r in rows] == pytest.approx(
        [i * frame_time for i in range(30)], abs=1e-3
    )
    with av.open(str(cine_run / "overlay.mp4")) as video:
        stream = video.streams.video[0]
        times = [float(f.pts * f.time_base) for f in video.decode(stream)]
    assert times == pytest.approx([i * frame_time for i in range(30)], abs=2e-3)
    assert {m.shape for m in _masks(cine_run).values()} == {(240, 320)}
    (source,) = json.loads((cine_run / "summary.json").read_text())["sources"]
    assert source["calibrated_region"] is None and "outside" in source["calibration"]


def test_the_segmentation_references_the_loop_and_holds_the_masks(cine_run: Path) -> None:
    seg = pydicom.dcmread(cine_run / "segmentation.dcm")
    source = pydicom.dcmread(CINE, stop_before_pixels=True)
    assert seg.SOPClassUID == SEGMENTATION_STORAGE and seg.Modality == "SEG"
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert int(seg.NumberOfFrames) == 30
    masks = _masks(cine_run)
    frames = seg.pixel_array.reshape(30, 240, 320).astype(bool)
    referenced = [
        int(f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber)
        for f in seg.PerFrameFunctionalGroupsSequence
    ]
    for frame, number in zip(frames, referenced, strict=True):
        np.testing.assert_array_equal(frame, masks[number - 1])


def test_a_calibrated_loop_gives_the_lesion_in_square_millimetres(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _segment("--input", _calibrated_copy(tmp_path), "--out", out, "--max-frames", 6)
    columns, rows = _rows(out)
    assert columns[-3:] == ["lesion_area_mm2", "bbox_width_mm", "bbox_height_mm"]
    left, top, right, bottom = FITTED[0], FITTED[1], FITTED[2] + 1, FITTED[3] + 1
    mm = DELTA_CM * 10
    for row, mask in zip(rows, _masks(out).values(), strict=True):
        inside = mask[top:bottom, left:right]
        assert float(row["lesion_area_mm2"]) == pytest.approx(inside.sum() * mm * mm, abs=0.01)
    assert any(float(r["lesion_area_mm2"]) > 0 for r in rows)
    (source,) = json.loads((out / "summary.json").read_text())["sources"]
    assert source["calibrated_region"] == [left, top, right, bottom]
    assert source["mm_per_px"] == pytest.approx([mm, mm])


def test_crop_to_region_segments_only_the_stated_region(tmp_path: Path) -> None:
    out = tmp_path / "out"
    calibrated = _calibrated_copy(tmp_path)
    _segment("--input", calibrated, "--out", out, "--max-frames", 4, "--crop-to-region")
    (source,) = json.loads((out / "summary.json").read_text())["sources"]
    left, top, right, bottom = source["crop"]
    assert source["crop"] == source["calibrated_region"]
    for mask in _masks(out).values():
        outside = mask.copy()
        outside[top:bottom, left:right] = False
        assert not outside.any()


def test_crop_to_region_detects_the_image_where_the_stated_region_is_unusable(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    _segment("--input", CINE, "--out", out, "--max-frames", 3, "--crop-to-region")
    (source,) = json.loads((out / "summary.json").read_text())["sources"]
    assert source["crop_source"].startswith("detected")


def test_a_study_folder_is_one_series_in_instance_order(tmp_path: Path) -> None:
    """The loop's frames as single-frame files, named against their instance order."""
    study = tmp_path / "study"
    study.mkdir()
    loop = pydicom.dcmread(CINE)
    frames = loop.pixel_array[:6]  # RGB, as pydicom decodes YBR JPEG by default
    for number, frame in enumerate(frames, start=1):
        ds = pydicom.dcmread(examples.rgb_color.filename)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = loop.StudyInstanceUID, "1.2.3.4.5"
        ds.SOPInstanceUID = f"1.2.3.4.5.{number}"
        ds.InstanceNumber = number
        ds.PixelData = np.ascontiguousarray(frame).tobytes()
        ds.save_as(study / f"IM{7 - number:04d}")  # names run against instance order
    out = tmp_path / "out"
    _segment("--input", study, "--out", out, "--every", 2)
    seg = pydicom.dcmread(out / "segmentation.dcm")
    referenced = [
        f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        for f in seg.PerFrameFunctionalGroupsSequence
    ]
    assert referenced == ["1.2.3.4.5.1", "1.2.3.4.5.3", "1.2.3.4.5.5"]


@pytest.mark.slow
@pytest.mark.parametrize(("target", "runtime"), PORTABLE_RUNTIMES)
def test_every_runtime_segments_the_loop(
    built_artifact, tmp_path: Path, target: str, runtime: str
) -> None:
    artifact = built_artifact(target, "S", "fp32", "stream")
    out = tmp_path / "out"
    _segment(
        "--artifact", artifact, "--runtime", runtime, "--input", CINE, "--out", out,
        "--max-frames", 3,
    )  # fmt: skip
    seg = pydicom.dcmread(out / "segmentation.dcm")
    assert int(seg.NumberOfFrames) == 3
    assert f"via {runtime}" in str(seg.SegmentSequence[0])  # the algorithm's version
