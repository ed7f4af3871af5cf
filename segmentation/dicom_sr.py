"""A DICOM Structured Report of a segmented ultrasound loop's lesion, written beside its SEG.

The report is a Comprehensive SR holding a TID 1500 Measurement Report (highdicom's
``hd.sr``), observed by the device "BaS", in the source's patient and study, in a new
series of its own (the source's Series Number plus :data:`SR_SERIES_OFFSET`). It holds two
measurement groups of the one lesion (one Tracking Identifier "Lesion", one UID):

- TID 1410 (planar ROI), the frame with the largest lesion: it references that frame of
  the SEG (Referenced Segmentation Frame: the SEG's SOP Class/Instance UID, segment 1, the
  SEG frame number) and the source frame it was segmented from (Source Image for
  Segmentation: SOP Class/Instance UID and, for a multi-frame source, the 1-based frame
  number). Measurements: Area (SCT 42798000) with Derivation Maximum (SCT 56851009: the
  largest of the loop), Width (SCT 103355008) and Height (DCM 121207) of the lesion's
  bounding box in that frame (image columns and rows).
- TID 1411, the whole segment over the loop (Referenced Segment: the SEG, segment 1, every
  frame; its source images): Area with Derivation Mean (SCT 373098007), over every
  segmented frame, those without lesion counted as 0; Number of Frames (DCM 121140): how
  many frames were segmented. (TID 1411 is named "volumetric"; it is the template that
  references a whole segment, here one over time, as ultrasound has no Frame of Reference.)

Units are UCUM: "mm2" and "mm" where the source is calibrated (a DICOM ultrasound region in
cm); otherwise "{pixels}" (UCUM's annotation for a count, as highdicom itself writes pixel
counts, e.g. in the Image Library) for areas (a pixel count) and lengths, and each group
says why in a TEXT item, Comment (DCM 121106). A loop without lesion in any frame still has
its report: every value 0, the largest "frame" the first one segmented (as the still of the
run is), and a Comment saying no lesion was found.

The algorithm is named as in the SEG (Algorithm Name "BaS", the same version text;
TID 4019 Algorithm Identification has no Algorithm Family: that stays in the SEG, which
the report references).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.sr.codedict import codes
from pydicom.uid import ComprehensiveSRStorage, generate_uid

from model.atomic import atomic_path
from model.errors import ProjectError, one_line

from .dicom_seg import (
    SEG_SERIES_OFFSET,
    algorithm_version_fields,
    derivable_header,
    frame_reference,
    new_series,
    read_seg,
    read_sources,
)
from .report import FrameRecord

SR_SERIES_OFFSET = 2 * SEG_SERIES_OFFSET  # the SR's Series Number: the source's plus this
SEGMENT_NUMBER = 1  # the SEG's one segment, "Lesion"

PIXELS = hd.sr.CodedConcept("{pixels}", "UCUM", "Pixels")
FRAMES = hd.sr.CodedConcept("{frames}", "UCUM", "Frames")
COMMENT = codes.DCM.Comment  # (121106, DCM, "Comment")
_UNITS = {
    "mm": (codes.UCUM.SquareMillimeter, codes.UCUM.Millimeter),
    "pixels": (PIXELS, PIXELS),
}
_REL_TOL = 1e-6  # values read back: stored as FD beside DS, so only float rounding


@dataclass(frozen=True)
class LoopMeasurements:
    """The lesion of one segmented loop, as the report states it.

    ``largest_origin`` is where the frame with the largest lesion comes from (source file,
    1-based frame number in it) and ``largest_index`` its index in the loop (0-based, the
    frame's ``FrameRecord.index``); ``largest_area`` its area, ``bbox_width`` and
    ``bbox_height`` its bounding box there; ``mean_area`` the mean over the
    ``frames_segmented`` frames (frames without lesion count 0). ``units`` "mm" (areas in
    mm², lengths in mm) or "pixels"; ``calibration`` says which calibration was used, or
    why none (required for pixels).
    """

    largest_area: float
    largest_origin: tuple[Path, int]
    largest_index: int
    mean_area: float
    bbox_width: float
    bbox_height: float
    frames_segmented: int
    units: str
    calibration: str = ""

    def __post_init__(self) -> None:
        file, frame = self.largest_origin
        object.__setattr__(self, "largest_origin", (Path(file), int(frame)))
        if self.units not in _UNITS:
            raise ValueError(f"units must be 'mm' or 'pixels', not {self.units!r}")
        if self.units == "pixels" and not self.calibration.strip():
            raise ValueError("measurements in pixels need the reason there is no calibration")
        if self.frames_segmented < 1:
            raise ValueError("no frame was segmented: there is nothing to report")
        values = (self.largest_area, self.mean_area, self.bbox_width, self.bbox_height)
        if not all(math.isfinite(v) and v >= 0 for v in values):
            raise ValueError(f"measurements must be finite and >= 0, got {values}")
        if self.mean_area > self.largest_area * (1 + _REL_TOL):
            raise ValueError(f"mean area {self.mean_area} exceeds the largest {self.largest_area}")

    @property
    def lesion_found(self) -> bool:
        return self.largest_area > 0

    @classmethod
    def from_records(
        cls,
        records: Sequence[FrameRecord],
        origins: Sequence[tuple[Path, int]],
        calibration: str,
    ) -> LoopMeasurements:
        """The measurements of a run's per-frame ``records`` (skipped frames are left out).

        ``origins[i]``: where loop frame i comes from (``DicomSource.origins``), indexed by
        ``FrameRecord.index``. In mm where every segmented frame was measured in a
        calibrated region (``FrameRecord.physical``), else in pixels; ``calibration`` (the
        source's: which region, or why none) goes with them. The largest frame is the one
        with the largest area in those units (the first on ties, or when there is no
        lesion).
        """
        segmented = [r for r in records if r.ok]
        if not segmented:
            raise ValueError("no frame was segmented: there is nothing to report")
        in_mm = all(r.physical is not None for r in segmented)
        areas = [r.physical.area_mm2 if in_mm else float(r.lesion_area_px) for r in segmented]
        best = max(range(len(segmented)), key=lambda i: (areas[i], -i))
        record = segmented[best]
        if in_mm:
            width, height = record.physical.bbox_width_mm, record.physical.bbox_height_mm
        else:
            width, height = record.bbox_px
        if not 0 <= record.index < len(origins):
            raise ValueError(f"frame {record.index} has no origin among {len(origins)}")
        file, frame = origins[record.index]
        return cls(
            largest_area=float(areas[best]),
            largest_origin=(Path(file), int(frame)),
            largest_index=int(record.index),
            mean_area=float(np.mean(areas)),
            bbox_width=float(width),
            bbox_height=float(height),
            frames_segmented=len(segmented),
            units="mm" if in_mm else "pixels",
            calibration=" ".join(str(calibration).split()),
        )


def _algorithm(algorithm_version: str) -> hd.sr.AlgorithmIdentification:
    """TID 4019: the SEG's Algorithm Name and Version (and the whole text where cut)."""
    version, parameters = algorithm_version_fields(algorithm_version)
    return hd.sr.AlgorithmIdentification(
        name="BaS", version=version, parameters=None if parameters is None else [parameters]
    )


def _comment(text: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(
        name=COMMENT, value=text, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )


def _units_comment(m: LoopMeasurements) -> str:
    if m.units == "mm":
        said = "Areas in mm2, lengths in mm"
        return f"{said}; calibration: {m.calibration}" if m.calibration else said
    return f"Areas and lengths in pixels, not calibrated: {m.calibration}"


def _source_image(ds: Dataset, frames: Sequence[int]) -> hd.sr.SourceImageForSegmentation:
    return hd.sr.SourceImageForSegmentation(
        referenced_sop_class_uid=ds.SOPClassUID,
        referenced_sop_instance_uid=ds.SOPInstanceUID,
        referenced_frame_numbers=list(frames) if "NumberOfFrames" in ds else None,
    )


def _frame_only(group) -> None:
    """Keep the SEG frame, not also its segment, in the Referenced Segmentation Frame item.

    PS3.3's Image SOP Instance Reference Macro takes Referenced Frame Number or Referenced
    Segment Number, not both (dciodvfy: "Shall not be present when ReferencedFrameNumber is
    present"); highdicom 0.28.2 writes both. A SEG frame holds one segment (its Segment
    Identification), so the frame says which.
    """
    for item in group[0].ContentSequence:
        if item.ConceptNameCodeSequence[0].CodeValue == codes.DCM.ReferencedSegmentationFrame.value:
            reference = item.ReferencedSOPSequence[0]
            if "ReferencedFrameNumber" in reference and "ReferencedSegmentNumber" in reference:
                del reference.ReferencedSegmentNumber


def _groups(
    seg: Dataset,
    origins: Sequence[tuple[Path, int]],
    sources: dict[Path, Dataset],
    m: LoopMeasurements,
    algorithm_version: str,
) -> list:
    """The two measurement groups of the one lesion (see the module's docstring)."""
    area, length = _UNITS[m.units]
    tracking = dict(identifier="Lesion", uid=hd.UID())
    common = dict(
        finding_category=codes.SCT.MorphologicallyAbnormalStructure,
        finding_type=codes.SCT.Mass,
        finding_sites=[hd.sr.FindingSite(anatomic_location=codes.SCT.Breast)],
        algorithm_id=_algorithm(algorithm_version),
    )
    file, frame = m.largest_origin
    seg_frame = [(Path(f), int(n)) for f, n in origins].index((file, frame)) + 1
    largest = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(**tracking),
        referenced_segment=hd.sr.ReferencedSegmentationFrame(
            sop_class_uid=seg.SOPClassUID,
            sop_instance_uid=seg.SOPInstanceUID,
            frame_number=seg_frame,
            segment_number=SEGMENT_NUMBER,
            source_image=_source_image(sources[file], [frame]),
        ),
        measurements=[
            hd.sr.Measurement(
                name=codes.SCT.Area,
                value=m.largest_area,
                unit=area,
                derivation=codes.SCT.Maximum,
            ),
            hd.sr.Measurement(name=codes.SCT.Width, value=m.bbox_width, unit=length),
            hd.sr.Measurement(name=codes.DCM.Height, value=m.bbox_height, unit=length),
        ],
        **common,
    )
    _frame_only(largest)
    where = f"frame {frame} of {file.name}, loop frame {m.largest_index}, SEG frame {seg_frame}"
    if m.lesion_found:
        said = (
            f"Largest lesion area of the loop: {where}; width and height of the "
            "lesion's bounding box there (image columns, rows)"
        )
    else:
        said = f"No lesion found in any of the {m.frames_segmented} segmented frames ({where})"
    largest[0].ContentSequence.extend([_comment(said), _comment(_units_comment(m))])

    frames: dict[Path, list[int]] = {}
    for f, n in origins:
        frames.setdefault(Path(f), []).append(int(n))
    loop = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(**tracking),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID,
            sop_instance_uid=seg.SOPInstanceUID,
            segment_number=SEGMENT_NUMBER,
            source_images=[_source_image(sources[f], numbers) for f, numbers in frames.items()],
        ),
        measurements=[
            hd.sr.Measurement(
                name=codes.SCT.Area, value=m.mean_area, unit=area, derivation=codes.SCT.Mean
            ),
            hd.sr.Measurement(name=codes.DCM.NumberOfFrames, value=m.frames_segmented, unit=FRAMES),
        ],
        **common,
    )
    over = (
        f"Mean lesion area over the {m.frames_segmented} segmented frames of the loop, "
        "frames without lesion counted as 0"
    )
    loop[0].ContentSequence.extend([_comment(over), _comment(_units_comment(m))])
    return [largest, loop]


