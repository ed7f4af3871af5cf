"""Loading checkpoints trained with the authors' public BaS code.

That network has no temporal module, an exact-GELU MLP, and two quirks that change
its outputs (see ``BaSConfig.legacy``): the bottleneck position embedding is added to
tokens that are reshaped back without a transpose, and the head ends in a one-channel
GroupNorm. A loaded checkpoint gets a BaS built with ``legacy=True`` and exact GELU,
with TempLP at its identity initialisation, so every form reproduces the public
single-frame network.
"""

from __future__ import annotations

from pathlib import Path

from .bas import BaS
from .checkpoint import CheckpointError, check_keys, count_blocks, read_state_dict
from .config import VARIANTS, get_config

_BLOCK_PARTS = {
    "cpe1.conditional_positional_encoding.weight": "ali.weight",
    "LocalAgg.bn.": "lci.norm_in.",
    "LocalAgg.pointwise_conv_0.": "lci.pw_in.",
    "LocalAgg.depthwise_conv.": "lci.dw.",
    "LocalAgg.pointwise_prenorm_1.": "lci.norm_mid.",
    "LocalAgg.pointwise_conv_1.": "lci.pw_out.",
    "mlp2.mlp_layer_0.": "ase.expand.",
    "mlp2.mlp_layer_1.": "ase.project.",
}

_MODULES = {
    "Encoder.position_embeddings": "position",
    "Encoder.conv1.downsample.": "stem.conv.",
    "Encoder.conv1.norm.": "stem.norm.",
    "Encoder.conv2.downsample.": "down2.conv.",
    "Encoder.conv2.norm.": "down2.norm.",
    "Encoder.conv3.downsample.": "down3.conv.",
    "Encoder.conv3.norm.": "down3.norm.",
    "Encoder.block2.": "stage2.",
    "Encoder.block3.": "stage3.",
    "Decoder.conv3.downsample.": "up1.conv.",
    "Decoder.conv3.norm.": "up1.norm.",
    "Decoder.block2.": "decoder1.",
    "Decoder.conv2.downsample.": "up2.conv.",
    "Decoder.conv2.norm.": "up2.norm.",
    "Decoder.block1.": "decoder2.",
    "Decoder.conv1.downsample.": "head.conv.",
    "Decoder.conv1.norm.": "head.norm.",
}


_STAGES = ("Encoder.block2.", "Encoder.block3.", "Decoder.block2.", "Decoder.block1.")


def _translate(key: str, modules: dict[str, str], parts: dict[str, str]) -> str | None:
    for old, new in modules.items():
        if not key.startswith(old):
            continue
        rest = key[len(old) :]
        if old not in _STAGES + _STAGES_CANONICAL:
            return new + rest
        index, _, part = rest.partition(".")
        for part_old, part_new in parts.items():
            if index.isdigit() and part.startswith(part_old):
                return f"{new}{index}.{part_new}{part[len(part_old) :]}"
        return None
    return None


_STAGES_CANONICAL = tuple(_MODULES[s] for s in _STAGES)


def public_to_canonical_key(key: str) -> str | None:
    """Our parameter name for a public-code key, or None if the key is not of its layout."""
    return _translate(key, _MODULES, _BLOCK_PARTS)


def canonical_to_public_key(key: str) -> str | None:
    """The public code's name for one of our parameters, or None if it has no counterpart."""
    return _translate(
        key, {v: k for k, v in _MODULES.items()}, {v: k for k, v in _BLOCK_PARTS.items()}
    )


def _check_variant(keys: list[str], variant: str, path: Path) -> None:
    found = (
        count_blocks(keys, "Decoder.block1"),
        count_blocks(keys, "Encoder.block2"),
        count_blocks(keys, "Encoder.block3"),
    )
    expected = VARIANTS[variant].blocks
    if found == expected:
        return
    match = [name for name, cfg in VARIANTS.items() if cfg.blocks == found]
    hint = f"; it looks like variant {match[0]}" if match else ""
    raise CheckpointError(
        f"{path} has blocks (n1, n2, n3) = {found} but variant {variant} expects {expected}{hint}"
    )


def load_public_checkpoint(
    path: str | Path, variant: str, temporal_window: int = 3, image_size: int | None = None
) -> BaS:
    """A BaS (legacy mode) holding the weights of a checkpoint from the public BaS code.

    ``image_size`` may only be the trained one: that layout's position embedding cannot be
    resampled (see ``model.hub.fit_position``).
    """
    path = Path(path)
    state = read_state_dict(path)
    keys = sorted(state)
    _check_variant(keys, variant, path)
    position = state.get("Encoder.position_embeddings")
    tokens = position.shape[1] if position is not None and position.dim() == 3 else 225
    trained = round(tokens**0.5) * 16
    if image_size is not None and image_size != trained:
        # The reshape quirk scrambles tokens and channels: no grid to resample the embedding on.
        raise CheckpointError(
            f"{path}: the public code's layout only works at its trained image size "
            f"{trained}, not {image_size} (its position embedding has no grid)"
        )
    image_size = trained
    config = get_config(
        variant,
        legacy=True,
        gelu_approximate="none",
        temporal_window=temporal_window,
        image_size=image_size,
    )
    model = BaS(config)
    expected = {canonical_to_public_key(k): v for k, v in model.state_dict().items()}
    expected.pop(None, None)  # TempLP is ours: it keeps its identity initialisation
    check_keys(expected, state, str(path))
    renamed = {public_to_canonical_key(k): v for k, v in state.items()}
    model.load_state_dict({**model.state_dict(), **renamed}, strict=True)
    return model.eval()
