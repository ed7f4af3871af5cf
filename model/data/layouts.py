"""Find the videos in a dataset folder, whichever of the three known layouts it uses.

Layouts (detected from the folder names under ``root``):

- ``buv``: ``images/<video>/<int>.<ext>`` and ``labels/<video>/<int>.png``
- ``fla-net``: ``img_list/<video>/<frame>.<ext>`` and ``mask_list/<video>/<frame>.png``
- ``plain``: ``<video>/frames/<frame>.<ext>`` and ``<video>/masks/<frame>.png``

Bad data raises :class:`DatasetError` or becomes a counted warning in
``DatasetIndex.warnings`` (also logged); nothing is skipped silently.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ProjectError
from .pixels import read_pixels

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# Lossless formats only: a JPEG mask is never binary.
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")
LAYOUTS = ("buv", "fla-net", "plain")

_log = logging.getLogger(__name__)


class DatasetError(ProjectError):
    """A dataset that cannot be used as it is; the message names the path and the problem."""


@dataclass(frozen=True)
class Frame:
    """One frame: ``index`` orders frames within a video; ``mask`` is None when unlabelled."""

    index: int
    image: Path
    mask: Path | None


@dataclass(frozen=True)
class Video:
    """All frames of one video in temporal order, labelled or not."""

    name: str
    frames: tuple[Frame, ...]

    @property
    def labelled_frames(self) -> tuple[Frame, ...]:
        """The frames with a mask: the only ones usable for training and evaluation."""
        return tuple(f for f in self.frames if f.mask is not None)


@dataclass(frozen=True)
class DatasetIndex:
    """What :func:`discover` found: the videos in order and the warnings it counted."""

    root: Path
    layout: str
    videos: tuple[Video, ...]
    warnings: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.videos)

    def video(self, name: str) -> Video:
        """The video called ``name``; a DatasetError if there is none."""
        for v in self.videos:
            if v.name == name:
                return v
        raise DatasetError(f"{self.root}: no video named {name!r}")


def natural_key(text: str) -> tuple[str | int, ...]:
    """Sort key that orders embedded numbers numerically ('f2' < 'f10')."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


def _files(folder: Path, suffixes: tuple[str, ...]) -> tuple[list[Path], list[Path]]:
    """(files with one of ``suffixes``, other non-hidden files) in ``folder``."""
    kept, other = [], []
    for p in folder.iterdir():
        if p.name.startswith(".") or not p.is_file():
            continue
        (kept if p.suffix.lower() in suffixes else other).append(p)
    return kept, other


def _buv_key(path: Path) -> int:
    try:
        return int(path.stem)
    except ValueError:
        raise DatasetError(f"{path}: frame name is not an integer (BUV layout)") from None


def _keyed(paths: list[Path], key: Callable[[Path], int | str]) -> dict[int | str, Path]:
    out: dict[int | str, Path] = {}
    for p in sorted(paths):
        k = key(p)
        if k in out:
            raise DatasetError(f"{p}: same frame as {out[k].name} (duplicate frame name)")
        out[k] = p
    return out


def _scan_video(
    name: str, image_dir: Path, mask_dir: Path, integer_names: bool
) -> tuple[Video | None, list[str]]:
    """One video's frames matched to masks by name, and its warnings; None if it has no frames."""
    if not mask_dir.is_dir():
        raise DatasetError(f"{mask_dir}: missing label folder for video {name!r}")
    images, stray = _files(image_dir, IMAGE_SUFFIXES)
    masks, stray_masks = _files(mask_dir, MASK_SUFFIXES)
    warnings = []
    if stray or stray_masks:
        warnings.append(
            f"video {name!r}: ignored {len(stray)} non-image file(s) in {image_dir} and "
            f"{len(stray_masks)} non-mask file(s) in {mask_dir}"
        )
    if not images:
        return None, [*warnings, f"video {name!r}: no frames in {image_dir}; skipped"]
    key: Callable[[Path], int | str] = _buv_key if integer_names else (lambda p: p.stem)
    by_key = _keyed(images, key)
    mask_by_key = _keyed(masks, key)
    orphans = len(mask_by_key.keys() - by_key.keys())
    if orphans:
        warnings.append(f"video {name!r}: {orphans} mask(s) in {mask_dir} have no frame; ignored")
    keys = sorted(by_key, key=lambda k: natural_key(str(k)))
    # Integer names are the frame numbers; any other naming is numbered by its sorted position.
    numeric = all(str(k).isdigit() for k in keys) and len({int(k) for k in keys}) == len(keys)
    frames = tuple(
        Frame(int(k) if numeric else i, by_key[k], mask_by_key.get(k)) for i, k in enumerate(keys)
    )
    unlabelled = sum(f.mask is None for f in frames)
    if unlabelled:
        warnings.append(
            f"video {name!r}: {unlabelled} of {len(frames)} frames have no mask in {mask_dir} "
            "(kept for inference, excluded from training/evaluation)"
        )
    return Video(name, frames), warnings


