"""DICOM ultrasound in: pydicom's own example files (from the installed package) and
variants of them written into tmp_path (RLE, 16-bit, MONOCHROME1/2, series of single frames,
a Frame Time Vector, a region that fits, an SR or a CT beside the images, headers that
announce more or fewer frames than the data holds, Secondary Capture exports, and H.264,
HEVC and MPEG-2 cine loops encoded here with PyAV and encapsulated with pydicom)."""

from __future__ import annotations

import io
import random
import shutil
import time
import warnings
from pathlib import Path

import av
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom import examples
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, encapsulate_extended, generate_frames
from pydicom.pixels import apply_color_lut, convert_color_space
from pydicom.uid import (
    HEVCMP51,
    MPEG2MPML,
    MPEG4HP41,
    MPEG4HP41F,
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    MultiFrameSingleBitSecondaryCaptureImageStorage,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

import segmentation.dicom as dicom
from segmentation.dicom import DicomSource, is_dicom, open_dicom, scan_dicom
from segmentation.video import InputError

YBR = Path(examples.get_path("ybr_color"))  # 30 frames 240 x 320, JPEG baseline YBR_FULL_422
RGB = Path(examples.get_path("rgb_color"))  # 1 frame 240 x 320, RGB, native
PALETTE = Path(examples.get_path("palette_color"))  # 1 frame 350 x 800, 16-bit LUT
JPEG2K = Path(examples.get_path("jpeg2k"))  # 1 frame 480 x 640, JPEG 2000 lossless, YBR_RCT
SR = Path(get_testdata_file("test-SR.dcm"))  # Comprehensive SR, no Pixel Data


def _one(path: Path, **kwargs: float) -> DicomSource:
    sources = open_dicom(path, **kwargs)
    assert len(sources) == 1
    return sources[0]


def _images(source: DicomSource) -> list[np.ndarray]:
    frames = list(source.frames())
    assert [f.error for f in frames] == [None] * len(frames)
    return [f.image for f in frames]


def _refusal(path: Path, *words: str) -> str:
    with pytest.raises(InputError) as info:
        open_dicom(path)
    text = str(info.value)
    assert "\n" not in text and str(path) in text, text
    for word in words:
        assert word in text, text
    return text


def _gray(folder: Path, name: str, bits: int = 8, photometric: str = "MONOCHROME2") -> Path:
    """The RGB example's green channel as a gray US image, in 8 or 16 bits (16: x257)."""
    ds = pydicom.dcmread(RGB)
    green = ds.pixel_array[:, :, 1]
    ds.PhotometricInterpretation = photometric
    ds.SamplesPerPixel = 1
    del ds.PlanarConfiguration
    values = green if bits == 8 else green.astype(np.uint16) * 257
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelData = values.tobytes()
    return _save(ds, folder / name)


def _green() -> np.ndarray:
    return pydicom.dcmread(RGB).pixel_array[:, :, 1]


def _save(ds: pydicom.Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)
    return path


# --- the example files ---------------------------------------------------------------------


def test_ybr_cine_decodes_to_rgb_frames_with_frame_time() -> None:
    source = _one(YBR)
    assert (source.kind, source.name, source.size) == ("dicom", "examples_ybr_color", (240, 320))
    assert source.frame_count == 30 and source.fps == pytest.approx(30.0, rel=1e-4)
    assert "Frame Time (0018,1063) 33.333 ms" in source.timing
    assert source.origins == tuple((YBR, n) for n in range(1, 31))
    frames = list(source.frames())
    assert [f.index for f in frames] == list(range(30))
    assert frames[-1].timestamp == pytest.approx(29 * 0.033333)
    assert all(f.image.shape == (240, 320, 3) and f.image.dtype == np.uint8 for f in frames)
    # Another decoder (Pillow's libjpeg, YCbCr -> RGB itself) agrees on the colours.
    ds = pydicom.dcmread(YBR)
    jpeg = next(generate_frames(ds.PixelData, number_of_frames=30))
    reference = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    means = frames[0].image.reshape(-1, 3).mean(axis=0)
    assert np.allclose(means, reference.reshape(-1, 3).mean(axis=0), atol=0.5)
    assert np.abs(frames[0].image.astype(int) - reference).mean() < 1.0
    # ...and left in YCbCr the channels would differ: the chroma sits near 128.
    ybr = convert_color_space(frames[0].image, "RGB", "YBR_FULL")
    assert abs(ybr[..., 1].mean() - 128) < 3 and abs(means[1] - 128) > 100


def test_ybr_cine_region_outside_the_frame_is_not_used() -> None:
    source = _one(YBR)
    assert source.region is None
    assert source.calibration == (
        "none: DICOM Sequence of Ultrasound Regions, item 1 (2D tissue, cm), x 84..595, "
        "y 31..414, lies outside the 320 x 240 frame (a resized export?): areas in pixels only"
    )


def test_every_and_max_frames_keep_indices_and_times() -> None:
    frames = list(_one(YBR).frames(every=10, max_frames=2))
    assert [f.index for f in frames] == [0, 10]
    assert frames[1].timestamp == pytest.approx(10 * 0.033333)


def test_rgb_single_frame_is_the_pixel_data_itself() -> None:
    source = _one(RGB, fallback_fps=12.5)
    (image,) = _images(source)
    assert np.array_equal(image, pydicom.dcmread(RGB).pixel_array)
    assert (source.fps, source.origins) == (12.5, ((RGB, 1),))
    assert source.timing == "no frame timing in the header: 12.5 fps assumed"
    assert source.calibration == "none: no Sequence of Ultrasound Regions (0018,6011)"


def test_palette_goes_through_its_16_bit_lut() -> None:
    source = _one(PALETTE)
    (image,) = _images(source)
    ds = pydicom.dcmread(PALETTE)
    lut = apply_color_lut(ds.pixel_array, ds).astype(np.int64)
    assert image.shape == (350, 800, 3)
    assert np.array_equal(image, ((lut * 255 + 32767) // 65535).astype(np.uint8))
    assert source.region is None
    assert "item 1 (2D tissue, cm), x 120..800, y 60..518, lies outside the 800 x 350" in (
        source.calibration
    )


def test_jpeg2k_ybr_rct_comes_out_rgb() -> None:
    (image,) = _images(_one(JPEG2K))
    assert image.shape == (480, 640, 3)
    # Gray B-mode with orange power Doppler: in the RGB decode most pixels are gray.
    spread = image.max(axis=2).astype(int) - image.min(axis=2)
    assert np.mean(spread <= 8) > 0.8
    red, blue = image[..., 0].astype(int), image[..., 2].astype(int)
    assert np.mean(red - blue > 100) > 0.01  # the Doppler overlay: red well above blue


@pytest.mark.parametrize(
    ("name", "what"),
    [
        ("ct", "CT Image Storage (modality CT): not an ultrasound image"),
        ("mr", "MR Image Storage (modality MR): not an ultrasound image"),
        ("rt_dose", "RT Dose Storage (modality RTDOSE): not an ultrasound image"),
    ],
)
def test_other_modalities_are_refused(name: str, what: str) -> None:
    _refusal(Path(examples.get_path(name)), what)


def test_a_report_has_nothing_to_segment() -> None:
    _refusal(SR, "Comprehensive SR Storage (modality SR): no Pixel Data")


# --- variants written from the examples ----------------------------------------------------


def test_rle_gives_the_same_frames(tmp_path: Path) -> None:
    ds = pydicom.dcmread(RGB)
    ds.compress(RLELossless)
    path = _save(ds, tmp_path / "rle.dcm")
    assert np.array_equal(_images(_one(path))[0], pydicom.dcmread(RGB).pixel_array)


def test_16_bit_scales_to_the_8_bit_frame_exactly(tmp_path: Path) -> None:
    eight = _images(_one(_gray(tmp_path, "g8.dcm")))[0]
    sixteen = _images(_one(_gray(tmp_path, "g16.dcm", bits=16)))[0]
    assert eight.shape == (240, 320) and np.array_equal(eight, _green())
    assert sixteen.dtype == np.uint8 and np.array_equal(sixteen, eight)


def test_values_above_bits_stored_are_refused(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_gray(tmp_path, "g16.dcm", bits=16))
    ds.BitsStored, ds.HighBit = 12, 11
    values = np.full((240, 320), 4095, np.uint16)
    ds.PixelData = values.tobytes()
    assert _images(_one(_save(ds, tmp_path / "ok.dcm")))[0].min() == 255
    values[5, 7] = 5000
    ds.PixelData = values.tobytes()
    _refusal(_save(ds, tmp_path / "high.dcm"), "pixel values 4095..5000", "12-bit range")


def test_native_ybr_full_422_frames_are_each_where_they_lie(tmp_path: Path) -> None:
    ds = pydicom.dcmread(YBR)
    ds.decompress(as_rgb=False)  # YBR_FULL samples, three a pixel
    ds.PhotometricInterpretation = "YBR_FULL"
    pairs = ds.pixel_array[:3].reshape(3, 240, 160, 2, 3)  # Y0 Y1 Cb Cr for each two pixels
    packed = np.concatenate([pairs[..., 0], pairs[..., 0, 1:]], axis=-1)
    ds.PhotometricInterpretation, ds.PixelData = "YBR_FULL_422", packed.tobytes()
    ds.NumberOfFrames = 3
    path = _save(ds, tmp_path / "ybr422.dcm")
    expected = pydicom.dcmread(path).pixel_array  # pydicom from the whole data set: RGB
    images = _images(_one(path))
    assert len(images) == 3
    assert all(np.array_equal(a, b) for a, b in zip(images, expected, strict=True))


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    (image,) = _images(_one(_gray(tmp_path, "m1.dcm", photometric="MONOCHROME1")))
    assert np.array_equal(image, 255 - _green())


def test_signed_pixels_are_refused(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_gray(tmp_path, "g.dcm"))
    ds.PixelRepresentation = 1
    _refusal(_save(ds, tmp_path / "signed.dcm"), "signed pixel data")


def test_no_rows_is_refused(tmp_path: Path) -> None:
    ds = pydicom.dcmread(RGB)
    ds.Rows = 0
    _refusal(_save(ds, tmp_path / "rows.dcm"), "Rows 0", "no image size")


def test_frame_time_vector_gives_the_timestamps(tmp_path: Path) -> None:
    ds = pydicom.dcmread(YBR)
    vector = [0] + [20, 40] * 14 + [20]
    ds.FrameTimeVector = vector
    ds.FrameIncrementPointer = 0x00181065
    path = _save(ds, tmp_path / "ftv.dcm")
    source = _one(path)
    expected = np.cumsum(vector) / 1000
    assert np.allclose([f.timestamp for f in source.frames()], expected)
    assert source.fps == pytest.approx(29 / expected[-1])
    assert source.timing.startswith("Frame Time Vector (0018,1065)")


@pytest.mark.parametrize(
    ("vector", "words"),
    [
        ([0, 33], ("Frame Time Vector (0018,1065) has 2 values for 30 frames",)),
        ([0] + [33] * 28 + [-5], ("holds -5 ms",)),
        ([0] * 30, ("all 30 frames at the same time",)),
    ],
)
def test_bad_frame_time_vector_is_refused(tmp_path: Path, vector: list[int], words) -> None:
    ds = pydicom.dcmread(YBR)
    ds.FrameTimeVector = vector
    ds.FrameIncrementPointer = 0x00181065
    _refusal(_save(ds, tmp_path / "bad.dcm"), *words)


def test_frame_increment_pointer_decides_between_time_and_vector(tmp_path: Path) -> None:
    ds = pydicom.dcmread(YBR)  # its pointer names Frame Time (0018,1063)
    ds.FrameTimeVector = [0] + [50] * 29
    assert _one(_save(ds, tmp_path / "ft.dcm")).fps == pytest.approx(30.0, rel=1e-4)
    del ds.FrameIncrementPointer  # no pointer: the vector comes first
    assert _one(_save(ds, tmp_path / "ftv.dcm")).fps == pytest.approx(20.0)


def test_bad_frame_time_is_refused(tmp_path: Path) -> None:
    ds = pydicom.dcmread(YBR)
    ds.FrameTime = 0
    _refusal(_save(ds, tmp_path / "ft.dcm"), "Frame Time (0018,1063)", "not a positive")


def test_cine_rate_when_no_frame_time(tmp_path: Path) -> None:
    ds = pydicom.dcmread(YBR)
    del ds.FrameTime, ds.FrameIncrementPointer
    ds.CineRate = 25
    source = _one(_save(ds, tmp_path / "cine.dcm"))
    assert source.fps == 25 and source.timing == "Cine Rate (0018,0040) 25 fps: 25 fps"


def test_a_region_that_fits_is_the_calibration(tmp_path: Path) -> None:
    ds = pydicom.dcmread(YBR)
    item = ds.SequenceOfUltrasoundRegions[0]
    item.RegionLocationMinX0, item.RegionLocationMinY0 = 42, 15
    item.RegionLocationMaxX1, item.RegionLocationMaxY1 = 297, 207
    item.PhysicalDeltaX = item.PhysicalDeltaY = 0.0102
    source = _one(_save(ds, tmp_path / "fits.dcm"))
    region = source.region
    assert region is not None
    assert (region.left, region.top, region.right, region.bottom) == (42, 15, 298, 208)
    assert region.mm_per_px == pytest.approx((0.102, 0.102))
    assert region.source == "DICOM Sequence of Ultrasound Regions, item 1 (2D tissue, cm)"
    assert source.calibration == (
        "DICOM Sequence of Ultrasound Regions, item 1 (2D tissue, cm): "
        "x 42..297, y 15..207, 0.102 x 0.102 mm per pixel"
    )


def test_a_region_without_a_usable_size_is_not_used(tmp_path: Path) -> None:
    ds = pydicom.dcmread(YBR)
    item = ds.SequenceOfUltrasoundRegions[0]
    item.RegionLocationMaxX1, item.RegionLocationMaxY1 = 300, 200
    item.PhysicalDeltaY = 0.0
    source = _one(_save(ds, tmp_path / "zero.dcm"))
    assert source.region is None and "0.5105 x 0 mm per pixel: not a size" in source.calibration
    item.PhysicalUnitsXDirection = 4  # seconds: not a spatial region
    source = _one(_save(ds, tmp_path / "seconds.dcm"))
    assert source.calibration == "none: no 2D region in cm among the 1 Ultrasound Regions"


def test_jpeg_frames_labelled_as_video_are_refused(tmp_path: Path) -> None:
    ds = pydicom.dcmread(YBR)
    ds.file_meta.TransferSyntaxUID = MPEG4HP41
    path = _save(ds, tmp_path / "h264.dcm")
    _refusal(path, "MPEG-4 AVC/H.264 High Profile / Level 4.1 video stream", "mjpeg, not h264")


def test_a_missing_decoder_plugin_is_named(tmp_path: Path, monkeypatch) -> None:
    class Missing:
        is_available = False
        missing_dependencies = ["pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-libjpeg"]

    monkeypatch.setattr(dicom, "get_decoder", lambda uid: Missing())
    _refusal(YBR, "JPEG Baseline (Process 1): no decoder installed", "pylibjpeg-libjpeg")


def test_not_dicom_and_truncated_files_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not a dicom file at all" * 20)
    _refusal(junk, "not a DICOM file")
    data = YBR.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) // 2])
    _refusal(cut, "truncated")
    native = tmp_path / "native.dcm"
    native.write_bytes(RGB.read_bytes()[:-1000])
    _refusal(native, "the file ends inside its first frame (cut short)")


def test_a_frame_that_breaks_later_is_an_error_frame(tmp_path: Path) -> None:
    ds = pydicom.dcmread(YBR)
    jpegs = list(generate_frames(ds.PixelData, number_of_frames=30))
    jpegs[4] = bytes(len(jpegs[4]))  # frame 5: zeros, not a JPEG
    ds.PixelData = encapsulate(jpegs)
    frames = list(_one(_save(ds, tmp_path / "broken.dcm")).frames())
    assert [f.index for f in frames if f.error is not None] == [4]
    assert "broken.dcm frame 5: cannot be decoded" in frames[4].error
    assert frames[4].image is None and frames[5].image.shape == (240, 320, 3)


def test_is_dicom() -> None:
    assert is_dicom(YBR) and is_dicom(SR)
    assert not is_dicom(Path(__file__)) and not is_dicom(YBR.parent)


# --- folders -------------------------------------------------------------------------------


def _series(folder: Path, count: int, seed: int = 0) -> list[int]:
    """``count`` single-frame US images of one series, numbered 1..count, under shuffled
    file names; frame k is uniformly k * 10. Returns the instance number in each name."""
    base = pydicom.dcmread(_gray(folder, "base.tmp"))
    (folder / "base.tmp").unlink()
    base.SeriesInstanceUID, base.SeriesNumber = generate_uid(), 7
    base.FrameTime, base.FrameTimeVector = 50, [0]  # a file's own vector: not the series'
    numbers = list(range(1, count + 1))
    random.Random(seed).shuffle(numbers)
    for name_index, number in enumerate(numbers):
        base.InstanceNumber = number
        base.SOPInstanceUID = generate_uid()
        base.PixelData = np.full((240, 320), number * 10, np.uint8).tobytes()
        _save(base, folder / "img" / f"IM{name_index + 1}")  # no suffix: found by DICM
    return numbers


def test_series_of_single_frames_in_instance_number_order(tmp_path: Path) -> None:
    numbers = _series(tmp_path, 6)
    assert numbers != sorted(numbers)
    source = _one(tmp_path)
    assert (source.name, source.frame_count, source.size) == ("series_7", 6, (240, 320))
    assert [int(image[0, 0]) for image in _images(source)] == [10, 20, 30, 40, 50, 60]
    by_file = {f"IM{i + 1}": n for i, n in enumerate(numbers)}
    assert [by_file[p.name] for p, _ in source.origins] == [1, 2, 3, 4, 5, 6]
    assert all(n == 1 for _, n in source.origins)
    assert source.fps == 20 and source.timestamps[-1] == pytest.approx(0.25)


def test_study_folder_skips_reports_and_splits_cines(tmp_path: Path) -> None:
    _series(tmp_path / "a", 3)
    shutil.copy(YBR, tmp_path / "a" / "loop.dcm")
    shutil.copy(YBR, tmp_path / "b.dcm")
    shutil.copy(SR, tmp_path / "report.dcm")
    (tmp_path / "DICOMDIR").write_bytes(b"ignored")
    found = scan_dicom(tmp_path)
    assert [s.name for s in found.sources] == ["series_7", "loop", "b"]
    assert [s.frame_count for s in found.sources] == [3, 30, 30]
    why = "Comprehensive SR Storage (modality SR): no Pixel Data"
    assert found.skipped == ((tmp_path / "report.dcm", why),)
    shutil.copy(YBR, tmp_path / "a" / "b.dcm")
    assert [s.name for s in open_dicom(tmp_path)] == ["b", "series_7", "loop", "b_2"]


def test_folder_refusals(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _refusal(tmp_path / "empty", "no DICOM file")
    only_sr = tmp_path / "sr"
    only_sr.mkdir()
    shutil.copy(SR, only_sr / "r.dcm")
    _refusal(only_sr, "no ultrasound image among its 1 DICOM files", "SR Storage (modality SR)")
    only_ct = tmp_path / "ct"
    only_ct.mkdir()
    shutil.copy(examples.get_path("ct"), only_ct / "ct.dcm")
    _refusal(only_ct, "no ultrasound image among its 1 DICOM files (CT Image Storage")


def test_a_ct_beside_the_loops_is_skipped_and_listed(tmp_path: Path) -> None:
    _series(tmp_path, 2)
    ct = Path(shutil.copy(examples.get_path("ct"), tmp_path / "ct.dcm"))
    found = scan_dicom(tmp_path)
    assert [s.name for s in found.sources] == ["series_7"]
    assert found.skipped == ((ct, "CT Image Storage (modality CT): not an ultrasound image"),)
    _refusal(ct, "CT Image Storage (modality CT): not an ultrasound image")  # given alone


def test_series_of_mixed_sizes_is_refused(tmp_path: Path) -> None:
    _series(tmp_path, 2)
    ds = pydicom.dcmread(tmp_path / "img" / "IM1")
    ds.Rows, ds.InstanceNumber = 120, 3
    ds.PixelData = bytes(120 * 320)
    _save(ds, tmp_path / "img" / "IM9")
    _refusal(tmp_path, "series series_7 has images of mixed sizes", "320x120")


def _retime(folder: Path, keyword: str, values: dict[int, str], **others: str) -> None:
    """The series' images without Frame Time, each given ``values[its Instance Number]`` as
    ``keyword`` (and the ``others`` as they are)."""
    for path in (folder / "img").iterdir():
        ds = pydicom.dcmread(path)
        del ds.FrameTime, ds.FrameTimeVector
        setattr(ds, keyword, values[ds.InstanceNumber])
        for name, value in others.items():
            setattr(ds, name, value)
        ds.save_as(path)


def test_series_timed_by_each_images_content_time(tmp_path: Path) -> None:
    _series(tmp_path, 4)
    _retime(tmp_path, "ContentTime", {1: "101500", 2: "101500.25", 3: "101500.75", 4: "101501.5"})
    source = _one(tmp_path)
    assert source.timestamps == pytest.approx((0, 0.25, 0.75, 1.5))
    assert source.fps == pytest.approx(2.0)
    assert source.timing == (
        "Content Time (0008,0033) of each image: 1.5 s over 4 frames, 2 fps on average"
    )
    assert [f.timestamp for f in source.frames()] == pytest.approx([0, 0.25, 0.75, 1.5])


def test_series_times_across_midnight_go_by_their_dates(tmp_path: Path) -> None:
    _series(tmp_path, 2)
    _retime(tmp_path, "ContentTime", {1: "235959.5", 2: "000000"})
    assert "goes backwards" in _one(tmp_path).timing  # times of day alone
    for path in (tmp_path / "img").iterdir():
        ds = pydicom.dcmread(path)
        ds.ContentDate = "20240131" if ds.InstanceNumber == 1 else "20240201"
        ds.save_as(path)
    assert _one(tmp_path).timestamps == pytest.approx((0, 0.5))


def test_series_timed_by_acquisition_datetime(tmp_path: Path) -> None:
    _series(tmp_path, 3)
    times = {1: "20240131101500", 2: "20240131101500.1", 3: "20240131101500.2"}
    _retime(tmp_path, "AcquisitionDateTime", times)
    source = _one(tmp_path)
    assert source.timestamps == pytest.approx((0, 0.1, 0.2))
    assert source.timing.startswith("Acquisition DateTime (0008,002A) of each image: 0.2 s")


@pytest.mark.parametrize(
    ("times", "why"),
    [
        ({1: "101500", 2: "101500", 3: "101501"}, "repeats from IM"),
        ({1: "101500", 2: "101502", 3: "101501"}, "goes backwards from IM"),
        ({1: "101500", 2: "1015xx", 3: "101501"}, "cannot be read as times"),
    ],
)
def test_series_times_that_repeat_or_go_back_fall_back(
    tmp_path: Path, times: dict[int, str], why: str
) -> None:
    _series(tmp_path, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's own: "Invalid value for VR TM"
        _retime(tmp_path, "ContentTime", times)
    source = _one(tmp_path, fallback_fps=10)
    assert source.fps == 10 and source.timestamps == pytest.approx((0, 0.1, 0.2))
    assert source.timing.startswith(f"Content Time (0008,0033) {why}")
    assert source.timing.endswith(": 10 fps assumed")


def test_series_without_any_time_falls_back(tmp_path: Path) -> None:
    _series(tmp_path, 2)
    _retime(tmp_path, "ContentTime", {1: "101500", 2: ""})
    assert _one(tmp_path).timing == (
        "no frame timing in the header, and no time on every image: 30 fps assumed"
    )


def test_series_mixing_gray_and_colour_comes_out_rgb(tmp_path: Path) -> None:
    numbers = _series(tmp_path, 3)
    second = tmp_path / "img" / f"IM{numbers.index(2) + 1}"
    colour = pydicom.dcmread(RGB)  # instance 2 becomes a colour image of the series
    colour.SeriesInstanceUID = pydicom.dcmread(second).SeriesInstanceUID
    colour.InstanceNumber = 2
    second.unlink()
    _save(colour, tmp_path / "img" / "colour.dcm")
    source = _one(tmp_path)
    images = _images(source)
    assert source.rgb and [image.shape for image in images] == [(240, 320, 3)] * 3
    assert np.array_equal(images[1], colour.pixel_array)
    assert np.all(images[0] == 10) and np.all(images[2] == 30)


# --- header against data -------------------------------------------------------------------


def _loop(path: Path, frames: int, announced: int | None = None) -> Path:
    """A native gray cine loop of ``frames`` 240 x 320 frames, frame k uniformly k, its header
    announcing ``announced`` frames (default: as many as it holds)."""
    ds = pydicom.dcmread(_gray(path.parent, path.name))
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    ds.NumberOfFrames, ds.FrameTime = announced or frames, 40
    ds.PixelData = np.repeat(np.arange(1, frames + 1, dtype=np.uint8), 240 * 320).tobytes()
    return _save(ds, path)


def test_fewer_frames_than_announced_are_read_and_said_once(tmp_path: Path) -> None:
    path = _loop(tmp_path / "loop.dcm", 30, announced=60)
    source = _one(path)
    assert source.notes == (
        f"{path}: holds 30 of the 60 frames its header announces; segmenting those 30",
    )
    assert (source.frame_count, len(source.origins), len(source.timestamps)) == (30, 30, 30)
    assert [int(image[0, 0]) for image in _images(source)] == list(range(1, 31))
    assert _one(_loop(tmp_path / "exact.dcm", 30)).notes == ()


def test_a_hundred_million_announced_frames_answer_at_once(tmp_path: Path) -> None:
    native = _loop(tmp_path / "native.dcm", 30, announced=100_000_000)
    ds = pydicom.dcmread(YBR)
    ds.NumberOfFrames = 100_000_000
    jpegs = list(generate_frames(ds.PixelData, number_of_frames=30))
    ds.PixelData = encapsulate(jpegs, has_bot=False)  # counted by its fragments
    jpeg = _save(ds, tmp_path / "jpeg.dcm")
    for path in (native, jpeg):
        started = time.perf_counter()
        source = _one(path)
        assert time.perf_counter() - started < 1.0  # was over a minute
        assert source.frame_count == 30 and "holds 30 of the 100000000 frames" in source.notes[0]
    assert len(_images(_one(jpeg))) == 30


def test_a_loop_cut_short_reads_its_whole_frames(tmp_path: Path) -> None:
    path = _loop(tmp_path / "cut.dcm", 3)
    path.write_bytes(path.read_bytes()[: -240 * 320 + 50])  # the third frame cut short
    source = _one(path)
    assert source.notes == (
        f"{path}: the file ends after 2 of the 3 frames its header announces; segmenting those 2",
    )
    assert [int(image[0, 0]) for image in _images(source)] == [1, 2]


def test_an_odd_length_frame_keeps_its_padding_byte(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_gray(tmp_path, "g.dcm"))
    ds.Rows, ds.Columns = 3, 5
    ds.PixelData = bytes(range(15))  # written padded to 16
    path = _save(ds, tmp_path / "odd.dcm")
    assert path.stat().st_size % 2 == 0
    (image,) = _images(_one(path))
    assert np.array_equal(image, np.arange(15, dtype=np.uint8).reshape(3, 5))


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"NumberOfFrames": 20}, "Pixel Data holds 30 frames where Number of Frames announces 20"),
        ({"Rows": 241}, "2304000 bytes of Pixel Data are not whole 320x241 frames"),
        ({"Columns": 301}, "not whole 301x240 frames of 1 x 8-bit samples (72240 bytes each)"),
    ],
)
def test_headers_that_do_not_describe_the_data_are_refused(
    tmp_path: Path, changes: dict[str, int], words: str
) -> None:
    ds = pydicom.dcmread(_loop(tmp_path / "loop.dcm", 30))
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    _refusal(_save(ds, tmp_path / "bad.dcm"), words, "the header does not describe the data")