def _observer(algorithm_version: str) -> hd.sr.ObservationContext:
    """The device that measured: one Device Observer UID per algorithm version."""
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=["bas-deploy", "BaS", algorithm_version]),
        name="BaS",
        manufacturer_name="bas-deploy",
        model_name="BaS",
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.cid270.Device, observer_identifying_attributes=device
        )
    )


def _read_report_seg(segmentation: Path, origins: Sequence[tuple[Path, int]]) -> Dataset:
    """The SEG the report refers to, refused unless it holds exactly ``origins``' frames."""
    seg = read_seg(Path(segmentation))
    if int(seg.NumberOfFrames) != len(origins):
        raise ProjectError(
            f"{segmentation}: {seg.NumberOfFrames} frames, not the {len(origins)} measured"
        )
    sources = read_sources(origins)
    for i, (file, frame) in enumerate(origins):
        expected = (str(sources[Path(file)].SOPInstanceUID), int(frame))
        if frame_reference(seg, i) != expected:
            raise ProjectError(f"{segmentation}: frame {i + 1} is not of {file} frame {frame}")
    return seg


def _check_inputs(origins: Sequence[tuple[Path, int]], m: LoopMeasurements) -> None:
    if not origins:
        raise ProjectError("no segmented frames to report on")
    if m.frames_segmented != len(origins):
        raise ProjectError(f"{m.frames_segmented} frames measured, {len(origins)} segmented")
    if (Path(m.largest_origin[0]), int(m.largest_origin[1])) not in [
        (Path(f), int(n)) for f, n in origins
    ]:
        raise ProjectError(f"the largest frame {m.largest_origin} is not among the segmented")


