"""A DICOM Segmentation (SEG) of a segmented ultrasound loop, written beside the PNG masks.

The SEG (Segmentation Storage, BINARY) holds one segment, "Lesion": Morphologically
Abnormal Structure / Mass in the breast, found automatically by the algorithm "BaS"
(family Artificial Intelligence) whose version names the model and runtime used. It holds
one frame per mask, in the order the masks were made, at the source's own Rows x Columns;
a frame with no lesion is kept as an empty frame, so every segmented source frame has
its result. Only the frames that were segmented are held and referenced (a run with
``--every`` or ``--max-frames`` covers part of the loop).

Each SEG frame names its source frame in its Derivation Image Sequence: the source's SOP
Instance UID and, for a multi-frame source, the 1-based Referenced Frame Number. The
Referenced Series Sequence and the Source Image Sequence list the source instances, and
the SEG belongs to the source's patient and study, in a new series of its own.
Ultrasound images have no Frame of Reference, so the SEG has none either: a viewer lays
each frame over the source frame it references, and the frames are indexed by segment
number and by temporal position (the order of the masks). Without an Image Orientation
(Patient), General Image's Patient Orientation is written, as the source has it (empty in
ultrasound, as a rule).

Sources an anonymiser left without their Type 2 patient and study identifiers (Patient's
Name, Patient ID, Study Date...) get a SEG anyway, with those attributes present and empty
(:func:`derivable_header`); the source files are only read.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.pixels import pack_bits
from pydicom.sr.codedict import codes
from pydicom.tag import Tag
from pydicom.uid import (
    SecondaryCaptureImageStorage,
    SegmentationStorage,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
)

from model.atomic import atomic_path
from model.errors import ProjectError, one_line

LO_MAX = 64  # characters in a DICOM LO value (Algorithm Version, Software Versions)
SEG_SERIES_OFFSET = 1000  # the SEG's Series Number: the source's plus this
_TEMPORAL_INDEX = Tag("TemporalPositionIndex")
_FRAME_CONTENT = Tag("FrameContentSequence")
_SINGLE_FRAME_CLASS = {UltrasoundMultiFrameImageStorage: UltrasoundImageStorage}


def _read_source(path: Path) -> Dataset:
    """The source's header only: highdicom needs its attributes, not its pixels."""
    try:
        ds = dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        raise ProjectError(f"{path}: not a DICOM file") from None
    except OSError as err:
        raise ProjectError(f"{path}: cannot be read ({one_line(err)})") from None
    for keyword in ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "Rows", "Columns"):
        if keyword not in ds:
            raise ProjectError(f"{path}: not a DICOM image (no {keyword})")
    return ds


def _frame_count(ds: Dataset) -> int:
    """Number of Frames, 1 where the file has none (a single-frame image)."""
    return int(ds.get("NumberOfFrames") or 1)


def read_sources(origins: Sequence[tuple[Path, int]]) -> dict[Path, Dataset]:
    """Each source file once; refuse sources that are not one loop of one series."""
    sources: dict[Path, Dataset] = {}
    for file, _ in origins:
        if Path(file) not in sources:
            sources[Path(file)] = _read_source(Path(file))
    first = next(iter(sources.values()))
    for file, ds in sources.items():
        if ds.SeriesInstanceUID != first.SeriesInstanceUID:
            raise ProjectError(f"{file}: not in the series of the other source files")
        if (ds.Rows, ds.Columns) != (first.Rows, first.Columns):
            raise ProjectError(f"{file}: frame size differs from the other source files")
    if len(sources) > 1 and any(_frame_count(ds) > 1 for ds in sources.values()):
        raise ProjectError(
            "the masks come from several files, one of them multi-frame: a SEG covers one "
            "multi-frame file or a series of single-frame files"
        )
    return sources


