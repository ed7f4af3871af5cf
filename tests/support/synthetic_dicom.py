"""A calibrated synthetic breast cine loop as a scanner would export it: Ultrasound
Multi-frame Image Storage, 8-bit MONOCHROME2, a Frame Time, and a Sequence of Ultrasound
Regions in cm, so the lesion is measured in mm. Frames come from ``model.data.synth``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

from model.data.synth import render_video

MM_PER_PX = 0.2  # the region's Physical Delta X and Y, 0.02 cm


def write_breast_loop(
    path: Path,
    seed: int = 7,
    index: int = 0,
    frames: int = 12,
    study_uid: str | None = None,
    series_number: int = 1,
) -> tuple[Path, np.ndarray]:
    """Write the loop to ``path``; return it and its true lesion masks (frames, H, W)."""
    images, masks = zip(*render_video(seed, index, frames), strict=True)
    gray = np.stack([image.mean(axis=2).round().astype(np.uint8) for image in images])
    rows, columns = gray.shape[1:]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = (
        "Synthetic^Breast",
        "SYN1",
        "",
        "F",
    )
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20261206", "120000", "1", ""
    ds.ReferringPhysicianName, ds.Manufacturer = "", "bas-deploy synthetic"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "US", series_number, 1
    ds.BodyPartExamined, ds.Laterality = "BREAST", "L"
    ds.ContentDate, ds.ContentTime = ds.StudyDate, ds.StudyTime
    ds.PatientOrientation, ds.ImageType = "", ["ORIGINAL", "PRIMARY"]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.FrameTime, ds.FrameIncrementPointer = 40.0, 0x00181063
    ds.LossyImageCompression = "00"
    region = Dataset()
    region.RegionSpatialFormat, region.RegionDataType, region.RegionFlags = 1, 1, 0
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 0
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = columns - 1, rows - 1
    region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3  # cm
    region.PhysicalDeltaX = region.PhysicalDeltaY = MM_PER_PX / 10
    ds.SequenceOfUltrasoundRegions = [region]
    ds.PixelData = gray.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path, np.stack(masks)
