"""Scanner screens: placing clips in a screen, annotations, and the fixed evaluation screens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.data.framing import SCREENS, Box, Screen, ScreenAugment, draw_scanner_annotations, place
from model.metrics import frame_scores


def _clip(size: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.rand(3, 3, size, size) * 0.8 + 0.2  # never as dark as a screen
    masks = torch.zeros(3, 1, size, size)
    masks[:, :, 10:30, 14:34] = 1
    return images, masks


def test_place_puts_the_image_in_its_box_and_leaves_the_rest_dark() -> None:
    images, masks = _clip()
    box = Box(5, 20, 24, 30)
    screen, screen_masks = place(images, masks, (60, 80), box, background=0.05)
    assert screen.shape == (3, 3, 60, 80) and screen_masks.shape == (3, 1, 60, 80)
    inside = torch.zeros(60, 80, dtype=torch.bool)
    inside[5:29, 20:50] = True
    assert torch.all(screen[..., ~inside] == 0.05)
    assert screen[..., inside].min() > 0.1
    assert set(screen_masks.unique().tolist()) <= {0.0, 1.0}
    assert not screen_masks[..., ~inside].any()
    # the mask keeps its place and its share of the image
    share = masks.mean().item()
    assert screen_masks[..., inside].mean().item() == pytest.approx(share, abs=0.03)


def test_overlay_is_drawn_over_the_image_but_not_into_the_mask() -> None:
    images, masks = _clip()
    box = Box(0, 0, 48, 48)
    rgb, alpha = draw_scanner_annotations(48, 48, box, np.random.default_rng(3))
    assert rgb.shape == (3, 48, 48) and alpha.shape == (1, 48, 48) and alpha.max() > 0
    screen, screen_masks = place(images, masks, (48, 48), box, overlay=(rgb, alpha))
    drawn = alpha[0] > 0.99
    assert torch.allclose(screen[:, :, drawn], rgb[:, drawn].expand(3, -1, -1))
    assert torch.equal(screen_masks, masks)


def test_screen_augment_is_reproducible_and_off_by_default() -> None:
    images, masks = _clip()
    same = ScreenAugment()(images, masks, np.random.default_rng(0))
    assert same[0] is images and same[1] is masks
    augment = ScreenAugment(screen=1.0, overlay=1.0)
    first = augment(images, masks, np.random.default_rng(1))
    again = augment(images, masks, np.random.default_rng(1))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert first[0].shape == images.shape and first[1].sum() < masks.sum()


def test_screen_augment_rejects_bad_ranges() -> None:
    with pytest.raises(ValueError, match="screen must be in"):
        ScreenAugment(screen=1.5)
    with pytest.raises(ValueError, match="scale must satisfy"):
        ScreenAugment(scale=(0.0, 1.0))


@pytest.mark.parametrize("name", sorted(SCREENS))
def test_evaluation_screens_crop_back_to_the_original(name: str) -> None:
    screen = SCREENS[name]
    rng = np.random.default_rng(0)
    image = rng.integers(30, 255, (300, 401, 3), dtype=np.uint8)
    mask = np.zeros((300, 401), bool)
    mask[100:180, 150:260] = True
    shown, shown_mask, box = screen.apply(image, mask)
    assert shown.shape == (screen.height, screen.width, 3) and shown.dtype == np.uint8
    assert shown_mask.shape == (screen.height, screen.width)
    assert box.top >= 0 and box.top + box.height <= screen.height
    assert box.left >= 0 and box.left + box.width <= screen.width
    assert not shown_mask[~_inside(box, shown_mask.shape)].any()
    assert frame_scores(box.uncrop(shown_mask, mask.shape), mask).dice > 0.97
    # the same screen every time: its annotations come from its seed
    assert np.array_equal(screen.apply(image, mask)[0], shown)


def _inside(box: Box, shape: tuple[int, int]) -> np.ndarray:
    inside = np.zeros(shape, bool)
    box.crop(inside)[...] = True
    return inside


def test_letterbox_has_black_bands_on_all_four_sides() -> None:
    screen = SCREENS["letterbox"]
    shown, _, box = screen.apply(np.full((300, 400, 3), 200, np.uint8), None)
    assert box.top > 0 and box.left > 0
    assert box.top + box.height < screen.height and box.left + box.width < screen.width
    assert not shown[~_inside(box, shown.shape[:2])].any()


def test_a_screen_keeps_the_image_aspect() -> None:
    box = Screen("t", 600, 800, image_height=0.5).box((300, 450))
    assert (box.height, box.width) == (300, 450)
    wide = Screen("t", 600, 800, image_height=1.0).box((100, 1000))  # limited by the width
    assert wide.width <= 800 and wide.height == round(100 * wide.width / 1000)
