"""Score BaS on a dataset at native resolution, streaming each video frame by frame.

    python -m model.evaluate [--variant S] [--weights shipped|PATH] --data DIR
        [--no-history] [--screen letterbox --screen annotated ...] [--lost-contact 5]
        [--results results/evaluation.json]

Prints a Markdown table (per-frame, per-video and pooled aggregation) and, as its last
line, one JSON record. Unlabelled frames are streamed (they carry the temporal state)
but not scored. ``--no-history`` runs the frame form (no past frames) for the TempLP
ablation. Each ``--screen`` also streams every video placed in that scanner screen
(``model.data.framing.SCREENS``) and scores it against the placed ground truth and
against the unplaced run (the screen's prediction cropped back to the image).
``--lost-contact N`` also streams every video with every N-th frame darkened over most
of its width (``model.data.contact``) and scores the darkened frames on their own: what
the history is worth where a frame's own evidence is gone. A converted artifact is scored,
through its runtime, by ``python -m runtimes.evaluate --artifact PATH`` (the same command
one layer up). ``--results FILE`` adds the JSON record, with its provenance
(``model.provenance``), to FILE's runs, replacing an earlier run of the same variant,
weights, window, history and data: the file the docs' tables are rendered from.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click
import numpy as np

from .checkpoint import sha256
from .data import DatasetIndex, discover, native_frames, read_split
from .data.contact import LostContact
from .data.framing import SCREENS, Screen
from .errors import ProjectError
from .hub import resolve_weights
from .masks import BaSMasks, MaskStream
from .metrics import SegmentationMeter, frame_scores, meter_table
from .options import (
    Choice,
    command,
    existing_path,
    image_size_option,
    temporal_window_option,
    variant_option,
    weights_option,
)
from .provenance import add_run
from .tables import markdown_table

F = TypeVar("F", bound=Callable[..., object])


@dataclass
class ScreenResult:
    """One screen's scores: against its ground truth, and agreement with the unplaced run."""

    meter: SegmentationMeter = field(default_factory=SegmentationMeter)
    agreement: list[float] = field(default_factory=list)  # per frame, Dice

    def summary(self) -> dict[str, object]:
        return {**self.meter.summary(), "agreement_dice": float(np.mean(self.agreement))}


# What one run of a results file is: a re-run with these the same replaces it.
RUN_KEY = ("variant", "weights", "temporal_window", "history", "data")

# Rows of the lost-contact table: the frame set each meter scores.
LOST_CONTACT_ROWS = {
    "all": "all frames",
    "darkened": "darkened frames",
    "previous_mask": "darkened frames, the previous frame's mask",
}


def evaluate(
    network: MaskStream,
    index: DatasetIndex,
    videos: list[str] | None = None,
    screens: tuple[Screen, ...] = (),
    lost_contact: LostContact | None = None,
) -> tuple[SegmentationMeter, dict[str, ScreenResult], dict[str, SegmentationMeter]]:
    """Stream every frame of ``videos`` (all by default) through ``network``; score the masks.

    PyTorch BaS (``model.masks.BaSMasks``) or any runtime's session (``runtimes.evaluate``):
    a stream form carries history, a frame form does not.
    Each video is decoded once and streamed again in each screen and with ``lost_contact``
    (its meters, one per ``LOST_CONTACT_ROWS``, are empty without it).
    """
    meter = SegmentationMeter()
    placed = {screen.name: ScreenResult() for screen in screens}
    lost = {row: SegmentationMeter() for row in LOST_CONTACT_ROWS} if lost_contact else {}
    for name in videos if videos is not None else index.names:
        frames = list(native_frames(index.video(name)))
        plain = list(network.masks(image for _, image, _ in frames))
        for (_, _, target), pred in zip(frames, plain, strict=True):
            if target is not None:
                meter.update(pred, target, name)
        for screen in screens:
            shown = [screen.apply(image, target) for _, image, target in frames]
            preds = network.masks(image for image, _, _ in shown)
            result = placed[screen.name]
            for (_, target, box), pred, ref in zip(shown, preds, plain, strict=True):
                if target is not None:
                    result.meter.update(pred, target, name)
                result.agreement.append(frame_scores(box.uncrop(pred, ref.shape), ref).dice)
        if lost_contact is not None:
            _score_lost_contact(lost, network, frames, lost_contact, name)
    return meter, placed, lost


