"""Export-time substitutions that keep XNNPACK in channels-last (NHWC) from input to output.

ExecuTorch's XNNPACK delegate runs convolutions and means in NHWC and inserts a layout
copy (``_to_copy``) wherever an op needs NCHW or mixes layouts. With BaS as written, each
fp32 GELU paid four full-tensor transposes (a multiply by a Python scalar is a 0-d
constant, which forces the elementwise op back to NCHW), each one-group norm eight small
ones (a reshape between its two means, its scalar ``eps``, its affine views), and
TempLP's frame weight stayed on the portable kernels. Each module here computes the same
function as the one it replaces, from convolutions and elementwise ops on 4-D tensors
only, so the whole network is one NHWC delegate call. ``converters.executorch`` uses
these on a copy of the job's module; ``converters.tflite`` (LiteRT runs XNNPACK too) uses
``ChannelsLastStream`` for its stream form.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from model.forms import StreamForm
from model.layers import (
    SQRT_8_OVER_PI,
    AdaptiveSemanticEnhancer,
    LocalContextIntegrator,
    SigmoidTanhGELU,
    SingleGroupNorm,
    TempLP,
)


def _channel_affine(scale: torch.Tensor, shift: torch.Tensor) -> nn.Conv2d:
    """``x * scale[c] + shift[c]`` as a depthwise 1x1 convolution (XNNPACK's multiply-add)."""
    channels = scale.numel()
    conv = nn.Conv2d(channels, channels, 1, groups=channels)
    with torch.no_grad():
        conv.weight.copy_(scale.detach().reshape(channels, 1, 1, 1))
        conv.bias.copy_(shift.detach().reshape(channels))
    return conv


class NhwcGELU(nn.Module):
    """``x * sigmoid(x * (a + b x^2))``: SigmoidTanhGELU's function, its constants in a conv.

    ``a + b x^2`` is a depthwise 1x1 convolution (weight b, bias a), so no scalar
    constant meets the NHWC activation.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.poly = _channel_affine(
            torch.full((channels,), SQRT_8_OVER_PI * 0.044715),
            torch.full((channels,), SQRT_8_OVER_PI),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x * self.poly(x * x))


class NhwcSingleGroupNorm(nn.Module):
    """SingleGroupNorm with its channel means as 1x1 convolutions and its affine as one.

    Mean over space (a global average pool in NHWC), then over channels as a 1x1
    convolution with weights 1/C (no reshape, so no layout copy); ``eps`` is the
    variance convolution's bias and the affine a depthwise 1x1 convolution.
    """

    def __init__(self, norm: SingleGroupNorm) -> None:
        super().__init__()
        channels = norm.weight.numel()
        self.mean = nn.Conv2d(channels, 1, 1, bias=False)
        self.variance = nn.Conv2d(channels, 1, 1)
        with torch.no_grad():
            self.mean.weight.fill_(1.0 / channels)
            self.variance.weight.fill_(1.0 / channels)
            self.variance.bias.fill_(norm.eps)
        self.affine = _channel_affine(norm.weight, norm.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - self.mean(x.mean(dim=(2, 3), keepdim=True))
        spread = self.variance((centred * centred).mean(dim=(2, 3), keepdim=True))
        return self.affine(centred * torch.rsqrt(spread))


class FoldedLCI(nn.Module):
    """LCI with its leading BatchNorm folded into the first pointwise convolution.

    ``pw(s * x + t) = (W s) x + W t``; the BatchNorm after the depthwise convolution is
    already fused by XNNPACK's own pass.
    """

    def __init__(self, lci: LocalContextIntegrator) -> None:
        super().__init__()
        bn, pw = lci.norm_in, lci.pw_in
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        weight = pw.weight.detach()
        self.pw_in = nn.Conv2d(pw.in_channels, pw.out_channels, 1)
        with torch.no_grad():
            self.pw_in.weight.copy_(weight * scale.view(1, -1, 1, 1))
            self.pw_in.bias.copy_((weight[:, :, 0, 0] * shift.view(1, -1)).sum(dim=1))
        self.dw, self.norm_mid, self.pw_out = lci.dw, lci.norm_mid, lci.pw_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw_out(self.norm_mid(self.dw(self.pw_in(x))))


def folded_templp(temporal: TempLP, frames: int) -> nn.Conv2d:
    """TempLP's ``x_t + P(sum_k w_k x_{t-k})`` over its first ``frames`` terms as one 1x1 conv.

    Its input is the frames' features concatenated on channels, newest first; its weight
    ``[I + P diag(w_0), P diag(w_1), ...]``.
    """
    channels = temporal.project.weight.shape[0]
    project = temporal.project.weight.detach()[:, :, 0, 0]
    blocks = [project * temporal.frame_weights[k].detach().view(1, -1) for k in range(frames)]
    blocks[0] = blocks[0] + torch.eye(channels)
    fold = nn.Conv2d(frames * channels, channels, 1, bias=False)
    with torch.no_grad():
        fold.weight.copy_(torch.cat(blocks, dim=1).view(channels, frames * channels, 1, 1))
    return fold


class FoldedTempLP(TempLP):
    """TempLP whose single-frame step is one 1x1 convolution, ``(I + W diag(w_0)) x``.

    The frame form's ``x + P(w_0 * x)`` otherwise selects ``w_0`` on the portable
    kernels at every call; everything else (the clip, the stream step) is TempLP's own.
    """

    def __init__(self, temporal: TempLP) -> None:
        super().__init__(temporal.channels, temporal.window, temporal.gated)
        self.load_state_dict(temporal.state_dict())
        self.fold = folded_templp(temporal, 1)

    def single(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fold(feats)


# Canonical state (B, K-1, C, h, w) -> the channels-last state of ChannelsLastStream.
STATE_CHANNELS_LAST = (0, 1, 3, 4, 2)


class ChannelsLastStream(nn.Module):
    """The stream form with its state channels-last, (B, K-1, h, w, S), and TempLP folded.

    onnx2tf computes a state in its ONNX layout: LiteRT's stream graph transposed every
    past frame, the current one and the new state around 5-D multiplies, slices and a
    concatenation (stream 1.14 x the frame form's latency, one thread). Channels-last, a
    past frame is a contiguous slice, and TempLP's step is one 1x1 convolution over the
    frames' features concatenated on channels (``folded_templp``): 1.04 x.
    """

    def __init__(self, stream: StreamForm) -> None:
        super().__init__()
        self.model = stream.model
        self.window = self.model.temporal.window
        if self.window < 2:
            raise ValueError("a stream form without history has no state to lay out")
        self.fold = folded_templp(self.model.temporal, self.window)

    def forward(
        self, frame: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        temporal = self.model.temporal
        current = self.model.stem(frame)
        entries = [state[:, j].permute(0, 3, 1, 2) for j in reversed(range(self.window - 1))]
        past = [entry[:, : temporal.channels] for entry in entries] if temporal.gated else entries
        mixed = self.fold(torch.cat([current, *past], dim=1))
        if temporal.gated:
            mixed = mixed + temporal.prior_term(current, entries[0][:, temporal.channels :])
        logits = self.model.decode(mixed)
        entry = temporal.entry(current, logits).permute(0, 2, 3, 1).unsqueeze(1)
        return logits, torch.cat([state[:, 1:], entry], dim=1)


def _replace(module: nn.Module, swap, done: list[str]) -> None:
    for name, child in module.named_children():
        new = swap(child)
        if new is None:
            _replace(child, swap, done)
        else:
            setattr(module, name, new)
            done.append(type(child).__name__)


def _float_swap(child: nn.Module) -> nn.Module | None:
    if isinstance(child, SingleGroupNorm):
        return NhwcSingleGroupNorm(child)
    if isinstance(child, LocalContextIntegrator):
        return FoldedLCI(child)
    if isinstance(child, TempLP) and child.window > 1:
        return FoldedTempLP(child)
    if isinstance(child, AdaptiveSemanticEnhancer) and isinstance(child.act, SigmoidTanhGELU):
        child.act = NhwcGELU(child.expand.out_channels)  # in place: it needs the channel count
    return None


class SiLUProduct(nn.Module):
    """SiLU as ``x * sigmoid(x)``: XNNPACK delegates no fp16 SiLU; the fp16 graph split there."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class HalfPrecision(nn.Module):
    """fp32 in and out, fp16 inside: the file takes and returns what the fp32 one does."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.half()

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        result = self.module(*(x.half() for x in inputs))
        if isinstance(result, tuple):
            return tuple(r.float() for r in result)
        return result.float()


TRANSFORMS = {
    "SiLU": "SiLU as x * sigmoid(x) (XNNPACK has no fp16 SiLU)",
    "NhwcGELU": "tanh-GELU as x * sigmoid(x * (a + b x^2)), a and b in a depthwise 1x1 conv",
    "SingleGroupNorm": "one-group norm: channel means and eps as 1x1 convs, affine as a "
    "depthwise 1x1 conv (no reshape)",
    "LocalContextIntegrator": "LCI's leading BatchNorm folded into its first pointwise conv",
    "TempLP": "TempLP's single-frame step folded into one 1x1 conv (I + W diag(w_0))",
}


def nhwc_float_module(module: nn.Module) -> tuple[nn.Module, list[str]]:
    """A copy of an fp32 export wrapper rewritten for NHWC XNNPACK; the rewrites it made.

    Same function, different float rounding (parity gates check the artifact).
    """
    rewritten = copy.deepcopy(module).eval()
    done: list[str] = []
    _replace(rewritten, _float_swap, done)
    if any(isinstance(m, NhwcGELU) for m in rewritten.modules()):
        done.append("NhwcGELU")
    return rewritten, [TRANSFORMS[name] for name in dict.fromkeys(done) if name in TRANSFORMS]


def nhwc_half_module(module: nn.Module) -> tuple[nn.Module, list[str]]:
    """``nhwc_float_module``'s rewrite computing in fp16 behind fp32 inputs and outputs."""
    rewritten, rewrites = nhwc_float_module(module)
    done: list[str] = []
    _replace(rewritten, lambda child: SiLUProduct() if isinstance(child, nn.SiLU) else None, done)
    if done:
        rewrites.append(TRANSFORMS["SiLU"])
    return HalfPrecision(rewritten).eval(), rewrites
