"""Clips of consecutive labelled frames for training and evaluation, with clip-level augmentation.

Work per item is decode, resize and a few tensor ops, so that two CPU workers keep up.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, TypedDict

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from torch.utils.data import Dataset

from ..errors import ConfigError
from ..preprocessing import DEFAULT_PREPROCESSING, Preprocessing
from .framing import ScreenAugment
from .layouts import DatasetError, DatasetIndex, Frame, Video, read_frame

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Augment:
    """Random changes drawn once per clip and applied identically to all its frames.

    The fields named in ``PROBABILITIES`` are per-clip probabilities, the others bound
    the random strength. Two changes differ between frames: CutMix pastes a box (image
    and mask) from one frame of the clip onto another at the same place, and ``weak`` is
    the chance that a frame after the first loses its own evidence (a gain dip, heavy
    noise, or the probe losing contact over part of the image) while its mask stays: the
    lesion is still there, and only the clip's earlier frames can say where. Last, the
    clip is put in a random scanner screen (``screen``).
    """

    PROBABILITIES: ClassVar[tuple[str, ...]] = (
        "hflip",
        "vflip",
        "rotate",
        "blur",
        "brightness",
        "contrast",
        "cutmix",
    )

    hflip: float = 0.5
    vflip: float = 0.2
    rotate: float = 0.2  # a 90, 180 or 270 degree rotation, equally likely
    blur: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 1.5)  # Gaussian sigma in pixels of the clip
    brightness: float = 0.3
    brightness_delta: float = 0.1  # added to [0, 1] intensities, uniform in [-d, d]
    contrast: float = 0.3
    contrast_delta: float = 0.2  # scale about mid-grey, uniform in [1 - d, 1 + d]
    cutmix: float = 0.2
    cutmix_side: tuple[float, float] = (0.2, 0.5)  # box side as a fraction of the image side
    weak: float = 0.0  # per frame after the first
    weak_gain: tuple[float, float] = (0.15, 0.5)  # intensity factor of a gain dip
    weak_noise: tuple[float, float] = (0.08, 0.25)  # standard deviation of heavy noise
    screen: ScreenAugment = ScreenAugment()

    def __post_init__(self) -> None:
        for name in (*self.PROBABILITIES, "weak", "brightness_delta", "contrast_delta"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"Augment.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("blur_sigma", "cutmix_side", "weak_gain", "weak_noise"):
            low, high = getattr(self, name)
            if not 0.0 < low <= high:
                raise ConfigError(f"Augment.{name} must satisfy 0 < low <= high, got {(low, high)}")
        if self.cutmix_side[1] > 1.0:
            raise ConfigError(f"Augment.cutmix_side must be <= 1, got {self.cutmix_side}")

    def __call__(
        self, images: torch.Tensor, masks: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment images (T, C, H, W) in [0, 1] and masks (T, 1, H, W); inputs are not modified."""
        if rng.random() < self.hflip:
            images, masks = images.flip(-1), masks.flip(-1)
        if rng.random() < self.vflip:
            images, masks = images.flip(-2), masks.flip(-2)
        if rng.random() < self.rotate:
            k = int(rng.integers(1, 4))
            images, masks = images.rot90(k, (-2, -1)), masks.rot90(k, (-2, -1))
        if len(images) > 1 and rng.random() < self.cutmix:
            images, masks = _cutmix(images, masks, self.cutmix_side, rng)
        if rng.random() < self.blur:
            images = _gaussian_blur(images, float(rng.uniform(*self.blur_sigma)))
        if rng.random() < self.brightness:
            images = images + float(rng.uniform(-self.brightness_delta, self.brightness_delta))
        if rng.random() < self.contrast:
            scale = float(rng.uniform(1 - self.contrast_delta, 1 + self.contrast_delta))
            images = (images - 0.5) * scale + 0.5
        if self.weak:
            images = self._weaken(images, rng)
        return self.screen(images.clamp(0.0, 1.0), masks, rng)

    def _weaken(self, images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        images = images.clone()
        width = images.shape[-1]
        for t in range(1, len(images)):
            if rng.random() >= self.weak:
                continue
            kind = rng.integers(3)
            if kind < 2:
                # A gain dip alone would be undone by the stem's normalisation; with the
                # noise that a dip brings out (or heavy noise alone) the evidence is gone.
                if kind == 0:
                    images[t] *= float(rng.uniform(*self.weak_gain))
                sigma = float(rng.uniform(*self.weak_noise)) * (0.5 if kind == 0 else 1.0)
                generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
                images[t] += sigma * torch.randn(images[t].shape, generator=generator)
            else:
                band = int(width * rng.uniform(0.2, 0.6))
                cols = slice(0, band) if rng.random() < 0.5 else slice(width - band, width)
                images[t, :, :, cols] *= float(rng.uniform(0.05, 0.2))
        return images.clamp(0.0, 1.0)


def _cutmix(
    images: torch.Tensor, masks: torch.Tensor, side: tuple[float, float], rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    dst, src = rng.choice(len(images), size=2, replace=False)
    h, w = images.shape[-2:]
    fraction = rng.uniform(*side)
    bh, bw = max(1, round(h * fraction)), max(1, round(w * fraction))
    y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
    images, masks = images.clone(), masks.clone()
    images[dst, :, y : y + bh, x : x + bw] = images[src, :, y : y + bh, x : x + bw]
    masks[dst, :, y : y + bh, x : x + bw] = masks[src, :, y : y + bh, x : x + bw]
    return images, masks


def _gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of (N, C, H, W) over H and W with mirrored borders.

    scipy's separable filter: ten times faster on one core than the same blur as a
    torch convolution, which kept training workers behind a GPU.
    """
    blurred = ndimage.gaussian_filter(
        images.numpy(), (0, 0, sigma, sigma), mode="mirror", truncate=3.0
    )
    return torch.from_numpy(blurred)


class Clip(TypedDict):
    """One item: ``images`` (T, 3, S, S) float32 as the network takes them (``preprocessing``),
    ``masks`` (T, 1, S, S) in {0, 1}."""

    images: torch.Tensor
    masks: torch.Tensor
    video: str
    frames: torch.Tensor  # (T,) int64 frame indices


def _runs(video: Video) -> list[list[Frame]]:
    """Maximal runs of consecutive frames that all have a mask."""
    runs: list[list[Frame]] = [[]]
    for frame in video.frames:
        if frame.mask is None:
            runs.append([])
        else:
            runs[-1].append(frame)
    return [r for r in runs if r]


def load_resized(frame: Frame, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A labelled frame at ``size`` x ``size``: the image resized as every runtime resizes
    it (``Preprocessing.resized``), the mask nearest-neighbour.

    Nearest keeps the mask binary without the dilation that bilinear plus a threshold gives.
    """
    image, mask = read_frame(frame)
    if mask is None:
        raise DatasetError(f"{frame.image}: frame has no mask")
    image = Preprocessing.resized(image, size)
    mask = np.asarray(Image.fromarray(mask).resize((size, size), Image.Resampling.NEAREST))
    return image, mask


class ClipDataset(Dataset[Clip]):
    """Every window of ``clip_length`` consecutive labelled frames, ``stride`` apart, per video.

    Clips never cross videos or unlabelled frames; videos without a long enough labelled run
    are skipped with a counted warning. Augmentation draws from a generator seeded by
    (``seed``, epoch, item index), so an item is reproducible whichever worker loads it; call
    :meth:`set_epoch` before each epoch (with ``persistent_workers=False``). Images are
    augmented in [0, 1], then ``preprocessing`` (the network's, ``BaSConfig.preprocessing``)
    gives them the values the network takes. ``preload``
    decodes every frame once, up front, so that a fast accelerator is not left waiting on
    JPEG decoding (forked workers share the decoded frames).
    """

    def __init__(
        self,
        index: DatasetIndex,
        videos: list[str],
        clip_length: int = 3,
        image_size: int = 240,
        augment: Augment | None = None,
        stride: int = 1,
        seed: int = 0,
        preload: bool = False,
        preprocessing: Preprocessing = DEFAULT_PREPROCESSING,
    ) -> None:
        if clip_length < 1 or image_size < 1 or stride < 1 or seed < 0:
            raise ValueError(
                "clip_length, image_size and stride must be >= 1 and seed >= 0, got "
                f"{clip_length}, {image_size}, {stride}, {seed}"
            )
        unknown = sorted(set(videos) - set(index.names))
        if unknown:
            raise DatasetError(f"{index.root}: no such video(s) {unknown[:5]}")
        self.clip_length, self.image_size = clip_length, image_size
        self.augment, self.seed, self.epoch = augment, seed, 0
        self.preprocessing = preprocessing
        self.clips: list[tuple[str, tuple[Frame, ...]]] = []
        short = []
        for name in videos:
            runs = [r for r in _runs(index.video(name)) if len(r) >= clip_length]
            if not runs:
                short.append(name)
            for run in runs:
                for start in range(0, len(run) - clip_length + 1, stride):
                    self.clips.append((name, tuple(run[start : start + clip_length])))
        self.warnings: tuple[str, ...] = ()
        if short:
            self.warnings = (
                f"{len(short)} video(s) have fewer than {clip_length} consecutive labelled "
                f"frames; skipped: {short[:10]}{' ...' if len(short) > 10 else ''}",
            )
            _log.warning("%s", self.warnings[0])
        if not self.clips:
            raise DatasetError(
                f"{index.root}: no run of {clip_length} consecutive labelled frames in {videos}"
            )
        self._decoded: dict[Frame, tuple[np.ndarray, np.ndarray]] = {}
        if preload:
            for _, frames in self.clips:
                for frame in frames:
                    if frame not in self._decoded:
                        self._decoded[frame] = load_resized(frame, image_size)

    def set_epoch(self, epoch: int) -> None:
        """Draw different augmentations from the next epoch on."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> Clip:
        name, frames = self.clips[i]
        loaded = [self._decoded.get(f) or load_resized(f, self.image_size) for f in frames]
        unit = self.preprocessing.unit_channels_first(np.stack([im for im, _ in loaded]))
        images = torch.from_numpy(unit)
        masks = torch.from_numpy(np.stack([m for _, m in loaded])).unsqueeze(1).float()
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            images, masks = self.augment(images, masks, rng)
        return Clip(
            images=self.preprocessing.normalize(images).contiguous(),
            masks=masks.contiguous(),
            video=name,
            frames=torch.tensor([f.index for f in frames], dtype=torch.int64),
        )


def native_frames(
    video: Video, labelled_only: bool = False
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """(frame index, uint8 RGB image, bool mask or None) at native resolution, in order."""
    for frame in video.labelled_frames if labelled_only else video.frames:
        image, mask = read_frame(frame)
        yield frame.index, image, mask
