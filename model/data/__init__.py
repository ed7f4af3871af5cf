"""Dataset discovery, splits by video, and clip loading for training and evaluation."""

from .clips import Augment, Clip, ClipDataset, load_resized, native_frames
from .layouts import (
    IMAGE_SUFFIXES,
    LAYOUTS,
    MASK_SUFFIXES,
    DatasetError,
    DatasetIndex,
    Frame,
    Video,
    detect_layout,
    discover,
    read_frame,
    read_image,
    read_mask,
)
from .split import DEFAULT_FRACTIONS, read_split, split_videos, write_split

__all__ = [
    "DEFAULT_FRACTIONS",
    "IMAGE_SUFFIXES",
    "LAYOUTS",
    "MASK_SUFFIXES",
    "Augment",
    "Clip",
    "ClipDataset",
    "DatasetError",
    "DatasetIndex",
    "Frame",
    "Video",
    "detect_layout",
    "discover",
    "load_resized",
    "native_frames",
    "read_frame",
    "read_image",
    "read_mask",
    "read_split",
    "split_videos",
    "write_split",
]
