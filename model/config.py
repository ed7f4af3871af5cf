"""BaS configurations: one frozen dataclass per variant, looked up by name."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from typing import Literal

from .errors import ConfigError
from .preprocessing import DEFAULT_PREPROCESSING, Preprocessing

GeluApproximation = Literal["none", "tanh"]


@dataclass(frozen=True)
class BaSConfig:
    """Everything that fixes the shape and behaviour of one BaS network.

    ``blocks`` is (n1, n2, n3) as in the paper: n2 blocks in encoder stage 2 and
    decoder stage 1, n3 in encoder stage 3, n1 in decoder stage 2.
    """

    variant: str
    blocks: tuple[int, int, int]
    channels: tuple[int, int, int] = (48, 96, 120)
    image_size: int = 240
    temporal_window: int = 3
    # TempLP's gate: the previous frame's prediction fed back into the stem (model.layers.TempLP).
    temporal_gate: bool = True
    in_channels: int = 3
    mlp_ratio: int = 4
    # Exact GELU lowers to Erf, a Flex op in TFLite; tanh GELU stays builtin everywhere.
    gelu_approximate: GeluApproximation = "tanh"
    # Reproduce the public code's two quirks (scrambled position embedding, normalised head).
    legacy: bool = False
    # What a frame becomes before the network sees it: training, evaluation and every
    # runtime apply it (model.preprocessing), and each artifact's manifest records it.
    preprocessing: Preprocessing = DEFAULT_PREPROCESSING

    def __post_init__(self) -> None:
        if self.image_size <= 0 or self.image_size % 16:
            raise ConfigError(
                f"image_size must be a positive multiple of 16, got {self.image_size}"
            )
        if self.temporal_window < 1:
            raise ConfigError(f"temporal_window must be >= 1, got {self.temporal_window}")
        if self.gelu_approximate not in ("none", "tanh"):
            raise ConfigError(
                f"gelu_approximate must be 'none' or 'tanh', got {self.gelu_approximate!r}"
            )

    @property
    def bottleneck_tokens(self) -> int:
        return (self.image_size // 16) ** 2


VARIANTS: dict[str, BaSConfig] = {
    "S": BaSConfig(variant="S", blocks=(1, 3, 3)),
    "L": BaSConfig(variant="L", blocks=(1, 2, 3)),
}


def closest(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """A ' (did you mean X?)' hint for a misspelled choice, or ''."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    if not match and name.upper() in choices:
        match = [name.upper()]
    return f" (did you mean {match[0]!r}?)" if match else ""


def unknown_choice(kind: str, value: str, choices: tuple[str, ...] | list[str]) -> str:
    """The one message for a value not among ``choices``, with a suggestion where one is close."""
    return f"unknown {kind} {value!r}; choose one of {', '.join(choices)}" + closest(value, choices)


def get_config(variant: str, **overrides: object) -> BaSConfig:
    """The registered config of ``variant`` with ``overrides`` applied."""
    if variant not in VARIANTS:
        raise ConfigError(unknown_choice("BaS variant", variant, tuple(VARIANTS)))
    return replace(VARIANTS[variant], **overrides)
