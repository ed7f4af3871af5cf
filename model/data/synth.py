"""Synthetic breast-ultrasound videos with lesion masks, written in the BUV layout.

No real ultrasound data can be downloaded here, so everything (training, evaluation,
calibration, the demo) runs on these. Each video is rendered the way a scanner forms
an image: echogenicity of the tissue in beam coordinates (depth x lateral), a
hypoechoic lesion with an irregular border and a posterior shadow or enhancement,
Rayleigh speckle, depth attenuation and time-gain compensation, log compression, then
scan conversion to a linear or sector (fan) field of view. Across frames the probe
slides and presses, and the imaging plane sweeps through the lesion, so it moves,
deforms, grows, shrinks and at times leaves the view (empty masks).

Everything is drawn from ``numpy.random.default_rng((seed, video_index))``, so one
video depends only on the seed and its index.

``widen`` adds what else a scanner changes, each on its own so each can be measured as an
ablation (WIDENINGS): convex probes, a transmit focus, the dynamic range setting, and the
probe rocked on the skin. Their settings come from a second stream,
``default_rng((seed, video_index, 1))``, and are drawn whole for every video, so a video
without widening is exactly the classic one, and with two widenings it has the same
settings for each as with either alone.

    python -m model.data.synth --videos 20 --frames 60 --seed 0 --out DIR
    python -m model.data.synth --videos 20 --frames 60 --seed 0 --widen all --out DIR
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import click
import numpy as np
from PIL import Image
from scipy import ndimage

from ..atomic import staged_folder
from ..errors import ProjectError
from ..options import command, frames_option, out_option, seed_option
from .video_writer import write_video

BEAM_DEPTH = 256  # samples along the beam
BEAM_LINES = 256  # lateral lines in view
MARGIN = 160  # extra lateral tissue either side, for probe sliding


@dataclass(frozen=True)
class VideoSpec:
    """The random draws that define one video, all in beam-grid pixels unless named."""

    height: int
    width: int
    sector: bool
    sector_half_angle: float  # radians
    lesion_radius: float
    lesion_depth: float
    lesion_lateral: float  # in tissue coordinates, before probe motion
    lesion_aspect: float  # lateral / depth extent
    lesion_tilt: float
    lobe_amplitudes: tuple[float, ...]
    lobe_phases: tuple[float, ...]
    spicules: int
    lesion_echo: float  # lesion echogenicity relative to surrounding tissue
    posterior_gain: float  # < 1 shadowing, > 1 enhancement
    slide_amplitude: float
    slide_period: float  # frames
    slide_phase: float
    sweep_amplitude: float  # elevation sweep, in lesion radii
    sweep_period: float
    sweep_phase: float
    attenuation: float  # per beam sample
    gain: float
    noise: float
    contrast_gamma: float
    dropout_rate: float  # chance of a degraded frame (gain dip, extra noise)


def draw_spec(rng: np.random.Generator) -> VideoSpec:
    lobes = int(rng.integers(2, 6))
    spiculated = rng.random() < 0.35
    return VideoSpec(
        height=int(rng.integers(272, 337)) // 2 * 2,
        width=int(rng.integers(320, 417)) // 2 * 2,
        sector=bool(rng.random() < 0.5),
        sector_half_angle=float(rng.uniform(0.45, 0.7)),
        lesion_radius=float(rng.uniform(18, 48)),
        lesion_depth=float(rng.uniform(80, 170)),
        lesion_lateral=float(rng.uniform(-50, 50)),
        lesion_aspect=float(rng.uniform(0.7, 1.8)),
        lesion_tilt=float(rng.uniform(-0.5, 0.5)),
        lobe_amplitudes=tuple(float(a) for a in rng.uniform(0.02, 0.16, lobes)),
        lobe_phases=tuple(float(p) for p in rng.uniform(0, 2 * np.pi, lobes)),
        spicules=int(rng.integers(5, 14)) if spiculated else 0,
        lesion_echo=float(rng.uniform(0.12, 0.42)),
        posterior_gain=float(rng.choice([rng.uniform(0.35, 0.7), rng.uniform(1.25, 1.7)])),
        slide_amplitude=float(rng.uniform(10, 150)),
        slide_period=float(rng.uniform(40, 140)),
        slide_phase=float(rng.uniform(0, 2 * np.pi)),
        sweep_amplitude=float(rng.uniform(0.2, 1.25)),
        sweep_period=float(rng.uniform(30, 120)),
        sweep_phase=float(rng.uniform(0, 2 * np.pi)),
        attenuation=float(rng.uniform(0.002, 0.006)),
        gain=float(rng.uniform(0.8, 1.3)),
        noise=float(rng.uniform(0.01, 0.06)),
        contrast_gamma=float(rng.uniform(0.75, 1.3)),
        dropout_rate=float(rng.uniform(0.0, 0.08)),
    )


# What else a scanner changes, beyond the classic draws (the probe, its focus, the grey
# scale's dynamic range, how the probe sits on the skin).
WIDENINGS = ("convex", "focus", "dynamic-range", "orientation")
SETTINGS_STREAM = 1


@dataclass(frozen=True)
class ScannerSettings:
    """The widened settings of one video; a field left at its default draws the classic way."""

    convex_radius: float | None = None  # the curved face's radius, in image heights
    convex_half_angle: float = 0.0  # radians either side of the centre line
    focus_depth: float | None = None  # transmit focus, in beam samples
    focus_width: float = 1.0  # the beam's lateral sigma at the focus, in beam lines
    focus_range: float = 1.0  # depth over which the beam widens by sqrt(2) (Rayleigh range)
    dynamic_range_db: float | None = None  # None: the classic log1p compression
    layer_slope: float = 0.0  # deep layers' depth change per line (probe rocked heel to toe)


def draw_settings(
    seed: int, index: int, widen: frozenset[str], share: float = 1.0
) -> ScannerSettings:
    """Video ``index``'s settings with ``widen``'s changes on (all drawn, the rest dropped).

    With ``share`` under 1, that share of the videos (drawn per video) takes the changes and
    the rest keep the classic settings: a training set from several scanners, the classic
    one among them.
    """
    unknown = sorted(set(widen) - set(WIDENINGS))
    if unknown:
        raise ProjectError(f"unknown widening {', '.join(unknown)}: one of {', '.join(WIDENINGS)}")
    if not 0.0 < share <= 1.0:
        raise ProjectError(f"the widened share of the videos must be in (0, 1], got {share}")
    rng = np.random.default_rng((seed, index, SETTINGS_STREAM))
    convex = rng.random() < 1 / 3  # a third of the videos: linear and sector keep the rest
    radius, half = float(rng.uniform(0.35, 0.7)), float(rng.uniform(0.3, 0.5))
    focus, width, span = rng.uniform(60, 200), rng.uniform(1.0, 1.6), rng.uniform(30, 70)
    dynamic_range = float(rng.uniform(30, 70))
    slope = float(rng.uniform(-0.35, 0.35))
    settings = ScannerSettings()
    if rng.random() >= share:  # drawn last: the draws above are the same for any share
        return settings
    if "convex" in widen and convex:
        settings = replace(settings, convex_radius=radius, convex_half_angle=half)
    if "focus" in widen:
        settings = replace(
            settings, focus_depth=float(focus), focus_width=float(width), focus_range=float(span)
        )
    if "dynamic-range" in widen:
        settings = replace(settings, dynamic_range_db=dynamic_range)
    if "orientation" in widen:
        settings = replace(settings, layer_slope=slope)
    return settings


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: tuple[float, float]):
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return field / (field.std() + 1e-8)


def draw_tissue(rng: np.random.Generator) -> np.ndarray:
    """Echogenicity of the breast in beam coordinates: skin, fat, gland, muscle layers."""
    depth, lines = BEAM_DEPTH, BEAM_LINES + 2 * MARGIN
    y = np.arange(depth, dtype=np.float64)[:, None]
    wave = _smooth_field(rng, (1, lines), (0, 25))[0]
    skin = 8 + 2 * wave
    fat_end = rng.uniform(45, 80) + 10 * _smooth_field(rng, (1, lines), (0, 40))[0]
    gland_end = rng.uniform(185, 235) + 12 * _smooth_field(rng, (1, lines), (0, 50))[0]
    echo = np.where(y < skin, 2.2, np.where(y < fat_end, 0.45, np.where(y < gland_end, 1.0, 0.7)))
    texture = _smooth_field(rng, (depth, lines), (3, 7))
    echo = echo * np.exp(0.3 * texture)
    # Cooper's ligaments and muscle striations: thin bright bands.
    bands = _smooth_field(rng, (depth, lines), (1.2, 18))
    echo = echo + 0.5 * np.clip(bands - 1.6, 0, None)
    # Fat lobules: oval, mildly hypoechoic, not lesions.
    yy, xx = np.mgrid[0:depth, 0:lines]
    for _ in range(int(rng.integers(2, 6))):
        cy, cx = rng.uniform(20, 230), rng.uniform(0, lines)
        ry, rx = rng.uniform(6, 16), rng.uniform(12, 30)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        echo = np.where(inside, echo * rng.uniform(0.55, 0.75), echo)
    return echo.astype(np.float32)


def complex_white(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Unit complex Gaussian scatterers, one per beam sample."""
    real = rng.standard_normal(shape)
    return real + 1j * rng.standard_normal(shape)


