"""DICOM ultrasound in: pydicom's own example files (from the installed package) and
variants of them written into tmp_path (RLE, 16-bit, MONOCHROME1/2, series of single frames,
a Frame Time Vector, a region that fits, an SR beside the images, a video transfer syntax)."""

from __future__ import annotations

import io
import random
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom import examples
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames
from pydicom.pixels import apply_color_lut, convert_color_space
from pydicom.uid import MPEG4HP41, RLELossless, generate_uid

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


def test_video_transfer_syntax_is_refused(tmp_path: Path) -> None:
    ds = pydicom.dcmread(YBR)
    ds.file_meta.TransferSyntaxUID = MPEG4HP41
    path = _save(ds, tmp_path / "h264.dcm")
    _refusal(path, "MPEG-4 AVC/H.264 High Profile / Level 4.1", "no decoder")


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
    _refusal(native, "first frame cannot be used")


def test_a_frame_that_breaks_later_is_an_error_frame(tmp_path: Path) -> None:
    ds = pydicom.dcmread(RGB)
    ds.NumberOfFrames = 3
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
    frame = ds.PixelData
    ds.PixelData = frame * 2 + frame[:100] + bytes(len(frame) - 100)
    path = _save(ds, tmp_path / "three.dcm")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - len(frame) + 50])  # the third frame cut short
    frames = list(_one(path).frames())
    assert [f.error is None for f in frames] == [True, True, False]
    assert "three.dcm frame 3" in frames[2].error and frames[2].image is None


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
    _refusal(only_sr, "no image among its 1 DICOM files")
    mixed = tmp_path / "mixed"
    _series(mixed, 2)
    ct = shutil.copy(examples.get_path("ct"), mixed / "ct.dcm")
    text = _refusal(mixed, "CT Image Storage (modality CT): not an ultrasound image")
    assert str(ct) in text


def test_series_of_mixed_sizes_is_refused(tmp_path: Path) -> None:
    _series(tmp_path, 2)
    ds = pydicom.dcmread(tmp_path / "img" / "IM1")
    ds.Rows, ds.InstanceNumber = 120, 3
    ds.PixelData = bytes(120 * 320)
    _save(ds, tmp_path / "img" / "IM9")
    _refusal(tmp_path, "series series_7 has images of mixed sizes", "320x120")