def _subdirs(folder: Path) -> list[Path]:
    dirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(dirs, key=lambda p: natural_key(p.name))


def _paired_videos(
    root: Path, layout: str, images: str, labels: str
) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    image_root, label_root = root / images, root / labels
    for folder in (image_root, label_root):
        if not folder.is_dir():
            raise DatasetError(
                f"{folder}: missing; the {layout} layout needs {images}/ and {labels}/"
            )
    names = [d.name for d in _subdirs(image_root)]
    extra = sorted({d.name for d in _subdirs(label_root)} - set(names))
    warnings = []
    if extra:
        warnings.append(f"{label_root}: {len(extra)} label folder(s) without images: {extra[:5]}")
    return [(n, image_root / n, label_root / n) for n in names], warnings


def _plain_videos(root: Path) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    dirs = _subdirs(root)
    videos = [(d.name, d / "frames", d / "masks") for d in dirs if (d / "frames").is_dir()]
    other = [d.name for d in dirs if not (d / "frames").is_dir()]
    warnings = []
    if other:
        warnings.append(f"{root}: {len(other)} folder(s) without frames/ skipped: {other[:5]}")
    return videos, warnings


def detect_layout(root: Path) -> str:
    """The layout of ``root``: one of LAYOUTS; a DatasetError if none or several match."""
    found = []
    if (root / "images").is_dir() or (root / "labels").is_dir():
        found.append("buv")
    if (root / "img_list").is_dir() or (root / "mask_list").is_dir():
        found.append("fla-net")
    if any((d / "frames").is_dir() for d in _subdirs(root)):
        found.append("plain")
    if not found:
        raise DatasetError(
            f"{root}: no recognised dataset layout (looked for images/ + labels/, "
            "img_list/ + mask_list/, or <video>/frames/ + <video>/masks/)"
        )
    if len(found) > 1:
        raise DatasetError(f"{root}: ambiguous dataset layout, matches {found}")
    return found[0]


def discover(root: Path) -> DatasetIndex:
    """Index every video under ``root``; raises DatasetError on data that cannot be used."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder does not exist")
    layout = detect_layout(root)
    if layout == "buv":
        listing, warnings = _paired_videos(root, layout, "images", "labels")
    elif layout == "fla-net":
        listing, warnings = _paired_videos(root, layout, "img_list", "mask_list")
    else:
        listing, warnings = _plain_videos(root)
    videos = []
    integer_names = layout == "buv"
    for name, image_dir, mask_dir in listing:
        video, video_warnings = _scan_video(name, image_dir, mask_dir, integer_names)
        warnings.extend(video_warnings)
        if video is not None:
            videos.append(video)
    if not videos:
        raise DatasetError(f"{root}: empty dataset, no video has any frame ({layout} layout)")
    for w in warnings:
        _log.warning("%s", w)
    return DatasetIndex(root, layout, tuple(videos), tuple(warnings))


def read_image(path: Path) -> np.ndarray:
    """The image as uint8 (H, W, 3) RGB as displayed, by :func:`~.pixels.read_pixels`'s rules.

    The same reader as ``runtimes.segment``'s, so training, evaluation and calibration see
    exactly the frames segmentation sees; gray is promoted, alpha dropped after it was applied.
    """
    try:
        image = read_pixels(path)
    except ProjectError as exc:
        raise DatasetError(str(exc)) from None
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def read_mask(path: Path) -> np.ndarray:
    """The mask as bool (H, W); stored values must be {0, 1} or {0, 255}."""
    try:
        with Image.open(path) as img:
            if img.mode in ("1", "L", "P", "I", "I;16", "F"):
                values = np.asarray(img)  # palette masks: the indices are the labels
            else:
                values = np.asarray(img.convert("L"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable mask ({exc})") from None
    if values.dtype == np.bool_:
        return values.copy()
    if values.dtype == np.uint8:
        seen = np.flatnonzero(np.bincount(values.ravel(), minlength=256))
    else:
        seen = np.unique(values)
    if not (set(seen.tolist()) <= {0, 1} or set(seen.tolist()) <= {0, 255}):
        raise DatasetError(
            f"{path}: non-binary mask, values {seen[:8].tolist()}"
            f"{' ...' if len(seen) > 8 else ''} (expected {{0, 1}} or {{0, 255}})"
        )
    return values > 0


def read_frame(frame: Frame) -> tuple[np.ndarray, np.ndarray | None]:
    """Image and mask (None if unlabelled) of ``frame``, checked to have the same size."""
    image = read_image(frame.image)
    if frame.mask is None:
        return image, None
    mask = read_mask(frame.mask)
    if mask.shape != image.shape[:2]:
        raise DatasetError(
            f"{frame.mask}: mask size {mask.shape[1]}x{mask.shape[0]} differs from image "
            f"size {image.shape[1]}x{image.shape[0]} ({frame.image.name})"
        )
    return image, mask