def write_measurement_report(
    path: Path,
    segmentation: Path,
    origins: Sequence[tuple[Path, int]],
    measurements: LoopMeasurements,
    algorithm_version: str,
    *,
    series_description: str = "BaS lesion measurements",
) -> Path:
    """Write the SR of ``measurements`` to ``path``; ``segmentation``: the SEG of the same
    ``origins`` (one per SEG frame: source file, 1-based frame), as write_segmentation wrote.

    Refuses (ProjectError, nothing written) a SEG or measurements that do not fit the
    origins; reads the written file back (check_measurement_report) before it takes the
    name ``path``.
    """
    _check_inputs(origins, measurements)
    sources = read_sources(origins)
    seg = _read_report_seg(Path(segmentation), origins)
    first = sources[Path(origins[0][0])]
    if seg.StudyInstanceUID != first.StudyInstanceUID:
        raise ProjectError(f"{segmentation}: not in the study of {origins[0][0]}")
    headers = [derivable_header(ds) for ds in sources.values()]  # anonymised: Type 2 empty
    try:
        with warnings.catch_warnings():  # the patient's name is the source's, not ours to fix
            warnings.filterwarnings("ignore", "The string .* person name", UserWarning)
            report = hd.sr.MeasurementReport(
                observation_context=_observer(algorithm_version),
                procedure_reported=codes.SCT.UltrasonographyOfBreast,
                imaging_measurements=_groups(
                    seg, origins, sources, measurements, algorithm_version
                ),
                title=codes.DCM.ImagingMeasurementReport,
                referenced_images=headers,
            )
            sr = hd.sr.ComprehensiveSR(
                evidence=[*headers, seg],
                content=report,
                **new_series(first, SR_SERIES_OFFSET, series_description),
                is_complete=True,
            )
    except (ValueError, TypeError, AttributeError) as err:
        raise ProjectError(
            f"{origins[0][0]}: highdicom cannot derive a report from it ({one_line(err)})"
        ) from None
    path = Path(path)
    with atomic_path(path) as tmp:
        sr.save_as(tmp, enforce_file_format=True)
        try:
            check_measurement_report(tmp, segmentation, origins, measurements, algorithm_version)
        except ProjectError as err:  # name the file asked for, not the temporary one
            raise ProjectError(str(err).replace(str(tmp), str(path))) from None
    return path


