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


def _check_finite(
    frame: torch.Tensor, state: torch.Tensor, folder: Path | None, where: tuple[int, int]
) -> None:
    """Refuse a calibration input holding NaN or infinity: a quantizer would take its range
    from it (a scale of NaN or infinity) and every integer tensor of the file would be wrong."""
    for name, tensor in (("frame", frame), ("PyTorch state", state)):
        if not bool(torch.isfinite(tensor).all()):
            source = f"calibration folder {folder}" if folder else "the synthetic calibration set"
            raise ConversionError(
                f"{source}: the {name} fed with frame {where[1] + 1} of video {where[0] + 1} "
                "holds NaN or infinite values (weights that overflow on these frames?)"
            )


@torch.no_grad()
def calibration_clips(
    model: BaS, form: str, folder: Path | None, size: int, contrast: float = 1.0
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Form inputs in video order; stream inputs carry the state PyTorch itself produced.

    ``contrast`` scales each frame about its mean: clips duller than the originals, for
    ranges that must cover frames the calibration set does not hold (see converters.tflite).
    """
    count = 0
    for video, frames in enumerate(_videos(folder)):
        state = model.initial_state(1)
        for position, image in enumerate(frames):
            frame = torch.from_numpy(to_input(image, size, model.config.preprocessing))
            if contrast != 1.0:
                mean = frame.mean()
                frame = mean + contrast * (frame - mean)
            _check_finite(frame, state, folder, (video, position))
            if form == "frame":
                yield (frame,)
            else:
                yield (frame, state)
                _, state = model.stream(frame, state)
            count += 1
    if count == 0:
        raise ConversionError(f"calibration folder {folder} has no readable frames")
