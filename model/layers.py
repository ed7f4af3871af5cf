"""The building blocks of BaS, each in its export-friendly form (builtin ops only)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def activation(kind: str, gelu_approximate: str) -> nn.Module:
    if kind == "gelu":
        return nn.GELU(approximate=gelu_approximate)
    if kind == "silu":
        return nn.SiLU()
    raise ValueError(f"unknown activation {kind!r}")


class SigmoidTanhGELU(nn.Module):
    """GELU's tanh approximation written as ``x * sigmoid(2z)`` (equal to ``0.5x(1 + tanh z)``).

    For float exports: targets' fused tanh-GELU kernels are coarse (XNNPACK's is off by
    5e-4 on activations of a few tens, which put fp32 artifacts over the 1e-3 logit gate),
    while their sigmoid is within 1e-7. Not for int8: quantizing the cubic's intermediate
    loses what the quantizers' own GELU kernels keep.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(SQRT_8_OVER_PI * (x + 0.044715 * x * x * x))


SQRT_8_OVER_PI = math.sqrt(8 / math.pi)  # 2 * sqrt(2 / pi)


def resize_position(position: torch.Tensor, side: int) -> torch.Tensor:
    """A (1, s*s, C) position embedding of row-major grid tokens, bicubic to ``side`` x ``side``.

    As timm's ``resample_abs_pos_embed`` (antialias off). Differentiable: training's
    low-resolution epochs run the full-size embedding through it.
    """
    _, tokens, channels = position.shape
    old = math.isqrt(tokens)
    if old == side:
        return position
    grid = position.float().reshape(1, old, old, channels).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid, size=(side, side), mode="bicubic", align_corners=False, antialias=False
    )
    return grid.permute(0, 2, 3, 1).reshape(1, side * side, channels).to(position.dtype)


def with_sigmoid_gelu(module: nn.Module) -> nn.Module:
    """Replace every tanh-approximate ``nn.GELU`` in ``module`` by SigmoidTanhGELU, in place."""
    for name, child in module.named_children():
        if isinstance(child, nn.GELU) and child.approximate == "tanh":
            setattr(module, name, SigmoidTanhGELU())
        else:
            with_sigmoid_gelu(child)
    return module


class SingleGroupNorm(nn.Module):
    """GroupNorm with one group, written with reductions that every target delegates.

    ``nn.GroupNorm`` lowers to ops that XNNPACK leaves on ExecuTorch's portable kernels
    and to an InstanceNormalization form that onnx2tf mishandles; this computes the same
    normalisation (same parameters and state-dict keys) from mean and rsqrt. Each mean is
    taken over space, then over channels: targets sum a reduction in one running total,
    and one over C*H*W (230k) values lost 3e-5 of the result on XNNPACK; two short ones
    lose 1e-7.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    @staticmethod
    def _mean(x: torch.Tensor) -> torch.Tensor:
        # Both means over the last two dims: the form XNNPACK delegates (a mean over dim 1
        # stays on ExecuTorch's portable kernels and splits the graph).
        b, c = x.shape[:2]
        per_channel = x.mean(dim=(2, 3), keepdim=True)
        return per_channel.reshape(b, 1, c, 1).mean(dim=(2, 3), keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - self._mean(x)
        normalised = centred * torch.rsqrt(self._mean(centred * centred) + self.eps)
        return normalised * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class DownSample(nn.Module):
    """Patchify convolution (kernel = stride = r) followed by GroupNorm with one group."""

    def __init__(self, in_channels: int, out_channels: int, ratio: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=ratio, stride=ratio)
        self.norm = SingleGroupNorm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class UpSample(nn.Module):
    """Transposed convolution (kernel = stride = r), optionally GroupNorm with one group."""

    def __init__(self, in_channels: int, out_channels: int, ratio: int, norm: bool = True) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=ratio, stride=ratio)
        self.norm = SingleGroupNorm(out_channels) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class LocalContextIntegrator(nn.Sequential):
    """LCI: BN -> pointwise -> depthwise 3x3 -> BN -> pointwise, all without bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm_in = nn.BatchNorm2d(channels)
        self.pw_in = nn.Conv2d(channels, channels, 1, bias=False)
        self.dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.norm_mid = nn.BatchNorm2d(channels)
        self.pw_out = nn.Conv2d(channels, channels, 1, bias=False)


class AdaptiveSemanticEnhancer(nn.Sequential):
    """ASE: pointwise expansion, activation, pointwise projection (no bias)."""

    def __init__(self, channels: int, ratio: int, act: nn.Module) -> None:
        super().__init__()
        self.expand = nn.Conv2d(channels, channels * ratio, 1, bias=False)
        self.act = act
        self.project = nn.Conv2d(channels * ratio, channels, 1, bias=False)


