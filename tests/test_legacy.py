"""Loading checkpoints of the public BaS code: numerics against an independent reference, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from model import BaS, CheckpointError, build_bas, get_config, load_public_checkpoint
from model.checkpoint import save_weights
from model.legacy import canonical_to_public_key
from tests.public_reference import public_forward

SIZE = 64


def public_state_dict(variant: str, seed: int = 0, size: int = SIZE) -> dict[str, torch.Tensor]:
    """A random checkpoint in the public code's layout, with non-trivial norm statistics."""
    torch.manual_seed(seed)
    donor = BaS(get_config(variant, image_size=size, legacy=True, temporal_window=1))
    state = {}
    for key, value in donor.state_dict().items():
        if key.endswith("num_batches_tracked"):
            new = value
        elif key.endswith("running_var"):
            new = torch.rand_like(value) + 0.5
        else:
            new = torch.randn_like(value) * (0.2 if value.dim() > 1 else 0.5)
        state[canonical_to_public_key(key)] = new
    return state


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("public")
    paths = {}
    for variant in ("S", "L"):
        state = public_state_dict(variant)
        paths[variant] = folder / f"{variant}.safetensors"
        save_file(state, paths[variant])
        torch.save(state, folder / f"{variant}.bin")
    return paths


@pytest.mark.parametrize("variant", ["S", "L"])
def test_logits_match_public_network_in_every_form(checkpoints, variant: str) -> None:
    state = public_state_dict(variant)
    clip = torch.rand(2, 3, 3, SIZE, SIZE)
    with torch.no_grad():
        reference = torch.stack([public_forward(state, clip[:, t]) for t in range(3)], 1)
        for path in (checkpoints[variant], checkpoints[variant].with_suffix(".bin")):
            model = load_public_checkpoint(path, variant)
            assert model.config.legacy and model.config.image_size == SIZE
            assert model(clip[:, 0]).sub(reference[:, 0]).abs().max() <= 1e-4
            assert model(clip).sub(reference).abs().max() <= 1e-4
            state_t = model.initial_state(2)
            for t in range(3):
                logits, state_t = model.stream(clip[:, t], state_t)
                assert logits.sub(reference[:, t]).abs().max() <= 1e-4


def test_canonical_mode_differs_from_legacy(checkpoints) -> None:
    """The quirks matter: without them the same weights give other logits."""
    legacy = load_public_checkpoint(checkpoints["S"], "S")
    plain = BaS(get_config("S", image_size=SIZE, gelu_approximate="none"))
    weights = {k: v for k, v in legacy.state_dict().items() if not k.startswith("head.norm")}
    plain.load_state_dict(weights)
    x = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        assert legacy(x).sub(plain.eval()(x)).abs().max() > 1e-2


def test_wrong_variant_is_named(checkpoints) -> None:
    with pytest.raises(CheckpointError, match=r"\(1, 3, 3\) but variant L .*looks like variant S"):
        load_public_checkpoint(checkpoints["S"], "L")


def test_missing_unexpected_and_misshapen_keys_are_named(tmp_path: Path) -> None:
    state = public_state_dict("S")
    del state["Encoder.conv2.norm.bias"]
    state["Encoder.extra.weight"] = torch.zeros(3)
    state["Decoder.conv1.downsample.bias"] = torch.zeros(2)
    path = tmp_path / "broken.safetensors"
    save_file(state, path)
    with pytest.raises(CheckpointError) as info:
        load_public_checkpoint(path, "S")
    message = str(info.value)
    assert "missing keys: Encoder.conv2.norm.bias" in message
    assert "unexpected keys: Encoder.extra.weight" in message
    assert "Decoder.conv1.downsample.bias (2,) != (1,)" in message
    assert "\n" not in message


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"Encoder.conv1.downsample.weight": torch.zeros(1), "code": print}, path)
    with pytest.raises(CheckpointError, match="cannot read weights file"):
        load_public_checkpoint(path, "S")


def test_corrupt_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read weights file"):
        load_public_checkpoint(bad, "S")
    with pytest.raises(CheckpointError, match="not found"):
        load_public_checkpoint(tmp_path / "absent.bin", "S")


def test_own_weights_of_other_variant_are_refused(tmp_path: Path) -> None:
    path = save_weights(
        build_bas("L", image_size=SIZE), tmp_path / "l.safetensors", {"variant": "L"}
    )
    with pytest.raises(CheckpointError, match="holds BaS-L weights, not BaS-S"):
        build_bas("S", image_size=SIZE, weights=path)
    loaded = build_bas("L", image_size=SIZE, weights=path)
    assert not loaded.training