def _read_report(path: Path) -> hd.sr.ComprehensiveSR:
    try:
        ds = dcmread(path)
    except InvalidDicomError:
        raise ProjectError(f"{path}: not a DICOM file") from None
    except OSError as err:
        raise ProjectError(f"{path}: cannot be read ({one_line(err)})") from None
    if ds.get("SOPClassUID") != ComprehensiveSRStorage:
        raise ProjectError(f"{path}: not a Comprehensive SR")
    try:
        return hd.sr.ComprehensiveSR.from_dataset(ds)
    except (ValueError, TypeError, AttributeError, KeyError, RuntimeError) as err:
        raise ProjectError(f"{path}: not a readable measurement report ({one_line(err)})") from None


def _value(group, name: hd.sr.CodedConcept, derivation=None) -> tuple[float, hd.sr.CodedConcept]:
    found = [
        x
        for x in group.get_measurements(name=name)
        if derivation is None or x.derivation == derivation
    ]
    if len(found) != 1:
        raise ValueError(f"{len(found)} {name.meaning} measurements")
    return float(found[0].value), found[0].unit


def _texts(group, name: hd.sr.CodedConcept) -> list[str]:
    """The values of the group's own TEXT items named ``name``."""
    items = hd.sr.utils.find_content_items(group[0], name=name, value_type="TEXT")
    return [str(item.TextValue) for item in items]


def _segment_of_frame(seg: Dataset, frame: int) -> int:
    """The segment SEG frame ``frame`` (1-based) holds."""
    item = seg.PerFrameFunctionalGroupsSequence[frame - 1]
    if "SegmentIdentificationSequence" not in item:  # the same for every frame: shared
        item = seg.SharedFunctionalGroupsSequence[0]
    return int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)


