"""The lost-contact condition of the held-out evaluation (model.data.contact)."""

from __future__ import annotations

import numpy as np
import pytest

from model.data.contact import LostContact
from model.errors import ConfigError


def test_every_nth_frame_is_darkened_over_the_left_part_only() -> None:
    condition = LostContact(every=5, width=0.6, gain=0.1)
    assert [i for i in range(12) if condition.hits(i)] == [4, 9]
    image = np.full((4, 10, 3), 200, np.uint8)
    dark = condition.apply(image)
    assert dark.dtype == np.uint8 and (image == 200).all()  # a copy: the frame is not changed
    assert (dark[:, :6] == 20).all() and (dark[:, 6:] == 200).all()


@pytest.mark.parametrize(
    ("every", "width", "gain"), [(0, 0.6, 0.1), (5, 0.0, 0.1), (5, 1.5, 0.1), (5, 0.6, 1.0)]
)
def test_a_condition_that_cannot_be_is_refused(every: int, width: float, gain: float) -> None:
    with pytest.raises(ConfigError, match="lost contact needs"):
        LostContact(every=every, width=width, gain=gain)
