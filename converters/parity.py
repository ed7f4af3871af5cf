"""Run an artifact on real-looking frames and compare it with PyTorch, on logits and on masks.

    python -m converters.parity --artifact PATH [--frames N]

Frames come from held-out synthetic ultrasound videos (seed 1) segmented by the same
weights the artifact was built from. The stream form runs over one continuous clip,
each side feeding back its own state, and is compared frame by frame. Prints one JSON
record, writes it into the artifact's manifest, and exits non-zero if a gate fails.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import platform
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path
from typing import Any, TypeVar

import click
import numpy as np
import torch
from scipy import ndimage

from model.bas import BaS
from model.checkpoint import CheckpointError, sha256
from model.data import discover, native_frames
from model.data.synth import HELD_OUT_SEED, render_video
from model.evaluate import chosen_videos
from model.host import cpu_model
from model.hub import build_bas, resolve_weights
from model.metrics import FrameScores, frame_scores, overlap_scores
from model.options import command, existing_path, frames_option, runtime_option
from runtimes import open_model
from runtimes.manifest import (
    Gate,
    GroundTruthDice,
    LogitErrors,
    Manifest,
    MaskAgreement,
    ParityRecord,
    StreamDrift,
    WorstFrame,
    read_manifest,
    write_manifest,
)
from runtimes.registry import RUNTIME_NAMES, get_backend
from runtimes.session import NonFiniteOutput, to_input, to_native
from runtimes.targets import get_target_spec

from .spec import ConversionError

F = TypeVar("F", bound=Callable[..., object])

VIDEO_LENGTH = 20
Video = list[tuple[np.ndarray, np.ndarray | None]]  # (frame, ground truth mask), in order
MIN_FRAMES = 2 * VIDEO_LENGTH  # videos 0 and 1 at least: video 1 is the hard one
DEFAULT_FRAMES = 3 * VIDEO_LENGTH
# A lesion is at least this fraction of the frame: smaller than 99 % of the lesion masks in
# the synthetic training and held-out ground truth (1st percentile 0.12 %).
MIN_FINDING = 1e-3
WORST_FRAMES = 5  # frames listed in the record where target and PyTorch masks differ most

GATES = {
    "fp32": Gate(max_abs_err=1e-3, dice_vs_pytorch=0.999),
    "fp16": Gate(dice_vs_pytorch=0.99),
    "int8": Gate(dice_vs_pytorch=0.97, max_gt_dice_drop=0.01),
    "int16x8": Gate(dice_vs_pytorch=0.97, max_gt_dice_drop=0.01),
}


def parity_videos(
    count: int, per_video: int = VIDEO_LENGTH
) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """The held-out videos both forms are scored on, each a continuous clip from its start.

    ``count`` frames as whole videos of ``VIDEO_LENGTH`` (the last one cut short), or the
    first ``per_video`` frames of each of those videos (a cross-section, for emulation).
    Video 1, a sector scan whose small lesion PyTorch barely finds, is the hard one: the
    set always holds it.
    """
    count = max(count, MIN_FRAMES)
    lengths = [
        min(VIDEO_LENGTH, count - video * VIDEO_LENGTH, per_video)
        for video in range(math.ceil(count / VIDEO_LENGTH))
    ]
    return [list(render_video(HELD_OUT_SEED, video, n)) for video, n in enumerate(lengths)]


@dataclass(frozen=True)
class ParityData:
    """The videos parity runs on: our held-out synthetic ones (no ``folder``), or a folder of
    one's own (any layout ``model.data`` reads): all its videos, or ``videos`` of it (a fine-
    tune's held-out ones). Each video is a continuous clip from its first frame; frames
    without a mask are compared with PyTorch but not scored against ground truth."""

    folder: Path | None = None
    videos: tuple[str, ...] = ()

    def check(self) -> None:
        """Refuse a folder with no videos, or a video it lacks, before any work."""
        if self.folder is not None:
            index = discover(self.folder)
            for name in self.videos:
                index.video(name)

    def load(self, frames: int | None, per_video: int | None = None) -> tuple[list[Video], str]:
        """The videos (whole, in order, the last cut at ``frames`` frames in all, each cut at
        ``per_video`` frames if given) and the record's words for them."""
        if self.folder is None:
            videos = parity_videos(frames or DEFAULT_FRAMES, per_video or VIDEO_LENGTH)
            where = f"synthetic ultrasound, seed {HELD_OUT_SEED} (held out)"
            return videos, _described(where, [str(i) for i in range(len(videos))], videos)
        index = discover(self.folder)
        names = list(self.videos or index.names)
        left = frames
        videos: list[Video] = []
        for name in names:
            if left is not None and left <= 0:
                break
            take = min((n for n in (left, per_video) if n is not None), default=None)
            frames_of = native_frames(index.video(name))
            videos.append([(image, mask) for _, image, mask in itertools.islice(frames_of, take)])
            left = None if left is None else left - len(videos[-1])
        where = f"{self.folder} ({index.layout} layout)"
        return videos, _described(where, names[: len(videos)], videos)


