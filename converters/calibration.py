"""Real-looking inputs for int8 calibration: synthetic ultrasound by default, or a user's folder."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from model.bas import BaS
from model.data import DatasetError, discover, native_frames
from model.data.synth import render_video
from runtimes.session import to_input

from .spec import ConversionError

CALIBRATION_SEED = 3  # neither the training (0) nor the held-out test (1) seed
CALIBRATION_VIDEOS = 4
CALIBRATION_FRAMES = 16


def check_folder(folder: Path) -> None:
    """Refuse an unusable calibration folder before any conversion work starts."""
    try:
        index = discover(Path(folder))
        next(native_frames(index.videos[0]))
    except (DatasetError, OSError, ValueError) as err:
        raise ConversionError(f"calibration folder {folder} unusable: {err}") from err


def _videos(folder: Path | None) -> Iterator[Iterator[np.ndarray]]:
    if folder is None:
        for index in range(CALIBRATION_VIDEOS):
            frames = render_video(CALIBRATION_SEED, index, CALIBRATION_FRAMES)
            yield (image for image, _ in frames)
        return
    try:
        index = discover(Path(folder))
    except DatasetError as err:
        raise ConversionError(f"calibration folder unusable: {err}") from err
    for video in index.videos[:CALIBRATION_VIDEOS]:
        yield (image for _, image, _ in islice(native_frames(video), CALIBRATION_FRAMES))


@torch.no_grad()
def calibration_clips(
    model: BaS, form: str, folder: Path | None, size: int, contrast: float = 1.0
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Form inputs in video order; stream inputs carry the state PyTorch itself produced.

    ``contrast`` scales each frame about its mean: clips duller than the originals, for
    ranges that must cover frames the calibration set does not hold (see converters.tflite).
    """
    count = 0
    for frames in _videos(folder):
        state = model.initial_state(1)
        for image in frames:
            frame = torch.from_numpy(to_input(image, size))
            if contrast != 1.0:
                mean = frame.mean()
                frame = mean + contrast * (frame - mean)
            if form == "frame":
                yield (frame,)
            else:
                yield (frame, state)
                _, state = model.stream(frame, state)
            count += 1
    if count == 0:
        raise ConversionError(f"calibration folder {folder} has no readable frames")