def _check_inputs(
    origins: Sequence[tuple[Path, int]], masks: Sequence[np.ndarray], sources: dict[Path, Dataset]
) -> list[np.ndarray]:
    """Refuse masks that do not fit their source frames; return them as bool arrays."""
    if len(masks) != len(origins):
        raise ProjectError(f"{len(masks)} masks for {len(origins)} source frames")
    seen: set[tuple[Path, int]] = set()
    checked = []
    for i, ((file, frame), mask) in enumerate(zip(origins, masks, strict=True)):
        ds = sources[Path(file)]
        if not 1 <= int(frame) <= _frame_count(ds):
            raise ProjectError(f"{file}: frame {frame} is outside its {_frame_count(ds)} frame(s)")
        if (Path(file), int(frame)) in seen:
            raise ProjectError(f"{file}: frame {frame} has two masks")
        seen.add((Path(file), int(frame)))
        mask = np.asarray(mask)
        if mask.shape != (ds.Rows, ds.Columns):
            raise ProjectError(
                f"mask {i} is {mask.shape}, but {file} frames are {(ds.Rows, ds.Columns)}"
            )
        checked.append(mask.astype(bool))
    return checked


def algorithm_version_fields(algorithm_version: str) -> tuple[str, str | None]:
    """(Algorithm Version, whole text or None): the version as an LO (64 characters) holds
    it, cut with "..." where longer, and then the whole text for Algorithm Parameters."""
    if len(algorithm_version) <= LO_MAX:
        return algorithm_version, None
    return algorithm_version[: LO_MAX - 3] + "...", algorithm_version


def _segment_description(algorithm_version: str) -> hd.seg.SegmentDescription:
    """The one segment: an automatically found breast mass, with the algorithm that found it."""
    version, whole = algorithm_version_fields(algorithm_version)
    algorithm = hd.AlgorithmIdentificationSequence(
        name="BaS",
        family=codes.cid7162.ArtificialIntelligence,
        version=version,
        # Algorithm Version is LO (64 characters); Algorithm Parameters (LT) keeps all of it
        parameters=None if whole is None else {"version": whole},
    )
    return hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Lesion",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Mass,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        anatomic_regions=[codes.SCT.Breast],
    )


def new_series(source: Dataset, offset: int, description: str) -> dict[str, object]:
    """What a derived object (SEG, SR) of ``source`` says of its new series and its maker:
    the series' number is the source's plus ``offset``."""
    return {
        "series_instance_uid": hd.UID(),
        "series_number": int(source.get("SeriesNumber") or 0) + offset,
        "sop_instance_uid": hd.UID(),
        "instance_number": 1,
        "manufacturer": "bas-deploy",
        "manufacturer_model_name": "BaS",
        "software_versions": software_version(),
        "device_serial_number": "1",
        "series_description": description[:LO_MAX],
    }


def software_version() -> str:
    """This project's version, for the SEG's Software Versions."""
    try:
        return f"bas-deploy {metadata.version('bas-deploy')}"
    except metadata.PackageNotFoundError:
        return "bas-deploy"


# Type 2 attributes highdicom copies from the source (reading them as attributes) into the
# Patient and General Study modules of what it derives; an anonymiser may have dropped them.
PATIENT_STUDY_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


def derivable_header(ds: Dataset) -> Dataset:
    """A copy of a source header that highdicom derives a SEG or SR from: where an
    anonymiser dropped Type 2 patient/study attributes, they are there empty (as Type 2
    allows), so the derived object carries them empty; the rest is the source's. The
    source file and ``ds`` are left as they are.
    """
    view = copy.deepcopy(ds)  # a header: small; a shallow copy shares its elements
    for keyword in PATIENT_STUDY_TYPE2:
        if keyword not in view:
            setattr(view, keyword, None)  # present, empty
    return view


def _one_frame_view(ds: Dataset) -> Dataset:
    """The source as highdicom 0.28.2 takes it without a Frame of Reference: one frame.

    highdicom refuses several frames or files without a Frame of Reference, and reads a
    multi-frame source's spacing from enhanced functional groups an ultrasound loop lacks;
    so it gets a single-frame view of the first source, and _add_frames then gives the SEG
    every frame with references (SOP class included) to the real source.
    """
    view = derivable_header(ds)
    if "NumberOfFrames" in view:
        del view.NumberOfFrames
        view.SOPClassUID = _SINGLE_FRAME_CLASS.get(ds.SOPClassUID, SecondaryCaptureImageStorage)
    return view


