"""Image regions: the detected one against where the framing code put the image, and the
millimetre measure against the region's stated pixel size."""

from __future__ import annotations

import numpy as np
import pytest

from model.data.framing import SCREENS
from model.data.synth import render_video
from segmentation.regions import ImageRegion, detect_region, measure


@pytest.fixture(scope="module")
def clip() -> list[tuple[np.ndarray, np.ndarray]]:
    return list(render_video(1, 0, 12))


@pytest.mark.parametrize("name", sorted(SCREENS))
def test_the_detected_region_lies_in_the_placed_image_and_holds_every_lesion(
    clip: list[tuple[np.ndarray, np.ndarray]], name: str
) -> None:
    placed = [SCREENS[name].apply(image, mask) for image, mask in clip]
    box = placed[0][2]
    region = detect_region(image for image, _, _ in placed)
    assert region is not None and region.mm_per_px is None
    assert box.left <= region.left and region.right <= box.left + box.width
    assert box.top <= region.top and region.bottom <= box.top + box.height
    assert region.height >= 0.95 * box.height  # the fan spans the image's depth
    for _, mask, _ in placed:
        assert mask is not None and not (mask & ~region.paste(region.crop(mask), mask.shape)).any()


def test_a_still_loop_or_one_frame_has_no_detectable_region(
    clip: list[tuple[np.ndarray, np.ndarray]],
) -> None:
    image = clip[0][0]
    assert detect_region([image]) is None
    assert detect_region([image, image.copy(), image.copy()]) is None


def test_measure_counts_only_the_calibrated_region_in_its_pixel_size() -> None:
    region = ImageRegion(10, 20, 60, 80, "test", mm_per_px=(0.5, 0.25))
    mask = np.zeros((100, 100), bool)
    mask[30:40, 20:30] = True  # 10 x 10 inside
    mask[0:5, 0:4] = True  # 20 px outside
    size = measure(mask, region)
    assert size.area_mm2 == pytest.approx(100 * 0.5 * 0.25)
    assert (size.bbox_width_mm, size.bbox_height_mm) == pytest.approx((10 * 0.5, 10 * 0.25))
    assert size.outside_px == 20
    assert measure(np.zeros((100, 100), bool), region).area_mm2 == 0.0


def test_a_region_refuses_what_cannot_be_a_region() -> None:
    with pytest.raises(ValueError, match="empty or negative"):
        ImageRegion(10, 0, 10, 5, "test")
    with pytest.raises(ValueError, match="finite and > 0"):
        ImageRegion(0, 0, 5, 5, "test", mm_per_px=(float("nan"), 0.1))
    with pytest.raises(ValueError, match="no physical pixel size"):
        measure(np.zeros((5, 5), bool), ImageRegion(0, 0, 5, 5, "test"))
    assert not ImageRegion(0, 0, 321, 240, "test").fits((240, 320))
