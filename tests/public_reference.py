"""An independent, functional re-statement of the public BaS network, for checkpoint tests.

Written from the public code's checkpoint layout and forward pass (``shared/design/bas.md``),
not from ``model/``: it reads the public state dict directly, so a wrong key mapping or a
missed quirk in ``model.legacy`` shows up as a numeric difference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def _gn(x: Tensor, sd: dict[str, Tensor], prefix: str) -> Tensor:
    return F.group_norm(x, 1, sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], eps=1e-5)


def _bn(x: Tensor, sd: dict[str, Tensor], prefix: str) -> Tensor:
    return F.batch_norm(
        x,
        sd[f"{prefix}.running_mean"],
        sd[f"{prefix}.running_var"],
        sd[f"{prefix}.weight"],
        sd[f"{prefix}.bias"],
        training=False,
        eps=1e-5,
    )


def _block(x: Tensor, sd: dict[str, Tensor], p: str, act) -> Tensor:
    c = x.shape[1]
    x = F.conv2d(x, sd[f"{p}.cpe1.conditional_positional_encoding.weight"], padding=1, groups=c) + x
    y = _bn(x, sd, f"{p}.LocalAgg.bn")
    y = F.conv2d(y, sd[f"{p}.LocalAgg.pointwise_conv_0.weight"])
    y = F.conv2d(y, sd[f"{p}.LocalAgg.depthwise_conv.weight"], padding=1, groups=c)
    y = _bn(y, sd, f"{p}.LocalAgg.pointwise_prenorm_1")
    x = F.conv2d(y, sd[f"{p}.LocalAgg.pointwise_conv_1.weight"]) + x
    y = act(F.conv2d(x, sd[f"{p}.mlp2.mlp_layer_0.weight"]))
    return F.conv2d(y, sd[f"{p}.mlp2.mlp_layer_1.weight"]) + x


def _blocks(x: Tensor, sd: dict[str, Tensor], prefix: str, act) -> Tensor:
    i = 0
    while f"{prefix}.{i}.cpe1.conditional_positional_encoding.weight" in sd:
        x = _block(x, sd, f"{prefix}.{i}", act)
        i += 1
    return x


def _down(x: Tensor, sd: dict[str, Tensor], p: str, r: int) -> Tensor:
    x = F.conv2d(x, sd[f"{p}.downsample.weight"], sd[f"{p}.downsample.bias"], stride=r)
    return _gn(x, sd, f"{p}.norm")


def _up(x: Tensor, sd: dict[str, Tensor], p: str, r: int) -> Tensor:
    x = F.conv_transpose2d(x, sd[f"{p}.downsample.weight"], sd[f"{p}.downsample.bias"], stride=r)
    return _gn(x, sd, f"{p}.norm")


def public_forward(sd: dict[str, Tensor], x: Tensor) -> Tensor:
    """The public single-frame network: (B, 3, H, W) -> (B, 1, H, W) logits."""
    x = F.max_pool2d(_down(x, sd, "Encoder.conv1", 4), kernel_size=1, stride=1)
    skip1 = x
    x = _blocks(_down(x, sd, "Encoder.conv2", 2), sd, "Encoder.block2", F.gelu)
    skip2 = x
    x = _blocks(_down(x, sd, "Encoder.conv3", 2), sd, "Encoder.block3", F.silu)
    b, c, h, w = x.shape
    tokens = x.flatten(2).transpose(-1, -2) + sd["Encoder.position_embeddings"]
    x = tokens.reshape(b, c, h, w)  # quirk 1: no transpose back
    x = _blocks(_up(x, sd, "Decoder.conv3", 2) + skip2, sd, "Decoder.block2", F.gelu)
    x = _blocks(_up(x, sd, "Decoder.conv2", 2) + skip1, sd, "Decoder.block1", F.silu)
    return _up(x, sd, "Decoder.conv1", 4)  # quirk 2: GroupNorm on the one-channel head
