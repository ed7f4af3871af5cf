"""Ultrasound frames in from DICOM files: one cine loop, or a study folder of them.

What comes in (checked up front, so a bad input fails in a second):

- Only ultrasound images: Modality US and an Ultrasound (Multi-frame) Image Storage SOP
  class. Any other image is refused, naming its SOP class and modality; objects without
  Pixel Data (structured reports, key object selections, presentation states) are refused
  as a single file and skipped, and listed, in a folder.
- Photometric interpretation: RGB, and YBR_FULL / YBR_FULL_422 / YBR_RCT / YBR_ICT (JPEG
  baseline and JPEG 2000 ultrasound) come out as (H, W, 3) RGB, converted by pydicom and
  its decoders; PALETTE COLOR goes through its lookup table to RGB; MONOCHROME2 comes out
  (H, W) gray and MONOCHROME1 the same, inverted so that bright is tissue. Others: refused.
- Bit depth: stored values of ``BitsStored`` bits are scaled by the project's one rule,
  :func:`model.data.pixels.scale_to_uint8` (2**BitsStored - 1 maps to 255; a 16-bit LUT the
  same with 16 bits). Signed pixel data is refused; a value above the stated range makes
  the frame an error (the first frame: the file is refused).
- A transfer syntax that no installed decoder reads (MPEG/H.264/HEVC video, or a codec
  whose plugin is missing) is refused, naming the syntax and what would decode it.
- Frames are decoded one at a time, so a long cine loop is never held whole in memory.

Timing, the first of these the header holds (the one Frame Increment Pointer names goes
first): Frame Time Vector (0018,1065; ms since the previous frame, the first entry 0),
Frame Time (0018,1063; ms), Cine Rate (0018,0040; fps), Recommended Display Frame Rate
(0008,2144; fps); else the caller's fallback rate. A stated value that cannot be right
(non-finite, negative, a zero time or rate, a vector whose length is not the frame count)
refuses the file: a wrong clock would put wrong times on every result. ``fps`` is the
nominal rate (the vector's average); each frame's timestamp is seconds from the first.

Calibration: of the Sequence of Ultrasound Regions (0018,6011) items with Region Spatial
Format 1 (2D) and Physical Units X and Y both 3 (cm), the largest is the region, its
Physical Delta X/Y times 10 the mm per pixel. It is used only if it lies inside the frame
and its deltas are finite and positive; otherwise ``region`` is None and ``calibration``
says why (a region larger than the frame usually means an export resized the image).

Folders are walked recursively; files with ``DICM`` at byte 128 or a .dcm/.dicom suffix are
read, DICOMDIR skipped. Every multi-frame file is its own source (named by its file name);
the single-frame images of one Series Instance UID form one source (``series_<number>``),
in Instance Number order (ties and missing numbers by file name, natural order), and must
share one size. Names are made unique with ``_2``, ``_3``... as they name output folders.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, get_decoder, iter_pixels
from pydicom.uid import UID

from model.data.layouts import natural_key
from model.data.pixels import PixelRangeError, scale_to_uint8
from model.data.video_writer import size_text

from .regions import ImageRegion
from .video import FrameSource, InputError, SourceFrame

DICOM_SUFFIXES = (".dcm", ".dicom")

ULTRASOUND_STORAGE = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image Storage
        "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame Image Storage
        "1.2.840.10008.5.1.4.1.1.6",  # Ultrasound Image Storage (retired)
        "1.2.840.10008.5.1.4.1.1.3",  # Ultrasound Multi-frame Image Storage (retired)
    }
)
PHOTOMETRICS = (
    "MONOCHROME1",
    "MONOCHROME2",
    "RGB",
    "YBR_FULL",
    "YBR_FULL_422",
    "YBR_RCT",
    "YBR_ICT",
    "PALETTE COLOR",
)
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_FRAME_TIME, _FRAME_TIME_VECTOR = 0x00181063, 0x00181065
_REGION_KINDS = {1: "tissue", 2: "color flow"}
_DEFER = "4 KB"  # header reads leave large values (Pixel Data) in the file


@dataclass(frozen=True)
class DicomSource(FrameSource):
    """A DICOM cine loop, or a series of single-frame images, as one video.

    ``origins[i]`` is where frame i comes from: (file, 1-based frame number in that file),
    so that a DICOM Segmentation can reference its source instances; ``timestamps[i]`` its
    time in seconds from the first frame; ``timing`` (one line) what the times came from.
    No dataset is kept: frames are decoded from the files each time they are read.
    """

    origins: tuple[tuple[Path, int], ...] = field(default=(), repr=False)
    timestamps: tuple[float, ...] = field(default=(), repr=False)
    timing: str = ""

    def __post_init__(self) -> None:
        if self.kind != "dicom":
            raise ValueError(f"a DicomSource is of kind 'dicom', not {self.kind!r}")
        if len(self.timestamps) != len(self.origins):
            raise ValueError(f"{len(self.timestamps)} timestamps for {len(self.origins)} frames")

    def _all_frames(self) -> Iterator[SourceFrame]:
        index = 0
        for file, numbers in _runs(self.origins):
            for image, error in _decode_run(file, numbers, self.size):
                yield SourceFrame(index, self.timestamps[index], image, None, error)
                index += 1


@dataclass(frozen=True)
class DicomInput:
    """What a DICOM file or folder holds: the sources, and the files skipped (path, why)."""

    sources: tuple[DicomSource, ...]
    skipped: tuple[tuple[Path, str], ...] = ()


def is_dicom(path: Path) -> bool:
    """Whether ``path`` is a file to read as DICOM: the DICM preamble, or its suffix says so."""
    path = Path(path)
    if not path.is_file():
        return False
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def open_dicom(path: Path, fallback_fps: float = 30.0) -> list[DicomSource]:
    """The ultrasound videos in a DICOM file or study folder (see :func:`scan_dicom`)."""
    return list(scan_dicom(path, fallback_fps).sources)


def scan_dicom(path: Path, fallback_fps: float = 30.0) -> DicomInput:
    """The sources at ``path`` and the non-image files skipped, all checked before inference.

    ``fallback_fps`` is the rate of a file whose header states no timing.
    """
    path = Path(path)
    if not (math.isfinite(fallback_fps) and fallback_fps > 0):
        raise ValueError(f"fallback_fps must be finite and > 0, got {fallback_fps}")
    if not path.exists():
        raise InputError(f"{path}: does not exist")
    if path.is_dir():
        return _scan_folder(path, fallback_fps)
    ds = _read_header(path)
    if not _has_pixels(ds):
        raise InputError(f"{path}: {_what(ds)}: no Pixel Data, nothing to segment")
    _check_image(path, ds)
    return DicomInput((_file_source(path, ds, _safe(_file_name(path)), fallback_fps),))


def _scan_folder(folder: Path, fallback_fps: float) -> DicomInput:
    files = sorted(
        (
            p
            for p in folder.rglob("*")
            if not any(part.startswith(".") for part in p.relative_to(folder).parts)
            and p.name.upper() != "DICOMDIR"
            and is_dicom(p)
        ),
        key=lambda p: natural_key(str(p.relative_to(folder))),
    )
    if not files:
        raise InputError(f"{folder}: no DICOM file (none has the DICM preamble or .dcm/.dicom)")
    groups: dict[str, list[tuple[Path, Dataset]]] = {}  # in order of first file
    skipped: list[tuple[Path, str]] = []
    for file in files:
        ds = _read_header(file)
        if not _has_pixels(ds):
            skipped.append((file, f"{_what(ds)}: no Pixel Data"))
            continue
        _check_image(file, ds)
        key = f"file:{file}" if _frame_count(file, ds) > 1 else f"series:{_series_uid(ds)}"
        groups.setdefault(key, []).append((file, ds))
    if not groups:
        kinds = sorted({why for _, why in skipped})
        raise InputError(
            f"{folder}: no image among its {len(files)} DICOM files ({'; '.join(kinds)})"
        )
    sources, names = [], set()
    for key, members in groups.items():
        if key.startswith("file:"):
            file, ds = members[0]
            base = _file_name(file)
        else:
            ds = members[0][1]
            base = f"series_{ds.get('SeriesNumber', '') or _series_uid(ds)[-8:]}"
        name = _unique(_safe(base), names)
        if key.startswith("file:"):
            sources.append(_file_source(file, ds, name, fallback_fps))
        else:
            sources.append(_series_source(folder, members, name, fallback_fps))
    return DicomInput(tuple(sources), tuple(skipped))


def _file_source(path: Path, ds: Dataset, name: str, fallback_fps: float) -> DicomSource:
    """One file (a cine loop, or one image) as a source; its first frame must decode."""
    size = _size(path, ds)
    count = _frame_count(path, ds)
    fps, timestamps, timing = _timing(path, ds, count, fallback_fps)
    region, calibration = _calibration(ds, size)
    _check_first_frame(path, size)
    return DicomSource(
        name,
        "dicom",
        path,
        fps,
        count,
        size,
        region=region,
        calibration=calibration,
        origins=tuple((path, n) for n in range(1, count + 1)),
        timestamps=timestamps,
        timing=timing,
    )


def _series_source(
    folder: Path, members: list[tuple[Path, Dataset]], name: str, fallback_fps: float
) -> DicomSource:
    """Single-frame images of one series, in Instance Number order, as one video."""

    def order(member: tuple[Path, Dataset]) -> tuple[bool, int, tuple[str | int, ...]]:
        number = member[1].get("InstanceNumber")
        known = isinstance(number, int) or (number is not None and str(number).strip() != "")
        return (not known, int(number) if known else 0, natural_key(member[0].name))

    members = sorted(members, key=order)
    first, ds = members[0]
    size = _size(first, ds)
    for file, other in members[1:]:
        other_size = _size(file, other)
        if other_size != size:
            raise InputError(
                f"{folder}: series {name} has images of mixed sizes (width x height): "
                f"{first.name} is {size_text(size)}, {file.name} is {size_text(other_size)}"
            )
    fps, timestamps, timing = _timing(first, ds, len(members), fallback_fps, vector=False)
    region, calibration = _calibration(ds, size)
    _check_first_frame(first, size)
    return DicomSource(
        name,
        "dicom",
        first.parent,
        fps,
        len(members),
        size,
        region=region,
        calibration=calibration,
        origins=tuple((file, 1) for file, _ in members),
        timestamps=timestamps,
        timing=timing,
    )


def _read_header(path: Path) -> Dataset:
    """Everything but the large values; a damaged or truncated file is refused here."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = dcmread(path, defer_size=_DEFER)
    except Exception as err:  # pydicom raises many types on damaged input
        raise InputError(f"{path}: not a DICOM file, or a damaged one ({_reason(err)})") from None
    for warning in caught:
        if "end of file" in str(warning.message).lower():
            raise InputError(f"{path}: truncated DICOM file ({_reason(warning.message)})")
    if not ds.get("file_meta", Dataset()).get("TransferSyntaxUID"):
        raise InputError(f"{path}: no Transfer Syntax UID in the file meta information")
    return ds


