"""Where the B-mode image lies in a frame, and what a pixel measures there.

A scanner's frame is a screen: the image sits inside it, with text and scales around. A
DICOM file can say where (its Sequence of Ultrasound Regions, with each region's physical
size per pixel); for a video the region can be detected, as the part of the frame whose
pixels change over time (text, scales and the dark surround stay still).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class ImageRegion:
    """A rectangle of the frame, half-open pixel bounds, and its pixel size where known.

    ``mm_per_px`` is (x, y) in millimetres, None for an uncalibrated (detected) region;
    ``source`` says where the rectangle came from, for the reports.
    """

    left: int
    top: int
    right: int
    bottom: int
    source: str
    mm_per_px: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not (0 <= self.left < self.right and 0 <= self.top < self.bottom):
            raise ValueError(f"empty or negative region {self.as_box()}")
        if self.mm_per_px is not None and not all(np.isfinite(v) and v > 0 for v in self.mm_per_px):
            raise ValueError(f"pixel size must be finite and > 0 mm, got {self.mm_per_px}")

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def as_box(self) -> list[int]:
        """[left, top, right, bottom], as summary.json records it."""
        return [self.left, self.top, self.right, self.bottom]

    def fits(self, size: tuple[int, int]) -> bool:
        """Whether the region lies inside a frame of (H, W) ``size``."""
        return self.bottom <= size[0] and self.right <= size[1]

    def crop(self, image: np.ndarray) -> np.ndarray:
        return image[self.top : self.bottom, self.left : self.right]

    def paste(self, values: np.ndarray, size: tuple[int, int], fill: float = 0) -> np.ndarray:
        """A region-sized array placed in an (H, W) frame-sized one filled with ``fill``."""
        full = np.full(size, fill, dtype=values.dtype)
        full[self.top : self.bottom, self.left : self.right] = values
        return full


@dataclass(frozen=True)
class PhysicalSize:
    """A mask measured in millimetres inside a calibrated region."""

    area_mm2: float
    bbox_width_mm: float
    bbox_height_mm: float
    outside_px: int  # lesion pixels outside the calibrated region (not in area_mm2)


def bbox_size(mask: np.ndarray) -> tuple[int, int]:
    """(width, height) in pixels of a mask's bounding box; (0, 0) for an empty mask."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return (0, 0)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return (int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))


def measure(mask: np.ndarray, region: ImageRegion) -> PhysicalSize:
    """Area and bounding box in mm of the part of a frame-sized mask inside ``region``."""
    if region.mm_per_px is None:
        raise ValueError(f"region from {region.source} has no physical pixel size")
    mask = np.asarray(mask, dtype=bool)
    inside = region.crop(mask)
    dx, dy = region.mm_per_px
    outside = int(np.count_nonzero(mask)) - int(np.count_nonzero(inside))
    width, height = bbox_size(inside)
    return PhysicalSize(
        area_mm2=float(np.count_nonzero(inside)) * dx * dy,
        bbox_width_mm=float(width) * dx,
        bbox_height_mm=float(height) * dy,
        outside_px=outside,
    )


# A pixel whose gray level varies by more than this over the frames looked at is image.
MOVING_LEVEL = 4.0
DETECTION_FRAMES = 30


def detect_region(frames: Iterable[np.ndarray], min_share: float = 0.05) -> ImageRegion | None:
    """The bounding box of the largest area of pixels that change between frames.

    None when fewer than two frames are given or nothing moves over ``min_share`` of the
    frame (a still loop: then there is no telling the image from its surround).
    """
    gray = [_gray(frame) for frame in frames]
    if len(gray) < 2:
        return None
    spread = np.ptp(np.stack(gray), axis=0)
    moving = ndimage.binary_opening(spread > MOVING_LEVEL, iterations=2)
    moving = ndimage.binary_closing(moving, iterations=4)
    labels, count = ndimage.label(moving)
    if not count:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    largest = int(np.argmax(sizes)) + 1
    if sizes[largest - 1] < min_share * moving.size:
        return None
    rows, cols = ndimage.find_objects((labels == largest).astype(np.int32))[0]
    return ImageRegion(
        cols.start, rows.start, cols.stop, rows.stop, "detected: pixels that change over time"
    )


def _gray(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame, dtype=np.float32)
    return frame if frame.ndim == 2 else frame[:, :, :3].mean(axis=2)