def test_bits_or_samples_that_do_not_match_the_data_are_refused(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_gray(tmp_path, "g.dcm"))
    ds.BitsAllocated = ds.BitsStored = 16
    _refusal(_save(ds, tmp_path / "bits.dcm"), "not whole 320x240 frames of 1 x 16-bit samples")
    ds = pydicom.dcmread(_gray(tmp_path, "g.dcm"))
    ds.SamplesPerPixel = 3
    _refusal(_save(ds, tmp_path / "samples.dcm"), "Samples per Pixel 3", "MONOCHROME2, which has 1")


def test_encapsulated_frames_are_counted_by_the_offset_table(tmp_path: Path) -> None:
    ds = pydicom.dcmread(YBR)
    ds.NumberOfFrames = 60
    path = _save(ds, tmp_path / "sixty.dcm")
    source = _one(path)
    assert source.frame_count == 30 and "holds 30 of the 60 frames" in source.notes[0]
    assert len(_images(source)) == 30
    ds.NumberOfFrames = 20
    _refusal(_save(ds, tmp_path / "twenty.dcm"), "Basic Offset Table lists 30 frames where")


def test_an_extended_offset_table_counts_the_frames(tmp_path: Path) -> None:
    ds = pydicom.dcmread(YBR)
    jpegs = list(generate_frames(ds.PixelData, number_of_frames=30))
    ds.PixelData, ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = encapsulate_extended(
        jpegs
    )
    ds.NumberOfFrames = 40
    source = _one(_save(ds, tmp_path / "eot.dcm"))
    assert source.frame_count == 30 and "holds 30 of the 40 frames" in source.notes[0]
    assert len(_images(source)) == 30