def _has_pixels(ds: Dataset) -> bool:
    return any(keyword in ds for keyword in _PIXEL_KEYWORDS)


def _what(ds: Dataset) -> str:
    """'CT Image Storage (modality CT)': what a file is, for messages."""
    sop = ds.get("SOPClassUID")
    name = UID(str(sop)).name if sop else "no SOP Class UID"
    return f"{name} (modality {ds.get('Modality') or 'none'})"


def _check_image(path: Path, ds: Dataset) -> None:
    """Refuse what is not an ultrasound image this module can decode."""
    if ds.get("Modality") != "US" or str(ds.get("SOPClassUID", "")) not in ULTRASOUND_STORAGE:
        raise InputError(f"{path}: {_what(ds)}: not an ultrasound image")
    if "PixelData" not in ds:
        raise InputError(f"{path}: float pixel data, not an ultrasound picture")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric not in PHOTOMETRICS:
        raise InputError(
            f"{path}: photometric interpretation {photometric or 'missing'!r} is not supported "
            f"(supported: {', '.join(PHOTOMETRICS)})"
        )
    if ds.get("PixelRepresentation", 0) != 0:
        raise InputError(f"{path}: signed pixel data; ultrasound frames are unsigned")
    allocated, stored = ds.get("BitsAllocated"), ds.get("BitsStored")
    if not (isinstance(stored, int) and isinstance(allocated, int) and 1 <= stored <= allocated):
        raise InputError(f"{path}: Bits Stored {stored} / Bits Allocated {allocated} unusable")
    _check_decoder(path, UID(str(ds.file_meta.TransferSyntaxUID)))
    _size(path, ds)
    _frame_count(path, ds)


