"""An independent re-statement of the authors' public BaS network, for checkpoint tests.

Written from reading the authors' ``src/bas.py`` and ``config.yaml`` (repository
deepang-ai/BaS, commit 0c59a8a2db5e907936760367cc2e064e60241e55), module by module, and
not from ``model/``. The classes below have the authors' names, constructor arguments
and submodule attribute names, so their state-dict keys are the authors' keys
(``Encoder.conv1.downsample.weight``, ``Encoder.block2.0.cpe1.conditional_positional_
encoding.weight``, ``Decoder.block1.0.mlp2.mlp_layer_0.weight``,
``Encoder.position_embeddings``, ...) and a checkpoint trained with their code loads
here with ``strict=True``. A wrong key mapping or a missed quirk in ``model.legacy``
therefore shows up as a numeric difference against this module.

What is kept from the authors' code, on purpose:

- ``LGL(shallow=True)`` has an exact ``nn.GELU`` in its MLP, ``shallow=False`` has Swish
  (``x * sigmoid(x)``). Encoder.block2 and Decoder.block1 (48 channels, the last decoder
  stage) are shallow; Encoder.block3 and Decoder.block2 (96 channels, the first decoder
  stage) are not.
- Every norm after a down/up-sampling convolution is ``nn.GroupNorm(1, C)``, including
  the one-channel norm on the output head (``Decoder.conv1.norm``).
- ``Encoder.pooling1`` is a max pool with kernel 1 and stride 1 (the identity).
- At the bottleneck, features are flattened to tokens and transposed, the position
  embedding is added, dropout applied, and the tokens are reshaped back to (B, C, H, W)
  *without* transposing back.
- ``Encoder.dropout`` (p=0.3) is kept; call ``.eval()`` (as ``public_bas`` does) to make
  it the identity.

Left out: the authors' ``GlobalSparseAttention`` and ``LocalPropagation`` classes. LGL
takes ``r`` and ``heads`` but never builds them, so they own no parameters and take no
part in the forward pass. ``heads``, ``r`` and ``distillation`` are accepted and unused,
as in the authors' code. The authors' Swish is a custom autograd function whose forward
is ``x * sigmoid(x)``; only its forward matters here, so it is written as a plain module.
"""

from __future__ import annotations

import torch
from torch import nn

Tensor = torch.Tensor

# config.yaml: embed_dim 120, channels [48, 96], heads [1, 4, 8], r [4, 2, 2],
# conv_r [4, 2, 2], dropout 0.3; blocks [1, 3, 3] for S and [1, 2, 3] for L.
PUBLIC_CONFIG = {
    "in_channels": 3,
    "out_channels": 1,
    "embed_dim": 120,
    "channels": (48, 96),
    "conv_r": (4, 2, 2),
    "heads": (1, 4, 8),
    "r": (4, 2, 2),
    "distillation": False,
    "dropout": 0.3,
}
PUBLIC_BLOCKS = {"S": (1, 3, 3), "L": (1, 2, 3)}