def test_an_offset_table_that_misses_the_fragments_is_refused(tmp_path: Path) -> None:
    ds = pydicom.dcmread(YBR)
    data = bytearray(ds.PixelData)
    data[12:16] = (6131).to_bytes(4, "little")  # the second offset, one byte off
    ds.PixelData = bytes(data)
    text = _refusal(_save(ds, tmp_path / "bot.dcm"), "Basic Offset Table does not point at")
    assert text.endswith("frames cannot be located")


# --- Secondary Capture ---------------------------------------------------------------------


def test_secondary_capture_ultrasound_is_read(tmp_path: Path) -> None:
    ds = pydicom.dcmread(RGB)
    ds.SOPClassUID = SecondaryCaptureImageStorage
    (image,) = _images(_one(_save(ds, tmp_path / "sc.dcm")))
    assert np.array_equal(image, ds.pixel_array)
    ds = pydicom.dcmread(YBR)
    ds.SOPClassUID = MultiFrameTrueColorSecondaryCaptureImageStorage
    assert _one(_save(ds, tmp_path / "colour.dcm")).frame_count == 30
    ds = pydicom.dcmread(_loop(tmp_path / "loop.dcm", 3))
    ds.SOPClassUID = MultiFrameGrayscaleByteSecondaryCaptureImageStorage
    assert [int(i[0, 0]) for i in _images(_one(_save(ds, tmp_path / "byte.dcm")))] == [1, 2, 3]
    ds = pydicom.dcmread(_gray(tmp_path, "g16.dcm", bits=16))
    ds.SOPClassUID = MultiFrameGrayscaleWordSecondaryCaptureImageStorage
    ds.NumberOfFrames = 1
    assert np.array_equal(_images(_one(_save(ds, tmp_path / "word.dcm")))[0], _green())


