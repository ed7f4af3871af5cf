"""Scanner screens: the B-mode image at some place and scale inside a captured screen.

Real frames are captures of a scanner's screen: the image (a fan or a rectangle) sits
inside a wider dark area, at a position and scale set by the machine and its depth, with
text, a depth scale, calipers and markers around or over it. A model that only ever saw
images filling the frame learns that framing instead of lesions (the first shipped
weights marked the edges of a letterboxed rectangle as lesion). One code path places
clips in screens: at random as a training augmentation (:class:`ScreenAugment`), and in
fixed named screens for the held-out evaluation (:data:`SCREENS`).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

# Colours scanners draw their annotations in (RGB in [0, 1]).
_INK = ((1.0, 1.0, 1.0), (0.75, 0.75, 0.75), (1.0, 0.9, 0.2), (0.3, 1.0, 0.4), (0.3, 0.9, 1.0))
_TEXT = string.ascii_uppercase + string.digits + " .-:/"


@dataclass(frozen=True)
class Box:
    """Where the image lies in the screen, in screen pixels."""

    top: int
    left: int
    height: int
    width: int

    def crop(self, array: np.ndarray) -> np.ndarray:
        """The part of a screen-sized (H, W, ...) array that holds the image."""
        return array[self.top : self.top + self.height, self.left : self.left + self.width]

    def uncrop(self, mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """The image's part of a screen-sized bool mask, back at the image's (H, W) (nearest)."""
        crop = Image.fromarray(self.crop(mask).astype(np.uint8))
        return np.asarray(crop.resize(shape[::-1], Image.Resampling.NEAREST)) > 0


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=max(8, size))
    except TypeError:  # Pillow < 10.1: one bitmap size only
        return ImageFont.load_default()


class _Pen:
    """Draws on the annotations' RGB image and on their coverage at once."""

    def __init__(self, height: int, width: int, rng: np.random.Generator) -> None:
        self.canvas = Image.new("RGB", (width, height))
        self.cover = Image.new("L", (width, height))
        self.draws = (ImageDraw.Draw(self.canvas), ImageDraw.Draw(self.cover))
        self.rng = rng

    def ink(self) -> tuple[int, int, int]:
        """One of the colours scanners draw in, at random."""
        return tuple(int(255 * c) for c in _INK[int(self.rng.integers(len(_INK)))])

    def line(self, points: list[tuple[float, float]], colour, thickness: int) -> None:
        self.draws[0].line(points, fill=colour, width=thickness)
        self.draws[1].line(points, fill=255, width=thickness)

    def text(self, xy: tuple[float, float], text: str, colour, font) -> None:
        self.draws[0].text(xy, text, fill=colour, font=font)
        self.draws[1].text(xy, text, fill=255, font=font)

    def polygon(self, points: list[tuple[float, float]], colour) -> None:
        self.draws[0].polygon(points, fill=colour)
        self.draws[1].polygon(points, fill=255)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """RGB (3, H, W) and coverage (1, H, W), both in [0, 1]."""
        rgb = torch.from_numpy(np.array(self.canvas)).permute(2, 0, 1).float().div_(255.0)
        alpha = torch.from_numpy(np.array(self.cover)).unsqueeze(0).float().div_(255.0)
        return rgb, alpha


def _text_lines(pen: _Pen, height: int, width: int, unit: int) -> None:
    """Probe, preset, depth, gain: random text anywhere on the screen."""
    rng = pen.rng
    font = _font(int(unit * rng.uniform(1.3, 2.2)))
    for _ in range(int(rng.integers(2, 7))):
        text = "".join(rng.choice(list(_TEXT), size=int(rng.integers(3, 14))))
        xy = (float(rng.uniform(0, width * 0.85)), float(rng.uniform(0, height * 0.95)))
        pen.text(xy, text, pen.ink(), font)