def _check_decoder(path: Path, syntax: UID) -> None:
    """Refuse a transfer syntax nothing installed decodes, saying what would."""
    label = syntax.name if syntax.is_valid and syntax.name != str(syntax) else str(syntax)
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        video = " (encapsulated video)" if "MPEG" in label or "HEVC" in label else ""
        raise InputError(
            f"{path}: transfer syntax {label}{video}: pydicom has no decoder for it"
        ) from None
    if not decoder.is_available:
        needs = "; or ".join(decoder.missing_dependencies) or "a decoding plugin"
        raise InputError(f"{path}: transfer syntax {label}: no decoder installed (needs {needs})")


def _size(path: Path, ds: Dataset) -> tuple[int, int]:
    rows, columns = ds.get("Rows"), ds.get("Columns")
    if not (isinstance(rows, int) and isinstance(columns, int) and rows > 0 and columns > 0):
        raise InputError(f"{path}: Rows {rows} / Columns {columns}: no image size")
    return rows, columns


def _frame_count(path: Path, ds: Dataset) -> int:
    value = ds.get("NumberOfFrames")
    if value is None or str(value).strip() == "":
        return 1
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if count < 1:
        raise InputError(f"{path}: Number of Frames {value!r} is not a frame count")
    return count


def _series_uid(ds: Dataset) -> str:
    return str(ds.get("SeriesInstanceUID", "") or "unknown")


