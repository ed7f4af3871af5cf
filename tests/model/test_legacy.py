"""Loading checkpoints of the public BaS code: numerics against an independent reference, errors.

The reference (``tests/support/public_reference.py``) restates the authors' ``src/bas.py`` module by
module with their state-dict keys, so the random "public" checkpoints here are made from it,
in the authors' layout, and not from our own network.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from model import BaS, CheckpointError, build_bas, get_config, load_public_checkpoint
from model.checkpoint import save_weights
from model.legacy import canonical_to_public_key
from tests.support.public_reference import PUBLIC_BLOCKS, Swish, public_bas, public_bas_for

SIZE = 64
# (image size, batch, clip length): the authors' 240x240 and a small size, kept light for CI.
FORM_CASES = [(240, 1, 3), (SIZE, 2, 3)]


def public_state_dict(variant: str, seed: int = 0, size: int = SIZE) -> dict[str, torch.Tensor]:
    """A random checkpoint of the authors' network, with non-trivial norm statistics."""
    torch.manual_seed(seed)
    state = {}
    for key, value in public_bas(variant, size).state_dict().items():
        if key.endswith("num_batches_tracked"):
            new = value
        elif key.endswith("running_var"):
            new = torch.rand_like(value) + 0.5
        else:
            new = torch.randn_like(value) * (0.2 if value.dim() > 1 else 0.5)
        state[key] = new
    return state


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], Path]:
    """Public-layout checkpoints per (variant, size), as .safetensors and, beside it, .bin."""
    folder = tmp_path_factory.mktemp("public")
    paths = {}
    for variant in ("S", "L"):
        for size in sorted({size for size, _, _ in FORM_CASES}):
            state = public_state_dict(variant, size=size)
            path = paths[variant, size] = folder / f"{variant}_{size}.safetensors"
            save_file(state, path)
            torch.save(state, path.with_suffix(".bin"))
    return paths


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return a.sub(b).abs().max().item()


