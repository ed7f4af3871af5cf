"""Thin export wrappers: one module per deployment form, all sharing one BaS's weights."""

from __future__ import annotations

import torch
from torch import nn

from .bas import BaS
from .config import unknown_choice
from .errors import ConfigError


class FrameForm(nn.Module):
    """(B, 3, H, W) -> (B, 1, H, W)."""

    def __init__(self, model: BaS) -> None:
        super().__init__()
        self.model = model

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        return self.model.forward_frame(frame)


class ClipForm(nn.Module):
    """(B, T, 3, H, W) -> (B, T, 1, H, W)."""

    def __init__(self, model: BaS) -> None:
        super().__init__()
        self.model = model

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.model.forward_clip(clip)


class StreamForm(nn.Module):
    """(frame, state) -> (logits, new_state); start from ``model.initial_state``."""

    def __init__(self, model: BaS) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, frame: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.stream(frame, state)


FORMS: dict[str, type[nn.Module]] = {"frame": FrameForm, "clip": ClipForm, "stream": StreamForm}
EXPORT_FORMS = ("frame", "stream")  # the forms written to artifacts (the clip form trains)
# Each export form's tensors by BaS's own names: (inputs, outputs), in file order.
IO_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "frame": (("frame",), ("logits",)),
    "stream": (("frame", "state"), ("logits", "new_state")),
}


def example_inputs(
    model: BaS, form: str, batch: int = 1, steps: int = 4
) -> tuple[torch.Tensor, ...]:
    """Inputs of the right shape for tracing or exporting ``form``."""
    size = model.config.image_size
    frame = torch.rand(batch, model.config.in_channels, size, size)
    if form == "frame":
        return (frame,)
    if form == "clip":
        return (torch.rand(batch, steps, model.config.in_channels, size, size),)
    if form == "stream":
        return (frame, model.initial_state(batch))
    raise ConfigError(unknown_choice("form", form, tuple(FORMS)))