_LABELS = {
    "FrameTimeVector": "Frame Time Vector (0018,1065)",
    "FrameTime": "Frame Time (0018,1063)",
    "CineRate": "Cine Rate (0018,0040)",
    "RecommendedDisplayFrameRate": "Recommended Display Frame Rate (0008,2144)",
}


def _timing(
    path: Path, ds: Dataset, count: int, fallback_fps: float, vector: bool = True
) -> tuple[float, tuple[float, ...], str]:
    """(nominal fps, timestamps in s, one line saying where they came from).

    ``vector`` False: the frames are single-frame files, whose own vectors say nothing
    about the series.
    """
    order = ["FrameTimeVector", "FrameTime", "CineRate", "RecommendedDisplayFrameRate"]
    if not vector:
        order.remove("FrameTimeVector")
    pointed = {int(t) for t in _values(ds.get("FrameIncrementPointer"))}
    if _FRAME_TIME in pointed and _FRAME_TIME_VECTOR not in pointed:
        order.remove("FrameTime")
        order.insert(0, "FrameTime")
    for keyword in order:
        value = ds.get(keyword)
        if not _values(value) or str(_values(value)[0]).strip() == "":
            continue
        if keyword == "FrameTimeVector":
            if count == 1:
                continue  # one frame: no interval to learn from
            return _from_vector(path, value, count)
        number = _positive(path, keyword, value)
        fps = 1000.0 / number if keyword == "FrameTime" else number
        unit = "ms" if keyword == "FrameTime" else "fps"
        text = f"{_LABELS[keyword]} {number:g} {unit}: {fps:.4g} fps"
        return fps, tuple(i / fps for i in range(count)), text
    text = f"no frame timing in the header: {fallback_fps:g} fps assumed"
    return fallback_fps, tuple(i / fallback_fps for i in range(count)), text


