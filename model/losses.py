"""The public recipe's loss: BCE-with-logits + soft Dice + focal, summed with weights."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LossWeights:
    bce: float = 1.0
    dice: float = 1.0
    focal: float = 1.0
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - Dice per map, averaged; ``smooth`` lets an empty prediction of an empty map cost ~0."""
    prob = torch.sigmoid(logits).flatten(1)
    target = target.flatten(1)
    inter = (prob * target).sum(1)
    dice = (2 * inter + smooth) / (prob.sum(1) + target.sum(1) + smooth)
    return (1 - dice).mean()


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, gamma: float, alpha: float
) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = torch.exp(-bce)
    alpha_t = alpha * target + (1 - alpha) * (1 - target)
    return (alpha_t * (1 - p_t) ** gamma * bce).mean()


class SegmentationLoss(nn.Module):
    def __init__(self, weights: LossWeights = LossWeights()) -> None:
        super().__init__()
        self.weights = weights

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits`` and ``target`` shaped (..., 1, H, W); each map is scored on its own."""
        logits = logits.reshape(-1, *logits.shape[-2:])
        target = target.reshape(-1, *target.shape[-2:]).to(logits.dtype)
        w = self.weights
        return (
            w.bce * F.binary_cross_entropy_with_logits(logits, target)
            + w.dice * soft_dice_loss(logits, target)
            + w.focal * focal_loss(logits, target, w.focal_gamma, w.focal_alpha)
        )
