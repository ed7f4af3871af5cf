"""segmentation.dicom_sr: the TID 1500 measurement report of a loop, beside its SEG.

Built on pydicom's real ultrasound examples (read in place, never changed) with small
synthetic masks; every report is checked by dciodvfy (dicom3tools), then read back with
highdicom, the way a reporting system would read it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom import dcmread, examples
from pydicom.sr.codedict import codes
from pydicom.uid import ComprehensiveSRStorage

from model.errors import ProjectError
from segmentation.dicom_seg import PATIENT_STUDY_TYPE2, SEG_SERIES_OFFSET, write_segmentation
from segmentation.dicom_sr import (
    SR_SERIES_OFFSET,
    LoopMeasurements,
    check_measurement_report,
    write_measurement_report,
)
from segmentation.regions import ImageRegion, bbox_size
from segmentation.report import FrameRecord
from tests.segmentation.test_dicom_seg import single_frame_series
from tests.support.dciodvfy import ALLOWED_WARNINGS, ANONYMISED_WARNINGS, assert_dciodvfy_clean

LOOP = Path(examples.get_path("ybr_color"))  # 30 frames of 240 x 320, no Frame of Reference
STILL = Path(examples.get_path("rgb_color"))  # one frame, 240 x 320
VERSION = "BaS-S stream fp32 via litert (cpu)"
NO_REGION = "none: no Sequence of Ultrasound Regions (0018,6011)"
LOOP_ORIGINS = [(LOOP, n) for n in range(1, 31)]  # loop frame i comes from frame i + 1


def box(top: int, left: int, height: int, width: int) -> np.ndarray:
    mask = np.zeros((240, 320), bool)
    mask[top : top + height, left : left + width] = True
    return mask


def disc(radius: int, centre: tuple[int, int] = (120, 100)) -> np.ndarray:
    yy, xx = np.mgrid[:240, :320]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius**2


def run(frames: list[int], masks: list[np.ndarray], region: ImageRegion | None = None):
    """What a run of the loop records: frame 2 skipped, ``frames`` (0-based) segmented."""
    records = [FrameRecord.skipped(2, 2 / 30, "decode failed")]
    records += [
        FrameRecord.measure(i, i / 30, m, None, 1.0, calibrated=region)
        for i, m in zip(frames, masks, strict=True)
    ]
    records.sort(key=lambda r: r.index)
    return records


def seg_and_report(
    folder: Path,
    origins: list[tuple[Path, int]],
    masks: list[np.ndarray],
    measurements: LoopMeasurements,
    version: str = VERSION,
) -> tuple[Path, Path]:
    seg = write_segmentation(folder / "segmentation.dcm", origins, masks, algorithm_version=version)
    sr = write_measurement_report(folder / "report.dcm", seg, origins, measurements, version)
    return seg, sr


def read_back(path: Path):
    """The report through highdicom: the Measurement Report's two groups."""
    sr = hd.sr.srread(path)
    assert isinstance(sr, hd.sr.ComprehensiveSR) and sr.SOPClassUID == ComprehensiveSRStorage
    report = sr.content
    assert isinstance(report, hd.sr.MeasurementReport)
    (largest,) = report.get_planar_roi_measurement_groups()
    (loop,) = report.get_volumetric_roi_measurement_groups()
    return sr, largest, loop


def value(group, name, derivation=None) -> tuple[float, str]:
    (found,) = [
        m
        for m in group.get_measurements(name=name)
        if derivation is None or m.derivation == derivation
    ]
    return found.value, found.unit.value


def comments(group) -> list[str]:
    items = hd.sr.utils.find_content_items(group[0], name=codes.DCM.Comment, value_type="TEXT")
    return [item.TextValue for item in items]


def texts(group, name) -> list[str]:
    return [i.TextValue for i in hd.sr.utils.find_content_items(group[0], name=name)]