def _values(value: object) -> list[object]:
    """A DICOM value as a list: empty for None, one item for a single value."""
    if value is None:
        return []
    return list(value) if isinstance(value, MultiValue | list | tuple) else [value]


def _positive(path: Path, keyword: str, value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise InputError(f"{path}: {_LABELS[keyword]} {value!r} is not a positive time or rate")
    return number


def _from_vector(path: Path, value: object, count: int) -> tuple[float, tuple[float, ...], str]:
    """Cumulative times from the ms-since-previous-frame vector (its first entry is 0)."""
    label = _LABELS["FrameTimeVector"]
    values = _values(value)
    if len(values) != count:
        raise InputError(f"{path}: {label} has {len(values)} values for {count} frames")
    try:
        ms = np.array([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{path}: {label} holds a value that is not a number") from None
    if not np.all(np.isfinite(ms)) or np.any(ms < 0):
        bad = next(v for v in ms if not (math.isfinite(v) and v >= 0))
        raise InputError(f"{path}: {label} holds {bad:g} ms: not a time between frames")
    seconds = np.concatenate([[0.0], np.cumsum(ms[1:])]) / 1000.0
    if seconds[-1] <= 0:
        raise InputError(f"{path}: {label} puts all {count} frames at the same time")
    fps = (count - 1) / float(seconds[-1])
    text = f"{label}: {seconds[-1]:.4g} s over {count} frames, {fps:.4g} fps on average"
    return fps, tuple(float(t) for t in seconds), text


def _calibration(ds: Dataset, size: tuple[int, int]) -> tuple[ImageRegion | None, str]:
    """The largest 2D region in cm that fits the frame, and one line saying what was used."""
    items = ds.get("SequenceOfUltrasoundRegions")
    if not items:
        return None, "none: no Sequence of Ultrasound Regions (0018,6011)"
    candidates = [
        (n, item)
        for n, item in enumerate(items, 1)
        if item.get("RegionSpatialFormat") == 1
        and item.get("PhysicalUnitsXDirection") == 3
        and item.get("PhysicalUnitsYDirection") == 3
    ]
    if not candidates:
        return None, f"none: no 2D region in cm among the {len(items)} Ultrasound Regions"
    n, item = max(candidates, key=lambda c: _area(c[1]))
    kind = _REGION_KINDS.get(item.get("RegionDataType"), f"data type {item.get('RegionDataType')}")
    where = f"DICOM Sequence of Ultrasound Regions, item {n} (2D {kind}, cm)"
    bounds = [item.get(f"RegionLocation{k}") for k in ("MinX0", "MinY0", "MaxX1", "MaxY1")]
    deltas = [item.get("PhysicalDeltaX"), item.get("PhysicalDeltaY")]
    if not all(isinstance(v, int) for v in bounds) or None in deltas:
        return None, f"none: {where} lacks its bounds or its pixel size"
    x0, y0, x1, y1 = bounds
    box = f"x {x0}..{x1}, y {y0}..{y1}"
    mm = (float(deltas[0]) * 10.0, float(deltas[1]) * 10.0)
    if not all(math.isfinite(v) and v > 0 for v in mm):
        return None, f"none: {where} states {mm[0]:.4g} x {mm[1]:.4g} mm per pixel: not a size"
    if x1 < x0 or y1 < y0:
        return None, f"none: {where} is empty ({box})"
    region = ImageRegion(x0, y0, x1 + 1, y1 + 1, where, mm)
    if not region.fits(size):
        return None, (
            f"none: {where}, {box}, lies outside the {size[1]} x {size[0]} frame "
            "(a resized export?): areas in pixels only"
        )
    return region, f"{where}: {box}, {mm[0]:.4g} x {mm[1]:.4g} mm per pixel"


def _area(item: Dataset) -> int:
    try:
        width = int(item.RegionLocationMaxX1) - int(item.RegionLocationMinX0) + 1
        height = int(item.RegionLocationMaxY1) - int(item.RegionLocationMinY0) + 1
    except (AttributeError, TypeError, ValueError):
        return -1
    return max(width, 0) * max(height, 0)


def _check_first_frame(path: Path, size: tuple[int, int]) -> None:
    """Decode frame 1 now, so that a file whose pixels cannot be read fails at open."""
    for _, error in _decode_run(path, [1], size):
        if error is not None:
            raise InputError(f"{path}: first frame cannot be used ({error})")


def _runs(origins: tuple[tuple[Path, int], ...]) -> Iterator[tuple[Path, list[int]]]:
    """Consecutive frames of one file, as (file, frame numbers)."""
    file: Path | None = None
    numbers: list[int] = []
    for path, number in origins:
        if path != file and file is not None:
            yield file, numbers
            numbers = []
        file = path
        numbers.append(number)
    if file is not None:
        yield file, numbers


def _decode_run(
    file: Path, numbers: list[int], size: tuple[int, int]
) -> Iterator[tuple[np.ndarray | None, str | None]]:
    """(image, None) or (None, why) for each frame number of ``file``, never raising.

    Frames come one at a time from pydicom's iterator; after a frame fails to decode the
    iterator is dead, so decoding resumes with a fresh one at the next frame.
    """
    try:
        header = dcmread(file, stop_before_pixels=True)
    except Exception as err:  # the file changed or vanished since it was opened
        for _ in numbers:
            yield None, f"{file.name}: unreadable ({_reason(err)})"
        return
    pending = list(numbers)
    frames: Iterator[np.ndarray] | None = None
    while pending:
        number = pending.pop(0)
        if frames is None:
            indices = [number - 1, *(n - 1 for n in pending)]
            # Unused high bits are kept, not masked, so that a value above Bits Stored
            # is refused by scale_to_uint8 rather than silently wrapped.
            frames = iter_pixels(file, indices=indices, correct_unused_bits=False)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # truncation is reported as the error
                array = next(frames)
        except Exception as err:  # decoder plugins raise many types; StopIteration too
            frames = None
            yield None, f"{file.name} frame {number}: cannot be decoded ({_reason(err)})"
            continue
        yield _to_uint8(array, header, size, f"{file.name} frame {number}")


def _to_uint8(
    array: np.ndarray, header: Dataset, size: tuple[int, int], where: str
) -> tuple[np.ndarray | None, str | None]:
    """A decoded frame as uint8 gray or RGB, by the rules in the module docstring."""
    if array.shape[:2] != size:
        return None, f"{where}: size {size_text(array.shape)} differs from {size_text(size)}"
    photometric = str(header.PhotometricInterpretation).strip()
    try:
        if photometric == "PALETTE COLOR":
            rgb = apply_color_lut(array, header)
            entry_bits = int(header.RedPaletteColorLookupTableDescriptor[2])
            image = scale_to_uint8(rgb, max(entry_bits, 8))
        else:
            image = scale_to_uint8(array, int(header.BitsStored))
    except (PixelRangeError, ValueError, IndexError, AttributeError) as err:
        return None, f"{where}: {_reason(err)}"
    if photometric == "MONOCHROME1":
        image = 255 - image
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    return np.ascontiguousarray(image), None


def _file_name(path: Path) -> str:
    """The file name without a .dcm/.dicom suffix (UID names keep their dots)."""
    suffix = path.suffix.lower()
    return path.name[: -len(suffix)] if suffix in DICOM_SUFFIXES else path.name


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "dicom"


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate


def _reason(err: object) -> str:
    """An error as one short line (pydicom's plugin reports span several lines)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 240 else text[:237] + "..."
