"""Shapes of every form, stream == clip, TempLP identity, export-friendliness, config errors,
weights files that are not checkpoints, and the position embedding resampled across sizes.
"""

from __future__ import annotations

import copy
import json
import math
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save
from torch import nn

from model import BaS, CheckpointError, build_bas, get_config
from model.checkpoint import read_metadata, read_state_dict, resample_position, save_weights
from model.forms import FORMS, example_inputs
from model.layers import SigmoidTanhGELU, with_sigmoid_gelu

SIZE = 64  # any multiple of 16 exercises the same code as 240, faster


def _perturb_temporal(model: BaS, seed: int = 0) -> None:
    """Move TempLP away from its identity initialisation, as training does."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.temporal.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


@pytest.mark.parametrize("variant", ["S", "L"])
def test_shapes_of_every_form(variant: str) -> None:
    model = build_bas(variant, image_size=SIZE).eval()
    with torch.no_grad():
        frame = model(torch.rand(2, 3, SIZE, SIZE))
        clip = model(torch.rand(2, 5, 3, SIZE, SIZE))
        logits, state = model.stream(torch.rand(2, 3, SIZE, SIZE), model.initial_state(2))
    assert frame.shape == (2, 1, SIZE, SIZE)
    assert clip.shape == (2, 5, 1, SIZE, SIZE)
    assert logits.shape == (2, 1, SIZE, SIZE)
    assert state.shape == (2, 2, 49, SIZE // 4, SIZE // 4) == (2, *model.state_shape)


def test_rejects_other_ranks() -> None:
    with pytest.raises(ValueError, match=r"\(B,3,H,W\) or \(B,T,3,H,W\)"):
        build_bas("S", image_size=SIZE)(torch.rand(3, SIZE, SIZE))


@pytest.mark.parametrize("window", [2, 3, 5])
def test_stream_equals_clip(window: int) -> None:
    torch.manual_seed(0)
    model = build_bas("S", image_size=SIZE, temporal_window=window).eval()
    _perturb_temporal(model)
    clip = torch.rand(2, 8, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = model(clip)
        state, steps = model.initial_state(2), []
        for t in range(clip.shape[1]):
            logits, state = model.stream(clip[:, t], state)
            steps.append(logits)
    assert torch.stack(steps, 1).sub(expected).abs().max() <= 1e-5


def test_temporal_mixing_uses_the_past_only() -> None:
    model = build_bas("S", image_size=SIZE).eval()
    _perturb_temporal(model)
    clip = torch.rand(1, 4, 3, SIZE, SIZE)
    changed = clip.clone()
    changed[:, 2] = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        a, b = model(clip), model(changed)
    assert torch.equal(a[:, :2], b[:, :2])  # causal: frames before the change are untouched
    assert not torch.allclose(a[:, 3], b[:, 3])  # frame 3 sees frame 2 through TempLP


def test_frame_form_is_first_step_of_stream_and_one_frame_clip() -> None:
    model = build_bas("L", image_size=SIZE).eval()
    _perturb_temporal(model)
    frame = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        by_frame = model(frame)
        by_clip = model(frame.unsqueeze(1))[:, 0]
        by_stream, _ = model.stream(frame, model.initial_state(1))
    assert by_frame.sub(by_clip).abs().max() <= 1e-5
    assert by_frame.sub(by_stream).abs().max() <= 1e-5


@pytest.mark.parametrize("variant", ["S", "L"])
def test_templp_starts_as_identity(variant: str) -> None:
    """At initialisation every form equals the single-frame network (window 1) frame by frame."""
    torch.manual_seed(1)
    model = build_bas(variant, image_size=SIZE).eval()
    single = build_bas(variant, image_size=SIZE, temporal_window=1).eval()
    weights = {k: v for k, v in model.state_dict().items() if not k.startswith("temporal.")}
    single.load_state_dict(weights)
    clip = torch.rand(1, 4, 3, SIZE, SIZE)
    with torch.no_grad():
        per_frame = torch.stack([single(clip[:, t]) for t in range(4)], 1)
        assert model(clip).sub(per_frame).abs().max() <= 1e-5
        state = model.initial_state(1)
        for t in range(4):
            logits, state = model.stream(clip[:, t], state)
            assert logits.sub(per_frame[:, t]).abs().max() <= 1e-5


def test_weights_from_before_the_gate_load_with_it_closed(tmp_path: Path) -> None:
    """A file of the plain TempLP (stage 2's design, shipped before the gate) computes the same in
    the gated network; a file with only part of the gate is refused."""
    plain = build_bas("S", image_size=SIZE, temporal_gate=False).eval()
    _perturb_temporal(plain)
    path = save_weights(plain, tmp_path / "plain.safetensors", {"variant": "S"})
    gated = build_bas("S", image_size=SIZE, weights=path)
    assert gated.temporal.gated and not plain.temporal.gated
    clip = torch.rand(1, 4, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(gated(clip), plain(clip), atol=1e-5)  # frame by frame vs at once
    partial = {**read_state_dict(path), "temporal.prior.weight": torch.zeros(48, 1, 3, 3)}
    (tmp_path / "partial.safetensors").write_bytes(save(partial))
    with pytest.raises(CheckpointError, match=r"missing keys: temporal\.gate\.bias"):
        build_bas("S", image_size=SIZE, weights=tmp_path / "partial.safetensors")


def test_the_gate_hands_on_the_previous_frames_prediction() -> None:
    """The state's newest entry holds the previous frame's lesion probability per stem cell,
    as the clip form computed it, and the open prior moves the next frame's logits."""
    model = build_bas("S", image_size=SIZE).eval()
    _perturb_temporal(model)
    assert model.state_shape == (2, 49, SIZE // 4, SIZE // 4)
    clip = torch.rand(1, 4, 3, SIZE, SIZE)
    with torch.no_grad():
        logits = model(clip)
        state = model.initial_state(1)
        for t in range(3):
            _, state = model.stream(clip[:, t], state)
        cells = torch.nn.functional.avg_pool2d(torch.sigmoid(logits[:, 2]), 4)
        assert torch.allclose(state[:, -1, 48:], cells, atol=1e-6)
        model.temporal.prior.weight.zero_()
        assert not torch.allclose(model(clip)[:, 3], logits[:, 3])


def test_window_one_has_no_temporal_parameters() -> None:
    model = build_bas("S", image_size=SIZE, temporal_window=1)
    assert not [k for k in model.state_dict() if k.startswith("temporal.")]
    assert model.initial_state(1).shape[1] == 0


@pytest.mark.slow
@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_form_exports_with_static_shapes(form: str) -> None:
    """torch.export (strict) rejects data-dependent control flow and custom autograd functions."""
    model = build_bas("S", image_size=SIZE).eval()
    _perturb_temporal(model)
    wrapper = FORMS[form](model).eval()
    inputs = example_inputs(model, form, steps=3)
    exported = torch.export.export(wrapper, inputs, strict=True)
    ops = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    assert not [op for op in ops if "erf" in op], "exact GELU (erf) would be a Flex op in TFLite"
    with torch.no_grad():
        expected = wrapper(*inputs)
        got = exported.module()(*inputs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = got if isinstance(got, tuple) else (got,)
    for e, g in zip(expected, got, strict=True):
        assert e.sub(g).abs().max() <= 1e-5


def test_config_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="multiple of 16, got 250"):
        get_config("S", image_size=250)
    with pytest.raises(ValueError, match=r"unknown BaS variant 's'.*did you mean 'S'"):
        build_bas("s")
    with pytest.raises(ValueError, match="temporal_window must be >= 1"):
        get_config("L", temporal_window=0)


def test_configs_are_frozen() -> None:
    config = get_config("S")
    with pytest.raises(AttributeError):
        config.image_size = 320  # type: ignore[misc]


def test_sigmoid_gelu_rewrite_is_the_same_function() -> None:
    model = build_bas("S", image_size=64).eval()
    rewritten = with_sigmoid_gelu(copy.deepcopy(model))
    assert not any(isinstance(m, nn.GELU) for m in rewritten.modules())
    assert sum(isinstance(m, SigmoidTanhGELU) for m in rewritten.modules()) == sum(
        isinstance(m, nn.GELU) for m in model.modules()
    )
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(rewritten(x), model(x), rtol=0, atol=1e-5)


class _Payload:
    """A pickle that would create ``marker`` if it were ever unpickled with code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _safetensors_bytes() -> bytes:
    return save({"position": torch.zeros(1, 16, 120)}, metadata={"variant": "S"})


# Each writes one file (or folder) at ``path`` that is not a tensor checkpoint.
NOT_CHECKPOINTS = {
    "empty": lambda path: path.write_bytes(b""),
    "text": lambda path: path.write_text("hello\n"),
    "abc": lambda path: path.write_bytes(b"abc"),
    "q": lambda path: path.write_bytes(b"q"),
    "r": lambda path: path.write_bytes(b"r"),
    "random": lambda path: path.write_bytes(
        bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).tolist())
    ),
    "truncated-safetensors": lambda path: path.write_bytes(_safetensors_bytes()[:-100]),
    "truncated-header": lambda path: path.write_bytes(_safetensors_bytes()[:20]),
    "json": lambda path: path.write_text(json.dumps({"position": [[0.0] * 4]})),
    "png": lambda path: path.write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(17)),
    "directory": lambda path: path.mkdir(),
    "pickle-reduce": lambda path: path.write_bytes(
        pickle.dumps({"position": _Payload(path.with_name("ran"))})
    ),
    "torch-save-reduce": lambda path: torch.save(
        {"position": torch.zeros(1), "x": _Payload(path.with_name("ran"))}, path
    ),
}


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
@pytest.mark.parametrize("case", sorted(NOT_CHECKPOINTS))
def test_files_that_are_not_checkpoints_get_one_line(
    case: str, suffix: str, tmp_path: Path
) -> None:
    """Whatever the file holds, the reader refuses it in one line naming it, and runs nothing."""
    path = tmp_path / f"weights{suffix}"
    NOT_CHECKPOINTS[case](path)
    loads = [read_state_dict, lambda p: build_bas("S", SIZE, weights=p)]
    if "reduce" not in case:  # a pickle has no metadata to read: read_metadata gives {}
        loads.append(read_metadata)
    for load in loads:
        with pytest.raises(CheckpointError) as info:
            load(path)
        message = str(info.value)
        assert message.startswith(f"{path} is not a safetensors or PyTorch checkpoint: ")
        assert "\n" not in message and len(message) < 300, message
    assert not (tmp_path / "ran").exists()


def test_a_checkpoint_is_read_by_its_content_not_its_suffix(tmp_path: Path) -> None:
    model = build_bas("S", image_size=SIZE)
    path = save_weights(model, tmp_path / "weights.bin", {"variant": "S"})
    assert read_metadata(path)["variant"] == "S"
    torch.save(model.state_dict(), tmp_path / "weights.safetensors")
    for file in (path, tmp_path / "weights.safetensors"):
        loaded = build_bas("S", SIZE, weights=file)
        torch.testing.assert_close(loaded.state_dict(), model.state_dict(), rtol=0, atol=0)


def _smooth(side: int, channels: int = 8) -> torch.Tensor:
    """A (1, side*side, C) embedding sampling smooth functions at the token centres."""
    centres = (torch.arange(side) + 0.5) / side
    y, x = (t[..., None] for t in torch.meshgrid(centres, centres, indexing="ij"))
    k = torch.arange(channels).float()
    values = torch.sin(2 * math.pi * (0.4 * x + 0.3 * y) + k) * torch.cos(0.5 * math.pi * y)
    return values.reshape(1, side * side, channels)


def test_resampling_to_the_same_grid_is_the_identity() -> None:
    position = build_bas("S").position.detach()  # 240: 15 x 15 tokens
    assert torch.equal(resample_position(position, 15), position)


@pytest.mark.parametrize("side", [12, 16, 20])
def test_a_smooth_embedding_resamples_to_the_resampled_function(side: int) -> None:
    """Row-major tokens, bicubic: x and y are not swapped, and values land where they belong."""
    resampled = resample_position(_smooth(15), side)
    assert resampled.shape == (1, side * side, 8)
    assert resampled.sub(_smooth(side)).abs().max() < 0.03


def test_resampling_there_and_back_is_close_to_the_original() -> None:
    there_and_back = resample_position(resample_position(_smooth(15), 16), 15)
    assert there_and_back.sub(_smooth(15)).abs().max() < 0.01


def test_own_weights_load_at_another_size_with_a_resampled_embedding(tmp_path: Path) -> None:
    trained = build_bas("S", image_size=SIZE)
    path = save_weights(trained, tmp_path / "s.safetensors", {"variant": "S"})
    model = build_bas("S", image_size=SIZE + 32, weights=path)
    expected = resample_position(trained.position.detach(), (SIZE + 32) // 16)
    torch.testing.assert_close(model.position.detach(), expected, rtol=0, atol=0)
    assert model(torch.rand(1, 3, SIZE + 32, SIZE + 32)).shape == (1, 1, SIZE + 32, SIZE + 32)