@pytest.mark.slow
def test_loop_in_pixels_round_trip(tmp_path: Path) -> None:
    """Every second frame of the loop segmented, frame 2 skipped, no calibration."""
    frames = [0, 4, 6, 8, 10]  # loop indexes: source frames 1, 5, 7, 9, 11
    masks = [
        box(100, 50, 20, 30),
        np.zeros((240, 320), bool),
        disc(25),
        box(90, 60, 10, 40),
        disc(5),
    ]
    records = run(frames, masks)
    origins = [LOOP_ORIGINS[i] for i in frames]
    m = LoopMeasurements.from_records(records, LOOP_ORIGINS, NO_REGION)
    areas = [int(x.sum()) for x in masks]
    assert m.units == "pixels" and m.calibration == NO_REGION
    assert m.largest_area == max(areas) == int(disc(25).sum())
    assert (m.largest_origin, m.largest_index) == ((LOOP, 7), 6)
    assert m.mean_area == pytest.approx(np.mean(areas))  # the empty frame counts 0
    assert (m.bbox_width, m.bbox_height) == (49, 49) == bbox_size(disc(25))
    assert m.frames_segmented == 5

    seg_path, sr_path = seg_and_report(tmp_path, origins, masks, m)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.dcm", "segmentation.dcm"]
    assert_dciodvfy_clean(sr_path, iod="ComprehensiveSR")

    sr, largest, loop = read_back(sr_path)
    source, seg = dcmread(LOOP, stop_before_pixels=True), dcmread(seg_path)
    # same patient and study as the source, a series of its own
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "StudyID"):
        assert sr[keyword].value == source[keyword].value, keyword
    assert sr.SeriesInstanceUID not in (source.SeriesInstanceUID, seg.SeriesInstanceUID)
    assert sr.SeriesNumber == source.SeriesNumber + SR_SERIES_OFFSET
    assert seg.SeriesNumber == source.SeriesNumber + SEG_SERIES_OFFSET
    assert sr.Modality == "SR" and sr.CompletionFlag == "COMPLETE"
    # values and units (UCUM "{pixels}")
    assert value(largest, codes.SCT.Area, codes.SCT.Maximum) == (m.largest_area, "{pixels}")
    assert value(largest, codes.SCT.Width) == (49, "{pixels}")
    assert value(largest, codes.DCM.Height) == (49, "{pixels}")
    mean, unit = value(loop, codes.SCT.Area, codes.SCT.Mean)
    assert mean == pytest.approx(np.mean(areas)) and unit == "{pixels}"
    assert value(loop, codes.DCM.NumberOfFrames) == (5, "{frames}")
    for group in (largest, loop):
        assert f"Areas and lengths in pixels, not calibrated: {NO_REGION}" in comments(group)
        assert group.finding_type == codes.SCT.Mass
        assert group.finding_sites[0].value == codes.SCT.Breast
    assert largest.tracking_uid == loop.tracking_uid and largest.tracking_identifier == "Lesion"
    assert any("Largest lesion area of the loop: frame 7 of" in c for c in comments(largest))
    # references: the SEG frame of the largest lesion (its 3rd), its segment, its source frame
    frame_ref = largest.referenced_segmentation_frame
    assert frame_ref.referenced_sop_class_uid == seg.SOPClassUID
    assert frame_ref.referenced_sop_instance_uid == seg.SOPInstanceUID
    assert frame_ref.referenced_frame_numbers == [3]
    derived = seg.PerFrameFunctionalGroupsSequence[2].DerivationImageSequence[0]
    assert derived.SourceImageSequence[0].ReferencedFrameNumber == 7
    image = frame_ref.source_image_for_segmentation
    assert image.referenced_sop_class_uid == source.SOPClassUID
    assert image.referenced_sop_instance_uid == source.SOPInstanceUID
    assert image.referenced_frame_numbers == [7]
    segment = loop.referenced_segment
    assert segment.referenced_sop_instance_uid == seg.SOPInstanceUID
    assert segment.referenced_segment_numbers == [1]
    (images,) = segment.source_images_for_segmentation
    assert images.referenced_sop_instance_uid == source.SOPInstanceUID
    assert images.referenced_frame_numbers == [1, 5, 7, 9, 11]
    # the evidence: the source and the SEG, in this study
    (evidence,) = sr.CurrentRequestedProcedureEvidenceSequence
    listed = {
        i.ReferencedSOPInstanceUID
        for s in evidence.ReferencedSeriesSequence
        for i in s.ReferencedSOPSequence
    }
    assert listed == {source.SOPInstanceUID, seg.SOPInstanceUID}
    # the algorithm as the SEG names it
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    for group in (largest, loop):
        assert texts(group, codes.DCM.AlgorithmName) == [algorithm.AlgorithmName] == ["BaS"]
        assert texts(group, codes.DCM.AlgorithmVersion) == [algorithm.AlgorithmVersion]
    check_measurement_report(sr_path, seg_path, origins, m, VERSION)


