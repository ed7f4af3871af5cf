"""The demo behind ``make demo``: a synthetic clip segmented by shipped BaS in the stream form.

Writes to ``--out`` (default ``reports/demo``): the clip in the BUV layout, the predicted
masks, an overlay GIF and an image strip (prediction in green, ground truth outlined in
red), and the metrics as Markdown and JSON. Nothing needs downloading.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .atomic import staged_folder
from .data import discover, native_frames
from .data.synth import write_dataset
from .drawing import draw_mask_overlay
from .masks import BaSMasks
from .metrics import SegmentationMeter, meter_table
from .options import command, frames_option, out_option, seed_option, variant_option, weights_option


def _strip(frames: list[np.ndarray], count: int = 6, height: int = 200) -> Image.Image:
    picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    tiles = []
    for i in picks:
        tile = Image.fromarray(frames[i])
        tiles.append(tile.resize((round(tile.width * height / tile.height), height)))
    strip = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), height))
    x = 0
    for tile in tiles:
        strip.paste(tile, (x, 0))
        x += tile.width + 4
    return strip


def run_demo(out: Path, variant: str, weights: str, frames: int, seed: int) -> dict:
    """Build the whole demo folder in a temporary place, then swap it in."""
    with staged_folder(out) as staging:
        network = BaSMasks.build(variant, weights, form="stream")
        index = discover(write_dataset(staging / "clip", videos=1, frames=frames, seed=seed))
        video = index.videos[0]
        images = [(image, mask) for _, image, mask in native_frames(video)]
        started = time.perf_counter()
        preds = list(network.masks(image for image, _ in images))
        per_frame_ms = (time.perf_counter() - started) * 1000 / len(images)

        (staging / "masks").mkdir()
        overlays, meter = [], SegmentationMeter()
        for t, ((image, target), pred) in enumerate(zip(images, preds, strict=True)):
            Image.fromarray(pred.astype(np.uint8) * 255).save(staging / "masks" / f"{t}.png")
            overlays.append(draw_mask_overlay(image, pred, target))
            meter.update(pred, target, video.name)
        gif = [Image.fromarray(o) for o in overlays]
        gif[0].save(
            staging / "overlay.gif", save_all=True, append_images=gif[1:], duration=80, loop=0
        )
        _strip(overlays).save(staging / "strip.png")

        summary = meter.summary()
        record = {
            "variant": variant,
            "weights": weights,
            "form": "stream",
            "frames": frames,
            "seed": seed,
            "ms_per_frame_pytorch_cpu": round(per_frame_ms, 1),
            **summary,
        }
        (staging / "metrics.json").write_text(json.dumps(record, indent=1, allow_nan=False))
        (staging / "metrics.md").write_text(meter_table(summary) + "\n")
    return record


@command("python -m model.demo")
@variant_option()
@weights_option
@frames_option(48, "Frames in the synthetic clip.")
@seed_option(2026, "Synthetic clip seed.")
@out_option("reports/demo", "Demo folder (replaced).")
def main(variant: str, weights: str, frames: int, seed: int, out: Path) -> None:
    """Segment a synthetic clip with shipped BaS in the stream form and write a report."""
    record = run_demo(out, variant, weights, frames, seed)
    print(
        f"BaS-{variant} ({weights}) streamed {frames} synthetic frames "
        f"at {record['ms_per_frame_pytorch_cpu']} ms/frame (PyTorch, CPU)\n"
    )
    print((out / "metrics.md").read_text())
    for name in ("overlay.gif", "strip.png", "masks/", "metrics.json"):
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
