"""The golden bundle: a few held-out frames as a phone's tool takes them, and PyTorch's masks.

A phone's runtime is checked the way the host's is (``converters.parity``), but with the
phone's own tools: ``device_bench golden`` writes each frame pre-processed exactly as the
artifact's manifest says its inputs are (layout, dtype, quantisation; raw little-endian
bytes, the format ``benchmark_model --input_layer_value_files`` and ``executor_runner
--inputs`` read), PyTorch's mask for each, and ``bundle.json`` describing it.
``golden_dice`` scores the logits a phone wrote back (``benchmark_model --output_filepath``,
``executor_runner --output_file``, or a harness) against those masks.

Stream form: each frame's ``state`` input is PyTorch's state after the frames before it
(zeros for the first), so every frame is checked alone and an error does not compound.

    device_bench golden --artifact artifacts/bas_s_frame_240_fp32.tflite --out golden/ --frames 8
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from model.atomic import staged_folder
from model.checkpoint import sha256
from model.data.synth import HELD_OUT_SEED, render_video
from model.errors import ProjectError
from model.hub import resolve_weights
from model.typed import FieldError, from_data
from runtimes import load_pytorch
from runtimes.manifest import Manifest, TensorSpec, read_manifest, verify
from runtimes.session import Session, canonical_to_file, file_to_canonical, to_input

SCHEMA = "bas-deploy-golden/1"
GOLDEN_VIDEO = 0  # of the held-out synthetic videos, as bench.timing_frames and parity use


@dataclass(frozen=True)
class GoldenFrame:
    index: int
    inputs: tuple[str, ...]  # one raw file per artifact input, in the manifest's input order
    mask: str  # PyTorch's mask, uint8 (image_size, image_size), 1 = lesion


@dataclass(frozen=True)
class Bundle:
    """A golden bundle read back: where it is, what it was made for, and its frames."""

    root: Path
    artifact: str
    artifact_sha256: str
    image_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    frames: tuple[GoldenFrame, ...]


def _le(dtype: str) -> np.dtype:
    return np.dtype(dtype).newbyteorder("<")


def _nbytes(spec: TensorSpec) -> int:
    return int(np.prod(spec.shape)) * np.dtype(spec.dtype).itemsize


def _weights_for(manifest: Manifest, weights: str | None) -> str:
    """The weights the artifact was converted from (its manifest's sha256 must match)."""
    chosen = weights or manifest.weights.source
    path = resolve_weights(manifest.variant, chosen)
    if not path.is_file():
        raise ProjectError(f"weights not found: {path} (pass --weights the artifact came from)")
    if sha256(path) != manifest.weights.sha256:
        raise ProjectError(
            f"weights {chosen} are not the ones {manifest.artifact.file} was converted from "
            "(sha256 differs): pass --weights with the artifact's weights"
        )
    return chosen


def export_bundle(artifact: Path, out: Path, frames: int = 8, weights: str | None = None) -> Path:
    """Write the bundle for ``artifact`` into ``out`` (staged, renamed at the end)."""
    artifact = Path(artifact)
    if frames < 1:
        raise ProjectError("--frames must be at least 1")
    manifest = read_manifest(artifact)
    verify(artifact, manifest)
    chosen = _weights_for(manifest, weights)
    reference = load_pytorch(
        manifest.variant, chosen, manifest.form, manifest.image_size, manifest.temporal_window
    )
    with staged_folder(out) as staging:
        listed = _write_frames(reference, manifest, frames, staging)
        record = _bundle_record(manifest, chosen, listed)
        (staging / "bundle.json").write_text(json.dumps(record, indent=1) + "\n")
    return Path(out)


def _write_frames(
    reference: Session, manifest: Manifest, frames: int, folder: Path
) -> list[GoldenFrame]:
    """Each held-out frame's raw input files (the stream form's state: PyTorch's after the
    frames before it) and PyTorch's mask for it, written into ``folder``."""
    ref_state = reference.manifest.state
    state = None if ref_state is None else np.zeros(ref_state.shape, np.float32)
    listed = []
    for index, (image, _) in enumerate(render_video(HELD_OUT_SEED, GOLDEN_VIDEO, frames)):
        feed = {"frame": to_input(image, manifest.image_size, manifest.preprocessing)}
        if state is not None:
            feed["state"] = state
        result = reference.model(feed)
        files = []
        for spec in manifest.inputs:
            name = f"{index:03d}_{spec.canonical}.bin"
            raw = canonical_to_file(feed[spec.canonical], spec).astype(_le(spec.dtype))
            raw.tofile(folder / name)
            files.append(name)
        mask = f"{index:03d}_mask.u8"
        (result["logits"][0, 0] > 0).astype(np.uint8).tofile(folder / mask)
        listed.append(GoldenFrame(index, tuple(files), mask))
        if state is not None:
            state = result["new_state"]
    return listed


def _bundle_record(manifest: Manifest, weights: str, listed: list[GoldenFrame]) -> dict:
    """bundle.json: what the bundle was made for, from what, and how its files are laid out."""
    return {
        "schema": SCHEMA,
        "artifact": {
            "file": manifest.artifact.file,
            "sha256": manifest.artifact.sha256,
            "target": manifest.target,
            "variant": manifest.variant,
            "form": manifest.form,
            "precision": manifest.precision,
            "image_size": manifest.image_size,
        },
        "reference": {
            "runtime": "pytorch",
            "weights": weights,
            "weights_sha256": manifest.weights.sha256,
            "mask": "logit > 0, uint8 (image_size, image_size), 1 = lesion",
        },
        "frames_from": {
            "generator": "model.data.synth.render_video",
            "seed": HELD_OUT_SEED,
            "video": GOLDEN_VIDEO,
            "preprocessing": asdict(manifest.preprocessing),
        },
        "state": None
        if manifest.state is None
        else "each frame's state input is PyTorch's new_state after the frames before it",
        "byte_order": "little",
        "inputs": [asdict(spec) for spec in manifest.inputs],
        "outputs": [asdict(spec) for spec in manifest.outputs],
        "frames": [asdict(frame) for frame in listed],
        "device_outputs": (
            "per frame, the logits tensor's raw bytes in the outputs' layout and dtype, or "
            "every output's bytes in output order (benchmark_model --output_filepath)"
        ),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def read_bundle(root: Path, manifest: Manifest | None = None) -> Bundle:
    """A bundle folder; with ``manifest``, refused unless it was made for that very artifact."""
    root = Path(root)
    path = root / "bundle.json"
    if not path.is_file():
        raise ProjectError(f"{root} is not a golden bundle (no bundle.json)")
    try:
        record = json.loads(path.read_text())
        if record.get("schema") != SCHEMA:
            raise ValueError(f"schema {record.get('schema')!r}, expected {SCHEMA!r}")
        bundle = Bundle(
            root=root,
            artifact=record["artifact"]["file"],
            artifact_sha256=record["artifact"]["sha256"],
            image_size=int(record["artifact"]["image_size"]),
            inputs=from_data(tuple[TensorSpec, ...], record["inputs"], "inputs"),
            outputs=from_data(tuple[TensorSpec, ...], record["outputs"], "outputs"),
            frames=from_data(tuple[GoldenFrame, ...], record["frames"], "frames"),
        )
    except (ValueError, KeyError, TypeError, FieldError) as err:
        raise ProjectError(f"{path} is not a golden bundle: {err}") from err
    if manifest is not None and manifest.artifact.sha256 != bundle.artifact_sha256:
        raise ProjectError(
            f"golden bundle {root} was made for {bundle.artifact}, not {manifest.artifact.file} "
            "(sha256 differs): run device_bench golden on this artifact"
        )
    for frame in bundle.frames:
        for name in (*frame.inputs, frame.mask):
            if not (root / name).is_file():
                raise ProjectError(f"golden bundle {root} lacks {name}")
    return bundle


def frame_inputs(bundle: Bundle, frame: GoldenFrame) -> list[np.ndarray]:
    """One frame's raw inputs as arrays in the file's layout and dtype (what a tool is fed)."""
    return [
        np.fromfile(bundle.root / name, dtype=_le(spec.dtype)).reshape(spec.shape)
        for spec, name in zip(bundle.inputs, frame.inputs, strict=True)
    ]


def _logits_bytes(bundle: Bundle, raw: bytes, frame: int) -> bytes:
    """The logits' bytes from a device output: the logits alone, or all outputs in order."""
    logits = next(s for s in bundle.outputs if s.canonical == "logits")
    total = sum(_nbytes(s) for s in bundle.outputs)
    if len(raw) == _nbytes(logits):
        return raw
    if len(raw) == total:
        start = 0
        for spec in bundle.outputs:
            if spec is logits:
                return raw[start : start + _nbytes(spec)]
            start += _nbytes(spec)
    raise ProjectError(
        f"device output for golden frame {frame} has {len(raw)} bytes; expected the logits "
        f"({_nbytes(logits)}) or every output ({total})"
    )


def golden_dice(bundle: Bundle, outputs: Sequence[bytes | Path | np.ndarray]) -> float:
    """Pooled mask Dice of a device's logits (one output per bundle frame, raw, in the
    artifact's output layout and dtype) against PyTorch's masks; 1.0 where both are empty."""
    if len(outputs) != len(bundle.frames):
        raise ProjectError(f"{len(outputs)} device outputs for {len(bundle.frames)} golden frames")
    logits = next(s for s in bundle.outputs if s.canonical == "logits")
    size = bundle.image_size
    overlap = total = 0
    for frame, output in zip(bundle.frames, outputs, strict=True):
        if isinstance(output, np.ndarray):
            raw = np.ascontiguousarray(output, dtype=_le(logits.dtype)).tobytes()
        else:
            raw = Path(output).read_bytes() if isinstance(output, Path) else bytes(output)
        data = np.frombuffer(_logits_bytes(bundle, raw, frame.index), dtype=_le(logits.dtype))
        canonical = file_to_canonical(data.reshape(logits.shape), logits)
        mask = canonical.reshape(size, size) > 0
        reference = np.fromfile(bundle.root / frame.mask, dtype=np.uint8)
        reference = reference.reshape(size, size).astype(bool)
        overlap += int(np.logical_and(mask, reference).sum())
        total += int(mask.sum() + reference.sum())
    return 1.0 if total == 0 else 2.0 * overlap / total
