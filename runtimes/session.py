"""Frames in, masks out, through any runtime: the session every consumer of BaS uses.

Pre-processing (any uint8 frame -> the network's RGB input, as the manifest's
``preprocessing`` says: ``model.preprocessing``), the mapping between BaS's canonical
tensors and the file's own (layout, dtype, quantisation; from the manifest), the stream
state, and post-processing (logits -> probabilities at the frame's own size) are applied
here, so that no caller knows which runtime it talks to.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from model.preprocessing import (
    DEFAULT_PREPROCESSING,
    Preprocessing,
    lesion_mask,
    logits_at_size,
)

from .backend import RawRunner
from .manifest import ArtifactError, Manifest, TensorSpec
from .threads import aten_single_threaded
from .timing import timed_call


def to_input(
    image: np.ndarray, size: int, preprocessing: Preprocessing = DEFAULT_PREPROCESSING
) -> np.ndarray:
    """Any uint8 frame -> (1, 3, size, size) float32: ``model.preprocessing``'s one definition
    (pass the manifest's ``preprocessing`` where there is one)."""
    return preprocessing.to_input(image, size)


def to_native(logits: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Logits (1, 1, s, s) -> logits at the frame's (H, W): ``model.preprocessing``'s
    resize, on one ATen thread (between two inference calls: see runtimes.threads)."""
    with aten_single_threaded():
        return logits_at_size(logits, shape)


def canonical_to_file(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    value = array.transpose(spec.from_canonical)
    if tuple(value.shape) != spec.shape:
        raise ArtifactError(
            f"{spec.canonical}: shape {value.shape} where the file takes {spec.shape}"
        )
    if spec.quantization is not None:
        q = spec.quantization
        info = np.iinfo(spec.dtype)
        value = np.clip(np.round(value / q.scale) + q.zero_point, info.min, info.max)
    return np.ascontiguousarray(value, dtype=spec.dtype)


def file_to_canonical(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    if tuple(array.shape) != spec.shape:
        raise ArtifactError(
            f"{spec.canonical}: the runtime returned {array.shape}, the manifest says {spec.shape}"
        )
    value = array.astype(np.float32)
    if spec.quantization is not None:
        value = (value - spec.quantization.zero_point) * spec.quantization.scale
    return np.ascontiguousarray(value.transpose(np.argsort(spec.from_canonical)))


class NonFiniteOutput(ArtifactError):
    """An artifact that returned NaN or infinity: no mask can be read from its logits."""


class ArtifactModel:
    """An opened artifact spoken to in BaS's canonical tensors (NCHW float32, by name)."""

    def __init__(self, runner: RawRunner, manifest: Manifest, runtime: str) -> None:
        self.runner = runner
        self.manifest = manifest
        self.runtime = runtime

    def __call__(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = [canonical_to_file(feed[spec.canonical], spec) for spec in self.manifest.inputs]
        outputs = self.runner(arrays)
        result = {
            spec.canonical: file_to_canonical(np.asarray(out), spec)
            for spec, out in zip(self.manifest.outputs, outputs, strict=True)
        }
        if "logits" in result:
            self.check_finite(result["logits"])
        return result

    def check_finite(self, logits: np.ndarray) -> None:
        """Refuse NaN or infinite logits (weights broken before conversion, a broken delegate):
        they threshold to an empty or a full mask that looks like an answer. Microseconds."""
        finite = np.isfinite(logits)
        if finite.all():
            return
        spec = self.manifest.tensor("logits")
        output = f"logits output {spec.name!r}" if spec.name else "logits output"
        raise NonFiniteOutput(
            f"{self.manifest.artifact.file or 'the network in memory'}: {self.runtime} returned "
            f"{logits.size - int(finite.sum())} of {logits.size} values of its {output} "
            "NaN or infinite (broken weights in the file, or a broken runtime)"
        )

    @functools.cached_property
    def _state_returns_as_taken(self) -> bool:
        """Whether the file returns its new state encoded exactly as it takes its state."""

        def encoding(spec: TensorSpec) -> tuple:
            return spec.shape, spec.dtype, spec.from_canonical, spec.quantization

        returned, taken = self.manifest.tensor("new_state"), self.manifest.tensor("state")
        return encoding(returned) == encoding(taken)

    def stream_step(self, frame: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Canonical frame, state as the file takes it -> canonical logits, new state as the
        file takes it: the state stays in the file's encoding from call to call, not
        transposed to the canonical layout and back on every frame (timed as inference)."""
        arrays = [
            state if spec.canonical == "state" else canonical_to_file(frame, spec)
            for spec in self.manifest.inputs
        ]
        outputs = dict(
            zip((s.canonical for s in self.manifest.outputs), self.runner(arrays), strict=True)
        )
        logits = file_to_canonical(np.asarray(outputs["logits"]), self.manifest.tensor("logits"))
        self.check_finite(logits)
        new_state = np.asarray(outputs["new_state"])
        taken = self.manifest.tensor("state")
        if not self._state_returns_as_taken:
            returned = self.manifest.tensor("new_state")
            return logits, canonical_to_file(file_to_canonical(new_state, returned), taken)
        # A copy: a runtime may hand out its own output buffer and write it on the next call.
        return logits, np.array(new_state, dtype=taken.dtype)

    def initial_state(self) -> np.ndarray:
        """The state before a video's first frame (no history), as the file takes it."""
        state = self.manifest.state
        if state is None:
            raise ArtifactError("a frame-form artifact carries no state")
        return canonical_to_file(np.zeros(state.shape, np.float32), self.manifest.tensor("state"))


@dataclass(frozen=True)
class Prediction:
    """One frame's result at the frame's own size."""

    logits: np.ndarray  # (H, W) float32
    inference_ms: float  # the runtime's call alone, state hand-over included

    @property
    def probability(self) -> np.ndarray:
        return expit(self.logits).astype(np.float32)

    def mask(self, threshold: float = 0.5) -> np.ndarray:
        """Lesion where the probability exceeds ``threshold`` (``model.preprocessing``'s rule)."""
        return lesion_mask(self.logits, threshold)


class Session:
    """``run(frame)`` frame after frame of one video; ``reset()`` before the next video."""

    def __init__(self, model: ArtifactModel) -> None:
        self.model = model
        self.manifest = model.manifest
        self._state: np.ndarray | None = None
        self._frame = 0  # frames run since the last reset, for the error that names one
        self.reset()

    @property
    def runtime(self) -> str:
        return self.model.runtime

    @property
    def carries_state(self) -> bool:
        return self.manifest.state is not None

    def reset(self) -> None:
        self._state = self.model.initial_state() if self.carries_state else None
        self._frame = 0

    def infer(self, frame: np.ndarray) -> np.ndarray:
        """Canonical input (1, 3, s, s) -> canonical logits (1, 1, s, s), the state carried."""
        self._frame += 1
        try:
            if self._state is None:
                return self.model({"frame": frame})["logits"]
            logits, self._state = self.model.stream_step(frame, self._state)
        except NonFiniteOutput as err:
            raise NonFiniteOutput(f"{err}, at frame {self._frame} of the video") from err
        return logits

    def masks(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Masks of one video's frames in order, from a fresh state (logit > 0): a session
        is a ``model.masks.MaskStream``, scored by ``model.evaluate.evaluate``."""
        self.reset()
        for frame in frames:
            yield self.run(frame).mask()

    def run(self, frame: np.ndarray) -> Prediction:
        """Any uint8 frame (gray, RGB or RGBA, any size) -> its prediction at that size."""
        x = self.manifest.preprocessing.to_input(frame, self.manifest.image_size)
        logits, elapsed = timed_call(lambda: self.infer(x))
        return Prediction(to_native(logits, frame.shape[:2]), elapsed)


def stream_masks(session: Session, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Masks of one video's frames in order, from a fresh state (logit > 0)."""
    return session.masks(frames)
