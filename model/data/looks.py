"""Another scanner's look, given to a dataset: the change a fine-tune on one's own scanner mends.

The same tissue looks different on another scanner: spatial compounding and speckle
reduction smooth the speckle, edge enhancement sharpens borders, the grey map (echo
strength to brightness, with the gain and dynamic range settings) sets the black and
white levels and the mid-tones, and many scanners tint the image (sepia and others) on
screen. A look applies those, in that order, to every frame of a dataset and keeps the
masks, so a network trained on our generator's look can be scored on, and fine-tuned
for, a look it never saw.

    python -m model.data.looks --look sepia-low-range --data IN --out OUT
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
from PIL import Image
from scipy import ndimage

from ..atomic import staged_folder
from ..options import Choice, command, out_option
from .layouts import discover, read_image


@dataclass(frozen=True)
class Look:
    """One scanner's processing, as it changes a B-mode frame (values in [0, 1])."""

    smoothing: float  # Gaussian sigma in pixels: compounding and speckle reduction
    sharpen: float  # unsharp-mask amount on the smoothed frame (edge enhancement)
    grey_gamma: float  # the grey map's curve: brightness ** gamma (< 1 lifts the mid-tones)
    black: float  # the grey map's levels: no echo shows as ``black``, the strongest as
    white: float  # ``white`` (high gain and a low dynamic range raise black)
    tint: tuple[float, float, float]  # RGB gains of the display's colour map

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The frame (uint8, H x W x 3) as this scanner shows it."""
        grey = image.astype(np.float32).mean(axis=2) / 255
        smooth = ndimage.gaussian_filter(grey, self.smoothing)
        edges = smooth - ndimage.gaussian_filter(smooth, 2 * self.smoothing)
        curve = np.clip(smooth + self.sharpen * edges, 0, 1) ** self.grey_gamma
        shown = self.black + (self.white - self.black) * curve
        rgb = shown[:, :, None] * np.asarray(self.tint, dtype=np.float32)
        return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


LOOKS = {
    # Compounded and edge-enhanced, at high gain with a low dynamic range, in sepia: what
    # it costs the shipped weights, and what a fine-tune wins back, is in docs/finetune.md.
    "sepia-low-range": Look(
        smoothing=1.5, sharpen=1.0, grey_gamma=0.45, black=0.3, white=0.85, tint=(1.0, 0.86, 0.68)
    ),
}


def restyle(data: Path, out: Path, look: Look) -> Path:
    """Write ``data`` with every frame in ``look`` to ``out``: the same layout, names and
    masks (copied as they are), atomically."""
    index = discover(data)
    with staged_folder(out) as staging:
        for video in index.videos:
            for frame in video.frames:
                target = staging / frame.image.relative_to(index.root).with_suffix(".png")
                target.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(look.apply(read_image(frame.image))).save(target)
                if frame.mask is not None:
                    mask = staging / frame.mask.relative_to(index.root)
                    mask.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(frame.mask, mask)
    return out


@command("python -m model.data.looks")
@click.option("--look", "name", type=Choice(sorted(LOOKS)), required=True, help="The look.")
@click.option(
    "--data",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    required=True,
    help="Dataset folder: BUV, FLA-Net or plain.",
)
@out_option(help_text="Dataset folder to create (absent or empty).")
def main(name: str, data: Path, out: Path) -> None:
    """Give every frame of a dataset another scanner's look; the masks stay as they are."""
    restyle(data, out, LOOKS[name])
    print(f"wrote {data} in the {name} look to {out}")


if __name__ == "__main__":
    main()
