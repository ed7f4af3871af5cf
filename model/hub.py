"""The weights this project ships, each pinned by sha256, and ``build_bas`` to load them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from .bas import BaS
from .checkpoint import (
    CheckpointError,
    load_strict,
    read_metadata,
    read_state_dict,
    resample_position,
    sha256,
)
from .config import get_config

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class ShippedWeights:
    """A trained checkpoint in ``model/weights/`` and how it was made."""

    variant: str
    filename: str
    sha256: str
    recipe: str  # the training config that reproduces it

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.filename


SHIPPED: dict[str, ShippedWeights] = {
    "S": ShippedWeights(
        variant="S",
        filename="bas_s.safetensors",
        sha256="96f0be0ee513027ec2bafc1d03841f7f1352b27ce1a2d700bb9edb10c5577b3e",
        recipe="configs/bas_s_stage3.yml",
    ),
    "L": ShippedWeights(
        variant="L",
        filename="bas_l.safetensors",
        sha256="941d7007a2482e0cd0879b0a7b67fbbd5196c585f4a71bbbf0e7fcdeee4af56d",
        recipe="configs/bas_l_stage3.yml",
    ),
}


def shipped_weights(variant: str) -> Path:
    """Path of the shipped weights of ``variant``, after checking their sha256."""
    get_config(variant)  # unknown variant -> clear error
    entry = SHIPPED.get(variant)
    if entry is None or not entry.path.is_file():
        raise CheckpointError(f"no shipped weights for BaS-{variant} in {WEIGHTS_DIR}")
    digest = sha256(entry.path)
    if digest != entry.sha256:
        raise CheckpointError(
            f"{entry.path} is corrupt: sha256 {digest[:12]}... != registered {entry.sha256[:12]}..."
        )
    return entry.path


def resolve_weights(variant: str, weights: str | Path) -> Path:
    """The file behind a ``--weights`` value: "shipped" (checked) or a path as given."""
    return shipped_weights(variant) if str(weights) == "shipped" else Path(weights)


GATE_PREFIXES = ("temporal.gate.", "temporal.prior.")


def fit_position(
    state: dict[str, torch.Tensor], model: BaS, source: str
) -> dict[str, torch.Tensor]:
    """``state`` with its position embedding resampled to ``model``'s token grid.

    Our layout adds the embedding to row-major bottleneck tokens, so it is an image over
    the H/16 x W/16 grid and weights trained at 240 (15 x 15) run at any multiple of 16.
    The legacy layout scrambles tokens and channels (``BaSConfig.legacy``): no grid, no
    resampling, only the trained size.
    """
    position = state.get("position")
    expected = model.position.shape
    if position is None or position.dim() != 3 or position.shape == expected:
        return state
    side = math.isqrt(position.shape[1])
    if position.shape[2] != expected[2] or side * side != position.shape[1]:
        return state  # not a square grid of our width: check_keys names the mismatch
    if model.config.legacy:
        raise CheckpointError(
            f"{source}: the public code's layout only works at its trained image size "
            f"{side * 16}, not {model.config.image_size} (its position embedding has no grid)"
        )
    side = model.config.image_size // 16
    return {**state, "position": resample_position(position, side)}


def with_closed_gate(state: dict[str, torch.Tensor], model: BaS) -> dict[str, torch.Tensor]:
    """``state`` with TempLP's gate parts at their initial zeros where a file predates them.

    A zero prior adds nothing, so the network computes what the file's did; only the
    whole gate is filled in, never a part of it (``check_keys`` names a partial one).
    """
    gate = {k: v for k, v in model.state_dict().items() if k.startswith(GATE_PREFIXES)}
    if not gate or any(k in state for k in gate):
        return state
    return {**state, **gate}


def build_bas(
    variant: str,
    image_size: int = 240,
    temporal_window: int = 3,
    weights: str | Path | None = None,
    **overrides: object,
) -> BaS:
    """Build BaS-``variant``; ``weights`` is None (random), "shipped", or a safetensors path.

    Weights written by this project carry their variant in their metadata, so loading a
    file of the other variant fails with a message that says so. A temporal window of 1
    disables TempLP; weights trained with a longer window then load without it. Weights
    trained at another image size get their position embedding resampled (``fit_position``).
    """
    config = get_config(
        variant, image_size=image_size, temporal_window=temporal_window, **overrides
    )
    model = BaS(config)
    if weights is None:
        return model
    path = resolve_weights(variant, weights)
    state = read_state_dict(path)
    found = read_metadata(path).get("variant")
    if found is not None and found != variant:
        raise CheckpointError(f"{path} holds BaS-{found} weights, not BaS-{variant}")
    if temporal_window == 1:
        state = {k: v for k, v in state.items() if not k.startswith("temporal.")}
    state = fit_position(with_closed_gate(state, model), model, str(path))
    load_strict(model, state, str(path))
    return model.eval()