def test_secondary_capture_that_is_not_ultrasound_is_refused(tmp_path: Path) -> None:
    ds = pydicom.dcmread(RGB)
    ds.SOPClassUID, ds.Modality = SecondaryCaptureImageStorage, "OT"
    path = _save(ds, tmp_path / "ot.dcm")
    _refusal(path, "Secondary Capture Image Storage (modality OT): not an ultrasound image")
    ds.SOPClassUID, ds.Modality = MultiFrameSingleBitSecondaryCaptureImageStorage, "US"
    _refusal(_save(ds, tmp_path / "bits.dcm"), "(modality US): a 1-bit bitmap")


# --- encapsulated video --------------------------------------------------------------------

# (encoder, elementary stream format, options): high quality, quiet.
_ENCODERS = {
    MPEG4HP41: ("libx264", "h264", {"crf": "10"}),
    MPEG4HP41F: ("libx264", "h264", {"crf": "10"}),
    HEVCMP51: ("libx265", "hevc", {"crf": "10", "x265-params": "log-level=error"}),
    MPEG2MPML: ("mpeg2video", "mpeg2video", {"b": "4M"}),
}


def _clip(count: int = 10, size: tuple[int, int] = (64, 96)) -> list[np.ndarray]:
    """Smooth speckle-free RGB frames (4:2:0 video keeps them well): waves and a moving blob."""
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]].astype(np.float64)
    frames = []
    for i in range(count):
        gray = 128 + 60 * np.sin(xx / 9 + i / 3) * np.cos(yy / 7)
        blob = 50 * np.exp(-((xx - 20 - 5 * i) ** 2 + (yy - 32) ** 2) / 120)
        frames.append(np.clip(np.stack([gray + blob, gray, gray - blob], -1), 0, 255))
    return [frame.astype(np.uint8) for frame in frames]