def _described(where: str, names: list[str], videos: list[Video]) -> str:
    """The parity record's words for its frames (``frames_source``)."""
    return (
        f"{where}: videos {', '.join(names)}, the first "
        f"{', '.join(str(len(v)) for v in videos)} frames of each, each a continuous clip"
    )


def unmatched_findings(mask: np.ndarray, other: np.ndarray) -> int:
    """Lesions in ``mask`` (connected, at least ``MIN_FINDING`` of the frame) ``other`` misses."""
    labels, count = ndimage.label(mask)
    if not count:
        return 0
    index = np.arange(1, count + 1)
    sizes = ndimage.sum_labels(mask, labels, index)
    touched = ndimage.maximum(other, labels, index)
    return int(np.count_nonzero((sizes >= MIN_FINDING * mask.size) & ~touched.astype(bool)))


def _nanmean(values: list[float]) -> float | None:
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else None


def _weights(manifest: Manifest) -> str:
    path = resolve_weights(manifest.variant, manifest.weights.source)
    if sha256(path) != manifest.weights.sha256:
        raise CheckpointError(
            f"weights {path} are not the ones the artifact was built from (sha256)"
        )
    return manifest.weights.source


def parity_runtime(manifest: Manifest) -> str:
    """The artifact's own runtime; where it cannot run here, its target's reference (Core ML's
    evaluator on Linux); for a file that allows FP16 inference, its target's FP16 runtime
    (LiteRT with FP16 forced, the arithmetic ARMv8.2+ phones run).

    Parity is the one place these stand in, and the record says so (``runtime``).
    """
    spec = get_target_spec(manifest.target)
    if spec.reference is not None and not get_backend(manifest.runtime).is_available():
        return spec.reference
    if spec.fp16_runtime is not None and manifest.accumulation == "fp16":
        return spec.fp16_runtime
    return manifest.runtime


def host_platform() -> dict[str, str]:
    """Where a host runtime ran: OS, machine and CPU model (the kernels XNNPACK picks)."""
    return {"platform": f"{sys.platform}-{platform.machine()}", "cpu": cpu_model()}


