"""What a frame becomes before BaS sees it, and what BaS's logits become after: one definition.

Following timm's chain (model config -> data config -> transform): ``BaSConfig.preprocessing``
is a :class:`Preprocessing`, written into every artifact's manifest as data, and applied
by training (``model.data.clips``), evaluation (``model.masks``) and every runtime
(``runtimes.session``) through the methods below, so that no two of them resize or scale
a frame differently. The network's input is the canonical ``frame`` tensor (NCHW).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import ProjectError

Channels = TypeVar("Channels", np.ndarray, torch.Tensor)


def as_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 grayscale (H, W) or (H, W, 1), RGB or RGBA -> RGB (H, W, 3); anything else refused."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise ProjectError(f"frames must be uint8 arrays, got {kind}")
    if image.ndim == 3 and image.shape[2] in (1, 3, 4):
        channels = image.shape[2]
        image = image[:, :, 0] if channels == 1 else image[:, :, :3]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise ProjectError(
            f"frames must be (H, W) grayscale, (H, W, 3) RGB or (H, W, 4) RGBA, got {image.shape}"
        )
    return image


@dataclass(frozen=True)
class Preprocessing:
    """Any uint8 frame -> the network's input: RGB, resized, scaled to ``range``, then
    ``(x - mean) / std`` per channel where given. The manifest records it field by field."""

    color: Literal["RGB"] = "RGB"
    range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    resize: Literal["bilinear to image_size x image_size"] = "bilinear to image_size x image_size"

    @staticmethod
    def resized(image: np.ndarray, size: int) -> np.ndarray:
        """Any uint8 frame -> uint8 RGB (size, size, 3), bilinear (Pillow's, as in training)."""
        rgb = Image.fromarray(as_rgb(image))
        return np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR))

    @staticmethod
    def unit_channels_first(resized: np.ndarray) -> np.ndarray:
        """uint8 RGB (..., H, W, 3) -> float32 (..., 3, H, W) in [0, 1]."""
        return np.ascontiguousarray(np.moveaxis(resized, -1, -3), dtype=np.float32) / 255.0

    def normalize(self, unit: Channels) -> Channels:
        """Intensities in [0, 1], channels on axis -3 (NumPy or torch) -> the network's values."""
        if self.range == (0.0, 1.0) and self.mean is None and self.std is None:
            return unit  # the shipped networks' contract: exactly the [0, 1] intensities
        low, high = self.range
        mean = np.asarray(self.mean or (0.0, 0.0, 0.0), np.float32)[:, None, None]
        std = np.asarray(self.std or (1.0, 1.0, 1.0), np.float32)[:, None, None]
        scale, offset = (high - low) / std, (low - mean) / std
        if isinstance(unit, torch.Tensor):
            return unit * torch.from_numpy(scale) + torch.from_numpy(offset)
        return unit * scale + offset

    def to_input(self, image: np.ndarray, size: int) -> np.ndarray:
        """Any uint8 frame -> the canonical ``frame`` tensor (1, 3, size, size) float32."""
        return self.normalize(self.unit_channels_first(self.resized(image, size))[None])


DEFAULT_PREPROCESSING = Preprocessing()  # every BaSConfig's: the shipped networks' contract


def logits_at_size(logits: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Logits (1, 1, s, s) -> logits at the frame's (H, W), bilinear (masks: logit > 0)."""
    native = F.interpolate(
        torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32)),
        size=tuple(shape),
        mode="bilinear",
        align_corners=False,
    )
    return native[0, 0].numpy()


def lesion_mask(logits: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Lesion where the probability exceeds ``threshold`` (compared as a logit: exact)."""
    if not 0.0 < threshold < 1.0:
        raise ProjectError(f"threshold must be in (0, 1), got {threshold}")
    return logits > math.log(threshold / (1.0 - threshold))