class Swish(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(x)


class ConditionalPositionalEncoding(nn.Module):
    """Depthwise 3x3 convolution without bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conditional_positional_encoding = nn.Conv2d(
            channels, channels, 3, padding=1, groups=channels, bias=False
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conditional_positional_encoding(x)


class MLP(nn.Module):
    """1x1 expansion by 4, exact GELU (shallow) or Swish, 1x1 projection; no biases."""

    def __init__(self, channels: int, shallow: bool = True) -> None:
        super().__init__()
        self.mlp_layer_0 = nn.Conv2d(channels, 4 * channels, 1, bias=False)
        self.mlp_act = nn.GELU() if shallow else Swish()
        self.mlp_layer_1 = nn.Conv2d(4 * channels, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp_layer_1(self.mlp_act(self.mlp_layer_0(x)))


class LocalAgg(nn.Module):
    """BatchNorm, 1x1, depthwise 3x3, BatchNorm, 1x1; convolutions without bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.pointwise_conv_0 = nn.Conv2d(channels, channels, 1, bias=False)
        self.depthwise_conv = nn.Conv2d(
            channels, channels, 3, padding=1, groups=channels, bias=False
        )
        self.pointwise_prenorm_1 = nn.BatchNorm2d(channels)
        self.pointwise_conv_1 = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pointwise_conv_0(self.bn(x))
        x = self.depthwise_conv(x)
        return self.pointwise_conv_1(self.pointwise_prenorm_1(x))


class LGL(nn.Module):
    """Three residual steps: positional encoding, local aggregation, MLP."""

    def __init__(self, channels: int, r: int, heads: int, shallow: bool = True) -> None:
        super().__init__()
        self.cpe1 = ConditionalPositionalEncoding(channels)
        self.LocalAgg = LocalAgg(channels)
        self.mlp2 = MLP(channels, shallow)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.cpe1(x)
        x = x + self.LocalAgg(x)
        return x + self.mlp2(x)


class DownSampleLayer(nn.Module):
    """Convolution with kernel = stride = r (with bias), then GroupNorm with one group."""

    def __init__(self, dim_in: int, dim_out: int, r: int) -> None:
        super().__init__()
        self.downsample = nn.Conv2d(dim_in, dim_out, kernel_size=r, stride=r)
        self.norm = nn.GroupNorm(1, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.downsample(x))


class UpSampleLayer(nn.Module):
    """Transposed convolution, kernel = stride = r; the attribute keeps the authors' name."""

    def __init__(self, dim_in: int, dim_out: int, r: int) -> None:
        super().__init__()
        self.downsample = nn.ConvTranspose2d(dim_in, dim_out, kernel_size=r, stride=r)
        self.norm = nn.GroupNorm(1, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.downsample(x))


def _lgl_stage(count: int, channels: int, r: int, heads: int, shallow: bool) -> nn.Sequential:
    return nn.Sequential(*(LGL(channels, r, heads, shallow) for _ in range(count)))


class Encoder(nn.Module):
    def __init__(
        self,
        in_channels: int,
        embed_dim: int,
        embeding_dim: int,
        channels: tuple[int, int],
        conv_r: tuple[int, int, int],
        blocks: tuple[int, int, int],
        heads: tuple[int, int, int],
        r: tuple[int, int, int],
        distillation: bool = False,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.distillation = distillation
        self.conv1 = DownSampleLayer(in_channels, channels[0], conv_r[0])
        self.conv2 = DownSampleLayer(channels[0], channels[1], conv_r[1])
        self.conv3 = DownSampleLayer(channels[1], embed_dim, conv_r[2])
        self.block2 = _lgl_stage(blocks[1], channels[1], r[1], heads[1], shallow=True)
        self.block3 = _lgl_stage(blocks[2], embed_dim, r[2], heads[2], shallow=False)
        self.position_embeddings = nn.Parameter(torch.zeros(1, embeding_dim, embed_dim))
        self.pooling1 = nn.MaxPool2d(kernel_size=1, stride=1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        skips = []
        x = self.pooling1(self.conv1(x))
        skips.append(x)
        x = self.block2(self.conv2(x))
        skips.append(x)
        x = self.block3(self.conv3(x))
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(-1, -2) + self.position_embeddings
        tokens = self.dropout(tokens)
        return tokens.reshape(b, c, h, w), skips  # no transpose back: the authors' quirk


class Decoder(nn.Module):
    def __init__(
        self,
        out_channels: int,
        embed_dim: int,
        channels: tuple[int, int],
        conv_r: tuple[int, int, int],
        blocks: tuple[int, int, int],
        heads: tuple[int, int, int],
        r: tuple[int, int, int],
        distillation: bool = False,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.distillation = distillation
        self.conv1 = UpSampleLayer(channels[0], out_channels, conv_r[0])
        self.conv2 = UpSampleLayer(channels[1], channels[0], conv_r[1])
        self.conv3 = UpSampleLayer(embed_dim, channels[1], conv_r[2])
        # block1 (48 channels) runs last and is shallow (GELU); block2 (96) runs first (Swish).
        self.block1 = _lgl_stage(blocks[0], channels[0], r[0], heads[0], shallow=True)
        self.block2 = _lgl_stage(blocks[1], channels[1], r[1], heads[1], shallow=False)

    def forward(self, x: Tensor, skips: list[Tensor]) -> Tensor:
        x = self.block2(self.conv3(x) + skips[1])
        x = self.block1(self.conv2(x) + skips[0])
        return self.conv1(x)


class Bas(nn.Module):
    """The authors' single-frame network: (B, 3, H, W) -> (B, 1, H, W) logits."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        embed_dim: int,
        embeding_dim: int,
        channels: tuple[int, int],
        conv_r: tuple[int, int, int],
        blocks: tuple[int, int, int],
        heads: tuple[int, int, int],
        r: tuple[int, int, int],
        distillation: bool = False,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        shared = {
            "embed_dim": embed_dim,
            "channels": channels,
            "conv_r": conv_r,
            "blocks": blocks,
            "heads": heads,
            "r": r,
            "distillation": distillation,
            "dropout": dropout,
        }
        self.Encoder = Encoder(in_channels=in_channels, embeding_dim=embeding_dim, **shared)
        self.Decoder = Decoder(out_channels=out_channels, **shared)

    def forward(self, x: Tensor) -> Tensor:
        embedding, skips = self.Encoder(x)
        return self.Decoder(embedding, skips)


def public_bas(variant: str, image_size: int = 240) -> Bas:
    """The authors' network for ``variant`` ("S" or "L") at ``image_size``, in eval mode.

    ``embeding_dim`` is the number of bottleneck tokens, (image_size / 16) ** 2: 225 at
    240x240 as in ``config.yaml``.
    """
    if image_size % 16:
        raise ValueError(f"image_size must be a multiple of 16, got {image_size}")
    return Bas(
        **PUBLIC_CONFIG,
        blocks=PUBLIC_BLOCKS[variant],
        embeding_dim=(image_size // 16) ** 2,
    ).eval()


def _count(keys: list[str], prefix: str) -> int:
    return len({k[len(prefix) :].split(".")[0] for k in keys if k.startswith(prefix)})


def public_bas_for(state: dict[str, Tensor]) -> Bas:
    """The authors' network shaped for a public checkpoint, holding it (loaded strictly)."""
    keys = list(state)
    blocks = tuple(
        _count(keys, p) for p in ("Decoder.block1.", "Encoder.block2.", "Encoder.block3.")
    )
    variant = {v: k for k, v in PUBLIC_BLOCKS.items()}[blocks]
    side = round(state["Encoder.position_embeddings"].shape[1] ** 0.5)
    model = public_bas(variant, side * 16)
    model.load_state_dict(state, strict=True)
    return model