def _video_file(
    path: Path, syntax: str, frames: list[np.ndarray], fragments: int = 1, **changes: object
) -> Path:
    """``frames`` encoded by PyAV as the elementary stream ``syntax`` names, encapsulated as
    one frame item in ``fragments`` fragments (PS3.5 8.2), in the YBR example's header."""
    encoder, stream_format, options = _ENCODERS[syntax]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=stream_format) as container:
        stream = container.add_stream(encoder, rate=30)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt, stream.options = "yuv420p", options
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    ds = pydicom.dcmread(YBR)
    ds.file_meta.TransferSyntaxUID = syntax
    ds.Rows, ds.Columns = frames[0].shape[:2]
    ds.NumberOfFrames = len(frames)
    ds.PhotometricInterpretation = "YBR_PARTIAL_420"
    ds.PixelData = encapsulate([buffer.getvalue()], fragments_per_frame=fragments)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    return _save(ds, path)


def _psnr(images: list[np.ndarray], frames: list[np.ndarray]) -> float:
    mse = np.mean([(a.astype(np.float64) - b) ** 2 for a, b in zip(images, frames, strict=True)])
    return float(10 * np.log10(255**2 / mse))


@pytest.mark.parametrize(
    ("syntax", "fragments"), [(MPEG4HP41, 1), (MPEG4HP41F, 3), (HEVCMP51, 1), (MPEG2MPML, 2)]
)
def test_encapsulated_video_decodes_to_the_frames_encoded(
    tmp_path: Path, syntax: str, fragments: int
) -> None:
    frames = _clip()
    path = _video_file(tmp_path / "video.dcm", syntax, frames, fragments)
    source = _one(path)
    assert (source.frame_count, source.size, source.notes) == (10, (64, 96), ())
    assert source.origins == tuple((path, n) for n in range(1, 11))
    assert source.timing.startswith("Frame Time (0018,1063) 33.333 ms")
    found = list(source.frames())
    assert [f.error for f in found] == [None] * 10
    assert [f.timestamp for f in found] == pytest.approx([i * 0.033333 for i in range(10)])
    assert all(f.image.shape == (64, 96, 3) and f.image.dtype == np.uint8 for f in found)
    assert _psnr([f.image for f in found], frames) > 30
    assert [f.index for f in source.frames(every=4)] == [0, 4, 8]


def test_video_frame_count_is_the_streams(tmp_path: Path) -> None:
    path = _video_file(tmp_path / "v.dcm", MPEG4HP41, _clip(), NumberOfFrames=12)
    source = _one(path)
    assert source.frame_count == 10 and len(_images(source)) == 10
    assert source.notes == (
        f"{path}: its video stream holds 10 frames where Number of Frames announces 12; "
        "segmenting the 10",
    )


def test_video_of_another_size_than_the_header_is_refused(tmp_path: Path) -> None:
    path = _video_file(tmp_path / "v.dcm", MPEG4HP41, _clip(), Rows=60)
    _refusal(path, "first frame cannot be used", "size 96x64 differs from 96x60")


def test_damaged_video_streams_are_refused(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_video_file(tmp_path / "v.dcm", MPEG4HP41, _clip()))
    ds.PixelData = encapsulate([bytes(4000)])
    _refusal(_save(ds, tmp_path / "zeros.dcm"), "MPEG-4 AVC/H.264", "video stream")