@pytest.mark.parametrize(("size", "batch", "steps"), FORM_CASES)
@pytest.mark.parametrize("variant", ["S", "L"])
def test_logits_match_public_network_in_every_form(
    checkpoints, variant: str, size: int, batch: int, steps: int
) -> None:
    reference_net = public_bas_for(public_state_dict(variant, size=size))  # strict load
    clip = torch.rand(batch, steps, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = torch.stack([reference_net(clip[:, t]) for t in range(steps)], 1)
        for path in (checkpoints[variant, size], checkpoints[variant, size].with_suffix(".bin")):
            model = load_public_checkpoint(path, variant)
            assert model.config.legacy and model.config.image_size == size
            assert _max_diff(model(clip[:, 0]), reference[:, 0]) <= 1e-4, "frame form"
            assert _max_diff(model(clip), reference) <= 1e-4, "clip form"
            state_t = model.initial_state(batch)
            for t in range(steps):
                logits, state_t = model.stream(clip[:, t], state_t)
                assert _max_diff(logits, reference[:, t]) <= 1e-4, f"stream form, step {t}"


@pytest.mark.parametrize("variant", ["S", "L"])
def test_key_layout_is_the_authors(variant: str) -> None:
    """Our legacy key mapping names exactly the reference's parameters and buffers."""
    ours = BaS(get_config(variant, image_size=SIZE, legacy=True, temporal_window=1))
    mapped = {canonical_to_public_key(k): tuple(v.shape) for k, v in ours.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in public_bas(variant, SIZE).state_dict().items()}
    assert mapped == theirs


def test_canonical_mode_differs_from_legacy(checkpoints) -> None:
    """The quirks matter: without them the same weights give other logits."""
    legacy = load_public_checkpoint(checkpoints["S", SIZE], "S")
    plain = BaS(get_config("S", image_size=SIZE, gelu_approximate="none"))
    weights = {k: v for k, v in legacy.state_dict().items() if not k.startswith("head.norm")}
    plain.load_state_dict(weights)
    x = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        assert legacy(x).sub(plain.eval()(x)).abs().max() > 1e-2


# The activation of each stage, pinned by name. The authors' LGL(shallow=True) is exact GELU
# and LGL(shallow=False) is Swish; their Decoder.block2 (96 channels) runs first in the
# decoder, their Decoder.block1 (48 channels) last.
STAGE_ACTIVATIONS = {"stage2": "gelu", "stage3": "silu", "decoder1": "silu", "decoder2": "gelu"}
PUBLIC_ACTIVATIONS = {
    "Encoder.block2": "gelu",
    "Encoder.block3": "swish",
    "Decoder.block2": "swish",
    "Decoder.block1": "gelu",
}
PUBLIC_STAGE = {
    "stage2": "Encoder.block2",
    "stage3": "Encoder.block3",
    "decoder1": "Decoder.block2",
    "decoder2": "Decoder.block1",
}


# Which entry of ``blocks`` sizes each stage: (n1, n2, n3) in our config, as in config.yaml.
STAGE_BLOCKS = {"stage2": 1, "stage3": 2, "decoder1": 1, "decoder2": 0}
PUBLIC_STAGE_BLOCKS = {
    "Encoder.block2": 1,
    "Encoder.block3": 2,
    "Decoder.block2": 1,
    "Decoder.block1": 0,
}


def _kind(act: nn.Module) -> str:
    """'gelu' / 'gelu-tanh' / 'silu' / 'swish' for the activation modules in use, else its type."""
    if type(act) is nn.GELU:
        return "gelu" if act.approximate == "none" else f"gelu-{act.approximate}"
    if type(act) is nn.SiLU:
        return "silu"
    if type(act) is Swish:
        return "swish"
    return type(act).__name__


@pytest.mark.parametrize("mode", ["canonical", "legacy"])
@pytest.mark.parametrize("variant", ["S", "L"])
def test_stage_activations_are_pinned(checkpoints, variant: str, mode: str) -> None:
    """Every block of every stage has the authors' activation (tanh GELU when canonical)."""
    if mode == "canonical":
        model, gelu = build_bas(variant, image_size=SIZE), "gelu-tanh"
    else:
        model, gelu = load_public_checkpoint(checkpoints[variant, SIZE], variant), "gelu"
    for stage, act in STAGE_ACTIVATIONS.items():
        blocks = getattr(model, stage)
        assert len(blocks) == get_config(variant).blocks[STAGE_BLOCKS[stage]], stage
        found = [_kind(block.ase.act) for block in blocks]
        assert found == [gelu if act == "gelu" else act] * len(blocks), (stage, found)


@pytest.mark.parametrize("variant", ["S", "L"])
def test_reference_activations_follow_the_authors(variant: str) -> None:
    """The reference's LGL stages: shallow ones exact GELU, the others Swish."""
    reference = public_bas(variant, SIZE)
    for prefix, act in PUBLIC_ACTIVATIONS.items():
        blocks = reference.get_submodule(prefix)
        assert len(blocks) == PUBLIC_BLOCKS[variant][PUBLIC_STAGE_BLOCKS[prefix]], prefix
        found = [_kind(block.mlp2.mlp_act) for block in blocks]
        assert found == [act] * len(blocks), (prefix, found)
    x = torch.linspace(-6, 6, 101)
    assert torch.equal(Swish()(x), x * torch.sigmoid(x))


def test_each_stage_has_the_activation_of_its_public_stage() -> None:
    """Tie the pin to the key mapping: a stage's weights go to a public stage of the same kind."""
    same = {"gelu": "gelu", "swish": "silu"}
    for stage, act in STAGE_ACTIVATIONS.items():
        public = canonical_to_public_key(f"{stage}.0.ase.expand.weight")
        assert public == f"{PUBLIC_STAGE[stage]}.0.mlp2.mlp_layer_0.weight"
        assert same[PUBLIC_ACTIVATIONS[PUBLIC_STAGE[stage]]] == act, stage


def test_wrong_variant_is_named(checkpoints) -> None:
    with pytest.raises(CheckpointError, match=r"\(1, 3, 3\) but variant L .*looks like variant S"):
        load_public_checkpoint(checkpoints["S", SIZE], "L")


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
    with pytest.raises(CheckpointError, match="weights-only unpickler refused it"):
        load_public_checkpoint(path, "S")


def test_corrupt_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="is not a safetensors or PyTorch checkpoint"):
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


def test_public_layout_works_only_at_its_trained_size(checkpoints, tmp_path: Path) -> None:
    """Its reshape quirk scrambles tokens and channels: no grid to resample the embedding on."""
    path = checkpoints["S", SIZE]
    assert load_public_checkpoint(path, "S", image_size=SIZE).config.image_size == SIZE
    with pytest.raises(CheckpointError) as info:
        load_public_checkpoint(path, "S", image_size=SIZE + 16)
    message = str(info.value)
    assert message == (
        f"{path}: the public code's layout only works at its trained image size {SIZE}, "
        f"not {SIZE + 16} (its position embedding has no grid)"
    )
    # the same refusal for our file of a legacy network, built at another size
    legacy = load_public_checkpoint(path, "S")
    ours = save_weights(legacy, tmp_path / "legacy.safetensors", {"variant": "S"})
    overrides = {"legacy": True, "gelu_approximate": "none"}
    with pytest.raises(CheckpointError, match="only works at its trained image size 64, not 96"):
        build_bas("S", image_size=SIZE + 32, weights=ours, **overrides)
    assert build_bas("S", image_size=SIZE, weights=ours, **overrides).config.legacy
