"""Masks of a video's frames, streamed: what evaluation scores and the demo draws.

:class:`MaskStream` is anything that turns one video's frames into their masks from a
fresh state; :class:`BaSMasks` is PyTorch BaS as one, with the one pre- and
post-processing (``model.preprocessing``) that every runtime's session applies, and every
``runtimes.Session`` is another (``runtimes.evaluate`` scores artifacts through them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from .bas import BaS
from .config import unknown_choice
from .errors import ConfigError
from .forms import EXPORT_FORMS, FrameForm, StreamForm
from .hub import build_bas
from .preprocessing import lesion_mask, logits_at_size


class MaskStream(Protocol):
    """What evaluation scores: PyTorch BaS here, or any runtime's ``runtimes.Session``."""

    def masks(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """One video's frames (uint8, any size) in order, from a fresh state -> their masks
        (bool, each frame's size)."""
        ...


class BaSMasks:
    """PyTorch BaS as a :class:`MaskStream`: the stream form carries the state from frame
    to frame (reset for each video), the frame form sees each frame alone."""

    runtime = "pytorch"

    def __init__(self, model: BaS, form: str = "stream") -> None:
        if form not in EXPORT_FORMS:
            raise ConfigError(unknown_choice("form", form, EXPORT_FORMS))
        self.model = model.eval()
        self.form = form
        self._net = StreamForm(model) if form == "stream" else FrameForm(model)

    @classmethod
    def build(
        cls,
        variant: str = "S",
        weights: str | Path = "shipped",
        form: str = "stream",
        image_size: int = 240,
        temporal_window: int = 3,
    ) -> BaSMasks:
        """BaS-``variant`` from ``weights`` ("shipped" or a path) as a mask stream."""
        return cls(build_bas(variant, image_size, temporal_window, weights=weights), form)

    @torch.no_grad()
    def masks(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """One video's masks (logit > 0 at each frame's size), from a fresh state."""
        config = self.model.config
        state = self.model.initial_state(1) if self.form == "stream" else None
        for frame in frames:
            x = torch.from_numpy(config.preprocessing.to_input(frame, config.image_size))
            if state is None:
                logits = self._net(x)
            else:
                logits, state = self._net(x, state)
            yield lesion_mask(logits_at_size(logits.numpy(), frame.shape[:2]))
