"""Frames that lose their own evidence, for measuring what a frame's history is worth.

A probe that lifts off the skin on one side darkens that part of the image for a frame or
two; the lesion is still there and was visible a moment before. A model that draws on
past frames should keep finding it, a single-frame model cannot: the held-out
evaluation darkens frames this way (``python -m model.evaluate --lost-contact N``) and
scores them streaming and without history. Training's ``Augment.weak`` draws random
cases of the same kind.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class LostContact:
    """Every ``every``-th frame of a video (the 5th, 10th, ...) darkened to ``gain`` of its
    brightness over the left ``width`` of the image."""

    every: int = 5
    width: float = 0.6
    gain: float = 0.1

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ConfigError(f"lost contact needs every >= 1 (1: every frame), got {self.every}")
        if not 0.0 < self.width <= 1.0 or not 0.0 <= self.gain < 1.0:
            raise ConfigError(
                f"lost contact needs 0 < width <= 1 and 0 <= gain < 1, got {self.width}, "
                f"{self.gain}"
            )

    def hits(self, position: int) -> bool:
        """Whether the frame at ``position`` (0-based, in video order) loses contact."""
        return position % self.every == self.every - 1

    def apply(self, image: np.ndarray) -> np.ndarray:
        """A darkened copy of a uint8 RGB frame (H, W, 3)."""
        dark = image.copy()
        cols = slice(0, round(self.width * image.shape[1]))
        dark[:, cols] = np.round(dark[:, cols] * self.gain).astype(image.dtype)
        return dark