@pytest.mark.slow
def test_calibrated_loop_in_mm(tmp_path: Path) -> None:
    region = ImageRegion(0, 0, 320, 240, "test region", (0.1, 0.2))
    frames = [0, 1, 3]
    masks = [box(100, 50, 20, 30), box(100, 50, 30, 40), box(100, 50, 10, 10)]
    m = LoopMeasurements.from_records(run(frames, masks, region), LOOP_ORIGINS, "test region")
    assert m.units == "mm" and m.largest_origin == (LOOP, 2) and m.largest_index == 1
    assert m.largest_area == pytest.approx(1200 * 0.1 * 0.2)
    assert (m.bbox_width, m.bbox_height) == pytest.approx((4.0, 6.0))
    assert m.mean_area == pytest.approx((600 + 1200 + 100) * 0.02 / 3)
    origins = [LOOP_ORIGINS[i] for i in frames]
    _, sr_path = seg_and_report(tmp_path, origins, masks, m)
    assert_dciodvfy_clean(sr_path, iod="ComprehensiveSR")
    _, largest, loop = read_back(sr_path)
    area, unit = value(largest, codes.SCT.Area, codes.SCT.Maximum)
    assert area == pytest.approx(24.0) and unit == "mm2"
    width, unit = value(largest, codes.SCT.Width)
    assert width == pytest.approx(4.0) and unit == "mm"
    height, unit = value(largest, codes.DCM.Height)
    assert height == pytest.approx(6.0) and unit == "mm"
    mean, unit = value(loop, codes.SCT.Area, codes.SCT.Mean)
    assert mean == pytest.approx(m.mean_area) and unit == "mm2"
    assert "Areas in mm2, lengths in mm; calibration: test region" in comments(largest)


@pytest.mark.slow
def test_loop_without_lesion_says_so(tmp_path: Path) -> None:
    masks = [np.zeros((240, 320), bool)] * 3
    m = LoopMeasurements.from_records(run([3, 4, 5], masks), LOOP_ORIGINS, NO_REGION)
    assert not m.lesion_found
    assert (m.largest_area, m.mean_area, m.bbox_width, m.bbox_height) == (0, 0, 0, 0)
    assert m.largest_origin == (LOOP, 4)  # the first segmented, as the run's still
    _, sr_path = seg_and_report(tmp_path, [LOOP_ORIGINS[i] for i in (3, 4, 5)], masks, m)
    assert_dciodvfy_clean(sr_path, iod="ComprehensiveSR")
    _, largest, loop = read_back(sr_path)
    assert value(largest, codes.SCT.Area, codes.SCT.Maximum) == (0, "{pixels}")
    assert value(loop, codes.SCT.Area, codes.SCT.Mean) == (0, "{pixels}")
    assert any(c.startswith("No lesion found in any of the 3 segmented") for c in comments(largest))


@pytest.mark.slow
def test_single_still_and_long_version(tmp_path: Path) -> None:
    """A single-frame source: no frame numbers in its references; a version longer than
    an LO is cut as in the SEG, the whole of it kept as an Algorithm Parameter."""
    version = "BaS-S stream fp32 via litert, bas_s_stream_240_fp32.tflite sha256 " + "1a2b" * 16
    mask = disc(30)
    records = [FrameRecord.measure(0, 0.0, mask, None, 1.0)]
    m = LoopMeasurements.from_records(records, [(STILL, 1)], NO_REGION)
    seg_path, sr_path = seg_and_report(tmp_path, [(STILL, 1)], [mask], m, version)
    assert_dciodvfy_clean(sr_path, iod="ComprehensiveSR")
    _, largest, _ = read_back(sr_path)
    image = largest.referenced_segmentation_frame.source_image_for_segmentation
    assert image.referenced_frame_numbers is None
    assert image.referenced_sop_instance_uid == dcmread(STILL).SOPInstanceUID
    seg = dcmread(seg_path)
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert len(algorithm.AlgorithmVersion) == 64
    assert texts(largest, codes.DCM.AlgorithmVersion) == [algorithm.AlgorithmVersion]
    assert texts(largest, codes.DCM.AlgorithmParameters) == [version]


@pytest.mark.slow
def test_series_of_single_frame_files(tmp_path: Path) -> None:
    files = single_frame_series(tmp_path / "series", 4)
    origins = [(f, 1) for f in files]
    masks = [disc(10), disc(30), np.zeros((240, 320), bool), disc(20)]
    records = [FrameRecord.measure(i, i / 30, x, None, 1.0) for i, x in enumerate(masks)]
    m = LoopMeasurements.from_records(records, origins, NO_REGION)
    assert m.largest_origin == (files[1], 1) and m.largest_index == 1
    _, sr_path = seg_and_report(tmp_path / "out", origins, masks, m)
    assert_dciodvfy_clean(sr_path, iod="ComprehensiveSR")
    _, largest, loop = read_back(sr_path)
    uids = [dcmread(f).SOPInstanceUID for f in files]
    image = largest.referenced_segmentation_frame.source_image_for_segmentation
    assert (image.referenced_sop_instance_uid, image.referenced_frame_numbers) == (uids[1], None)
    assert largest.referenced_segmentation_frame.referenced_frame_numbers == [2]
    sources = loop.referenced_segment.source_images_for_segmentation
    assert [s.referenced_sop_instance_uid for s in sources] == uids


