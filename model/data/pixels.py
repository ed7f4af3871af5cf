"""One rule for frames of more than 8 bits: the stated full range maps onto 0..255.

BaS takes 8-bit RGB. A frame stored in more bits (16-bit PNG or TIFF, 10-bit video,
12- or 16-bit DICOM) is scaled from the full range its format states (2**bits - 1 maps to
255, rounded to nearest), so that a 16-bit copy of an 8-bit frame (each value times 257)
gives back the 8-bit frame exactly. A value above the stated range has no meaning here
and is refused, not clipped.
"""

from __future__ import annotations

import numpy as np


class PixelRangeError(ValueError):
    """Pixel values outside what their format states; the message is one line."""


def scale_to_uint8(values: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned integer pixels stored in ``bits`` bits -> uint8, full range onto 0..255."""
    if not 1 <= bits <= 32:
        raise ValueError(f"bits must be 1..32, got {bits}")
    values = np.asarray(values)
    if values.dtype.kind not in "ui":
        raise PixelRangeError(f"expected integer pixels, got {values.dtype}")
    if bits == 8 and values.dtype == np.uint8:
        return values
    top = (1 << bits) - 1
    wide = values.astype(np.int64)
    low, high = (int(wide.min()), int(wide.max())) if wide.size else (0, 0)
    if low < 0 or high > top:
        raise PixelRangeError(
            f"pixel values {low}..{high} lie outside the {bits}-bit range 0..{top}"
        )
    return ((wide * 255 + top // 2) // top).astype(np.uint8)
