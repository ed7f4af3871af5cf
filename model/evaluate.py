"""Score BaS on a dataset at native resolution, streaming each video frame by frame.

    python -m model.evaluate --variant S [--weights shipped|PATH] --data DIR
        [--no-history] [--screen letterbox --screen annotated ...]

Prints a Markdown table (per-frame, per-video and pooled aggregation) and, as its last
line, one JSON record. Unlabelled frames are streamed (they carry the temporal state)
but not scored. ``--no-history`` runs the frame form (no past frames) for the TempLP
ablation. Each ``--screen`` also streams every video placed in that scanner screen
(``model.data.framing.SCREENS``) and scores it against the placed ground truth and
against the unplaced run (the screen's prediction cropped back to the image).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .bas import BaS
from .checkpoint import CheckpointError
from .data import DatasetError, DatasetIndex, discover, native_frames, read_split
from .data.framing import SCREENS, Screen
from .hub import build_bas
from .inference import stream_video
from .metrics import SegmentationMeter, frame_scores, markdown_table


@dataclass
class ScreenResult:
    """One screen's scores: against its ground truth, and agreement with the unplaced run."""

    meter: SegmentationMeter = field(default_factory=SegmentationMeter)
    agreement: list[float] = field(default_factory=list)  # per frame, Dice

    def summary(self) -> dict[str, object]:
        return {**self.meter.summary(), "agreement_dice": float(np.mean(self.agreement))}


def evaluate(
    model: BaS,
    index: DatasetIndex,
    videos: list[str] | None = None,
    history: bool = True,
    screens: tuple[Screen, ...] = (),
) -> tuple[SegmentationMeter, dict[str, ScreenResult]]:
    """Stream every frame of ``videos`` (all by default) through ``model`` and score the masks."""
    meter = SegmentationMeter()
    placed = {screen.name: ScreenResult() for screen in screens}
    for name in videos if videos is not None else index.names:
        frames = list(native_frames(index.video(name)))
        plain = list(stream_video(model.eval(), (image for _, image, _ in frames), history))
        for (_, _, target), pred in zip(frames, plain, strict=True):
            if target is not None:
                meter.update(pred, target, name)
        for screen in screens:
            shown = [screen.apply(image, target) for _, image, target in frames]
            preds = stream_video(model, (image for image, _, _ in shown), history)
            result = placed[screen.name]
            for (_, target, box), pred, ref in zip(shown, preds, plain, strict=True):
                if target is not None:
                    result.meter.update(pred, target, name)
                result.agreement.append(frame_scores(box.uncrop(pred, ref.shape), ref).dice)
    return meter, placed


def screens_table(results: dict[str, dict]) -> str:
    """Markdown: per screen, per-frame and pooled Dice vs ground truth and agreement."""
    lines = [
        "| screen | per-frame Dice (%) | pooled Dice (%) | missed frames | false alarms "
        "| Dice vs unplaced run (%) |",
        "|---|---|---|---|---|---|",
    ]
    for name, summary in results.items():
        counts = summary["counts"]
        lines.append(
            f"| {name} | {100 * summary['per_frame']['dice']:.2f} "
            f"| {100 * summary['pooled']['dice']:.2f} | {counts['missed_frames']} "
            f"| {counts['false_alarm_frames']} | {100 * summary['agreement_dice']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate BaS on a dataset folder.")
    parser.add_argument("--variant", required=True, help="S or L")
    parser.add_argument("--weights", default="shipped", help="'shipped' or a .safetensors path")
    parser.add_argument("--data", type=Path, required=True, help="BUV, FLA-Net or plain layout")
    parser.add_argument("--image-size", type=int, default=240)
    parser.add_argument(
        "--temporal-window", type=int, default=3, help="1 disables TempLP (ablation)"
    )
    parser.add_argument(
        "--no-history",
        action="store_true",
        help="frame form: every frame without past frames (TempLP ablation)",
    )
    parser.add_argument(
        "--screen",
        action="append",
        default=[],
        choices=sorted(SCREENS),
        help="also score the videos placed in this scanner screen (repeatable)",
    )
    parser.add_argument("--split", type=Path, help="split file; evaluate only --subset of it")
    parser.add_argument("--subset", default="test")
    args = parser.parse_args(argv)
    history = not args.no_history
    try:
        model = build_bas(args.variant, args.image_size, args.temporal_window, weights=args.weights)
        index = discover(args.data)
        videos = read_split(args.split)[args.subset] if args.split else None
        started = time.perf_counter()
        meter, placed = evaluate(
            model, index, videos, history, tuple(SCREENS[name] for name in args.screen)
        )
    except (ValueError, CheckpointError, DatasetError, FileNotFoundError, KeyError) as err:
        parser.exit(2, f"error: {err}\n")
    seconds = time.perf_counter() - started
    summary = meter.summary()
    form = "stream form" if history else "frame form (no history)"
    print(
        f"BaS-{args.variant} ({args.weights}), temporal window {args.temporal_window}, "
        f"on {args.data} ({index.layout} layout), {form}, native resolution\n"
    )
    print(markdown_table(summary))
    screens = {name: result.summary() for name, result in placed.items()}
    if screens:
        print("\nIn scanner screens (model.data.framing.SCREENS):\n")
        print(screens_table(screens))
    record = {
        "variant": args.variant,
        "weights": str(args.weights),
        "temporal_window": args.temporal_window,
        "history": history,
        "data": str(args.data),
        "seconds": round(seconds, 1),
        **summary,
        "screens": screens,
    }
    print(json.dumps(record, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