def _patient_orientation(seg: hd.seg.Segmentation, ds: Dataset) -> None:
    """General Image's Patient Orientation (Type 2C): required, empty if unknown, where the
    image has no Image Orientation (Patient), as a SEG without a Frame of Reference has none.

    highdicom writes it only with a plane orientation; the SEG's frames lie on the source's
    pixel grid, so the source's value (usually empty in ultrasound) holds for them too.
    """
    if "PlaneOrientationSequence" not in seg.SharedFunctionalGroupsSequence[0]:
        seg.PatientOrientation = ds.get("PatientOrientation") or None


def _one_frame_seg(
    ds: Dataset, mask: np.ndarray, algorithm_version: str, series_description: str
) -> hd.seg.Segmentation:
    """A SEG of the first mask, with every module highdicom fills from the source."""
    try:
        with warnings.catch_warnings():  # the patient's name is the source's, not ours to fix
            warnings.filterwarnings("ignore", "The string .* person name", UserWarning)
            seg = hd.seg.Segmentation(
                source_images=[_one_frame_view(ds)],
                pixel_array=mask[np.newaxis],
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=[_segment_description(algorithm_version)],
                **new_series(ds, SEG_SERIES_OFFSET, series_description),
                content_label="LESION",
                content_description=series_description[:LO_MAX],
                omit_empty_frames=False,
            )
    except (ValueError, TypeError, AttributeError) as err:
        raise ProjectError(
            f"{ds.filename}: highdicom cannot derive a SEG from it ({one_line(err)})"
        ) from None
    _patient_orientation(seg, ds)
    return seg


def _frame_item(template: Dataset, ds: Dataset, frame: int, index: int) -> Dataset:
    """SEG frame ``index`` (0-based): it derives from ``frame`` (1-based) of source ``ds``."""
    item = copy.deepcopy(template)
    source = item.DerivationImageSequence[0].SourceImageSequence[0]
    source.ReferencedSOPClassUID = ds.SOPClassUID
    source.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    if "NumberOfFrames" in ds:
        source.ReferencedFrameNumber = frame
    content = item.FrameContentSequence[0]
    content.TemporalPositionIndex = index + 1
    content.DimensionIndexValues = [1, index + 1]  # segment number, temporal position
    return item


def _add_temporal_dimension(seg: hd.seg.Segmentation) -> None:
    """Index frames by their order too: without positions, segment number alone repeats."""
    index = Dataset()
    index.DimensionOrganizationUID = seg.DimensionOrganizationSequence[0].DimensionOrganizationUID
    index.DimensionIndexPointer = _TEMPORAL_INDEX
    index.FunctionalGroupPointer = _FRAME_CONTENT
    index.DimensionDescriptionLabel = "Temporal Position Index"
    seg.DimensionIndexSequence.append(index)


def _source_references(
    seg: hd.seg.Segmentation, origins: Sequence[tuple[Path, int]], sources: dict[Path, Dataset]
) -> None:
    """List exactly the segmented source instances (and frames) at the SEG's top level."""
    items, frames = [], {}
    for file, frame in origins:
        frames.setdefault(Path(file), []).append(int(frame))
    for file, numbers in frames.items():
        ds, item = sources[file], Dataset()
        item.ReferencedSOPClassUID = ds.SOPClassUID
        item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
        if "NumberOfFrames" in ds:
            item.ReferencedFrameNumber = numbers
        items.append(item)
    seg.SourceImageSequence = items
    series = Dataset()
    series.SeriesInstanceUID = next(iter(sources.values())).SeriesInstanceUID
    series.ReferencedInstanceSequence = [
        Dataset({e.tag: e for e in item if e.keyword != "ReferencedFrameNumber"}) for item in items
    ]
    seg.ReferencedSeriesSequence = [series]


def _add_frames(
    seg: hd.seg.Segmentation,
    origins: Sequence[tuple[Path, int]],
    masks: Sequence[np.ndarray],
    sources: dict[Path, Dataset],
) -> None:
    """Grow highdicom's one-frame SEG to one frame per mask, each referencing its source."""
    template = seg.PerFrameFunctionalGroupsSequence[0]
    seg.PerFrameFunctionalGroupsSequence = [
        _frame_item(template, sources[Path(file)], int(frame), i)
        for i, (file, frame) in enumerate(origins)
    ]
    _add_temporal_dimension(seg)
    _source_references(seg, origins, sources)
    seg.NumberOfFrames = len(masks)
    seg.PixelData = pack_bits(np.stack(masks).astype(np.uint8))  # BINARY: 1 bit a pixel


