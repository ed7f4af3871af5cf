"""Run an artifact on real-looking frames and compare it with PyTorch, on logits and on masks.

    python -m converters.parity --artifact PATH [--frames N]

Frames come from held-out synthetic ultrasound videos (seed 1) segmented by the same
weights the artifact was built from. The stream form runs over one continuous clip,
each side feeding back its own state, and is compared frame by frame. Prints one JSON
record, writes it into the artifact's manifest, and exits non-zero if a gate fails.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from model.checkpoint import CheckpointError, sha256
from model.cli import command, existing_path, frames_option, runtime_option
from model.data.synth import render_video
from model.hub import build_bas, shipped_weights
from model.metrics import frame_scores
from runtimes import open_model
from runtimes.manifest import Manifest, read_manifest, write_manifest
from runtimes.registry import RUNTIME_NAMES, get_backend
from runtimes.session import to_input, to_native

from .spec import ConversionError

PARITY_SEED = 1  # the held-out test seed: never trained on, never calibrated on
FRAME_VIDEO_LENGTH = 20
MIN_STREAM_FRAMES = 60


@dataclass(frozen=True)
class Gate:
    max_abs_err: float | None = None  # on logits
    dice_vs_pytorch: float = 0.0  # mean per-frame Dice of target masks against PyTorch masks
    max_gt_dice_drop: float | None = None  # Dice vs ground truth, at most this far below PyTorch
    max_drift_ratio: float = 2.0  # stream: late-frame error / early-frame error (plus a floor)


GATES = {
    "fp32": Gate(max_abs_err=1e-3, dice_vs_pytorch=0.999),
    "fp16": Gate(dice_vs_pytorch=0.99),
    "int8": Gate(dice_vs_pytorch=0.97, max_gt_dice_drop=0.01),
    "int16x8": Gate(dice_vs_pytorch=0.97, max_gt_dice_drop=0.01),
}


def _frames(form: str, count: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(video, image, ground truth) in order: one continuous video for stream, several for frame."""
    if form == "stream":
        return [
            (0, im, gt) for im, gt in render_video(PARITY_SEED, 0, max(count, MIN_STREAM_FRAMES))
        ]
    frames = []
    for video in range(math.ceil(count / FRAME_VIDEO_LENGTH)):
        frames += [
            (video, im, gt) for im, gt in render_video(PARITY_SEED, video, FRAME_VIDEO_LENGTH)
        ]
    return frames[:count]


def _nanmean(values: list[float]) -> float | None:
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else None


def _weights(manifest: Manifest) -> str:
    source = manifest.weights.source
    path = shipped_weights(manifest.variant) if source == "shipped" else Path(source)
    if sha256(path) != manifest.weights.sha256:
        raise CheckpointError(
            f"weights {path} are not the ones the artifact was built from (sha256)"
        )
    return source


def parity_runtime(manifest: Manifest) -> str:
    """The artifact's own runtime; for Core ML where Apple's cannot run, the reference evaluator.

    Parity is the one place the evaluator stands in, and the record says so (``runtime``).
    """
    if manifest.target == "coreml" and not get_backend(manifest.runtime).is_available():
        return "mil_reference"
    return manifest.runtime


