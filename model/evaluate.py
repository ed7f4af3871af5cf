"""Score BaS on a dataset at native resolution, streaming each video frame by frame.

    python -m model.evaluate --variant S [--weights shipped|PATH] --data DIR

Prints a Markdown table (per-frame, per-video and pooled aggregation) and, as its last
line, one JSON record. Unlabelled frames are streamed (they carry the temporal state)
but not scored.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .bas import BaS
from .checkpoint import CheckpointError
from .data import DatasetError, DatasetIndex, discover, native_frames, read_split
from .hub import build_bas
from .inference import stream_video
from .metrics import SegmentationMeter, markdown_table


def evaluate(model: BaS, index: DatasetIndex, videos: list[str] | None = None) -> SegmentationMeter:
    """Stream every frame of ``videos`` (all by default) through ``model`` and score the masks."""
    meter = SegmentationMeter()
    for name in videos if videos is not None else index.names:
        frames = list(native_frames(index.video(name)))
        masks = stream_video(model.eval(), (image for _, image, _ in frames))
        for (_, _, target), pred in zip(frames, masks, strict=True):
            if target is not None:
                meter.update(pred, target, name)
    return meter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate BaS on a dataset folder.")
    parser.add_argument("--variant", required=True, help="S or L")
    parser.add_argument("--weights", default="shipped", help="'shipped' or a .safetensors path")
    parser.add_argument("--data", type=Path, required=True, help="BUV, FLA-Net or plain layout")
    parser.add_argument("--image-size", type=int, default=240)
    parser.add_argument(
        "--temporal-window", type=int, default=3, help="1 disables TempLP (ablation)"
    )
    parser.add_argument("--split", type=Path, help="split file; evaluate only --subset of it")
    parser.add_argument("--subset", default="test")
    args = parser.parse_args(argv)
    try:
        model = build_bas(args.variant, args.image_size, args.temporal_window, weights=args.weights)
        index = discover(args.data)
        videos = read_split(args.split)[args.subset] if args.split else None
        started = time.perf_counter()
        meter = evaluate(model, index, videos)
    except (ValueError, CheckpointError, DatasetError, FileNotFoundError, KeyError) as err:
        parser.exit(2, f"error: {err}\n")
    seconds = time.perf_counter() - started
    summary = meter.summary()
    print(
        f"BaS-{args.variant} ({args.weights}), temporal window {args.temporal_window}, "
        f"on {args.data} ({index.layout} layout), stream form, native resolution\n"
    )
    print(markdown_table(summary))
    record = {
        "variant": args.variant,
        "weights": str(args.weights),
        "temporal_window": args.temporal_window,
        "data": str(args.data),
        "seconds": round(seconds, 1),
        **summary,
    }
    print(json.dumps(record, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
