"""The kept-back scanner: B-mode video formed another way, which no training set draws.

Training's generator (``model.data.synth``) multiplies an echogenicity map by band-limited
speckle and paints a lesion's posterior shadow or enhancement in. This one forms the image
from the radio-frequency echo, as a scanner does:

- point scatterers whose strength follows the tissue's echogenicity, on a grid four times
  finer along the beam;
- a transmitted pulse (a Gaussian-windowed sine of a few cycles) along the beam, and a
  focused beam's profile across it;
- the envelope of the echo by the Hilbert transform, thermal noise added before detection;
- attenuation integrated through the tissue there and back: a lesion that attenuates more
  than its surroundings shadows what lies behind it, one that attenuates less enhances it,
  so the physics draws the shadow, not a drawn column;
- time-gain compensation that undoes only part of the mean attenuation;
- log compression over a dynamic range, its top set by the scanner's automatic gain (a
  high percentile of the first frame);
- a curved (convex) array, of larger radius than any training draws;
- persistence: each shown frame blends in the one shown before it.

Its breast anatomy and probe motion come from the same drawing as training's, from a
stream of draws no training set uses (``default_rng((seed, index, 2))``). A dataset it
writes says so in its ``generator.json``, and training refuses such a folder, so a score
on it is a score on video no weights were fitted to.

    python -m model.data.kept_back --videos 6 --frames 40 --seed 21 --out DIR
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
from scipy import ndimage, signal

from ..errors import ConfigError
from ..options import command, frames_option, out_option, seed_option
from .synth import (
    BEAM_DEPTH,
    BEAM_LINES,
    GENERATOR_FILE,
    ScannerSettings,
    complex_white,
    draw_spec,
    draw_tissue,
    fan_mapping,
    focused_beam,
    frame_anatomy,
    generator_of,
    scan_convert,
    write_dataset,
)

KEPT_BACK_STREAM = 2
OVERSAMPLE = 4  # radio-frequency samples per beam-grid sample along the beam


@dataclass(frozen=True)
class KeptBackScanner:
    """One video's scanner and tissue physics."""

    pulse_cycles: float  # the transmitted pulse's length (full width at half maximum)
    wavelength: float  # radio-frequency samples per cycle
    beam: ScannerSettings  # the convex array and its transmit focus
    tissue_attenuation: float  # amplitude, per beam sample, one way
    lesion_attenuation: float  # as a multiple of the tissue's: > 1 shadows, < 1 enhances
    tgc_compensation: float  # the part of the tissue's mean attenuation the TGC undoes
    noise: float  # thermal noise before detection, as a fraction of the auto-gain level
    dynamic_range_db: float
    gain_db: float  # the operator's gain over the automatic level
    persistence: float  # the weight of the frame shown before


def draw_scanner(rng: np.random.Generator) -> KeptBackScanner:
    shadowing = rng.random() < 0.5
    return KeptBackScanner(
        pulse_cycles=float(rng.uniform(1.5, 3.0)),
        wavelength=float(rng.uniform(3.5, 5.0)),
        beam=ScannerSettings(
            convex_radius=float(rng.uniform(0.8, 1.2)),
            convex_half_angle=float(rng.uniform(0.25, 0.4)),
            focus_depth=float(rng.uniform(70, 190)),
            focus_width=float(rng.uniform(1.2, 2.2)),
            focus_range=float(rng.uniform(40, 80)),
        ),
        tissue_attenuation=float(rng.uniform(0.0015, 0.004)),
        lesion_attenuation=float(rng.uniform(3.0, 6.0) if shadowing else rng.uniform(0.1, 0.4)),
        tgc_compensation=float(rng.uniform(0.5, 1.0)),
        noise=float(rng.uniform(0.003, 0.02)),
        dynamic_range_db=float(rng.uniform(45, 65)),
        gain_db=float(rng.uniform(-6, 3)),
        persistence=float(rng.uniform(0.2, 0.5)),
    )