def _complex_speckle(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Band-limited complex Gaussian field; its magnitude is Rayleigh speckle."""
    white = complex_white(rng, shape)
    real = ndimage.gaussian_filter(white.real, (0.9, 1.8))
    imag = ndimage.gaussian_filter(white.imag, (0.9, 1.8))
    field = real + 1j * imag
    return (field / np.sqrt(np.mean(np.abs(field) ** 2))).astype(np.complex64)


def _unit_blur(field: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """Gaussian blur along ``axis`` that keeps white noise's power (the kernel's energy is 1)."""
    radius = int(4.0 * sigma + 0.5)  # gaussian_filter1d's own truncation
    kernel = ndimage.gaussian_filter1d(np.eye(1, 2 * radius + 1, radius)[0], sigma)
    scale = 1.0 / np.sqrt(np.sum(kernel**2))
    blur = ndimage.gaussian_filter1d
    return scale * (blur(field.real, sigma, axis=axis) + 1j * blur(field.imag, sigma, axis=axis))


def focused_beam(echoes: np.ndarray, settings: ScannerSettings) -> np.ndarray:
    """Complex ``echoes`` (depth x lateral, resolved along the beam) as a focused beam
    receives them across it.

    The beam is a Gaussian whose lateral sigma grows away from the focus as a focused
    beam does, sigma(d) = w * sqrt(1 + ((d - f) / z)^2); the transmitted energy is spread
    over that width, so the amplitude falls as 1 / sqrt(sigma(d) / w).
    """
    depth = np.arange(BEAM_DEPTH, dtype=np.float64)
    offset = (depth - settings.focus_depth) / settings.focus_range
    sigma = settings.focus_width * np.sqrt(1.0 + offset**2)
    levels = np.geomspace(sigma.min(), sigma.max() + 1e-6, 6)
    blurred = np.stack([_unit_blur(echoes, level, axis=1) for level in levels])
    position = np.interp(np.log(sigma), np.log(levels), np.arange(len(levels)))
    below = np.minimum(position.astype(int), len(levels) - 2)
    weight = (position - below)[:, None]
    rows = np.arange(BEAM_DEPTH)
    field = (1 - weight) * blurred[below, rows] + weight * blurred[below + 1, rows]
    return field * np.sqrt(settings.focus_width / sigma)[:, None]


def _rock(tissue: np.ndarray, slope: float) -> np.ndarray:
    """The tissue seen by a probe rocked heel to toe: layers slant more the deeper they lie
    (the skin stays on the probe's face)."""
    if slope == 0.0:
        return tissue
    depth, lines = tissue.shape
    yy, xx = np.mgrid[0:depth, 0:lines].astype(np.float64)
    source = yy - slope * (xx - lines / 2) * (yy / depth)
    coords = np.stack([np.clip(source, 0, depth - 1), xx])
    return ndimage.map_coordinates(tissue, coords, order=1, mode="nearest").astype(np.float32)


def _lesion_mask(spec: VideoSpec, centre: tuple[float, float], radius: float, t: int):
    """Lesion cross-section in beam coordinates, with a border that slowly deforms."""
    if radius <= 1.0:
        return np.zeros((BEAM_DEPTH, BEAM_LINES), dtype=bool)
    yy, xx = np.mgrid[0:BEAM_DEPTH, 0:BEAM_LINES].astype(np.float32)
    dy, dx = yy - centre[0], xx - centre[1]
    cos, sin = np.cos(spec.lesion_tilt), np.sin(spec.lesion_tilt)
    u = (cos * dx + sin * dy) / spec.lesion_aspect
    v = -sin * dx + cos * dy
    rho = np.hypot(u, v)
    theta = np.arctan2(v, u)
    border = np.ones_like(theta)
    for k, (amp, phase) in enumerate(zip(spec.lobe_amplitudes, spec.lobe_phases, strict=True)):
        border += amp * np.cos((k + 2) * theta + phase + 0.03 * t * (k + 1))
    if spec.spicules:
        spikes = np.cos(spec.spicules * theta + 0.02 * t) ** 16
        border += 0.22 * spikes
    return rho < radius * border


def fan_mapping(spec: VideoSpec, settings: ScannerSettings) -> tuple[np.ndarray, np.ndarray]:
    """For each output pixel, its (depth, lateral) beam coordinate and whether it is in view."""
    h, w = spec.height, spec.width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if settings.convex_radius is not None:
        # A curved array: beams fan out from the centre of its face's curvature, and the
        # image starts on the face, its corners just inside the top of the frame.
        half = settings.convex_half_angle
        r_min = settings.convex_radius * h
        apex_y = 0.02 * h - r_min * np.cos(half)
        r_max = h - 1 - apex_y
    elif not spec.sector:
        depth = yy * (BEAM_DEPTH - 1) / (h - 1)
        lateral = (xx - 0.1 * w) * (BEAM_LINES - 1) / (0.8 * w - 1)
        valid = (lateral >= 0) & (lateral <= BEAM_LINES - 1)
        return np.stack([depth, lateral]), valid
    else:
        half = spec.sector_half_angle
        apex_y = -0.18 * h  # virtual apex above the image
        r_max = h - apex_y
        r_min = 0.18 * h
    dy, dx = yy - apex_y, xx - w / 2
    radius = np.hypot(dx, dy)
    angle = np.arctan2(dx, dy)
    depth = (radius - r_min) / (r_max - r_min) * (BEAM_DEPTH - 1)
    lateral = (angle + half) / (2 * half) * (BEAM_LINES - 1)
    valid = (depth >= 0) & (depth <= BEAM_DEPTH - 1) & (np.abs(angle) <= half)
    return np.stack([depth, lateral]), valid


# The seeds of the synthetic sets: training renders seed 0; evaluation, parity and timing
# render the held-out seed 1, never trained on (int8 calibration draws its own, 3).
TRAINING_SEED = 0
HELD_OUT_SEED = 1


def scan_convert(
    image: np.ndarray, lesion: np.ndarray, coords: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The beam-grid image (values in [0, 1]) and lesion as the screen shows them: a grey
    RGB frame (uint8) and its mask, black outside the field of view."""
    pixels = ndimage.map_coordinates(image, coords, order=1, mode="constant")
    mask = ndimage.map_coordinates(lesion.astype(np.uint8), coords, order=0, mode="constant")
    pixels = np.where(valid, pixels, 0.0)
    gray = (np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2), (mask > 0) & valid


def frame_anatomy(spec: VideoSpec, t: int) -> tuple[int, np.ndarray]:
    """Where the probe is at frame ``t`` (the first tissue line in view) and the lesion's
    cross-section in beam coordinates: the probe slides and presses, the plane sweeps."""
    slide = spec.slide_amplitude * np.sin(2 * np.pi * t / spec.slide_period + spec.slide_phase)
    press = 1.0 + 0.05 * np.sin(2 * np.pi * t / 50 + spec.slide_phase)
    elevation = spec.sweep_amplitude * np.sin(2 * np.pi * t / spec.sweep_period + spec.sweep_phase)
    radius = spec.lesion_radius * np.sqrt(max(0.0, 1.0 - elevation**2)) * press
    centre = (spec.lesion_depth / press, spec.lesion_lateral + BEAM_LINES / 2 - slide)
    return int(round(MARGIN + slide)), _lesion_mask(spec, centre, radius, t)


def render_video(
    seed: int, index: int, frames: int, widen: frozenset[str] = frozenset(), share: float = 1.0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``frames`` (image uint8 (H, W, 3), mask bool (H, W)) pairs of one video, with
    ``widen``'s changes (WIDENINGS) on if it is among the widened ``share``."""
    settings = draw_settings(seed, index, widen, share)
    rng = np.random.default_rng((seed, index))
    spec = draw_spec(rng)
    tissue = _rock(draw_tissue(rng), settings.layer_slope)
    focused = settings.focus_depth is not None
    # The same draws either way: a focused beam blurs the scatterers itself, per depth.
    scatterers = complex_white(rng, tissue.shape) if focused else None
    speckle = None if focused else _complex_speckle(rng, tissue.shape)
    coords, valid = fan_mapping(spec, settings)
    depth_axis = np.arange(BEAM_DEPTH, dtype=np.float32)[:, None]
    attenuation = np.exp(-spec.attenuation * depth_axis)
    tgc_knots = rng.uniform(0.85, 1.2, 4)
    for t in range(frames):
        offset, lesion = frame_anatomy(spec, t)
        view = tissue[:, offset : offset + BEAM_LINES]
        if focused:  # tissue-locked scatterers, partly renewed each frame, as below
            fresh = complex_white(rng, (BEAM_DEPTH, BEAM_LINES))
            mixed = 0.9 * scatterers[:, offset : offset + BEAM_LINES] + 0.436 * fresh
            field = mixed / np.sqrt(2.0)  # unit power, as the classic speckle's
        else:
            fresh = _complex_speckle(rng, (BEAM_DEPTH, BEAM_LINES))
            field = 0.9 * speckle[:, offset : offset + BEAM_LINES] + 0.436 * fresh

        soft = ndimage.gaussian_filter(lesion.astype(np.float32), 1.2)
        echo = view * (1.0 - soft * (1.0 - spec.lesion_echo))
        if lesion.any():
            behind = np.maximum.accumulate(lesion, axis=0) & ~lesion
            fade = np.exp(-np.cumsum(behind, axis=0) / 120.0)
            column = ndimage.gaussian_filter(behind * fade, (0, 4.0))
            echo = echo * (1.0 + (spec.posterior_gain - 1.0) * column)

        tgc = np.interp(depth_axis[:, 0], np.linspace(0, BEAM_DEPTH, 4), tgc_knots)[:, None]
        gain = spec.gain * (1.0 + 0.05 * rng.standard_normal())
        degraded = rng.random() < spec.dropout_rate
        if degraded:
            gain *= rng.uniform(0.45, 0.7)
        if focused:  # the echo's strength scales the scatterers the beam sums over
            echoes = _unit_blur(echo * field, 0.9, axis=0)  # the pulse's length, as classic
            beam = np.abs(focused_beam(echoes, settings)) * attenuation * tgc * gain
        else:
            beam = echo * np.abs(field) * attenuation * tgc * gain
        if settings.dynamic_range_db is None:
            image = np.log1p(12.0 * beam) / np.log1p(12.0 * 2.5)
        else:  # the grey scale spans dynamic_range_db decibels around a mid-grey echo
            decibels = 20.0 * np.log10(np.maximum(beam, 1e-6) / 0.5)
            image = np.clip(0.55 + decibels / settings.dynamic_range_db, 0.0, 1.0)
        noise = spec.noise * (3.0 if degraded else 1.0)
        image = (
            np.clip(image + noise * rng.standard_normal(image.shape), 0, 1) ** spec.contrast_gamma
        )

        yield scan_convert(image, lesion, coords, valid)


MP4_FPS = 25.0  # the synthetic motion is drawn for about this rate


Render = Callable[[int, int, int], Iterator[tuple[np.ndarray, np.ndarray]]]
GENERATOR_FILE = "generator.json"  # how a dataset was drawn: generator, seed, videos, widen


def _write_video(staging: Path, render: Render, seed: int, index: int, frames: int, mp4: bool):
    name = f"synth_{seed:04d}_{index:04d}"
    images, labels = staging / "images" / name, staging / "labels" / name
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    shown = []
    for t, (image, mask) in enumerate(render(seed, index, frames)):
        Image.fromarray(image).save(images / f"{t}.jpg", quality=92)
        Image.fromarray(mask.astype(np.uint8) * 255).save(labels / f"{t}.png")
        shown.append(image)
    if mp4:  # the same frames as a recording would come: H.264, a fixed frame rate
        (staging / "videos").mkdir(exist_ok=True)
        write_video(staging / "videos" / f"{name}.mp4", shown, MP4_FPS)


def _name_of(render: Render) -> str:
    """The importable name of ``render``, also when its module runs as ``python -m``."""
    function = render.func if isinstance(render, partial) else render
    module = function.__module__
    if module == "__main__":
        module = getattr(sys.modules["__main__"].__spec__, "name", module)
    return f"{module}.{function.__qualname__}"


def write_dataset(
    out: Path,
    videos: int,
    frames: int,
    seed: int,
    first_index: int = 0,
    workers: int = 1,
    mp4: bool = False,
    widen: frozenset[str] = frozenset(),
    render: Render | None = None,
    share: float = 1.0,
) -> Path:
    """Render ``videos`` videos into ``out`` in the BUV layout, atomically (temp dir + rename).

    With ``mp4``, each video is also written as ``videos/<name>.mp4`` (MP4_FPS frames a
    second), the form a scanner's recording takes. ``render`` draws each video (default:
    :func:`render_video` with ``widen``'s changes on, in the widened ``share`` of the
    videos); GENERATOR_FILE records which, with the seed, the widenings and their share, so
    training can say what its data was.

    ``workers`` processes render videos side by side; a video depends only on (seed,
    index), so the result is the same for any number of workers.
    """
    out = Path(out)
    if videos < 1 or frames < 1 or workers < 1:
        raise ProjectError(
            f"need at least one video, frame and worker, got {videos} x {frames}, {workers}"
        )
    draw_settings(seed, first_index, widen, share)  # refused before any work
    render = render or partial(render_video, widen=frozenset(widen), share=share)
    record = {
        "generator": _name_of(render),
        "seed": seed,
        "first_index": first_index,
        "videos": videos,
        "frames": frames,
        "widen": sorted(widen),
        "widen_share": share,
    }
    indices = range(first_index, first_index + videos)
    with staged_folder(out) as staging:
        if workers == 1:
            for v in indices:
                _write_video(staging, render, seed, v, frames, mp4)
        else:
            with ProcessPoolExecutor(workers) as pool:
                jobs = [
                    pool.submit(_write_video, staging, render, seed, v, frames, mp4)
                    for v in indices
                ]
                for job in jobs:
                    job.result()
        (staging / GENERATOR_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return out


def generator_of(root: Path) -> dict[str, object] | None:
    """The GENERATOR_FILE record of a dataset this module wrote, or None for any other."""
    path = Path(root) / GENERATOR_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ProjectError(f"{path}: unreadable ({error})") from None
    if not isinstance(record, dict) or not isinstance(record.get("generator"), str):
        raise ProjectError(f"{path}: not a generator record (no 'generator' name)")
    return record


def _widenings(value: str) -> frozenset[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    if names == ["all"]:
        return frozenset(WIDENINGS)
    unknown = [name for name in names if name not in WIDENINGS]
    if unknown:
        raise click.BadParameter(
            f"unknown widening {', '.join(unknown)}: one of {', '.join(WIDENINGS)}, or all"
        )
    return frozenset(names)


@command("python -m model.data.synth")
@click.option("--videos", type=click.IntRange(min=1), default=20, show_default=True)
@frames_option(60, "Frames per video.")
@seed_option(0)
@click.option(
    "--first-index",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Index of the first video.",
)
@out_option(help_text="Dataset folder to create (absent or empty).")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Render videos in N processes.",
)
@click.option("--mp4", is_flag=True, help="Also write each video as videos/<name>.mp4 (H.264).")
@click.option(
    "--widen",
    default="",
    metavar="NAMES",
    help=f"Comma-separated scanner changes to draw too: {', '.join(WIDENINGS)}, or all.",
)
@click.option(
    "--widen-share",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=1.0,
    show_default=True,
    help="Share of the videos (drawn per video) that take --widen's changes; the rest keep "
    "the classic settings.",
)
def main(
    videos: int,
    frames: int,
    seed: int,
    first_index: int,
    out: Path,
    workers: int,
    mp4: bool,
    widen: str,
    widen_share: float,
) -> None:
    """Write synthetic breast-ultrasound videos with lesion masks in the BUV layout."""
    changes = _widenings(widen)
    written = write_dataset(
        out, videos, frames, seed, first_index, workers, mp4, changes, share=widen_share
    )
    print(f"wrote {videos} videos x {frames} frames to {written}")


if __name__ == "__main__":
    main()