def check_measurement_report(
    path: Path,
    segmentation: Path,
    origins: Sequence[tuple[Path, int]],
    measurements: LoopMeasurements,
    algorithm_version: str | None = None,
) -> None:
    """Refuse (one line) a report that does not state exactly ``measurements`` of the SEG
    ``segmentation`` of ``origins``, in their patient and study.

    Reads it back with highdicom, the way a reporting system would.
    """
    path = Path(path)
    sr = _read_report(path)
    sources = read_sources(origins)
    seg = read_seg(Path(segmentation))
    first = sources[Path(origins[0][0])]
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName"):
        if str(sr.get(keyword, "")) != str(first.get(keyword, "")):
            raise ProjectError(f"{path}: {keyword} is not the source's")
    if sr.SeriesInstanceUID in (first.SeriesInstanceUID, seg.SeriesInstanceUID):
        raise ProjectError(f"{path}: not in a series of its own")
    try:
        _check_content(sr, seg, origins, sources, measurements, algorithm_version)
    except (ValueError, AttributeError, IndexError, KeyError, RuntimeError) as err:
        raise ProjectError(f"{path}: {one_line(err)}") from None


def _check_content(sr, seg, origins, sources, m: LoopMeasurements, algorithm_version) -> None:
    content = sr.content
    if not isinstance(content, hd.sr.MeasurementReport):
        raise ValueError("holds no TID 1500 Measurement Report")
    planar = content.get_planar_roi_measurement_groups()
    loop = content.get_volumetric_roi_measurement_groups()
    if len(planar) != 1 or len(loop) != 1:
        raise ValueError(f"{len(planar)} planar and {len(loop)} loop groups, not 1 and 1")
    (planar,), (loop,) = planar, loop
    area_unit, length_unit = _UNITS[m.units]
    expected = [
        (planar, codes.SCT.Area, codes.SCT.Maximum, m.largest_area, area_unit),
        (planar, codes.SCT.Width, None, m.bbox_width, length_unit),
        (planar, codes.DCM.Height, None, m.bbox_height, length_unit),
        (loop, codes.SCT.Area, codes.SCT.Mean, m.mean_area, area_unit),
        (loop, codes.DCM.NumberOfFrames, None, m.frames_segmented, FRAMES),
    ]
    for group, name, derivation, want, unit in expected:
        value, got_unit = _value(group, name, derivation)
        if not math.isclose(value, want, rel_tol=_REL_TOL, abs_tol=1e-9):
            raise ValueError(f"{name.meaning} is {value}, not {want}")
        if got_unit != unit:
            raise ValueError(f"{name.meaning} is in {got_unit.value}, not {unit.value}")
    if planar.tracking_uid != loop.tracking_uid:
        raise ValueError("its groups track different lesions")
    units = _units_comment(m)
    for group in (planar, loop):
        if units not in _texts(group, COMMENT):
            raise ValueError(f"does not say {units!r}")
        if algorithm_version is not None:
            version, _ = algorithm_version_fields(algorithm_version)
            got = (
                _texts(group, codes.DCM.AlgorithmName),
                _texts(group, codes.DCM.AlgorithmVersion),
            )
            if got != (["BaS"], [version]):
                raise ValueError(f"names the algorithm {got}, not the SEG's BaS {version}")
    frame_ref = planar.referenced_segmentation_frame
    file, frame = m.largest_origin
    seg_frame = [(Path(f), int(n)) for f, n in origins].index((Path(file), int(frame))) + 1
    got = (frame_ref.referenced_sop_instance_uid, frame_ref.referenced_frame_numbers)
    if got != (seg.SOPInstanceUID, [seg_frame]):
        raise ValueError(f"references SEG frame {got}, not {seg_frame} of {seg.SOPInstanceUID}")
    segment = _segment_of_frame(seg, seg_frame)
    if segment != SEGMENT_NUMBER:
        raise ValueError(f"SEG frame {seg_frame} holds segment {segment}, not {SEGMENT_NUMBER}")
    source = frame_ref.source_image_for_segmentation
    ds = sources[Path(file)]
    frames = [frame] if "NumberOfFrames" in ds else None
    got = (source.referenced_sop_instance_uid, source.referenced_frame_numbers)
    if got != (ds.SOPInstanceUID, frames):
        raise ValueError(f"references source {got}, not {(ds.SOPInstanceUID, frames)}")
    segment = loop.referenced_segment
    got = (segment.referenced_sop_instance_uid, segment.referenced_segment_numbers)
    if got != (seg.SOPInstanceUID, [SEGMENT_NUMBER]):
        raise ValueError(f"references segment {got}, not 1 of {seg.SOPInstanceUID}")
    uids = {s.referenced_sop_instance_uid for s in segment.source_images_for_segmentation}
    if uids != {ds.SOPInstanceUID for ds in sources.values()}:
        raise ValueError("its segment references other source images than the SEG's")