class BaSBlock(nn.Module):
    """ALI, LCI and ASE, each a residual step."""

    def __init__(self, channels: int, act: nn.Module, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.ali = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.lci = LocalContextIntegrator(channels)
        self.ase = AdaptiveSemanticEnhancer(channels, mlp_ratio, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ali(x)
        x = x + self.lci(x)
        return x + self.ase(x)


class TempLP(nn.Module):
    """Temporal Locality-based Prefetching: causal mixing of stem features over K frames.

    ``y_t = x_t + P(sum_k w_k * x_{t-k})`` with a per-channel weight ``w_k`` for each of
    the last K frames (zero before the first frame) and a pointwise projection ``P``.
    ``P`` starts at zero, so the module starts as the identity and a single-frame
    checkpoint loads unchanged. Only past frames are used, so it streams: the state is
    the stem features of the previous K-1 frames, oldest first.

    ``gated`` adds the previous frame's prediction, ``sigmoid(G[x_t, m]) * E(m)``, where
    ``m`` is that frame's lesion probability averaged over each stem cell: a frame that
    lost its evidence in one region needs to be told where the lesion just was, there
    and only there, which a linear mix of past features cannot say. Each state entry
    then holds ``m`` as one more channel. ``E`` starts at zero (the module computes what
    it did without the gate), and with no previous frame the term is zero.
    """

    def __init__(self, channels: int, window: int, gated: bool = False) -> None:
        super().__init__()
        self.window = window
        self.channels = channels
        self.gated = gated and window > 1
        if window == 1:  # disabled: a pure single-frame network, nothing to learn
            return
        weights = torch.zeros(window, channels)
        weights[0] = 1.0
        self.frame_weights = nn.Parameter(weights)
        self.project = nn.Conv2d(channels, channels, 1, bias=False)
        nn.init.zeros_(self.project.weight)
        if self.gated:
            self.gate = nn.Conv2d(channels + 1, channels, 1)
            self.prior = nn.Conv2d(1, channels, 3, padding=1, bias=False)
            for weight in (self.gate.weight, self.gate.bias, self.prior.weight):
                nn.init.zeros_(weight)

    @property
    def state_channels(self) -> int:
        """Channels of one state entry: the stem's, and the prediction's where gated."""
        return self.channels + int(self.gated)

    @property
    def state_meaning(self) -> str:
        """What a stream state holds, in the words an artifact's manifest records."""
        meaning = "stem features of the previous temporal_window - 1 frames, oldest first"
        if self.gated:
            meaning += (
                "; each entry's last channel is that frame's lesion probability per stem cell"
            )
        return meaning

    def _mix(self, current: torch.Tensor, past: list[torch.Tensor]) -> torch.Tensor:
        """``sum_k w_k * x_{t-k}``, ``past[k - 1]`` being frame t - k: one frame (B, C, h, w)
        or a clip (B, T, C, h, w), so that every form mixes with the same ops."""
        shape = (1,) * (current.dim() - 3) + (-1, 1, 1)
        mixed = self.frame_weights[0].view(shape) * current
        for k, frame in enumerate(past, start=1):
            mixed = mixed + self.frame_weights[k].view(shape) * frame
        return mixed

    def forward(
        self, feats: torch.Tensor, history: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix ``feats`` (B, T, C, h, w) with ``history`` (B, K-1, C, h, w), all frames at once.

        Returns the mixed features (B, T, C, h, w) and the new history (the last K-1
        frames of history followed by feats). Not for a gated TempLP, whose frame t
        needs the prediction of frame t - 1 (``step`` and ``push``, one frame at a time).
        """
        if self.gated:
            raise ValueError("a gated TempLP mixes one frame at a time (step, push)")
        if self.window == 1:
            return feats, history
        batch, steps = feats.shape[:2]
        padded = torch.cat([history, feats], dim=1)
        last = self.window - 1
        past = [padded[:, last - k : last - k + steps] for k in range(1, self.window)]
        delta = self.project(self._mix(feats, past).flatten(0, 1)).unflatten(0, (batch, steps))
        return feats + delta, padded[:, padded.shape[1] - last :]

    def step(self, feats: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """One frame's features (B, C, h, w) mixed with the stream state (B, K-1, S, h, w)."""
        if self.window == 1:
            return feats
        last = self.window - 1
        past = [state[:, last - k, : self.channels] for k in range(1, self.window)]
        mixed = feats + self.project(self._mix(feats, past))
        if self.gated:
            previous = state[:, last - 1, self.channels :]
            mixed = mixed + self.prior_term(feats, previous)
        return mixed

    def prior_term(self, feats: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """The gated term for features (N, C, h, w) and the previous frame's cells (N, 1, h, w)."""
        gate = torch.sigmoid(self.gate(torch.cat([feats, previous], dim=1)))
        return gate * self.prior(previous)

    def entry(self, feats: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """What a frame leaves in the state: its stem features, and where gated its lesion
        probability averaged over each stem cell (detached: a prediction, not a path)."""
        if not self.gated:
            return feats
        cell = logits.shape[-1] // feats.shape[-1]
        cells = F.avg_pool2d(torch.sigmoid(logits.detach()), cell)
        return torch.cat([feats, cells], dim=1)

    def push(self, state: torch.Tensor, entry: torch.Tensor) -> torch.Tensor:
        """The state after a frame: the oldest entry dropped, ``entry`` appended."""
        if self.window == 1:
            return state
        return torch.cat([state[:, 1:], entry.unsqueeze(1)], dim=1)

    def single(self, feats: torch.Tensor) -> torch.Tensor:
        """One frame (B, C, h, w) with an all-zero history: only the k = 0 term remains."""
        if self.window == 1:
            return feats
        return feats + self.project(self._mix(feats, []))
