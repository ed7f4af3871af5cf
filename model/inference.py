"""Frames in, masks out: the preprocessing and postprocessing every consumer of BaS shares."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .bas import BaS


def to_input(image: np.ndarray, size: int) -> torch.Tensor:
    """uint8 RGB (H, W, 3) -> (1, 3, size, size) float in [0, 1], bilinear as in training."""
    resized = np.array(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
    return torch.from_numpy(resized).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def to_native(logits: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    """Logits (1, 1, s, s) -> bool mask at the frame's native (H, W): bilinear logits, then > 0."""
    native = F.interpolate(logits, size=shape, mode="bilinear", align_corners=False)
    return (native[0, 0] > 0).numpy()


@torch.no_grad()
def stream_video(
    model: BaS, images: Iterable[np.ndarray], history: bool = True
) -> Iterator[np.ndarray]:
    """Segment frames one by one in the stream form, as a device would; yields native masks.

    ``history=False`` runs the frame form instead (every frame with an empty history): the
    ablation that shows what TempLP takes from the past.
    """
    state = model.initial_state(1)
    size = model.config.image_size
    for image in images:
        if history:
            logits, state = model.stream(to_input(image, size), state)
        else:
            logits = model.forward_frame(to_input(image, size))
        yield to_native(logits, image.shape[:2])