def headline_scores(
    variant: str,
    weights: Path,
    data: Path,
    image_size: int,
    temporal_window: int,
    videos: list[str] | None = None,
    lost_contact: LostContact | None = None,
) -> dict[str, Any]:
    """The figures a comparison of weights turns on: ``videos`` of ``data`` (all by default)
    streamed by ``weights`` at native resolution, and the same without history.

    Per-frame and pooled Dice, missed lesion frames and false alarms streaming; what history
    adds to per-frame Dice; with ``lost_contact``, what it adds on the darkened frames.
    """
    index = discover(data)
    summaries: dict[str, Any] = {}
    darkened: dict[str, Any] = {}
    for form in ("stream", "frame"):
        network = BaSMasks.build(variant, weights, form, image_size, temporal_window)
        meter, _, lost = evaluate(network, index, videos, lost_contact=lost_contact)
        summaries[form] = meter.summary()
        if lost_contact is not None:
            darkened[form] = lost["darkened"].summary()["per_frame"]["dice"]
    stream, alone = summaries["stream"], summaries["frame"]
    figures = {
        "per_frame": stream["per_frame"]["dice"],
        "pooled": stream["pooled"]["dice"],
        "missed_frames": stream["counts"]["missed_frames"],
        "false_alarm_frames": stream["counts"]["false_alarm_frames"],
        "history_gain": optional_difference(
            stream["per_frame"]["dice"], alone["per_frame"]["dice"]
        ),
        "frames": stream["counts"]["frames"],
    }
    if lost_contact is not None:
        figures["darkened_history_gain"] = optional_difference(
            darkened["stream"], darkened["frame"]
        )
    return figures


def optional_difference(a: float | None, b: float | None) -> float | None:
    """``a - b``, or None where either is undefined (no lesion frame to score)."""
    return None if a is None or b is None else a - b


def _score_lost_contact(
    meters: dict[str, SegmentationMeter],
    network: MaskStream,
    frames: list[tuple[int, np.ndarray, np.ndarray | None]],
    condition: LostContact,
    video: str,
) -> None:
    """One video with contact lost: every labelled frame, the darkened ones, and on those
    the mask of the frame before (what simply holding the last mask would score: the most
    history could be worth there, short of tracking the motion)."""
    shown = (
        condition.apply(image) if condition.hits(i) else image
        for i, (_, image, _) in enumerate(frames)
    )
    previous = None
    for i, ((_, _, target), pred) in enumerate(zip(frames, network.masks(shown), strict=True)):
        if target is not None:
            meters["all"].update(pred, target, video)
            if condition.hits(i):
                meters["darkened"].update(pred, target, video)
                if previous is not None:
                    meters["previous_mask"].update(previous, target, video)
        previous = pred


def _score_cells(summary: dict) -> list[str]:
    """Per-frame and pooled Dice, missed frames and false alarms: the cells both tables share."""
    counts = summary["counts"]
    return [
        f"{100 * summary['per_frame']['dice']:.2f}",
        f"{100 * summary['pooled']['dice']:.2f}",
        str(counts["missed_frames"]),
        str(counts["false_alarm_frames"]),
    ]


def lost_contact_table(results: dict[str, dict]) -> str:
    """Markdown: the scores of each frame set of the lost-contact run."""
    header = ("scored", "frames", "per-frame Dice (%)", "pooled Dice (%)")
    rows = [
        [LOST_CONTACT_ROWS[name], summary["counts"]["frames"], *_score_cells(summary)]
        for name, summary in results.items()
    ]
    return markdown_table((*header, "missed frames", "false alarms"), rows)


def screens_table(results: dict[str, dict]) -> str:
    """Markdown: per screen, the scores vs the placed ground truth and the agreement."""
    header = ("screen", "per-frame Dice (%)", "pooled Dice (%)", "missed frames", "false alarms")
    rows = [
        [name, *_score_cells(summary), f"{100 * summary['agreement_dice']:.2f}"]
        for name, summary in results.items()
    ]
    return markdown_table((*header, "Dice vs unplaced run (%)"), rows)


def chosen_videos(split: Path | None, subset: str | None, default: str) -> list[str] | None:
    """The videos ``--split``/``--subset`` choose (``default``: the subset if none is named);
    None, all of them, without ``--split``."""
    if subset is not None and split is None:
        raise ProjectError(f"--subset {subset} needs --split (the file that defines the subsets)")
    return split_videos_of(split, subset or default) if split is not None else None


def split_videos_of(split: Path, subset: str) -> list[str]:
    """The video names of ``subset`` in the split file ``split``."""
    subsets = read_split(split)
    if subset not in subsets:
        raise ProjectError(
            f"split file {split} has no subset {subset!r}; it has {', '.join(sorted(subsets))}"
        )
    return subsets[subset]


@dataclass(frozen=True)
class EvaluationRequest:
    """What ``python -m model.evaluate`` (and ``runtimes.evaluate``) was asked, by option."""

    variant: str
    weights: str
    data: Path
    image_size: int
    temporal_window: int
    no_history: bool
    screen_names: tuple[str, ...]
    lost_contact_every: int | None
    split: Path | None
    subset: str | None
    artifact: Path | None
    results: Path | None


@dataclass(frozen=True)
class Scored:
    """What is scored, as the heading and the JSON record name it."""

    variant: str
    weights: str  # "shipped", a weights path, or the artifact's path
    runtime: str
    temporal_window: int
    history: bool  # the stream form
    weights_sha256: str  # of the weights the figures come from (an artifact's: its manifest's)


