"""The smallest training run: one epoch at 32 x 32, for tests of what training writes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from model.train import TrainConfig


def tiny_train_config(data: Path, out: Path, **changes: object) -> TrainConfig:
    """One epoch at 32 x 32, batches of 1, without warm-up, the videos split 1:1."""
    base = TrainConfig(
        image_size=32,
        data=str(data),
        batch_size=1,
        epochs=1,
        warmup_epochs=0,
        out=str(out),
        split_fractions={"train": 0.5, "val": 0.5},
    )
    return replace(base, **changes)