def refuse_kept_back(root: Path) -> None:
    """Refuse to train on a dataset this module drew: scores on it would no longer be of
    video no weights were fitted to."""
    drawn = generator_of(root)
    if drawn is not None and drawn["generator"] == f"{__name__}.{render_kept_back.__name__}":
        raise ConfigError(
            f"{root}: kept-back scanner video ({GENERATOR_FILE} names {drawn['generator']}): "
            "it is for scoring only, never for training"
        )


def _pulse(scanner: KeptBackScanner) -> np.ndarray:
    """The transmitted pulse, sampled on the radio-frequency grid."""
    sigma = scanner.pulse_cycles * scanner.wavelength / 2.355
    n = np.arange(-int(3 * sigma) - 1, int(3 * sigma) + 2)
    return np.exp(-0.5 * (n / sigma) ** 2) * np.sin(2 * np.pi * n / scanner.wavelength)


def render_kept_back(seed: int, index: int, frames: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``frames`` (image uint8 (H, W, 3), mask bool (H, W)) pairs of one video."""
    rng = np.random.default_rng((seed, index, KEPT_BACK_STREAM))
    spec = draw_spec(rng)
    scanner = draw_scanner(rng)
    tissue = draw_tissue(rng)
    scatterers = rng.standard_normal((BEAM_DEPTH * OVERSAMPLE, tissue.shape[1]))
    coords, valid = fan_mapping(spec, scanner.beam)
    pulse = _pulse(scanner)
    depth = np.arange(BEAM_DEPTH, dtype=np.float64)[:, None]
    tgc = np.exp(2 * scanner.tgc_compensation * scanner.tissue_attenuation * depth)
    top, shown = None, None
    for t in range(frames):
        offset, lesion = frame_anatomy(spec, t)
        soft = ndimage.gaussian_filter(lesion.astype(np.float64), 1.0)
        echo = tissue[:, offset : offset + BEAM_LINES] * (1.0 - soft * (1.0 - spec.lesion_echo))
        fresh = rng.standard_normal((BEAM_DEPTH * OVERSAMPLE, BEAM_LINES))
        reflectivity = np.repeat(echo, OVERSAMPLE, axis=0) * (
            0.9 * scatterers[:, offset : offset + BEAM_LINES] + 0.436 * fresh
        )
        radio = ndimage.convolve1d(reflectivity, pulse, axis=0, mode="constant")
        analytic = signal.hilbert(radio, axis=0)[::OVERSAMPLE]
        attenuation = scanner.tissue_attenuation * (1.0 + soft * (scanner.lesion_attenuation - 1))
        there_and_back = np.exp(-2.0 * np.cumsum(attenuation, axis=0))
        field = focused_beam(analytic, scanner.beam) * there_and_back * tgc
        if top is None:  # the automatic gain, set on the first frame
            top = np.percentile(np.abs(field), 99.5)
        thermal = complex_white(rng, field.shape)
        envelope = np.abs(field + scanner.noise * top * thermal)
        decibels = 20 * np.log10(np.maximum(envelope, 1e-9) / top) + scanner.gain_db
        image = np.clip(1.0 + decibels / scanner.dynamic_range_db, 0.0, 1.0)
        if shown is not None:
            image = scanner.persistence * shown + (1 - scanner.persistence) * image
        shown = image
        yield scan_convert(shown, lesion, coords, valid)


@command("python -m model.data.kept_back")
@click.option("--videos", type=click.IntRange(min=1), default=6, show_default=True)
@frames_option(40, "Frames per video.")
@seed_option(21)
@out_option(help_text="Dataset folder to create (absent or empty).")
def main(videos: int, frames: int, seed: int, out: Path) -> None:
    """Write kept-back scanner videos with lesion masks in the BUV layout (never trained on)."""
    written = write_dataset(out, videos, frames, seed, render=render_kept_back)
    print(f"wrote {videos} kept-back videos x {frames} frames to {written}")


if __name__ == "__main__":
    main()
