"""segmentation.dicom_seg on real ultrasound files shipped with pydicom (read in place, never
copied), and on variants of them written into tmp_path.

ybr_color: Ultrasound Multi-frame, 30 frames of 240 x 320, JPEG baseline YBR_FULL_422, no
Frame of Reference. rgb_color: one Ultrasound Image, 240 x 320 RGB. palette_color: one,
350 x 800, palette colour. jpeg2k: one, 480 x 640, JPEG 2000 lossless YBR_RCT. Every SEG is
checked by dciodvfy (dicom3tools), a validator nobody here wrote.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom import dcmread, examples
from pydicom.sr.codedict import codes
from pydicom.uid import (
    ExplicitVRLittleEndian,
    SegmentationStorage,
    UltrasoundImageStorage,
    generate_uid,
)

from model.errors import ProjectError
from segmentation.dicom_seg import PATIENT_STUDY_TYPE2, check_segmentation, write_segmentation
from tests.support.dciodvfy import ALLOWED_WARNINGS, ANONYMISED_WARNINGS, assert_dciodvfy_clean

VERSION = "BaS-S stream fp32 via litert, bas_s_stream_240_fp32.tflite sha256 " + "1a2b" * 16
LOOP = Path(examples.get_path("ybr_color"))
STILL = Path(examples.get_path("rgb_color"))
PALETTE = Path(examples.get_path("palette_color"))
JPEG2K = Path(examples.get_path("jpeg2k"))


def disc_masks(count: int, empty_every: int = 4) -> list[np.ndarray]:
    """A disc moving right across 240 x 320 frames; every ``empty_every``-th frame has none."""
    yy, xx = np.mgrid[:240, :320]
    return [
        np.zeros((240, 320), bool)
        if i % empty_every == 1
        else (yy - 120) ** 2 + (xx - 40 - 9 * i) ** 2 < 30**2
        for i in range(count)
    ]


def disc(shape: tuple[int, int], shift: int = 0) -> np.ndarray:
    """A disc of radius a tenth of the frame, left of centre, moved right by ``shift``."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    radius = min(shape) // 10
    return (yy - shape[0] // 2) ** 2 + (xx - shape[1] // 3 - shift) ** 2 < radius**2


def header(path: Path):
    return dcmread(path, stop_before_pixels=True)


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def assert_seg_matches(seg_path: Path, sources: list, frames: list[int], masks: list) -> None:
    """Read the SEG back with pydicom and, independently, with highdicom."""
    ds = dcmread(seg_path)
    assert ds.SOPClassUID == SegmentationStorage and ds.SegmentationType == "BINARY"
    assert ds.StudyInstanceUID == sources[0].StudyInstanceUID
    assert ds.SeriesInstanceUID != sources[0].SeriesInstanceUID
    (series,) = ds.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == sources[0].SeriesInstanceUID
    referenced = [item.ReferencedSOPInstanceUID for item in series.ReferencedInstanceSequence]
    assert referenced == list(dict.fromkeys(s.SOPInstanceUID for s in sources))
    assert int(ds.NumberOfFrames) == len(masks) == len(frames)
    pixels = ds.pixel_array.reshape(len(masks), 240, 320)
    np.testing.assert_array_equal(pixels.astype(bool), np.stack(masks))
    for item, source, frame in zip(
        ds.PerFrameFunctionalGroupsSequence, sources, frames, strict=True
    ):
        ref = item.DerivationImageSequence[0].SourceImageSequence[0]
        assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert ref.ReferencedSOPClassUID == source.SOPClassUID
        assert int(ref.get("ReferencedFrameNumber") or 1) == frame
    seg = hd.seg.segread(seg_path)
    assert seg.number_of_frames == len(masks)
    assert "FrameOfReferenceUID" not in seg
    (segment,) = seg.SegmentSequence
    assert segment.SegmentLabel == "Lesion" and segment.SegmentAlgorithmType == "AUTOMATIC"
    category = segment.SegmentedPropertyCategoryCodeSequence[0]
    assert category.CodeValue == codes.SCT.MorphologicallyAbnormalStructure.value
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == codes.SCT.Mass.value
    assert segment.AnatomicRegionSequence[0].CodeValue == codes.SCT.Breast.value
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "BaS"
    assert algorithm.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    assert seg.Manufacturer == "bas-deploy"


def test_multiframe_loop_round_trip(tmp_path: Path) -> None:
    masks = disc_masks(30)
    out = write_segmentation(
        tmp_path / "seg.dcm", [(LOOP, i + 1) for i in range(30)], masks, algorithm_version="v1"
    )
    assert files_in(tmp_path) == [out]
    source = header(LOOP)
    assert_seg_matches(out, [source] * 30, list(range(1, 31)), masks)
    seg = hd.seg.segread(out)
    by_source = seg.get_pixels_by_source_frame(
        source.SOPInstanceUID, source_frame_numbers=list(range(1, 31))
    )
    np.testing.assert_array_equal(by_source[..., 0].astype(bool), np.stack(masks))
    check_segmentation(out, [(LOOP, i + 1) for i in range(30)], masks)
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmVersion == "v1"


def test_every_second_frame_is_all_it_references(tmp_path: Path) -> None:
    frames = list(range(1, 31, 2))
    masks = disc_masks(15, empty_every=3)
    out = write_segmentation(
        tmp_path / "seg.dcm", [(LOOP, f) for f in frames], masks, algorithm_version=VERSION
    )
    source = header(LOOP)
    assert_seg_matches(out, [source] * 15, frames, masks)
    ds = dcmread(out)
    assert [int(n) for n in ds.SourceImageSequence[0].ReferencedFrameNumber] == frames
    seg = hd.seg.segread(out)
    by_source = seg.get_pixels_by_source_frame(source.SOPInstanceUID, source_frame_numbers=frames)
    np.testing.assert_array_equal(by_source[..., 0].astype(bool), np.stack(masks))
    algorithm = ds.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert len(algorithm.AlgorithmVersion) <= 64  # LO; the whole text is kept as a parameter
    assert VERSION in algorithm.AlgorithmParameters


def single_frame_series(folder: Path, count: int) -> list[Path]:
    """The loop's first frames as a series of uncompressed single-frame RGB files."""
    loop = dcmread(LOOP)
    rgb = loop.pixel_array[:count]  # pydicom converts YBR_FULL_422 to RGB
    paths = []
    folder.mkdir()
    for i in range(count):
        ds = dcmread(LOOP, stop_before_pixels=True)
        for keyword in ("NumberOfFrames", "FrameIncrementPointer", "FrameTime"):
            if keyword in ds:
                delattr(ds, keyword)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UltrasoundImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.set_pixel_data(np.ascontiguousarray(rgb[i]), "RGB", 8)
        paths.append(folder / f"frame{i + 1:02d}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths


def gray_loop(path: Path, count: int) -> Path:
    """The loop's first frames, green channel, as an uncompressed MONOCHROME2 multi-frame."""
    ds = dcmread(LOOP)
    green = np.ascontiguousarray(ds.pixel_array[:count, :, :, 1])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.set_pixel_data(green, "MONOCHROME2", 8)
    ds.save_as(path, enforce_file_format=True)
    return path


def gray_still(path: Path) -> Path:
    """The RGB still's green channel as a MONOCHROME2 Ultrasound Image."""
    ds = dcmread(STILL)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.set_pixel_data(np.ascontiguousarray(ds.pixel_array[:, :, 1]), "MONOCHROME2", 8)
    ds.save_as(path, enforce_file_format=True)
    return path


def moving_disc(shape: tuple[int, int], count: int) -> list[np.ndarray]:
    """A disc moving right over ``count`` frames; the second frame has none."""
    return [disc(shape, 5 * i) if i != 1 else np.zeros(shape, bool) for i in range(count)]


def seg_of(out: Path, source: Path, frames: list[int]) -> Path:
    """A SEG of ``frames`` of ``source``: moving_disc masks."""
    masks = moving_disc((header(source).Rows, header(source).Columns), len(frames))
    return write_segmentation(out, [(source, f) for f in frames], masks, algorithm_version="v1")


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind",
    [
        "multi-frame colour (JPEG YBR_FULL_422)",
        "multi-frame gray",
        "single-frame RGB",
        "single-frame gray",
        "single-frame palette colour",
        "single-frame JPEG 2000",
        "series of single-frame files",
    ],
)
def test_seg_is_dciodvfy_clean(tmp_path: Path, kind: str) -> None:
    """dciodvfy finds no Error in the SEG of any kind of source; its Warnings are the
    sources' own values, copied (ALLOWED_WARNINGS says which and why)."""
    if kind.startswith("multi-frame colour"):
        out = seg_of(tmp_path / "seg.dcm", LOOP, [1, 2, 3, 7])
    elif kind == "multi-frame gray":
        out = seg_of(tmp_path / "seg.dcm", gray_loop(tmp_path / "gray.dcm", 4), [1, 2, 4])
    elif kind == "single-frame gray":
        out = seg_of(tmp_path / "seg.dcm", gray_still(tmp_path / "gray.dcm"), [1])
    elif kind == "series of single-frame files":
        files = single_frame_series(tmp_path / "series", 3)
        masks = disc_masks(3)
        out = write_segmentation(
            tmp_path / "seg.dcm", [(f, 1) for f in files], masks, algorithm_version="v"
        )
    else:
        source = {"RGB": STILL, "palette": PALETTE, "JPEG": JPEG2K}[kind.split()[1]]
        out = seg_of(tmp_path / "seg.dcm", source, [1])
    assert_dciodvfy_clean(out, iod="Segmentation")
    ds = dcmread(out)
    # No Image Orientation (Patient) without a Frame of Reference: General Image's Patient
    # Orientation (Type 2C) is there, as the source has it (empty in these examples).
    assert "PatientOrientation" in ds and not ds.PatientOrientation


def anonymised(path: Path, dropped: tuple[str, ...] = PATIENT_STUDY_TYPE2) -> Path:
    """The loop as an anonymiser that drops (not empties) Type 2 identifiers leaves it."""
    ds = dcmread(LOOP)
    for keyword in dropped:
        if keyword in ds:
            delattr(ds, keyword)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.slow
def test_anonymised_source_gets_a_seg_with_empty_type2_attributes(tmp_path: Path) -> None:
    source = anonymised(tmp_path / "anonymised.dcm")
    before = source.read_bytes()
    out = seg_of(tmp_path / "seg.dcm", source, [1, 2, 3])
    assert source.read_bytes() == before  # the source is read, never changed
    ds, original = dcmread(out), header(source)
    for keyword in PATIENT_STUDY_TYPE2:
        assert keyword not in original
        assert keyword in ds and ds[keyword].is_empty, keyword
    # what the anonymiser left is copied as it is
    assert ds.StudyInstanceUID == original.StudyInstanceUID
    assert ds.PatientOrientation == original.PatientOrientation == ""
    assert_dciodvfy_clean(out, {**ALLOWED_WARNINGS, **ANONYMISED_WARNINGS}, iod="Segmentation")
    assert_seg_matches(out, [original] * 3, [1, 2, 3], moving_disc((240, 320), 3))


@pytest.mark.slow
def test_partly_anonymised_source_keeps_what_is_left(tmp_path: Path) -> None:
    dropped = ("PatientBirthDate", "PatientSex", "ReferringPhysicianName", "AccessionNumber")
    source = anonymised(tmp_path / "anonymised.dcm", dropped)
    out = seg_of(tmp_path / "seg.dcm", source, [1])
    ds, original = dcmread(out), header(source)
    for keyword in dropped:
        assert ds[keyword].is_empty
    for keyword in ("PatientName", "PatientID", "StudyDate", "StudyTime", "StudyID"):
        assert ds[keyword].value == original[keyword].value, keyword
    assert_dciodvfy_clean(out, iod="Segmentation")


def test_series_of_single_frame_files(tmp_path: Path) -> None:
    files = single_frame_series(tmp_path / "series", 6)
    masks = disc_masks(6)
    order = [0, 2, 3, 5]  # a subset, as --every or --max-frames would leave
    origins = [(files[i], 1) for i in order]
    out = write_segmentation(
        tmp_path / "out" / "seg.dcm", origins, [masks[i] for i in order], algorithm_version="v"
    )
    sources = [header(files[i]) for i in order]
    assert all(s.SeriesInstanceUID == header(LOOP).SeriesInstanceUID for s in sources)
    assert_seg_matches(out, sources, [1] * 4, [masks[i] for i in order])
    seg = hd.seg.segread(out)
    by_instance = seg.get_pixels_by_source_instance([s.SOPInstanceUID for s in sources])
    np.testing.assert_array_equal(by_instance[..., 0].astype(bool), np.stack(masks)[order])


def test_single_still_image(tmp_path: Path) -> None:
    mask = disc_masks(1)[0]
    out = write_segmentation(tmp_path / "seg.dcm", [(STILL, 1)], [mask], algorithm_version="v")
    assert_seg_matches(out, [header(STILL)], [1], [mask])


def test_all_empty_masks_are_kept(tmp_path: Path) -> None:
    masks = [np.zeros((240, 320), bool)] * 3
    out = write_segmentation(
        tmp_path / "seg.dcm", [(LOOP, f) for f in (4, 5, 6)], masks, algorithm_version="v"
    )
    assert_seg_matches(out, [header(LOOP)] * 3, [4, 5, 6], masks)


@pytest.mark.parametrize(
    ("origins", "masks", "message"),
    [
        ([(LOOP, 1), (LOOP, 2)], [np.zeros((240, 320), bool)] * 2 + [None], "3 masks for 2"),
        ([(LOOP, 1)], [np.zeros((320, 240), bool)], "mask 0 is (320, 240)"),
        ([(LOOP, 31)], [np.zeros((240, 320), bool)], "frame 31 is outside its 30"),
        ([(STILL, 2)], [np.zeros((240, 320), bool)], "frame 2 is outside its 1"),
        ([(LOOP, 3), (LOOP, 3)], [np.zeros((240, 320), bool)] * 2, "frame 3 has two masks"),
        ([(LOOP, 1), (STILL, 1)], [np.zeros((240, 320), bool)] * 2, "not in the series"),
    ],
)
def test_refusals_write_nothing(tmp_path: Path, origins, masks, message) -> None:
    with pytest.raises(ProjectError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        write_segmentation(tmp_path / "out" / "seg.dcm", origins, masks, algorithm_version="v")
    assert "\n" not in str(err.value)
    assert files_in(tmp_path) == []


def test_source_that_is_not_dicom_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "frame.dcm"
    fake.write_bytes(b"not a DICOM file" * 20)
    with pytest.raises(ProjectError, match="not a DICOM file"):
        write_segmentation(
            tmp_path / "seg.dcm", [(fake, 1)], [np.zeros((240, 320), bool)], algorithm_version="v"
        )
    assert files_in(tmp_path) == [fake]


def test_check_refuses_other_masks_and_origins(tmp_path: Path) -> None:
    origins = [(LOOP, f) for f in (1, 2, 3)]
    masks = disc_masks(3, empty_every=5)
    out = write_segmentation(tmp_path / "seg.dcm", origins, masks, algorithm_version="v")
    moved = [masks[0], masks[1], np.roll(masks[2], 5, axis=1)]
    with pytest.raises(ProjectError, match="frame 3 differs from mask 2") as err:
        check_segmentation(out, origins, moved)
    assert "\n" not in str(err.value)
    with pytest.raises(ProjectError, match="frame 1 references"):
        check_segmentation(out, [(LOOP, f) for f in (2, 3, 4)], masks)
    with pytest.raises(ProjectError, match="3 frames for 2 masks"):
        check_segmentation(out, origins[:2], masks[:2])
    with pytest.raises(ProjectError, match="not a readable DICOM Segmentation"):
        check_segmentation(LOOP, origins, masks)
