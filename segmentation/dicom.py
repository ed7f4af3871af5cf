"""Ultrasound frames in from DICOM files: one cine loop, or a study folder of them.

What comes in (checked up front, so a bad input fails in a second):

- Only ultrasound images: Modality US and an Ultrasound (Multi-frame) Image Storage SOP
  class, or a Secondary Capture (single-frame, or the multi-frame grayscale byte / word and
  true colour classes) with Modality US, as exported ultrasound is. Anything else (another
  modality, a 1-bit Secondary Capture bitmap, an object without Pixel Data such as a
  structured report) is refused as a single file, naming its SOP class and modality, and in
  a folder skipped and listed beside the ultrasound it holds.
- Photometric interpretation: RGB, and YBR_FULL / YBR_FULL_422 / YBR_RCT / YBR_ICT (JPEG
  baseline and JPEG 2000 ultrasound) come out as (H, W, 3) RGB, converted by pydicom and
  its decoders; PALETTE COLOR goes through its lookup table to RGB; MONOCHROME2 comes out
  (H, W) gray and MONOCHROME1 the same, inverted so that bright is tissue. Others, or a
  Samples per Pixel that does not match (1 for gray and palette, 3 for colour): refused.
- Bit depth: stored values of ``BitsStored`` bits are scaled by the project's one rule,
  :func:`model.data.pixels.scale_to_uint8` (2**BitsStored - 1 maps to 255; a 16-bit LUT the
  same with 16 bits). Signed pixel data is refused; a value above the stated range makes
  the frame an error (the first frame: the file is refused).
- Header against data, before any frame is decoded, from the Pixel Data's position and
  length (and for encapsulated data its item headers and offset tables), never its bytes:
  native data must be whole frames of Rows x Columns x Samples per Pixel x Bits Allocated
  (one padding byte allowed); encapsulated data is counted by its Extended or Basic Offset
  Table, else as at most one frame a fragment. Data holding fewer frames than Number of
  Frames announces (or a file cut short after some whole frames): the frames there are
  read and ``notes`` says so once. Data holding more, or bytes that are not whole frames of
  the stated size and depth, or an offset table that does not point at fragments: refused,
  since no frame can be located with confidence.
- Encapsulated video (the MPEG-2, MPEG-4 AVC/H.264 and HEVC/H.265 transfer syntaxes, PS3.5
  8.2): the fragments, concatenated, are the video stream, which FFmpeg (PyAV) reads a
  block at a time from the file and decodes; its codec must be the one the transfer syntax
  names. Frames come out RGB by the video reader's rule (:func:`.video.frame_rgb`). The
  stream's own frame count is the count; where Number of Frames differs, ``notes`` says so
  once. Photometric YBR_PARTIAL_420 (what PS3.5 asks of video), YBR_FULL(_422), RGB or
  MONOCHROME2: the stream's own pixel format decides the conversion.
- Any other transfer syntax no installed decoder reads is refused, naming the syntax and
  what would decode it.
- Frames are decoded one at a time, so a long cine loop is never held whole in memory.

Timing, the first of these the header holds (the one Frame Increment Pointer names goes
first): Frame Time Vector (0018,1065; ms since the previous frame, the first entry 0),
Frame Time (0018,1063; ms), Cine Rate (0018,0040; fps), Recommended Display Frame Rate
(0008,2144; fps); else the caller's fallback rate. A stated value that cannot be right
(non-finite, negative, a zero time or rate, a vector whose length is neither the frame
count nor Number of Frames) refuses the file: a wrong clock would put wrong times on every
result. ``fps`` is the nominal rate (the vector's average); each frame's timestamp is
seconds from the first.

Calibration: of the Sequence of Ultrasound Regions (0018,6011) items with Region Spatial
Format 1 (2D) and Physical Units X and Y both 3 (cm), the largest is the region, its
Physical Delta X/Y times 10 the mm per pixel. It is used only if it lies inside the frame
and its deltas are finite and positive; otherwise ``region`` is None and ``calibration``
says why (a region larger than the frame usually means an export resized the image).

Folders are walked recursively; files with ``DICM`` at byte 128 or a .dcm/.dicom suffix are
read, DICOMDIR skipped. Every multi-frame file is its own source (named by its file name);
the single-frame images of one Series Instance UID form one source (``series_<number>``),
in Instance Number order (ties and missing numbers by file name, natural order), and must
share one size. Where some of them are gray and some colour, all come out RGB. Their timing
is the first image's stated timing as above; else each image's own time, the first all of
them hold of Content Date/Time (0008,0023/0033), Acquisition DateTime (0008,002A) and
Acquisition Date/Time (0008,0022/0032), as seconds from the first image; times that repeat
or go backwards (or do not parse) give the fallback rate, and ``timing`` says why. Names
are made unique with ``_2``, ``_3``... as they name output folders.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
from av.container import InputContainer
from av.video.stream import VideoStream
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import parse_basic_offsets, parse_fragments
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, get_decoder, iter_pixels
from pydicom.uid import (
    HEVCM10P51,
    HEVCMP51,
    MPEG2MPHL,
    MPEG2MPHLF,
    MPEG2MPML,
    MPEG2MPMLF,
    UID,
    DeflatedExplicitVRLittleEndian,
    MPEGTransferSyntaxes,
)
from pydicom.valuerep import DA, DT, TM

from model.data.layouts import natural_key
from model.data.pixels import PixelRangeError, scale_to_uint8
from model.data.video_writer import av_reason, size_text

from .regions import ImageRegion
from .video import FrameSource, InputError, SourceFrame, frame_rgb

DICOM_SUFFIXES = (".dcm", ".dicom")

ULTRASOUND_STORAGE = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image Storage
        "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame Image Storage
        "1.2.840.10008.5.1.4.1.1.6",  # Ultrasound Image Storage (retired)
        "1.2.840.10008.5.1.4.1.1.3",  # Ultrasound Multi-frame Image Storage (retired)
    }
)
# Ultrasound exported as Secondary Capture: read when its Modality is US.
SECONDARY_CAPTURE = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
        "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte SC
        "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word SC
        "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color SC
    }
)
_SINGLE_BIT_SC = "1.2.840.10008.5.1.4.1.1.7.1"  # a bitmap (text, graphics), never a picture
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
VIDEO_PHOTOMETRICS = ("YBR_PARTIAL_420", "YBR_FULL", "YBR_FULL_422", "RGB", "MONOCHROME2")
_MPEG2 = (MPEG2MPML, MPEG2MPMLF, MPEG2MPHL, MPEG2MPHLF)
# The FFmpeg decoder each video transfer syntax names (the others are H.264 profiles).
VIDEO_CODECS = {
    uid: "mpeg2video" if uid in _MPEG2 else "hevc" if uid in (HEVCMP51, HEVCM10P51) else "h264"
    for uid in MPEGTransferSyntaxes
}
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_FRAME_TIME, _FRAME_TIME_VECTOR = 0x00181063, 0x00181065
_REGION_KINDS = {1: "tissue", 2: "color flow"}
_DEFER = "4 KB"  # header reads leave large values (Pixel Data) in the file
_UNDEFINED = 0xFFFFFFFF  # the length of encapsulated Pixel Data

Clock = tuple[float, tuple[float, ...], str]  # (nominal fps, timestamps in s, where from)


@dataclass(frozen=True)
class DicomSource(FrameSource):
    """A DICOM cine loop, or a series of single-frame images, as one video.

    ``origins[i]`` is where frame i comes from: (file, 1-based frame number in that file),
    so that a DICOM Segmentation can reference its source instances; ``timestamps[i]`` its
    time in seconds from the first frame; ``timing`` (one line) what the times came from.
    ``notes`` (FrameSource's) says, for instance, that a file holds fewer frames than its
    header announces. ``rgb``: gray frames come out RGB too (a series that
    mixes gray and colour images), so that every frame has one shape.
    No dataset is kept: frames are decoded from the files each time they are read.
    """

    origins: tuple[tuple[Path, int], ...] = field(default=(), repr=False)
    timestamps: tuple[float, ...] = field(default=(), repr=False)
    timing: str = ""
    rgb: bool = False

    def __post_init__(self) -> None:
        if self.kind != "dicom":
            raise ValueError(f"a DicomSource is of kind 'dicom', not {self.kind!r}")
        if len(self.timestamps) != len(self.origins):
            raise ValueError(f"{len(self.timestamps)} timestamps for {len(self.origins)} frames")

    def _all_frames(self) -> Iterator[SourceFrame]:
        index = 0
        for file, numbers in _runs(self.origins):
            for image, error in _decode_run(file, numbers, self.size):
                if self.rgb and image is not None and image.ndim == 2:
                    image = np.repeat(image[:, :, None], 3, axis=2)
                yield SourceFrame(index, self.timestamps[index], image, None, error)
                index += 1


@dataclass(frozen=True)
class DicomInput:
    """What a DICOM file or folder holds: the sources, and the files skipped (path, why)."""

    sources: tuple[DicomSource, ...]
    skipped: tuple[tuple[Path, str], ...] = ()


@dataclass(frozen=True)
class _Pixels:
    """What a file's Pixel Data holds: frames 1..``frames`` to read, and ``note``, one line,
    where that is not what its header announces."""

    frames: int
    note: str = ""


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
    """The sources at ``path`` and the files skipped, all checked before inference.

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
    why = _not_ultrasound(ds)
    if why:
        raise InputError(f"{path}: {why}")
    pixels = _check_image(path, ds)
    return DicomInput((_file_source(path, ds, pixels, _safe(_file_name(path)), fallback_fps),))


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
    groups: dict[str, list[tuple[Path, Dataset, _Pixels]]] = {}  # in order of first file
    skipped: list[tuple[Path, str]] = []
    for file in files:
        ds = _read_header(file)
        why = _not_ultrasound(ds)
        if why:
            skipped.append((file, why))
            continue
        pixels = _check_image(file, ds)
        cine = pixels.frames > 1 or _frame_count(file, ds) > 1
        key = f"file:{file}" if cine else f"series:{_series_uid(ds)}"
        groups.setdefault(key, []).append((file, ds, pixels))
    if not groups:
        kinds = sorted({why for _, why in skipped})
        raise InputError(
            f"{folder}: no ultrasound image among its {len(files)} DICOM files ({'; '.join(kinds)})"
        )
    sources, names = [], set()
    for key, members in groups.items():
        file, ds, pixels = members[0]
        if key.startswith("file:"):
            name = unique_name(_safe(_file_name(file)), names)
            sources.append(_file_source(file, ds, pixels, name, fallback_fps))
        else:
            base = f"series_{ds.get('SeriesNumber', '') or _series_uid(ds)[-8:]}"
            name = unique_name(_safe(base), names)
            series = [(member, header) for member, header, _ in members]
            sources.append(_series_source(folder, series, name, fallback_fps))
    return DicomInput(tuple(sources), tuple(skipped))


def _file_source(
    path: Path, ds: Dataset, pixels: _Pixels, name: str, fallback_fps: float
) -> DicomSource:
    """One file (a cine loop, or one image) as a source; its first frame must decode."""
    size = _size(path, ds)
    fps, timestamps, timing = _timing(path, ds, pixels.frames, fallback_fps)
    region, calibration = _calibration(ds, size)
    _check_first_frame(path, size)
    return DicomSource(
        name,
        "dicom",
        path,
        fps,
        pixels.frames,
        size,
        region=region,
        calibration=calibration,
        origins=tuple((path, n) for n in range(1, pixels.frames + 1)),
        timestamps=timestamps,
        timing=timing,
        notes=(pixels.note,) if pixels.note else (),
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
    fps, timestamps, timing = _series_timing(members, fallback_fps)
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
        rgb=any(not _photometric(header).startswith("MONOCHROME") for _, header in members),
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


def _what(ds: Dataset) -> str:
    """'CT Image Storage (modality CT)': what a file is, for messages."""
    sop = ds.get("SOPClassUID")
    name = UID(str(sop)).name if sop else "no SOP Class UID"
    return f"{name} (modality {ds.get('Modality') or 'none'})"


def _not_ultrasound(ds: Dataset) -> str | None:
    """Why a file is not an ultrasound picture at all (skipped in a folder), or None."""
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        return f"{_what(ds)}: no Pixel Data"
    sop = str(ds.get("SOPClassUID", ""))
    if ds.get("Modality") == "US" and sop == _SINGLE_BIT_SC:
        return f"{_what(ds)}: a 1-bit bitmap, not an ultrasound picture"
    if ds.get("Modality") != "US" or sop not in ULTRASOUND_STORAGE | SECONDARY_CAPTURE:
        return f"{_what(ds)}: not an ultrasound image"
    return None


def _check_image(path: Path, ds: Dataset) -> _Pixels:
    """Refuse an ultrasound image this module cannot decode; what its Pixel Data holds."""
    if "PixelData" not in ds:
        raise InputError(f"{path}: float pixel data, not an ultrasound picture")
    syntax = UID(str(ds.file_meta.TransferSyntaxUID))
    photometric = _photometric(ds)
    known = VIDEO_PHOTOMETRICS if syntax in VIDEO_CODECS else PHOTOMETRICS
    if photometric not in known:
        raise InputError(
            f"{path}: photometric interpretation {photometric or 'missing'!r} is not supported "
            f"(supported: {', '.join(known)})"
        )
    samples = 1 if photometric.startswith("MONOCHROME") or photometric == "PALETTE COLOR" else 3
    if ds.get("SamplesPerPixel") != samples:
        raise InputError(
            f"{path}: Samples per Pixel {ds.get('SamplesPerPixel')} with photometric "
            f"interpretation {photometric}, which has {samples}"
        )
    if ds.get("PixelRepresentation", 0) != 0:
        raise InputError(f"{path}: signed pixel data; ultrasound frames are unsigned")
    allocated, stored = ds.get("BitsAllocated"), ds.get("BitsStored")
    if not (isinstance(stored, int) and isinstance(allocated, int) and 1 <= stored <= allocated):
        raise InputError(f"{path}: Bits Stored {stored} / Bits Allocated {allocated} unusable")
    _check_decoder(path, syntax)
    _size(path, ds)
    return _pixels(path, ds, syntax)


def _photometric(ds: Dataset) -> str:
    return str(ds.get("PhotometricInterpretation", "")).strip()


def _samples(ds: Dataset) -> int:
    return int(ds.get("SamplesPerPixel") or 1)


def _check_decoder(path: Path, syntax: UID) -> None:
    """Refuse a transfer syntax nothing installed decodes, saying what would."""
    label = _syntax_label(syntax)
    if syntax in VIDEO_CODECS:
        try:
            av.codec.Codec(VIDEO_CODECS[syntax], "r")
        except (ValueError, av.FFmpegError):
            raise InputError(
                f"{path}: transfer syntax {label}: this FFmpeg (PyAV) has no "
                f"{VIDEO_CODECS[syntax]} decoder"
            ) from None
        return
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise InputError(
            f"{path}: transfer syntax {label}: pydicom has no decoder for it"
        ) from None
    if not decoder.is_available:
        needs = "; or ".join(decoder.missing_dependencies) or "a decoding plugin"
        raise InputError(f"{path}: transfer syntax {label}: no decoder installed (needs {needs})")


def _syntax_label(syntax: UID) -> str:
    return syntax.name if syntax.is_valid and syntax.name != str(syntax) else str(syntax)


def _size(path: Path, ds: Dataset) -> tuple[int, int]:
    rows, columns = ds.get("Rows"), ds.get("Columns")
    if not (isinstance(rows, int) and isinstance(columns, int) and rows > 0 and columns > 0):
        raise InputError(f"{path}: Rows {rows} / Columns {columns}: no image size")
    return rows, columns


def _frame_count(path: Path, ds: Dataset) -> int:
    """Number of Frames as the header announces it (1 where it has none)."""
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


# --- header against data -------------------------------------------------------------------


def _pixels(path: Path, ds: Dataset, syntax: UID) -> _Pixels:
    """How many frames the Pixel Data holds, from its position and length, never its bytes."""
    announced = _frame_count(path, ds)
    if syntax in VIDEO_CODECS:
        return _video_frames(path, ds, syntax, announced)
    element = ds.get_item("PixelData", keep_deferred=True)
    if syntax.is_encapsulated:
        return _encapsulated_frames(path, ds, element.value_tell, announced)
    # A deflated data set's positions are in its inflated stream: only the length is known.
    in_file = (
        element.length
        if syntax == DeflatedExplicitVRLittleEndian
        else path.stat().st_size - element.value_tell
    )
    return _native_frames(path, ds, element.length, in_file, announced)


def _native_frames(path: Path, ds: Dataset, length: int, in_file: int, announced: int) -> _Pixels:
    """Whole frames of Rows x Columns x Samples x Bits Allocated in ``length`` bytes."""
    rows, columns = _size(path, ds)
    frame_bits = rows * columns * _samples(ds) * int(ds.BitsAllocated)
    if _photometric(ds) == "YBR_FULL_422":
        frame_bits = frame_bits // 3 * 2  # two chroma samples shared by two pixels (C.7.6.3)

    def nbytes(frames: int) -> int:
        return -(-frames * frame_bits // 8)

    def padded(frames: int) -> tuple[int, int]:
        exact = nbytes(frames)
        return exact, exact + exact % 2

    if length in padded(announced):
        whole = announced
    else:
        whole = length * 8 // frame_bits
        if length == _UNDEFINED or whole == 0 or length not in padded(whole):
            raise InputError(
                f"{path}: {length} bytes of Pixel Data are not whole {columns}x{rows} frames "
                f"of {_samples(ds)} x {ds.BitsAllocated}-bit samples ({frame_bits / 8:g} bytes "
                "each): the header does not describe the data"
            )
        if whole > announced:
            raise InputError(
                f"{path}: Pixel Data holds {whole} frames where Number of Frames announces "
                f"{announced}: the header does not describe the data"
            )
    there = min(whole, in_file * 8 // frame_bits) if in_file < length else whole
    if there == 0:
        raise InputError(f"{path}: the file ends inside its first frame (cut short)")
    if there < whole:
        return _Pixels(there, _fewer(path, there, announced, "the file ends after"))
    return _Pixels(whole, _fewer(path, whole, announced) if whole < announced else "")


def _fewer(path: Path, frames: int, announced: int, what: str = "holds") -> str:
    return (
        f"{path}: {what} {frames} of the {announced} frames its header announces; "
        f"segmenting those {frames}"
    )


def _fragments(file: BinaryIO, position: int) -> tuple[list[int], list[tuple[int, int]]]:
    """The Basic Offset Table of the encapsulated Pixel Data at ``position``, and where each
    fragment's bytes lie (start, length): item headers only, no fragment is read."""
    file.seek(position)
    table = parse_basic_offsets(file)
    _, items = parse_fragments(file)
    spans = []
    for item in items:
        file.seek(item + 4)
        spans.append((item + 8, int.from_bytes(file.read(4), "little")))
    return table, spans


def _encapsulated_frames(path: Path, ds: Dataset, position: int, announced: int) -> _Pixels:
    """Frames of compressed images: listed by an offset table, else one a fragment at most."""
    try:
        with path.open("rb") as file:
            table, spans = _fragments(file, position)
    except (ValueError, OSError) as err:
        raise InputError(f"{path}: encapsulated Pixel Data is damaged ({_reason(err)})") from None
    if not spans:
        raise InputError(f"{path}: encapsulated Pixel Data holds no fragment, so no frame")
    if "ExtendedOffsetTable" in ds:
        raw = bytes(ds.ExtendedOffsetTable)
        table = [int(v) for v in np.frombuffer(raw[: len(raw) // 8 * 8], "<u8")]
        which = "Extended"
    else:
        which = "Basic"
    if table:
        starts = {start - spans[0][0] for start, _ in spans}  # from the first item, as tables
        if table[0] != 0 or sorted(set(table)) != table or not set(table) <= starts:
            raise InputError(
                f"{path}: its {which} Offset Table does not point at its fragments: "
                "frames cannot be located"
            )
        if len(table) > announced:
            raise InputError(
                f"{path}: its {which} Offset Table lists {len(table)} frames where Number of "
                f"Frames announces {announced}: the header does not describe the data"
            )
        frames = len(table)
    else:  # pydicom groups fragments into frames (by JPEG end markers where it must)
        frames = min(announced, len(spans))
    return _Pixels(frames, _fewer(path, frames, announced) if frames < announced else "")


def _video_frames(path: Path, ds: Dataset, syntax: UID, announced: int) -> _Pixels:
    """The frames of an encapsulated video stream, counted by FFmpeg's demuxer (no decoding)."""
    try:
        with _video(path, ds) as (container, stream):
            frames = sum(1 for packet in container.demux(stream) if packet.size)
    except (av.FFmpegError, OSError, ValueError) as err:
        raise InputError(
            f"{path}: {_syntax_label(syntax)} video stream cannot be read ({av_reason(err)})"
        ) from None
    if frames == 0:
        raise InputError(f"{path}: its {_syntax_label(syntax)} video stream holds no frame")
    if frames == announced:
        return _Pixels(frames)
    return _Pixels(
        frames,
        f"{path}: its video stream holds {frames} frames where Number of Frames announces "
        f"{announced}; segmenting the {frames}",
    )


class _Stream(io.RawIOBase):
    """Byte ranges of one file read as one stream, a block at a time: the fragments of an
    encapsulated video, whose concatenation is its elementary stream (PS3.5 8.2)."""

    def __init__(self, file: BinaryIO, spans: list[tuple[int, int]]) -> None:
        self._file, self._spans = file, spans
        self._span, self._done = 0, 0  # the fragment being read, and its bytes already read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while self._span < len(self._spans):
            start, length = self._spans[self._span]
            if self._done < length:
                self._file.seek(start + self._done)
                data = self._file.read(min(len(buffer), length - self._done))
                buffer[: len(data)] = data
                self._done += len(data)
                return len(data)
            self._span, self._done = self._span + 1, 0
        return 0


@contextmanager
def _video(path: Path, ds: Dataset) -> Iterator[tuple[InputContainer, VideoStream]]:
    """The video stream of an encapsulated video file, opened by FFmpeg (which tells an MPEG-2
    program stream from an elementary one); ValueError if it is not the codec promised."""
    codec = VIDEO_CODECS[UID(str(ds.file_meta.TransferSyntaxUID))]
    position = ds.get_item("PixelData", keep_deferred=True).value_tell
    with path.open("rb") as file:
        _, spans = _fragments(file, position)
        with av.open(_Stream(file, spans), "r") as container:
            if not container.streams.video:
                raise ValueError(f"FFmpeg finds no video stream in it ({container.format.name})")
            stream = container.streams.video[0]
            if stream.codec_context.name != codec:
                raise ValueError(f"it holds {stream.codec_context.name}, not {codec}")
            yield container, stream


# --- timing --------------------------------------------------------------------------------

_LABELS = {
    "FrameTimeVector": "Frame Time Vector (0018,1065)",
    "FrameTime": "Frame Time (0018,1063)",
    "CineRate": "Cine Rate (0018,0040)",
    "RecommendedDisplayFrameRate": "Recommended Display Frame Rate (0008,2144)",
}
# Each image's own time, for a series of single frames: (time, date or None, label).
_IMAGE_TIMES = (
    ("ContentTime", "ContentDate", "Content Time (0008,0033)"),
    ("AcquisitionDateTime", None, "Acquisition DateTime (0008,002A)"),
    ("AcquisitionTime", "AcquisitionDate", "Acquisition Time (0008,0032)"),
)


def _timing(path: Path, ds: Dataset, count: int, fallback_fps: float) -> Clock:
    """The times of a file's ``count`` frames: as its header states them, else assumed."""
    stated = _stated_timing(path, ds, count)
    return stated or _assumed(fallback_fps, count, "no frame timing in the header")


def _series_timing(members: list[tuple[Path, Dataset]], fallback_fps: float) -> Clock:
    """The first image's stated timing; else each image's own time; else assumed, saying why.

    A single-frame file's own vector says nothing about the series, so it is not used.
    """
    first, ds = members[0]
    stated = _stated_timing(first, ds, len(members), vector=False)
    if stated:
        return stated
    if len(members) == 1:
        return _assumed(fallback_fps, 1, "no frame timing in the header")
    clock, why = _image_times(members)
    return clock or _assumed(fallback_fps, len(members), why)


def _assumed(fps: float, count: int, why: str) -> Clock:
    return fps, tuple(i / fps for i in range(count)), f"{why}: {fps:g} fps assumed"


def _stated_timing(path: Path, ds: Dataset, count: int, vector: bool = True) -> Clock | None:
    """The timing the header states, by the rules in the module docstring; None if none."""
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
            return _from_vector(path, value, count, _frame_count(path, ds))
        number = _positive(path, keyword, value)
        fps = 1000.0 / number if keyword == "FrameTime" else number
        unit = "ms" if keyword == "FrameTime" else "fps"
        text = f"{_LABELS[keyword]} {number:g} {unit}: {fps:.4g} fps"
        return fps, tuple(i / fps for i in range(count)), text
    return None


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


def _from_vector(path: Path, value: object, count: int, announced: int) -> Clock:
    """Cumulative times from the ms-since-previous-frame vector (its first entry is 0); a
    vector for all the announced frames times those the data holds by its first entries."""
    label = _LABELS["FrameTimeVector"]
    values = _values(value)
    if len(values) not in (count, announced):
        raise InputError(f"{path}: {label} has {len(values)} values for {count} frames")
    try:
        ms = np.array([float(v) for v in values[:count]], dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{path}: {label} holds a value that is not a number") from None
    if not np.all(np.isfinite(ms)) or np.any(ms < 0):
        bad = next(v for v in ms if not (math.isfinite(v) and v >= 0))
        raise InputError(f"{path}: {label} holds {bad:g} ms: not a time between frames")
    seconds = np.concatenate([[0.0], np.cumsum(ms[1:])]) / 1000.0
    if seconds[-1] <= 0:
        raise InputError(f"{path}: {label} puts all {count} frames at the same time")
    return _from_seconds(seconds, label)


def _from_seconds(seconds: np.ndarray, label: str) -> Clock:
    """Increasing times from the first frame's, with their average rate."""
    fps = (len(seconds) - 1) / float(seconds[-1])
    text = f"{label}: {seconds[-1]:.4g} s over {len(seconds)} frames, {fps:.4g} fps on average"
    return fps, tuple(float(t) for t in seconds), text


def _image_times(members: list[tuple[Path, Dataset]]) -> tuple[Clock | None, str]:
    """The series timed by each image's own time, or (None, why it cannot be)."""
    for keyword, date_keyword, label in _IMAGE_TIMES:
        if not all(_text(ds, keyword) for _, ds in members):
            continue
        if date_keyword and not all(_text(ds, date_keyword) for _, ds in members):
            date_keyword = None  # times of day alone: a series crossing midnight goes back
        try:
            moments = [_moment(ds, keyword, date_keyword) for _, ds in members]
            seconds = np.array([(m - moments[0]).total_seconds() for m in moments])
        except (ValueError, TypeError, OverflowError) as err:
            return None, f"{label} cannot be read as times ({_reason(err)})"
        steps = np.diff(seconds)
        if np.any(steps <= 0):
            i = int(np.argmax(steps <= 0))
            how = "repeats" if steps[i] == 0 else "goes backwards"
            later, earlier = members[i + 1][0].name, members[i][0].name
            return None, f"{label} {how} from {earlier} to {later} (Instance Number order)"
        return _from_seconds(seconds, f"{label} of each image"), ""
    return None, "no frame timing in the header, and no time on every image"


def _text(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword) or "").strip()


def _moment(ds: Dataset, keyword: str, date_keyword: str | None) -> datetime:
    """An image's time (a datetime; a time of day alone is put on one fixed day)."""
    if keyword == "AcquisitionDateTime":
        return DT(_text(ds, keyword))
    day = DA(_text(ds, date_keyword)) if date_keyword else date(2000, 1, 1)
    return datetime.combine(day, TM(_text(ds, keyword)))


def _series_uid(ds: Dataset) -> str:
    return str(ds.get("SeriesInstanceUID", "") or "unknown")


# --- calibration ---------------------------------------------------------------------------


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


# --- decoding ------------------------------------------------------------------------------


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


Decoded = tuple[np.ndarray | None, str | None]  # (image, None) or (None, why)


def _decode_run(file: Path, numbers: list[int], size: tuple[int, int]) -> Iterator[Decoded]:
    """(image, None) or (None, why) for each frame number of ``file``, in order, never raising."""
    try:
        header = dcmread(file, defer_size=_DEFER)
        syntax = UID(str(header.file_meta.TransferSyntaxUID))
    except Exception as err:  # the file changed or vanished since it was opened
        for _ in numbers:
            yield None, f"{file.name}: unreadable ({_reason(err)})"
        return
    if syntax in VIDEO_CODECS:
        yield from _decode_video(file, header, numbers, size)
    else:
        yield from _decode_images(file, header, numbers, size)


def _decode_images(
    file: Path, header: Dataset, numbers: list[int], size: tuple[int, int]
) -> Iterator[Decoded]:
    """Frames one at a time from pydicom's iterator; after a frame fails to decode the
    iterator is dead, so decoding resumes with a fresh one at the next frame.

    pydicom is told the file holds frames up to the last one read: its header may announce
    more than its data holds (found at open, and the frames beyond never asked for).
    Native YBR_FULL_422 gets an iterator per frame: pydicom 3.0.2's iterator locates the
    frames after the first by the length of the RGB frames it has converted them to.
    """
    syntax = UID(str(header.file_meta.TransferSyntaxUID))
    one_each = _photometric(header) == "YBR_FULL_422" and not syntax.is_encapsulated
    pending = list(numbers)
    frames: Iterator[np.ndarray] | None = None
    while pending:
        number = pending.pop(0)
        if frames is None or one_each:
            later = [] if one_each else [n - 1 for n in pending]
            # Unused high bits are kept, not masked, so that a value above Bits Stored
            # is refused by scale_to_uint8 rather than silently wrapped.
            frames = iter_pixels(
                file,
                indices=[number - 1, *later],
                correct_unused_bits=False,
                number_of_frames=max(numbers),
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # truncation is reported as the error
                array = next(frames)
        except Exception as err:  # decoder plugins raise many types; StopIteration too
            frames = None
            yield None, f"{file.name} frame {number}: cannot be decoded ({_reason(err)})"
            continue
        yield _to_uint8(array, header, size, f"{file.name} frame {number}")


def _decode_video(
    file: Path, header: Dataset, numbers: list[int], size: tuple[int, int]
) -> Iterator[Decoded]:
    """The frames of an encapsulated video, decoded in stream order from the first; a packet
    the decoder rejects is one error frame, a stream that ends early errors the rest."""
    wanted, last, position = set(numbers), max(numbers), 0
    why = "the video stream ended"
    try:
        with _video(file, header) as (container, stream):
            for packet in container.demux(stream):
                try:
                    results: list[Decoded] = [
                        _video_image(frame, size, f"{file.name} frame {position + i + 1}")
                        for i, frame in enumerate(stream.codec_context.decode(packet))
                    ]
                except (av.FFmpegError, ValueError) as err:
                    results = [(None, f"{file.name} frame {position + 1}: {av_reason(err)}")]
                for result in results:
                    position += 1
                    if position in wanted:
                        yield result
                    if position == last:
                        return
    except (av.FFmpegError, OSError, ValueError) as err:
        why = f"the video stream cannot be read on ({av_reason(err)})"
    for number in numbers:
        if number > position:
            yield None, f"{file.name} frame {number}: {why} after {position} frames"


def _video_image(frame: av.VideoFrame, size: tuple[int, int], where: str) -> Decoded:
    """A decoded video frame as RGB, by the video reader's one rule."""
    try:
        image = frame_rgb(frame)
    except (av.FFmpegError, ValueError) as err:
        return None, f"{where}: {av_reason(err)}"
    if image.shape[:2] != size:
        return None, f"{where}: size {size_text(image.shape)} differs from {size_text(size)}"
    return image, None


def _to_uint8(array: np.ndarray, header: Dataset, size: tuple[int, int], where: str) -> Decoded:
    """A decoded frame as uint8 gray or RGB, by the rules in the module docstring."""
    if array.shape[:2] != size:
        return None, f"{where}: size {size_text(array.shape)} differs from {size_text(size)}"
    photometric = _photometric(header)
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


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``...: the first not in ``taken`` (then taken)."""
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
