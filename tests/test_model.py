"""Shapes of every form, stream == clip, TempLP identity, export-friendliness, config errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from model import BaS, build_bas, get_config
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
    assert state.shape == (2, 2, 48, SIZE // 4, SIZE // 4) == (2, *model.state_shape)


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


def test_window_one_has_no_temporal_parameters() -> None:
    model = build_bas("S", image_size=SIZE, temporal_window=1)
    assert not [k for k in model.state_dict() if k.startswith("temporal.")]
    assert model.initial_state(1).shape[1] == 0


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