def pytorch_network(request: EvaluationRequest) -> tuple[MaskStream, Scored]:
    """PyTorch BaS as the options ask, in the stream form unless ``--no-history``."""
    form = "frame" if request.no_history else "stream"
    variant, weights, window = request.variant, request.weights, request.temporal_window
    masks = BaSMasks.build(variant, weights, form, request.image_size, window)
    digest = sha256(resolve_weights(variant, weights))
    return masks, Scored(variant, weights, masks.runtime, window, not request.no_history, digest)


def evaluation_options(function: F) -> F:
    """The options of ``python -m model.evaluate``, shared by ``python -m runtimes.evaluate``."""
    options = (
        variant_option(),
        weights_option,
        click.option(
            "--data",
            type=click.Path(path_type=Path, exists=True, file_okay=False),
            required=True,
            help="Dataset folder: BUV, FLA-Net or plain.",
        ),
        image_size_option,
        temporal_window_option,
        click.option(
            "--no-history",
            is_flag=True,
            help="Frame form: every frame without past frames (TempLP ablation).",
        ),
        click.option(
            "--screen",
            "screen_names",
            type=Choice(sorted(SCREENS)),
            multiple=True,
            help="Also score the videos placed in this scanner screen (repeatable).",
        ),
        click.option(
            "--lost-contact",
            "lost_contact_every",
            type=click.IntRange(min=1),
            metavar="N",
            help="Also score with 1 frame in N darkened to 10 % over the left 60 % of its width.",
        ),
        click.option(
            "--split",
            type=click.Path(path_type=Path, exists=True, dir_okay=False),
            help="Split file; evaluate only --subset of it.",
        ),
        click.option("--subset", help="Subset of --split (default: test)."),
        click.option(
            "--artifact",
            type=existing_path,
            help="Score this converted artifact, through its runtime, instead of PyTorch BaS "
            "(python -m runtimes.evaluate).",
        ),
        click.option(
            "--results",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Also add the JSON record, with its provenance, to this file's runs "
            "(results/evaluation.json).",
        ),
    )
    for option in reversed(options):
        function = option(function)
    return function


def run_evaluation(
    open_network: Callable[[EvaluationRequest], tuple[MaskStream, Scored]],
    request: EvaluationRequest,
) -> None:
    """Check the options and the data, score what ``open_network`` gives, print the report."""
    data = request.data
    videos = chosen_videos(request.split, request.subset, "test")
    network, scored = open_network(request)
    index = discover(data)  # the data and the split are checked before any video is scored
    for name in videos or ():
        index.video(name)  # a DatasetError naming the video the split lists and data lacks
    started = time.perf_counter()
    every = request.lost_contact_every
    condition = LostContact(every=every) if every else None
    screens_asked = tuple(SCREENS[name] for name in request.screen_names)
    meter, placed, lost_meters = evaluate(network, index, videos, screens_asked, condition)
    lost = {row: m.summary() for row, m in lost_meters.items()}
    seconds = time.perf_counter() - started
    screens = {name: result.summary() for name, result in placed.items()}
    form = "stream form" if scored.history else "frame form (no history)"
    print(
        f"BaS-{scored.variant} ({scored.weights}, {scored.runtime}), temporal window "
        f"{scored.temporal_window}, on {data} ({index.layout} layout), {form}, native resolution\n"
    )
    _print_tables(meter.summary(), screens, condition, lost)
    record = {
        "variant": scored.variant,
        "weights": str(scored.weights),
        "weights_sha256": scored.weights_sha256,
        "temporal_window": scored.temporal_window,
        "history": scored.history,
        "data": str(data),
        "seconds": round(seconds, 1),
        **meter.summary(),
        "screens": screens,
        "lost_contact": {"every": condition.every, **lost} if condition else None,
    }
    print(json.dumps(record, allow_nan=False))
    if request.results is not None:
        add_run(request.results, record, RUN_KEY)


def _print_tables(
    summary: dict, screens: dict[str, dict], condition: LostContact | None, lost: dict[str, dict]
) -> None:
    print(meter_table(summary))
    if screens:
        print("\nIn scanner screens (model.data.framing.SCREENS):\n")
        print(screens_table(screens))
    if condition is not None:
        print(
            f"\nWith lost contact (model.data.contact: 1 frame in {condition.every} at "
            f"{condition.gain:.0%} over the left {condition.width:.0%} of its width):\n"
        )
        print(lost_contact_table(lost))


@command("python -m model.evaluate")
@evaluation_options
def main(**options: Any) -> None:
    """Score BaS on a dataset at native resolution, streaming each video frame by frame."""
    request = EvaluationRequest(**options)
    if request.artifact is not None:
        raise ProjectError(
            f"scoring an artifact needs its runtime: python -m runtimes.evaluate --artifact "
            f"{request.artifact} --data {request.data} ... (the same options)"
        )
    run_evaluation(pytorch_network, request)


if __name__ == "__main__":
    main()
