"""The BaS network: one set of weights, three forms (frame, clip, stream)."""

from __future__ import annotations

import torch
from torch import nn

from .config import BaSConfig
from .layers import BaSBlock, DownSample, TempLP, UpSample, activation, resize_position


def _stage(channels: int, count: int, act: str, config: BaSConfig) -> nn.Sequential:
    return nn.Sequential(
        *(
            BaSBlock(channels, activation(act, config.gelu_approximate), config.mlp_ratio)
            for _ in range(count)
        )
    )


class BaS(nn.Module):
    """BaS encoder-decoder with TempLP in the stem.

    Activations follow the authors' ``src/bas.py`` (``LGL(shallow=True)`` is GELU, else
    Swish): GELU in encoder stage 2 and in the last decoder stage (``decoder2``, their
    ``Decoder.block1``); SiLU in encoder stage 3 and the first decoder stage (``decoder1``,
    their ``Decoder.block2``).

    ``m(x)`` takes a frame batch (B, 3, H, W) or a clip batch (B, T, 3, H, W) of RGB in
    [0, 1] and returns lesion logits (B, 1, H, W) or (B, T, 1, H, W). ``m.stream``
    takes one frame and the state from the previous call. A frame is a one-frame clip,
    which is also the first step of a stream.
    """

    def __init__(self, config: BaSConfig) -> None:
        super().__init__()
        self.config = config
        c1, c2, c3 = config.channels
        n1, n2, n3 = config.blocks
        self.stem = DownSample(config.in_channels, c1, 4)
        self.temporal = TempLP(c1, config.temporal_window, config.temporal_gate)
        self.down2 = DownSample(c1, c2, 2)
        self.stage2 = _stage(c2, n2, "gelu", config)
        self.down3 = DownSample(c2, c3, 2)
        self.stage3 = _stage(c3, n3, "silu", config)
        self.position = nn.Parameter(torch.zeros(1, config.bottleneck_tokens, c3))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.up1 = UpSample(c3, c2, 2)
        self.decoder1 = _stage(c2, n2, "silu", config)
        self.up2 = UpSample(c2, c1, 2)
        self.decoder2 = _stage(c1, n1, "gelu", config)
        self.head = UpSample(c1, 1, 4, norm=config.legacy)

    @property
    def state_shape(self) -> tuple[int, int, int, int]:
        """Shape of one stream state, without the batch dimension."""
        side = self.config.image_size // 4
        return (self.config.temporal_window - 1, self.temporal.state_channels, side, side)

    def initial_state(self, batch: int = 1) -> torch.Tensor:
        """The state before the first frame: no history (zeros)."""
        ref = self.position
        return torch.zeros((batch, *self.state_shape), dtype=ref.dtype, device=ref.device)

    def _add_position(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        position = self.position
        if h * w != position.shape[1]:  # smaller frames: model.train's low-resolution epochs
            if self.config.legacy or h != w:
                side = self.config.image_size
                raise ValueError(f"this BaS takes {side} x {side} frames, not {h * 16} x {w * 16}")
            position = resize_position(position, h)
        tokens = x.flatten(2).transpose(1, 2) + position
        if self.config.legacy:
            return tokens.reshape(b, c, h, w)  # the public code's reshape without transpose
        return tokens.transpose(1, 2).reshape(b, c, h, w)

    def decode(self, stem: torch.Tensor) -> torch.Tensor:
        """Stem features (after TempLP), (B, C, H/4, W/4) -> logits; export rewrites reuse it."""
        skip2 = self.stage2(self.down2(stem))
        x = self._add_position(self.stage3(self.down3(skip2)))
        x = self.decoder1(self.up1(x) + skip2)
        x = self.decoder2(self.up2(x) + stem)
        return self.head(x)

    def forward_frame(self, frames: torch.Tensor) -> torch.Tensor:
        return self.decode(self.temporal.single(self.stem(frames)))

    def forward_clip(self, clips: torch.Tensor, first_output: int = 0) -> torch.Tensor:
        """Logits of frames ``first_output`` onwards; the frames before only give history.

        Training's warm-up frames: they need only the stem for a plain TempLP, and decoding
        them was a fifth of a training step spent on logits that no loss read. A gated
        TempLP needs each frame's prediction before the next frame: frame by frame, the
        warm frames decoded without gradients.
        """
        b, t = clips.shape[:2]
        stem = self.stem(clips.flatten(0, 1)).unflatten(0, (b, t))
        state = self.initial_state(b)
        if state.shape[-2:] != stem.shape[-2:]:  # smaller frames: training's low-res epochs
            state = stem.new_zeros((*state.shape[:3], *stem.shape[-2:]))
        if not self.temporal.gated:
            mixed, _ = self.temporal(stem, state)
            scored = mixed[:, first_output:]
            return self.decode(scored.flatten(0, 1)).unflatten(0, scored.shape[:2])
        outputs = []
        for step in range(t):
            mixed = self.temporal.step(stem[:, step], state)
            if step < first_output:
                with torch.no_grad():
                    logits = self.decode(mixed)
            else:
                logits = self.decode(mixed)
                outputs.append(logits)
            state = self.temporal.push(state, self.temporal.entry(stem[:, step], logits))
        return torch.stack(outputs, dim=1)

    def stream(self, frame: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of streaming inference: (B, 3, H, W) frame + state -> logits, new state."""
        feats = self.stem(frame)
        logits = self.decode(self.temporal.step(feats, state))
        return logits, self.temporal.push(state, self.temporal.entry(feats, logits))

    def forward(self, x: torch.Tensor, first_output: int = 0) -> torch.Tensor:
        if x.dim() == 5:
            return self.forward_clip(x, first_output)
        if first_output:
            raise ValueError("first_output needs a clip batch (B,T,3,H,W)")
        if x.dim() == 4:
            return self.forward_frame(x)
        raise ValueError(f"BaS expects (B,3,H,W) or (B,T,3,H,W), got shape {tuple(x.shape)}")