def runtime_platform(runtime: str) -> dict[str, Any]:
    """The platform a runtime computes on, with its libraries' versions."""
    backend = get_backend(runtime)
    facts = backend.platform() if hasattr(backend, "platform") else host_platform()
    versions = {}
    for module in backend.modules:
        with contextlib.suppress(PackageNotFoundError, KeyError):
            for dist in packages_distributions()[module.split(".")[0]]:
                versions[dist] = version(dist)
    return {**facts, "libraries": {**facts.get("libraries", {}), **versions}}


Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@torch.no_grad()
def _both_sides(
    model: BaS, run: Runner, form: str, video: Video
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(target's logits, PyTorch's) of each frame of one continuous clip: the stream form
    starts from the initial state, and each side feeds back its own."""
    size = model.config.image_size
    torch_state = target_state = model.initial_state(1).numpy()
    for image, _ in video:
        x = to_input(image, size, model.config.preprocessing)
        if form == "frame":
            expected = model.forward_frame(torch.from_numpy(x)).numpy()
            got = run({"frame": x})["logits"]
        else:
            logits, new_state = model.stream(torch.from_numpy(x), torch.from_numpy(torch_state))
            expected, torch_state = logits.numpy(), new_state.numpy()
            result = run({"frame": x, "state": target_state})
            got, target_state = result["logits"], result["new_state"]
        if got.shape != expected.shape:
            raise ConversionError(f"logits shape {got.shape} != PyTorch's {expected.shape}")
        yield got, expected


@dataclass
class _Tally:
    """The running figures of one comparison, frame by frame."""

    errors: list[float] = field(default_factory=list)  # mean abs logit error per frame
    maxima: list[float] = field(default_factory=list)
    squared: list[float] = field(default_factory=list)
    peaks: list[float] = field(default_factory=list)  # PyTorch's logit range per frame
    positions: list[int] = field(default_factory=list)  # each frame's place in its clip
    vs_torch: list[FrameScores] = field(default_factory=list)
    gt_target: list[float] = field(default_factory=list)
    gt_torch: list[float] = field(default_factory=list)
    pixels: list[tuple[int, int]] = field(default_factory=list)  # (PyTorch's, target's)
    pooled: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=np.int64))  # tp fp fn
    missed: int = 0
    false: int = 0

    def add(
        self,
        got: np.ndarray,
        expected: np.ndarray,
        shape: tuple[int, ...],
        truth: np.ndarray | None,
        position: int,
    ) -> None:
        diff = np.abs(got.astype(np.float64) - expected)
        self.errors.append(float(diff.mean()))
        self.maxima.append(float(diff.max()))
        self.squared.append(float((diff**2).mean()))
        self.peaks.append(float(expected.max() - expected.min()))
        self.positions.append(position)
        mask_target, mask_torch = to_native(got, shape) > 0, to_native(expected, shape) > 0
        self.vs_torch.append(frame_scores(mask_target, mask_torch))
        self.pixels.append((int(mask_torch.sum()), int(mask_target.sum())))
        self.pooled += [
            np.count_nonzero(mask_target & mask_torch),
            np.count_nonzero(mask_target & ~mask_torch),
            np.count_nonzero(~mask_target & mask_torch),
        ]
        self.missed += unmatched_findings(mask_torch, mask_target)
        self.false += unmatched_findings(mask_target, mask_torch)
        if truth is not None:  # an unlabelled frame of one's own videos
            self.gt_target.append(frame_scores(mask_target, truth).dice)
            self.gt_torch.append(frame_scores(mask_torch, truth).dice)

    def logits(self) -> LogitErrors:
        mse, peak = float(np.mean(self.squared)), float(np.max(self.peaks))
        return LogitErrors(
            max_abs_err=max(self.maxima),
            mean_abs_err=float(np.mean(self.errors)),
            psnr_db=10 * math.log10(peak**2 / mse) if mse > 0 else None,  # None: identical
        )

    def masks(self, videos: list[Video]) -> MaskAgreement:
        scores = self.vs_torch
        return MaskAgreement(
            pooled_dice=overlap_scores(*(int(n) for n in self.pooled))["dice"],
            missed_findings=self.missed,
            false_findings=self.false,
            dice=_nanmean([s.dice for s in scores]),
            iou=_nanmean([s.iou for s in scores]),
            hd95_px=_nanmean([s.hd95 for s in scores]),
            dice_per_video=tuple(
                _nanmean([s.dice for s in chunk]) for chunk in _per_video(scores, videos)
            ),
            worst_frames=_worst(scores, self.pixels, videos),
        )

    def drift(self, videos: list[Video]) -> StreamDrift:
        """Error over the first and the last third of each clip, by position in the clip."""
        third = max(1, min(len(v) for v in videos) // 3)
        frames = list(zip(self.errors, self.positions, _lengths(videos), strict=True))
        return StreamDrift(
            mean_abs_err_first_third=float(np.mean([e for e, p, _ in frames if p < third])),
            mean_abs_err_last_third=float(np.mean([e for e, p, n in frames if p >= n - third])),
        )


def compare(model: BaS, run: Runner, form: str, videos: list[Video], source: str) -> ParityRecord:
    """Logit and mask figures of ``run`` (canonical tensors in and out) against ``model``.

    Each video is a continuous clip: the stream form starts it from the initial state, and
    each side feeds back its own. The record holds the figures only (no verdict).
    """
    tally = _Tally()
    for video in videos:
        outputs = _both_sides(model, run, form, video)
        for position, ((got, expected), (image, truth)) in enumerate(
            zip(outputs, video, strict=True)
        ):
            tally.add(got, expected, image.shape[:2], truth, position)
    return ParityRecord(
        frames=len(tally.errors),
        frames_source=source,
        logits=tally.logits(),
        masks_vs_pytorch=tally.masks(videos),
        dice_vs_ground_truth=GroundTruthDice(
            target=_nanmean(tally.gt_target), pytorch=_nanmean(tally.gt_torch)
        ),
        stream_drift=None if form == "frame" else tally.drift(videos),
    )


def measure(
    artifact: Path,
    frames: int | None = DEFAULT_FRAMES,
    runtime: str | None = None,
    per_video: int | None = None,
    data: ParityData = ParityData(),
) -> ParityRecord:
    """Parity figures of one artifact against PyTorch, with the gates applied."""
    manifest = read_manifest(artifact)
    runner = open_model(artifact, runtime or parity_runtime(manifest))
    model = build_bas(
        manifest.variant, manifest.image_size, manifest.temporal_window, weights=_weights(manifest)
    ).eval()
    gate = GATES[manifest.precision]
    try:
        videos, source = data.load(frames, per_video)
        figures = compare(model, runner, manifest.form, videos, source)
        failures = check_gates(figures, gate)
    except ConversionError as err:
        raise ConversionError(f"{artifact.name}: {err}") from err
    except NonFiniteOutput as err:  # failed, not a crash: the matrix goes on (issue 20)
        figures, failures = ParityRecord(), [str(err)]  # nothing scored
    return replace(
        figures,
        artifact=artifact.name,
        target=manifest.target,
        variant=manifest.variant,
        form=manifest.form,
        precision=manifest.precision,
        accumulation=manifest.accumulation,
        runtime=runner.runtime,
        platform=runtime_platform(runner.runtime),
        gate=gate,
        passed=not failures,
        failures=tuple(failures),
    )


def _lengths(videos: list[Video]) -> list[int]:
    """Each frame's clip length, in frame order."""
    return [len(video) for video in videos for _ in video]


def _per_video(values: list[Any], videos: list[Video]) -> list[list[Any]]:
    bounds = np.cumsum([0, *(len(v) for v in videos)])
    return [values[a:b] for a, b in itertools.pairwise(bounds)]


def _worst(
    scores: list[FrameScores], pixels: list[tuple[int, int]], videos: list[Video]
) -> tuple[WorstFrame, ...]:
    where = [(v, f) for v, video in enumerate(videos) for f in range(len(video))]
    rows = [
        (*where[i], *pixels[i], round(float(s.dice), 4))
        for i, s in enumerate(scores)
        if not math.isnan(s.dice) and s.dice < 1.0
    ]
    return tuple(sorted(rows, key=lambda row: row[-1])[:WORST_FRAMES])


def check_gates(record: ParityRecord, gate: Gate) -> list[str]:
    """Each missed figure as 'name value vs limit'."""
    failures = []
    err = record.logits.max_abs_err
    if gate.max_abs_err is not None and err > gate.max_abs_err:
        failures.append(f"logits max abs err {err:.3g} > {gate.max_abs_err:g}")
    masks = record.masks_vs_pytorch
    dice = masks.pooled_dice
    if math.isnan(dice) or dice < gate.dice_vs_pytorch:
        failures.append(f"mask Dice vs PyTorch (pooled) {dice:.5f} < {gate.dice_vs_pytorch}")
    if masks.missed_findings + masks.false_findings > gate.max_unmatched_findings:
        failures.append(
            f"lesions found by one side only: {masks.missed_findings} missed, "
            f"{masks.false_findings} false (at most {gate.max_unmatched_findings})"
        )
    truth = record.dice_vs_ground_truth
    drop = gate.max_gt_dice_drop
    scored = truth.target is not None and truth.pytorch is not None  # None: no masks given
    if scored and drop is not None and truth.target < truth.pytorch - drop:
        failures.append(
            f"Dice vs ground truth {truth.target:.4f} more than {gate.max_gt_dice_drop} "
            f"below PyTorch's {truth.pytorch:.4f}"
        )
    drift = record.stream_drift
    if drift is not None:
        early, late = drift.mean_abs_err_first_third, drift.mean_abs_err_last_third
        if late > gate.max_drift_ratio * early + 1e-4:
            failures.append(f"stream error grows: last third {late:.3g} vs first third {early:.3g}")
    return failures


# How many frames of each parity video the emulated ARM64 runtime sees (runtimes.arm64):
# emulation is 85x (int8) to 300x (float) slower, so float files are checked on the first
# frames of every video, integer files on all of them.
ARM64_FRAMES_PER_VIDEO = {"fp32": 1, "fp16": 1, "int8": VIDEO_LENGTH, "int16x8": 1}


arm64_option = click.option(
    "--arm64",
    is_flag=True,
    help="Also run it on ARM64 kernels under QEMU (LiteRT and onnxruntime files; make arm64).",
)


def arm64_runtime(manifest: Manifest) -> str | None:
    """The target's emulated ARM64 runtime, if it has one."""
    return get_target_spec(manifest.target).arm64_runtime


def record_parity(
    artifact: Path,
    frames: int | None = DEFAULT_FRAMES,
    runtime: str | None = None,
    arm64: bool = False,
    data: ParityData = ParityData(),
) -> ParityRecord:
    """Measure and write the record into the artifact's manifest.

    ``arm64``: also run the file on ARM64 kernels (emulated) and keep that record beside the
    host's, under ``arm64``; the artifact passes only if both do.
    """
    manifest = read_manifest(artifact)
    emulated = arm64_runtime(manifest) if arm64 else None
    if arm64 and emulated is None:  # refused before the host's run, not after it
        raise ConversionError(f"{artifact.name}: no ARM64 runtime for {manifest.target}")
    record = measure(artifact, frames, runtime, data=data)
    if emulated is not None:
        per_video = ARM64_FRAMES_PER_VIDEO[manifest.precision]
        arm = measure(artifact, frames, emulated, per_video, data)
        failures = (*record.failures, *(f"ARM64: {f}" for f in arm.failures))
        record = replace(record, arm64=arm, failures=failures, passed=not failures)
    write_manifest(artifact, manifest.with_parity(record))
    return record


FRAMES_HELP = (
    f"Frames to compare, as whole videos in order [default: {DEFAULT_FRAMES} synthetic "
    "frames, in videos of 20; with --data, every frame of the videos]."
)


def parity_data_options(function: F) -> F:
    """``--data`` and ``--split``/``--subset``: parity on one's own held-out videos."""
    options = (
        click.option(
            "--data",
            type=click.Path(path_type=Path, exists=True, file_okay=False),
            help="Compare on your own videos (a BUV, FLA-Net or plain dataset folder) instead "
            "of the synthetic held-out ones.",
        ),
        click.option(
            "--split",
            type=click.Path(path_type=Path, exists=True, dir_okay=False),
            help="Split file (model.finetune's split.json): only --subset's videos of --data.",
        ),
        click.option("--subset", help="Subset of --split [default: val]."),
    )
    for option in reversed(options):
        function = option(function)
    return function


def parity_data_of(data: Path | None, split: Path | None, subset: str | None) -> ParityData:
    """The ``ParityData`` the options name; refused by name if they do not go together."""
    if data is None:
        if split is not None or subset is not None:
            raise ConversionError("--split and --subset choose videos of --data: give --data")
        return ParityData()
    return ParityData(data, tuple(chosen_videos(split, subset, "val") or ()))


@command("python -m converters.parity")
@click.option(
    "--artifact", type=existing_path, required=True, help="Converted artifact (with its manifest)."
)
@frames_option(None, FRAMES_HELP)
@runtime_option(RUNTIME_NAMES)
@arm64_option
@parity_data_options
def main(
    artifact: Path,
    frames: int | None,
    runtime: str | None,
    arm64: bool,
    data: Path | None,
    split: Path | None,
    subset: str | None,
) -> None:
    """Compare an artifact with PyTorch on held-out frames; exit 1 if a parity gate fails."""
    parity_data = parity_data_of(data, split, subset)
    parity_data.check()
    record = record_parity(artifact, frames, runtime, arm64, parity_data)
    print(json.dumps(asdict(record)))
    if not record.passed:
        print(f"parity FAILED for {record.label}: {'; '.join(record.failures)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
