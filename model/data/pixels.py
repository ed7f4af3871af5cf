"""One rule for pixel values, and the one image reader built on it (frames and datasets).

BaS takes 8-bit RGB. A frame stored in more bits (16-bit PNG or TIFF, 10-bit video,
12- or 16-bit DICOM) is scaled from the full range its format states (2**bits - 1 maps to
255, rounded to nearest), so that a 16-bit copy of an 8-bit frame (each value times 257)
gives back the 8-bit frame exactly. A value above the stated range has no meaning here
and is refused, not clipped.

:func:`read_pixels` reads every image file the project accepts by that rule. Per mode:

=========================  ====================================================================
Pillow mode / file         what the model sees
=========================  ====================================================================
L, RGB                     the values as stored
1 (bilevel)                black 0, white 255
P (palette)                the palette's RGB (palette transparency ignored: its colour is exact)
I;16 (16-bit gray)         scaled from the stated bits: TIFF BitsPerSample, else 16
16-bit RGB / RGBA / LA     full 16-bit samples (Pillow alone keeps only the high byte: read
                           twice, high and low byte), then scaled from 16 bits
I (32-bit integer)         TIFF 16-bit signed: refused if negative, else scaled from 15 bits;
                           32-bit (signed or unsigned): refused, no brightness range to trust
F (32-bit float)           [0, 1] scaled onto 0..255 (rounded); other values or NaN/inf refused
RGBA, LA, PA, RGBa         colours as stored (alpha does not darken them), except where alpha
                           is 0: encoders may store any colour there, so those pixels are black
                           (the scanner's background); the alpha channel is kept as a 4th channel
CMYK, YCbCr, LAB, RGBX     Pillow's conversion to RGB (no ICC colour management)
EXIF orientation           applied (``ImageOps.exif_transpose``): the frame is as displayed
=========================  ====================================================================

An uncompressed TIFF turned by 90 degrees (orientation 5-8) is refused: Pillow 13 decodes it
scrambled. Refusals of pixels with no clear meaning raise :class:`UnsupportedPixels` (the
recording's storage, shared by its frames: callers stop); an undecodable file raises
:class:`ImageReadError` (damage to one file: callers may skip it). Messages are one line
that starts with the file's path.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps

from ..errors import ProjectError

_ORIENTATION = ExifTags.Base.Orientation
_TIFF_BITS, _TIFF_SAMPLE_FORMAT = 258, 339
# 16-bit-per-channel rawmodes that Pillow unpacks to 8 bits by keeping the high byte.
_WIDE_RAWMODE = re.compile(r"(RGBA?|RGBX|LA);16([BLN])")
_PILLOW_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class UnsupportedPixels(ProjectError):
    """Pixels with no clear meaning as 8-bit brightness; how a recording is stored, so final."""


class PixelRangeError(UnsupportedPixels):
    """Pixel values outside what their format states; the message is one line."""


class ImageReadError(ProjectError):
    """A file that cannot be decoded as an image (damaged, truncated, not an image)."""


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


def scale_unit_float(values: np.ndarray) -> np.ndarray:
    """Float pixels -> uint8: [0, 1] onto 0..255 (rounded), the only float range with a meaning."""
    values = np.asarray(values, np.float64)
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        raise PixelRangeError(f"{bad} float pixel values are NaN or infinite")
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if low < 0 or high > 1:
        raise PixelRangeError(
            f"float pixel values {low:g}..{high:g} lie outside 0..1, the only float range "
            "with a stated meaning"
        )
    return np.floor(values * 255 + 0.5).astype(np.uint8)


def with_alpha(
    colour: np.ndarray, alpha: np.ndarray, clear: np.ndarray | None = None
) -> np.ndarray:
    """uint8 RGBA: colours as stored, black where alpha is 0 (their colour is arbitrary there).

    ``clear`` marks the fully transparent pixels where alpha was stored in more bits (a
    16-bit alpha of 100 rounds to 0 but is not fully transparent); default ``alpha == 0``.
    """
    rgb = np.repeat(colour[:, :, None], 3, axis=2) if colour.ndim == 2 else colour[:, :, :3]
    clear = alpha == 0 if clear is None else clear
    rgb = np.where(clear[:, :, None], np.uint8(0), rgb)
    return np.ascontiguousarray(np.dstack([rgb, alpha]).astype(np.uint8))


def read_pixels(path: Path) -> np.ndarray:
    """uint8 (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA, as displayed, by the rules above."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            _refuse_scrambled_orientation(img)
            low = _low_bytes(path, img)
            img.load()
            ImageOps.exif_transpose(img, in_place=True)
            if low is not None:
                return _wide_to_uint8(img, low)
            return _to_uint8(img)
    except UnsupportedPixels as err:
        raise type(err)(f"{path}: {err}") from None
    except _PILLOW_ERRORS as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ImageReadError(f"{path}: unreadable image ({reason})") from None


def displayed_size(path: Path) -> tuple[int, int] | None:
    """(H, W) as :func:`read_pixels` will return it, from the header; None if unreadable."""
    try:
        with Image.open(path) as img:
            height, width = img.height, img.width
            # Pillow's TIFF reader states the turned size itself (and turns on load).
            if img.format != "TIFF" and _orientation(img) in (5, 6, 7, 8):
                height, width = width, height
            return height, width
    except _PILLOW_ERRORS:
        return None


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation, without decoding a PNG's pixels to look for a late eXIf chunk."""
    if img.format == "PNG" and not {"exif", "Raw profile type exif"} & img.info.keys():
        return 1
    return int(img.getexif().get(_ORIENTATION, 1) or 1)


def _refuse_scrambled_orientation(img: Image.Image) -> None:
    """Pillow 13 turns an uncompressed TIFF by 90 degrees with the wrong row length."""
    tags = getattr(img, "tag_v2", None)
    if tags is None or tags.get(_ORIENTATION) not in (5, 6, 7, 8):
        return
    if any(tile.codec_name != "libtiff" for tile in img.tile):
        raise UnsupportedPixels(
            f"uncompressed TIFF with orientation {tags.get(_ORIENTATION)} (turned 90 degrees), "
            "which Pillow decodes scrambled; save it compressed (LZW) or upright"
        )


def _rawmode(tile: ImageFile._Tile) -> str:
    args = tile.args
    return args if isinstance(args, str) else str(args[0])


def _low_bytes(path: Path, img: Image.Image) -> np.ndarray | None:
    """The low bytes of 16-bit RGB(A)/LA samples, which Pillow's own decode drops; else None.

    The same file is decoded again with the rawmode of the other byte order: each 16-bit
    unpacker keeps one byte of each sample and the pixel stride (hence PNG's filters and
    TIFF's strides) stays right. 16-bit LA is read as 4 plain bytes per pixel instead.
    """
    if img.mode not in ("RGB", "RGBA", "RGBX"):
        return None
    rawmodes = {_rawmode(tile) for tile in img.tile}
    match = _WIDE_RAWMODE.fullmatch(next(iter(rawmodes))) if len(rawmodes) == 1 else None
    if match is None:
        if any(";16" in r for r in rawmodes):
            raise UnsupportedPixels(f"16-bit samples ({', '.join(sorted(rawmodes))}) not supported")
        return None
    kind, order = match.groups()
    big = order == "B" or (order == "N" and sys.byteorder == "big")
    other = "RGBA" if kind == "LA" else f"{kind};16{'L' if big else 'B'}"
    try:
        with Image.open(path) as again:
            again.tile = [_with_rawmode(tile, other) for tile in again.tile]
            again.load()
            ImageOps.exif_transpose(again, in_place=True)
            low = np.asarray(again)
    except ValueError as err:
        raise UnsupportedPixels(
            f"16-bit {kind} samples that Pillow reads only cut to 8 bits ({err})"
        ) from None
    if kind == "LA":  # bytes per pixel: L, L, A, A in the file's byte order
        low = low[:, :, [1, 3]] if big else low[:, :, [0, 2]]
    return low


def _with_rawmode(tile: ImageFile._Tile, rawmode: str) -> ImageFile._Tile:
    args = tile.args
    return tile._replace(args=rawmode if isinstance(args, str) else (rawmode, *args[1:]))


def _wide_to_uint8(img: Image.Image, low: np.ndarray) -> np.ndarray:
    """Pillow's high bytes and the low bytes -> 16-bit samples -> uint8 by the one rule."""
    high = np.asarray(img)
    if low.shape[2] == 2:  # LA: Pillow gave RGBA with L in R, G, B
        high = high[:, :, [0, 3]]
    wide = (high.astype(np.uint16) << 8) | low
    samples = scale_to_uint8(wide, 16)
    if samples.shape[2] == 2:
        return with_alpha(samples[:, :, 0], samples[:, :, 1], wide[:, :, 1] == 0)
    if img.mode == "RGBA":
        return with_alpha(samples[:, :, :3], samples[:, :, 3], wide[:, :, 3] == 0)
    return np.ascontiguousarray(samples[:, :, :3])


def _to_uint8(img: Image.Image) -> np.ndarray:
    """One Pillow image (at most 8 bits per channel unless I, I;16 or F) -> uint8."""
    mode = img.mode
    if mode in ("L", "RGB"):
        return np.array(img)
    if mode == "1":
        return np.array(img.convert("L"))
    if mode.startswith("I;16"):
        return scale_to_uint8(np.asarray(img), _tiff_format(img, 16)[0])
    if mode == "I":
        return _integer_samples(img)
    if mode == "F":
        return scale_unit_float(np.asarray(img))
    if mode in ("RGBA", "LA", "PA", "RGBa"):
        rgba = np.asarray(img.convert("RGBA"))
        return with_alpha(rgba[:, :, :3], rgba[:, :, 3])
    if mode in ("P", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        return np.array(img.convert("RGB"))
    raise UnsupportedPixels(f"image mode {mode} is not supported")


def _tiff_format(img: Image.Image, bits: int) -> tuple[int, bool]:
    """(bits per sample, signed) as a TIFF states them; ``bits`` unsigned for other formats."""
    tags = getattr(img, "tag_v2", None)
    if tags is None:
        return bits, False
    stated, sample_format = tags.get(_TIFF_BITS, (bits,)), tags.get(_TIFF_SAMPLE_FORMAT, (1,))
    stated = max(stated) if isinstance(stated, tuple) else int(stated)
    sample_format = sample_format[0] if isinstance(sample_format, tuple) else sample_format
    return stated, sample_format == 2


def _integer_samples(img: Image.Image) -> np.ndarray:
    """Pillow's 32-bit "I" mode: signed 16-bit TIFF scaled; 32-bit integers refused."""
    values = np.asarray(img)
    bits, signed = _tiff_format(img, 32)
    if bits == 32 and not signed:
        values = values.view(np.uint32)  # Pillow reads unsigned 32-bit into int32, wrapping
    low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
    if bits > 16:
        raise UnsupportedPixels(
            f"{bits}-bit integer pixels (values {low}..{high}) have no brightness range to "
            "scale from; store the frames as 8- or 16-bit"
        )
    if signed:
        if low < 0:
            raise PixelRangeError(
                f"signed pixel values {low}..{high}: negative brightness has no meaning"
            )
        bits -= 1
    return scale_to_uint8(values, bits)
