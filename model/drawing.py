"""Masks drawn over frames for people: the demo's GIF and strip, segment's video and still.

Here, below ``runtimes``, so that the demo and ``runtimes.segment`` draw with one function.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .preprocessing import as_rgb

FILL = (0, 255, 0)  # prediction: translucent green fill, solid green contour
FILL_ALPHA = 0.35
TRUTH = (255, 40, 40)  # ground truth: red outline
CONTOUR_PX = 2


def _outline(mask: np.ndarray) -> np.ndarray:
    """The inner band of ``mask``, CONTOUR_PX wide (pixels at the image edge count as border)."""
    return mask & ~ndimage.binary_erosion(mask, iterations=CONTOUR_PX, border_value=0)


def checked_mask(mask: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    """``mask`` as bool, refused (naming it) where its (H, W) is not the image's."""
    mask = np.asarray(mask)
    if mask.shape != shape[:2]:
        raise ValueError(f"{name} shape {mask.shape} differs from image size {shape[:2]}")
    return mask.astype(bool, copy=False)


def draw_mask_overlay(
    image: np.ndarray, mask: np.ndarray, truth: np.ndarray | None = None
) -> np.ndarray:
    """The frame in RGB with the lesion filled translucently and outlined, truth outlined in red.

    Translucent so the echo texture under the lesion stays visible; the solid contour shows
    the border where the fill is faint.
    """
    out = as_rgb(np.asarray(image)).copy()
    mask = checked_mask(mask, out.shape, "mask")
    if mask.any():
        tinted = (1 - FILL_ALPHA) * out[mask].astype(np.float32) + FILL_ALPHA * np.array(FILL)
        out[mask] = np.rint(tinted).clip(0, 255).astype(np.uint8)
        out[_outline(mask)] = FILL
    if truth is not None:
        out[_outline(checked_mask(truth, out.shape, "truth"))] = TRUTH
    return out