def write_segmentation(
    path: Path,
    origins: Sequence[tuple[Path, int]],
    masks: Sequence[np.ndarray],
    *,
    algorithm_version: str,
    series_description: str = "BaS lesion segmentation",
) -> Path:
    """Write the SEG of ``masks`` (one per origin: source file, 1-based frame) to ``path``.

    Refuses (ProjectError, nothing written) masks that do not fit their source frames;
    reads the written file back (check_segmentation) before it takes the name ``path``.
    """
    if not origins:
        raise ProjectError("no masks to write a DICOM Segmentation of")
    sources = read_sources(origins)
    checked = _check_inputs(origins, masks, sources)
    first = sources[Path(origins[0][0])]
    seg = _one_frame_seg(first, checked[0], algorithm_version, series_description)
    _add_frames(seg, origins, checked, sources)
    path = Path(path)
    with atomic_path(path) as tmp:
        seg.save_as(tmp, enforce_file_format=True)
        try:
            check_segmentation(tmp, origins, checked)
        except ProjectError as err:  # name the file asked for, not the temporary one
            raise ProjectError(str(err).replace(str(tmp), str(path))) from None
    return path


def read_seg(path: Path) -> hd.seg.Segmentation:
    """The SEG at ``path`` through highdicom, or a one-line refusal."""
    try:
        seg = hd.seg.segread(path)
    except (InvalidDicomError, ValueError, AttributeError, KeyError) as err:
        raise ProjectError(f"{path}: not a readable DICOM Segmentation ({one_line(err)})") from None
    except OSError as err:
        raise ProjectError(f"{path}: cannot be read ({one_line(err)})") from None
    if seg.SOPClassUID != SegmentationStorage or seg.SegmentationType != "BINARY":
        raise ProjectError(f"{path}: not a BINARY DICOM Segmentation")
    return seg


def frame_reference(seg: hd.seg.Segmentation, index: int) -> tuple[str, int]:
    """(source SOP Instance UID, 1-based frame) that SEG frame ``index`` derives from."""
    try:
        derivation = seg.PerFrameFunctionalGroupsSequence[index].DerivationImageSequence[0]
        item = derivation.SourceImageSequence[0]
    except (AttributeError, IndexError):
        return ("none", 0)
    return str(item.ReferencedSOPInstanceUID), int(item.get("ReferencedFrameNumber") or 1)


def check_segmentation(
    path: Path, origins: Sequence[tuple[Path, int]], masks: Sequence[np.ndarray]
) -> None:
    """Refuse (one line) a SEG that does not hold exactly ``masks`` for exactly ``origins``.

    Reads it back with highdicom, the way a viewer would: references first, then pixels.
    """
    seg = read_seg(Path(path))
    sources = read_sources(origins)
    expected = [(str(sources[Path(f)].SOPInstanceUID), int(n)) for f, n in origins]
    if int(seg.NumberOfFrames) != len(masks) or len(masks) != len(origins):
        raise ProjectError(
            f"{path}: {seg.NumberOfFrames} frames for {len(masks)} masks of {len(origins)} frames"
        )
    study = next(iter(sources.values())).StudyInstanceUID
    if seg.StudyInstanceUID != study:
        raise ProjectError(f"{path}: study {seg.StudyInstanceUID} is not the source's {study}")
    series = {s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence}
    wanted = {ds.SeriesInstanceUID for ds in sources.values()}
    if series != wanted:
        raise ProjectError(f"{path}: references series {sorted(series)}, not {sorted(wanted)}")
    instances = {str(uid) for _, _, uid in seg.get_source_image_uids()}
    if instances != {uid for uid, _ in expected}:
        raise ProjectError(f"{path}: references other source instances than the masks' origins")
    for i, (origin, mask) in enumerate(zip(expected, masks, strict=True)):
        if frame_reference(seg, i) != origin:
            raise ProjectError(f"{path}: frame {i + 1} references {frame_reference(seg, i)}")
        stored = seg.get_stored_frame(i + 1).astype(bool)
        if stored.shape != np.shape(mask) or not np.array_equal(stored, np.asarray(mask, bool)):
            raise ProjectError(f"{path}: frame {i + 1} differs from mask {i}")