@torch.no_grad()
def measure(
    artifact: Path, frames: int = MIN_STREAM_FRAMES, runtime: str | None = None
) -> dict[str, Any]:
    """Parity figures of one artifact against PyTorch, with the gates applied."""
    manifest = read_manifest(artifact)
    runner = open_model(artifact, runtime or parity_runtime(manifest))
    form, size = manifest.form, manifest.image_size
    model = build_bas(manifest.variant, size, manifest.temporal_window, weights=_weights(manifest))
    errors, maxima, squared, peaks = [], [], [], []
    vs_torch, gt_target, gt_torch = [], [], []
    torch_state = target_state = model.initial_state(1).numpy()
    for _, image, truth in _frames(form, frames):
        x = to_input(image, size)
        if form == "frame":
            expected = model.forward_frame(torch.from_numpy(x)).numpy()
            got = runner({"frame": x})["logits"]
        else:
            logits, new_state = model.stream(torch.from_numpy(x), torch.from_numpy(torch_state))
            expected, torch_state = logits.numpy(), new_state.numpy()
            result = runner({"frame": x, "state": target_state})
            got, target_state = result["logits"], result["new_state"]
        if got.shape != expected.shape:
            raise ConversionError(f"{artifact.name}: logits shape {got.shape} != {expected.shape}")
        diff = np.abs(got.astype(np.float64) - expected)
        errors.append(float(diff.mean()))
        maxima.append(float(diff.max()))
        squared.append(float((diff**2).mean()))
        peaks.append(float(expected.max() - expected.min()))
        shape = image.shape[:2]
        mask_target = to_native(got, shape) > 0
        mask_torch = to_native(expected, shape) > 0
        vs_torch.append(frame_scores(mask_target, mask_torch))
        gt_target.append(frame_scores(mask_target, truth).dice)
        gt_torch.append(frame_scores(mask_torch, truth).dice)
    mse, peak = float(np.mean(squared)), float(np.max(peaks))
    third = max(1, len(errors) // 3)
    record: dict[str, Any] = {
        "artifact": artifact.name,
        "target": manifest.target,
        "variant": manifest.variant,
        "form": form,
        "precision": manifest.precision,
        "runtime": runner.runtime,
        "frames": len(errors),
        "frames_source": f"synthetic ultrasound, seed {PARITY_SEED} (held out)",
        "logits": {
            "max_abs_err": max(maxima),
            "mean_abs_err": float(np.mean(errors)),
            "psnr_db": 10 * math.log10(peak**2 / mse) if mse > 0 else math.inf,
        },
        "masks_vs_pytorch": {
            "dice": _nanmean([s.dice for s in vs_torch]),
            "iou": _nanmean([s.iou for s in vs_torch]),
            "hd95_px": _nanmean([s.hd95 for s in vs_torch]),
        },
        "dice_vs_ground_truth": {"target": _nanmean(gt_target), "pytorch": _nanmean(gt_torch)},
        "stream_drift": None
        if form == "frame"
        else {
            "mean_abs_err_first_third": float(np.mean(errors[:third])),
            "mean_abs_err_last_third": float(np.mean(errors[-third:])),
        },
    }
    if math.isinf(record["logits"]["psnr_db"]):
        record["logits"]["psnr_db"] = None  # identical logits; JSON has no infinity
    failures = check_gates(record, GATES[manifest.precision])
    record["gate"] = asdict(GATES[manifest.precision])
    record["passed"] = not failures
    record["failures"] = failures
    return record


def check_gates(record: dict[str, Any], gate: Gate) -> list[str]:
    """Each missed figure as 'name value vs limit'."""
    failures = []
    err = record["logits"]["max_abs_err"]
    if gate.max_abs_err is not None and err > gate.max_abs_err:
        failures.append(f"logits max abs err {err:.3g} > {gate.max_abs_err:g}")
    dice = record["masks_vs_pytorch"]["dice"]
    if dice is None or dice < gate.dice_vs_pytorch:
        failures.append(f"mask Dice vs PyTorch {dice} < {gate.dice_vs_pytorch}")
    truth = record["dice_vs_ground_truth"]
    if (
        gate.max_gt_dice_drop is not None
        and truth["target"] < truth["pytorch"] - gate.max_gt_dice_drop
    ):
        failures.append(
            f"Dice vs ground truth {truth['target']:.4f} more than {gate.max_gt_dice_drop} "
            f"below PyTorch's {truth['pytorch']:.4f}"
        )
    drift = record["stream_drift"]
    if drift is not None:
        early, late = drift["mean_abs_err_first_third"], drift["mean_abs_err_last_third"]
        if late > gate.max_drift_ratio * early + 1e-4:
            failures.append(f"stream error grows: last third {late:.3g} vs first third {early:.3g}")
    return failures


def describe(record: dict[str, Any]) -> str:
    return f"{record['target']} BaS-{record['variant']} {record['precision']} {record['form']}"


def record_parity(
    artifact: Path, frames: int = MIN_STREAM_FRAMES, runtime: str | None = None
) -> dict[str, Any]:
    """Measure and write the record into the artifact's manifest."""
    record = measure(artifact, frames, runtime)
    write_manifest(artifact, read_manifest(artifact).with_parity(record))
    return record


@command("python -m converters.parity")
@click.option(
    "--artifact", type=existing_path, required=True, help="Converted artifact (with its manifest)."
)
@frames_option(MIN_STREAM_FRAMES, "Frames to compare.")
@runtime_option(RUNTIME_NAMES)
def main(artifact: Path, frames: int, runtime: str | None) -> None:
    """Compare an artifact with PyTorch on synthetic frames; exit 1 if a parity gate fails."""
    record = record_parity(artifact, frames, runtime)
    print(json.dumps(record))
    if not record["passed"]:
        print(
            f"parity FAILED for {describe(record)}: {'; '.join(record['failures'])}",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