def _depth_scale(pen: _Pen, box: Box, unit: int) -> None:
    """A ruler with ticks on one side of the image."""
    rng = pen.rng
    side = box.left + box.width + unit if rng.random() < 0.5 else box.left - unit
    colour, step = pen.ink(), max(4, box.height // int(rng.integers(5, 12)))
    pen.line([(side, box.top), (side, box.top + box.height)], colour, 1)
    for y in range(box.top, box.top + box.height, step):
        pen.line([(side - unit // 2, y), (side + unit // 2, y)], colour, 1)


def _focus_marker(pen: _Pen, box: Box, unit: int) -> None:
    """A small triangle at the image's edge."""
    rng = pen.rng
    y = box.top + rng.uniform(0.2, 0.8) * box.height
    x = box.left + box.width + 2 if rng.random() < 0.5 else box.left - 2 - unit
    pen.polygon([(x, y - unit / 2), (x + unit, y), (x, y + unit / 2)], pen.ink())


def _point_in(box: Box, rng: np.random.Generator) -> tuple[float, float]:
    """A random point well inside the image (x, y)."""
    x = box.left + rng.uniform(0.1, 0.9) * box.width
    return x, box.top + rng.uniform(0.1, 0.9) * box.height


def _calipers_and_measurement(pen: _Pen, box: Box, unit: int) -> None:
    """Up to two caliper crosses and, at times, a dotted measurement line over the image."""
    rng = pen.rng
    for _ in range(int(rng.integers(0, 3))):
        cx, cy = _point_in(box, rng)
        colour, arm = pen.ink(), unit * rng.uniform(0.6, 1.2)
        pen.line([(cx - arm, cy), (cx + arm, cy)], colour, 1)
        pen.line([(cx, cy - arm), (cx, cy + arm)], colour, 1)
    if rng.random() < 0.4:
        colour = pen.ink()
        (x0, y0), (x1, y1) = _point_in(box, rng), _point_in(box, rng)
        for t in np.linspace(0, 1, 24):
            px, py = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
            pen.line([(px, py), (px + 1, py)], colour, 2)


def draw_scanner_annotations(
    height: int, width: int, box: Box, rng: np.random.Generator, over_image: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random scanner annotations: RGB (3, H, W) in [0, 1] and their coverage (1, H, W).

    Text lines (probe, preset, depth, gain), a depth scale beside the image, a focus
    marker, and, when ``over_image``, calipers and a dotted measurement over the image.
    """
    pen = _Pen(height, width, rng)
    unit = max(6, min(height, width) // 40)
    _text_lines(pen, height, width, unit)
    _depth_scale(pen, box, unit)
    _focus_marker(pen, box, unit)
    if over_image:
        _calipers_and_measurement(pen, box, unit)
    return pen.tensors()


def place(
    images: torch.Tensor,
    masks: torch.Tensor,
    size: tuple[int, int],
    box: Box,
    background: float = 0.0,
    overlay: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Put images (T, C, h, w) in [0, 1] and masks (T, 1, h, w) into a screen of ``size``.

    The image is resized into ``box`` (bilinear with antialiasing; masks nearest), the
    rest of the screen is ``background``, and an overlay (RGB, coverage) is drawn on top.
    Masks keep the lesion under annotations: it is still there.
    """
    if box.height < 1 or box.width < 1:
        raise ValueError(f"image box must be at least 1 x 1 pixel, got {box}")
    resized = F.interpolate(
        images, size=(box.height, box.width), mode="bilinear", antialias=True, align_corners=False
    )
    small = F.interpolate(masks, size=(box.height, box.width), mode="nearest")
    screen = images.new_full((*images.shape[:2], *size), background)
    screen_masks = masks.new_zeros((*masks.shape[:2], *size))
    rows = slice(box.top, box.top + box.height)
    cols = slice(box.left, box.left + box.width)
    screen[:, :, rows, cols] = resized
    screen_masks[:, :, rows, cols] = small
    if overlay is not None:
        rgb, alpha = overlay
        screen = screen * (1 - alpha) + rgb[: images.shape[1]] * alpha
    return screen.clamp(0.0, 1.0), screen_masks


@dataclass(frozen=True)
class ScreenAugment:
    """Random screens for training, drawn once per clip (a video keeps its framing).

    With probability ``screen`` the clip shrinks into a random box of the same canvas
    (height and width scales drawn apart, so the aspect changes too) on a dark
    background; with probability ``overlay`` annotations are drawn, over the image as
    well as around it.
    """

    screen: float = 0.0
    scale: tuple[float, float] = (0.45, 1.0)
    background: tuple[float, float] = (0.0, 0.08)
    overlay: float = 0.0

    def __post_init__(self) -> None:
        for name in ("screen", "overlay"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(
                    f"ScreenAugment.{name} must be in [0, 1], got {getattr(self, name)}"
                )
        low, high = self.scale
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(
                f"ScreenAugment.scale must satisfy 0 < low <= high <= 1, got {self.scale}"
            )

    def __call__(
        self, images: torch.Tensor, masks: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        size = tuple(images.shape[-2:])
        box = Box(0, 0, *size)
        background = 0.0
        if rng.random() < self.screen:
            height = max(8, round(size[0] * rng.uniform(*self.scale)))
            width = max(8, round(size[1] * rng.uniform(*self.scale)))
            top = int(rng.integers(0, size[0] - height + 1))
            left = int(rng.integers(0, size[1] - width + 1))
            box = Box(top, left, height, width)
            background = float(rng.uniform(*self.background))
        overlay = None
        if rng.random() < self.overlay:
            overlay = draw_scanner_annotations(*size, box, rng)
        if overlay is None and box == Box(0, 0, *size):
            return images, masks
        return place(images, masks, size, box, background, overlay)


@dataclass(frozen=True)
class Screen:
    """A fixed screen for evaluation: its size, where the image goes, what is drawn.

    The image keeps its aspect and is scaled to ``image_height`` (a fraction of the
    screen's height, reduced if it would not fit the width); ``anchor`` places it,
    (0.5, 0.5) centred. Overlays come from ``seed`` and are the same in every frame.
    """

    name: str
    height: int
    width: int
    image_height: float
    anchor: tuple[float, float] = (0.5, 0.5)
    overlays: bool = False
    seed: int = 0

    def box(self, image_shape: tuple[int, int]) -> Box:
        h, w = image_shape
        scale = min(self.image_height * self.height / h, 0.98 * self.width / w)
        bh, bw = max(1, round(h * scale)), max(1, round(w * scale))
        top = round((self.height - bh) * self.anchor[0])
        left = round((self.width - bw) * self.anchor[1])
        return Box(top, left, bh, bw)

    def apply(
        self, image: np.ndarray, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None, Box]:
        """A uint8 RGB frame (H, W, 3) and its mask in this screen, and the image's box."""
        box = self.box(image.shape[:2])
        overlay = _fixed_overlay(self, box) if self.overlays else None
        tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        target = (
            torch.zeros((1, 1, *image.shape[:2]))
            if mask is None
            else (torch.from_numpy(mask.astype(np.float32))[None, None])
        )
        screen, screen_mask = place(tensor, target, (self.height, self.width), box, 0.0, overlay)
        pixels = (screen[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        return pixels, None if mask is None else screen_mask[0, 0].numpy() > 0.5, box


@lru_cache(maxsize=16)
def _fixed_overlay(screen: Screen, box: Box) -> tuple[torch.Tensor, torch.Tensor]:
    """A screen's annotations, drawn once per image size (they are the same every frame)."""
    seeded = np.random.default_rng(screen.seed)
    return draw_scanner_annotations(screen.height, screen.width, box, seeded)


SCREENS: dict[str, Screen] = {
    # The plane-wave case that exposed the framing problem: a rectangle letterboxed,
    # centred in a 600 x 800 screen, black bands on all four sides, no annotations.
    "letterbox": Screen("letterbox", 600, 800, image_height=0.8),
    # A typical capture: image left of centre, text, depth scale, calipers, marker.
    "annotated": Screen(
        "annotated", 600, 800, image_height=0.72, anchor=(0.6, 0.3), overlays=True, seed=7
    ),
    # A shallow preset on a wide screen: a small image near the top left corner.
    "small": Screen(
        "small", 768, 1024, image_height=0.5, anchor=(0.15, 0.2), overlays=True, seed=11
    ),
}