@pytest.mark.slow
def test_anonymised_source(tmp_path: Path) -> None:
    """An anonymiser dropped the Type 2 identifiers: the report has them, empty."""
    ds = dcmread(LOOP)
    for keyword in PATIENT_STUDY_TYPE2:
        del ds[keyword]
    source = tmp_path / "anonymised.dcm"
    ds.save_as(source, enforce_file_format=True)
    before = source.read_bytes()
    masks = [disc(20), disc(30)]
    origins = [(source, 1), (source, 2)]
    records = run([0, 1], masks)
    m = LoopMeasurements.from_records(records, origins, NO_REGION)
    _, sr_path = seg_and_report(tmp_path / "out", origins, masks, m)
    assert source.read_bytes() == before
    sr = dcmread(sr_path)
    for keyword in PATIENT_STUDY_TYPE2:
        assert keyword in sr and sr[keyword].is_empty, keyword
    assert sr.StudyInstanceUID == ds.StudyInstanceUID
    allowed = {**ALLOWED_WARNINGS, **ANONYMISED_WARNINGS}
    assert_dciodvfy_clean(sr_path, allowed, iod="ComprehensiveSR")


def test_refusals_write_nothing(tmp_path: Path) -> None:
    masks = [disc(20), disc(30)]
    origins = [LOOP_ORIGINS[0], LOOP_ORIGINS[1]]
    m = LoopMeasurements.from_records(run([0, 1], masks), LOOP_ORIGINS, NO_REGION)
    seg = write_segmentation(tmp_path / "seg.dcm", origins, masks, algorithm_version="v")
    out = tmp_path / "out" / "report.dcm"
    cases = [
        ([LOOP_ORIGINS[1], LOOP_ORIGINS[2]], m, "frame 1 is not of"),
        (origins[:1], m, "2 frames measured, 1 segmented"),
        (origins, dataclasses.replace(m, largest_origin=(LOOP, 9)), "is not among the segmented"),
    ]
    for these, measured, message in cases:
        with pytest.raises(ProjectError, match=message) as err:
            write_measurement_report(out, seg, these, measured, "v")
        assert "\n" not in str(err.value)
    with pytest.raises(ProjectError, match="not a readable DICOM Segmentation"):
        write_measurement_report(out, LOOP, origins, m, "v")
    assert not out.parent.exists()


def test_check_refuses_other_measurements(tmp_path: Path) -> None:
    masks = [disc(20), disc(30)]
    origins = LOOP_ORIGINS[:2]
    m = LoopMeasurements.from_records(run([0, 1], masks), LOOP_ORIGINS, NO_REGION)
    seg, sr = seg_and_report(tmp_path, origins, masks, m)
    check_measurement_report(sr, seg, origins, m, VERSION)
    bigger = dataclasses.replace(m, largest_area=m.largest_area + 1)
    with pytest.raises(ProjectError, match=f"Area is {m.largest_area}, not {m.largest_area + 1}"):
        check_measurement_report(sr, seg, origins, bigger)
    mm = dataclasses.replace(m, units="mm")
    with pytest.raises(ProjectError, match="is in {pixels}, not mm2"):
        check_measurement_report(sr, seg, origins, mm)
    with pytest.raises(ProjectError, match="names the algorithm"):
        check_measurement_report(sr, seg, origins, m, "another version")
    with pytest.raises(ProjectError, match="not a Comprehensive SR"):
        check_measurement_report(seg, seg, origins, m)


def test_measurements_refuse_what_they_cannot_state() -> None:
    masks = [disc(20)]
    records = run([0], masks)
    with pytest.raises(ValueError, match="need the reason"):
        LoopMeasurements(1, (LOOP, 1), 0, 1, 1, 1, 1, "pixels", " ")
    with pytest.raises(ValueError, match="units must be"):
        LoopMeasurements(1, (LOOP, 1), 0, 1, 1, 1, 1, "cm", "x")
    with pytest.raises(ValueError, match="nothing to report"):
        skipped = [r for r in records if not r.ok]
        LoopMeasurements.from_records(skipped, LOOP_ORIGINS, NO_REGION)
    assert bbox_size(np.zeros((4, 4), bool)) == (0, 0)
    assert bbox_size(box(10, 20, 3, 7)) == (7, 3)
