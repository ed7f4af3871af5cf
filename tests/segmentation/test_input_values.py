"""Every image and frame mode Pillow and PyAV return: converted by one rule, or refused (issue 20).

References are 8-bit equivalents: a 16-bit copy of an 8-bit frame (values x 257) must give
the 8-bit frame exactly, and the same mask through the shipped BaS-S stream session.
"""

from __future__ import annotations

import functools
import struct
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageOps

import runtimes
from model.data.layouts import DatasetError, discover, read_frame, read_image
from model.data.pixels import (
    ImageReadError,
    PixelRangeError,
    UnsupportedPixels,
    displayed_size,
    read_pixels,
)
from model.data.synth import render_video
from segmentation.video import load_image, open_sources

H, W = 64, 80


@functools.cache
def _frames8() -> tuple[np.ndarray, ...]:
    """Three small realistic RGB frames (synthetic ultrasound, resized to 64x80)."""
    return tuple(
        np.asarray(Image.fromarray(image).resize((W, H), Image.Resampling.BILINEAR))
        for image, _ in render_video(1, 0, 3)
    )


@functools.cache
def _session() -> runtimes.Session:
    return runtimes.load_pytorch("S", "shipped", "stream")


def _masks(frames: list[np.ndarray]) -> list[np.ndarray]:
    return list(runtimes.stream_masks(_session(), frames))


def _png16(path: Path, samples: np.ndarray, color_type: int) -> Path:
    """A 16-bit PNG by hand (Pillow cannot write 16-bit RGB): type 0 gray, 2 RGB, 4 LA, 6 RGBA."""
    height, width = samples.shape[:2]
    rows = samples.reshape(height, -1).astype(">u2")
    # Filter "Up" on every row, so the low-byte pass must undo PNG filtering too.
    diff = np.vstack([rows[:1], (rows[1:].view(np.uint8) - rows[:-1].view(np.uint8)).view(">u2")])
    raw = b"".join(b"\x02" + row.astype(">u2").tobytes() for row in diff)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return path


def _tiff(path: Path, samples: np.ndarray, sample_format: int, orientation: int = 1) -> Path:
    """An uncompressed little-endian TIFF written by hand (any depth, signedness, channels)."""
    height, width = samples.shape[:2]
    channels = 1 if samples.ndim == 2 else samples.shape[2]
    data = samples.astype(samples.dtype.newbyteorder("<")).tobytes()
    count = 12
    extra = 8 + 2 + count * 12 + 4
    per_channel = struct.pack(f"<{channels}H", *[samples.dtype.itemsize * 8] * channels)
    formats = struct.pack(f"<{channels}H", *[sample_format] * channels)
    start = extra + (2 * len(per_channel) if channels > 1 else 0)
    photometric = 2 if channels >= 3 else 1

    def short(tag: int, value: int | None, offset: int | None = None) -> bytes:
        if offset is not None:
            return struct.pack("<HHII", tag, 3, channels, offset)
        return struct.pack("<HHIHH", tag, 3, 1, value, 0)

    def long(tag: int, value: int) -> bytes:
        return struct.pack("<HHII", tag, 4, 1, value)

    entries = [
        long(256, width),
        long(257, height),
        short(258, samples.dtype.itemsize * 8, extra if channels > 1 else None),
        short(259, 1),
        short(262, photometric),
        long(273, start),
        short(274, orientation),
        short(277, channels),
        long(278, height),
        long(279, len(data)),
        short(284, 1),
        short(339, sample_format, extra + len(per_channel) if channels > 1 else None),
    ]
    body = b"II*\x00" + struct.pack("<IH", 8, count) + b"".join(entries) + struct.pack("<I", 0)
    if channels > 1:
        body += per_channel + formats
    path.write_bytes(body + data)
    return path


# -- images: more than 8 bits --------------------------------------------------------------


def test_16bit_gray_png_holding_an_8bit_frame_gives_it_and_its_mask(tmp_path: Path) -> None:
    gray8 = [f[:, :, 1] for f in _frames8()]
    paths = []
    for i, g in enumerate(gray8):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(g.astype(np.uint16) * 257).save(paths[-1])
    assert Image.open(paths[0]).mode == "I;16"
    got = [load_image(p) for p in paths]
    assert all(np.array_equal(a, b) for a, b in zip(got, gray8, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(_masks(got), _masks(gray8), strict=True))


@pytest.mark.parametrize(
    ("color_type", "channels"), [(2, 3), (6, 4), (4, 2)], ids=["RGB", "RGBA", "LA"]
)
def test_16bit_colour_png_is_read_at_full_depth(
    tmp_path: Path, color_type: int, channels: int
) -> None:
    """Pillow alone keeps the high byte (65535 * k / 256 truncated); we round from 16 bits."""
    rng = np.random.default_rng(0)
    samples = rng.integers(0, 65536, (H, W, channels)).astype(np.uint16)
    samples[..., -1] = np.maximum(samples[..., -1], 1) if channels != 3 else samples[..., -1]
    got = read_pixels(_png16(tmp_path / "f.png", samples, color_type))
    rounded = ((samples.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)
    colour = rounded[..., :3] if channels != 2 else np.repeat(rounded[..., :1], 3, axis=2)
    assert np.array_equal(got[..., :3], colour)
    assert not np.array_equal(colour, (samples[..., :3] >> 8).astype(np.uint8)) or channels == 2
    if channels != 3:
        assert got.shape == (H, W, 4) and np.array_equal(got[..., 3], rounded[..., -1])


def test_16bit_rgb_png_holding_an_8bit_frame_gives_it_and_its_mask(tmp_path: Path) -> None:
    frames = list(_frames8())
    got = [
        load_image(_png16(tmp_path / f"{i}.png", f.astype(np.uint16) * 257, 2))
        for i, f in enumerate(frames)
    ]
    assert all(np.array_equal(a, b) for a, b in zip(got, frames, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(_masks(got), _masks(frames), strict=True))


def test_16bit_rgb_tiff_is_read_at_full_depth(tmp_path: Path) -> None:
    samples = np.random.default_rng(1).integers(0, 65536, (H, W, 3)).astype(np.uint16)
    got = read_pixels(_tiff(tmp_path / "f.tif", samples, 1))
    assert np.array_equal(got, ((samples.astype(np.int64) * 255 + 32767) // 65535))


def test_signed_16bit_tiff_scales_from_15_bits_and_refuses_negatives(tmp_path: Path) -> None:
    values = np.array([[0, 32767], [16384, 128]], np.int16)
    got = read_pixels(_tiff(tmp_path / "s.tif", values, 2))
    assert got.tolist() == [[0, 255], [128, 1]]
    with pytest.raises(PixelRangeError, match=r"n\.tif: signed pixel values -5\.\.7"):
        read_pixels(_tiff(tmp_path / "n.tif", np.array([[-5, 7]], np.int16), 2))


@pytest.mark.parametrize(("dtype", "fmt"), [(np.int32, 2), (np.uint32, 1)])
def test_32bit_integer_tiff_is_refused_naming_its_range(
    tmp_path: Path, dtype: type, fmt: int
) -> None:
    values = np.array([[0, 4000], [3_000_000_000 if fmt == 1 else 7, 1]], dtype)
    high = int(values.max())
    with pytest.raises(
        UnsupportedPixels, match=rf"i\.tif: 32-bit integer pixels \(values 0\.\.{high}\)"
    ):
        read_pixels(_tiff(tmp_path / "i.tif", values, fmt))


def test_float_tiff_in_0_1_is_scaled(tmp_path: Path) -> None:
    gray8 = _frames8()[0][:, :, 0]
    path = tmp_path / "f.tif"
    Image.fromarray(gray8.astype(np.float32) / 255).save(path)
    assert Image.open(path).mode == "F"
    assert np.array_equal(read_pixels(path), gray8)


@pytest.mark.parametrize(
    ("values", "pattern"),
    [
        (
            np.array([[0, 4000]], np.float32),
            r"f\.tif: float pixel values 0\.\.4000 lie outside 0\.\.1",
        ),
        (np.array([[-0.5, 0.5]], np.float32), r"float pixel values -0\.5\.\.0\.5"),
        (np.array([[np.nan, 0.5]], np.float32), r"f\.tif: 1 float pixel values are NaN"),
    ],
    ids=["0..4000", "negative", "NaN"],
)
def test_float_tiff_outside_0_1_is_refused(
    tmp_path: Path, values: np.ndarray, pattern: str
) -> None:
    path = tmp_path / "f.tif"
    Image.fromarray(values).save(path)
    with pytest.raises(PixelRangeError, match=pattern):
        load_image(path)
    with pytest.raises(DatasetError, match=pattern):
        read_image(path)


# -- images: 8-bit modes -------------------------------------------------------------------


def test_palette_and_bilevel(tmp_path: Path) -> None:
    frame = _frames8()[0]
    palette = Image.fromarray(frame).convert("P", palette=Image.Palette.ADAPTIVE)
    palette.save(tmp_path / "p.png")
    assert np.array_equal(load_image(tmp_path / "p.png"), np.asarray(palette.convert("RGB")))
    bits = frame[:, :, 0] > 100
    Image.fromarray(bits).save(tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").mode == "1"
    assert np.array_equal(load_image(tmp_path / "b.png"), bits.astype(np.uint8) * 255)


@pytest.mark.parametrize(
    ("mode", "fmt"), [("CMYK", "JPEG"), ("CMYK", "TIFF"), ("YCbCr", "TIFF"), ("LAB", "TIFF")]
)
def test_other_colour_spaces_become_rgb_through_pillow(tmp_path: Path, mode: str, fmt: str) -> None:
    frame = _frames8()[0]
    path = tmp_path / f"f.{fmt.lower()}"
    Image.fromarray(frame).convert(mode).save(path, format=fmt, quality=95)
    assert Image.open(path).mode == mode
    got = load_image(path)
    assert got.shape == (H, W, 3)
    assert np.array_equal(got, np.asarray(Image.open(path).convert("RGB")))
    limit = 40 if mode == "LAB" else 8  # LAB's a/b in 8 bits cost saturated colours
    assert np.abs(got.astype(int) - frame).mean() < limit / 4


def test_alpha_keeps_colours_but_blacks_out_fully_transparent_pixels(tmp_path: Path) -> None:
    frame = _frames8()[0]
    alpha = np.full((H, W), 128, np.uint8)
    alpha[:, :10] = 0
    colour = frame.copy()
    colour[:, :10] = (250, 0, 250)  # what an encoder may leave under alpha 0
    Image.fromarray(np.dstack([colour, alpha])).save(tmp_path / "a.png")
    got = load_image(tmp_path / "a.png")
    assert np.array_equal(got[:, 10:, :3], frame[:, 10:]) and (got[:, :10, :3] == 0).all()
    assert np.array_equal(read_image(tmp_path / "a.png"), got[:, :, :3])
    Image.fromarray(np.dstack([frame[:, :, 0], alpha])).save(tmp_path / "la.png")
    got = load_image(tmp_path / "la.png")
    assert got.shape == (H, W, 4) and (got[:, :10, :3] == 0).all()
    assert np.array_equal(got[:, 10:, 1], frame[:, 10:, 0])


# -- images: orientation -------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_gives_the_displayed_frame(tmp_path: Path, orientation: int) -> None:
    frame = _frames8()[0]
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "f.png"
    Image.fromarray(frame).save(path, exif=exif)
    shown = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    assert np.array_equal(load_image(path), shown)
    assert displayed_size(path) == shown.shape[:2]
    jpeg = tmp_path / "f.jpg"
    Image.fromarray(frame).save(jpeg, exif=exif, quality=95)
    assert load_image(jpeg).shape == shown.shape
    assert displayed_size(jpeg) == shown.shape[:2]


def test_exif_rotated_jpeg_in_a_dataset_matches_a_mask_of_the_displayed_size(
    tmp_path: Path,
) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # a phone held upright: stored 80 wide, displayed 64 wide and 80 tall
    video = tmp_path / "ds" / "v1"
    (video / "frames").mkdir(parents=True)
    (video / "masks").mkdir()
    for i, frame in enumerate(_frames8()):
        Image.fromarray(frame).save(video / "frames" / f"{i}.jpg", exif=exif, quality=95)
        mask = np.zeros((W, H), np.uint8)
        mask[10:30, 5:25] = 255
        Image.fromarray(mask).save(video / "masks" / f"{i}.png")
    (source,) = open_sources(tmp_path / "ds")
    assert source.size == (W, H)
    got = list(source.frames())
    assert all(f.error is None and f.image.shape == (W, H, 3) for f in got)
    image, mask = read_frame(discover(tmp_path / "ds").videos[0].frames[0])
    assert image.shape == (W, H, 3) and mask.shape == (W, H)


def test_uncompressed_tiff_turned_90_degrees_is_refused(tmp_path: Path) -> None:
    """Pillow 13 decodes it with the wrong row length: refused rather than scrambled."""
    gray = _frames8()[0][:, :, 0]
    with pytest.raises(UnsupportedPixels, match=r"r\.tif: uncompressed TIFF with orientation 6"):
        read_pixels(_tiff(tmp_path / "r.tif", gray, 1, orientation=6))
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(gray).save(tmp_path / "c.tif", exif=exif, compression="tiff_lzw")
    assert np.array_equal(read_pixels(tmp_path / "c.tif"), np.rot90(gray, -1))
    assert displayed_size(tmp_path / "c.tif") == (W, H)


def test_damaged_image_is_a_read_error_not_a_refusal(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ImageReadError, match=r"x\.png: unreadable image"):
        read_pixels(tmp_path / "x.png")


# -- video ---------------------------------------------------------------------------------


def _encode(path: Path, frames: list[av.VideoFrame], codec: str, pix_fmt: str, **display) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.height, stream.width, stream.pix_fmt = frames[0].height, frames[0].width, pix_fmt
        if codec == "libx264":
            stream.options = {"crf": "12", "preset": "ultrafast"}
        if display:
            stream.set_display_rotation(**display)
        for frame in frames:
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _planes(planes: list[np.ndarray], fmt: str) -> av.VideoFrame:
    """A frame of ``fmt`` from its planes (native byte order), rows padded to the line size."""
    frame = av.VideoFrame(planes[0].shape[1], planes[0].shape[0], fmt)
    for plane, samples in zip(frame.planes, planes, strict=True):
        row = np.zeros((plane.height, plane.line_size // samples.dtype.itemsize), samples.dtype)
        row[:, : samples.shape[1]] = samples
        plane.update(row.tobytes())
    return frame


def _read(path: Path) -> list[np.ndarray]:
    (source,) = open_sources(path)
    got = list(source.frames())
    assert all(f.error is None for f in got)
    assert all(f.image.shape[:2] == source.size for f in got)
    return [f.image for f in got]


def _rgb_frames() -> list[av.VideoFrame]:
    return [av.VideoFrame.from_ndarray(f, format="rgb24") for f in _frames8()]


@pytest.mark.parametrize(
    ("degrees", "hflip", "vflip"),
    [
        (90, False, False),
        (-90, False, False),
        (180, False, False),
        (0, True, False),
        (90, True, False),
        (0, False, True),
    ],
)
def test_rotated_video_gives_the_displayed_frames(
    tmp_path: Path, degrees: int, hflip: bool, vflip: bool
) -> None:
    plain = _read(_encode(tmp_path / "p.mkv", _rgb_frames(), "ffv1", "bgr0"))
    turned = _read(
        _encode(
            tmp_path / "t.mkv",
            _rgb_frames(),
            "ffv1",
            "bgr0",
            degrees=degrees,
            hflip=hflip,
            vflip=vflip,
        )
    )
    for a, b in zip(plain, turned, strict=True):
        expected = np.rot90(a, degrees // 90)  # counter-clockwise, then the mirrors
        expected = expected[:, ::-1] if hflip else expected
        expected = expected[::-1] if vflip else expected
        assert np.array_equal(b, expected)


def test_portrait_phone_mp4_is_tall(tmp_path: Path) -> None:
    path = _encode(tmp_path / "phone.mp4", _rgb_frames(), "libx264", "yuv420p", degrees=-90)
    (source,) = open_sources(path)
    assert source.size == (W, H)
    plain = _read(_encode(tmp_path / "p.mp4", _rgb_frames(), "libx264", "yuv420p"))
    assert all(np.array_equal(b, np.rot90(a, -1)) for a, b in zip(plain, _read(path), strict=True))


def _yuv_planes(path: Path) -> list[list[np.ndarray]]:
    with av.open(str(path)) as container:
        return [
            [
                np.frombuffer(bytes(p), np.uint8)
                .reshape(p.height, p.line_size)[:, : p.width]
                .copy()
                for p in frame.planes
            ]
            for frame in container.decode(video=0)
        ]


def test_10bit_yuv_video_equals_its_8bit_equivalent(tmp_path: Path) -> None:
    """Planes x 4 (the same limited-range values in 10 bits) give the same RGB and masks."""
    eight = _encode(tmp_path / "8.mkv", _rgb_frames(), "ffv1", "yuv420p")
    frames10 = [
        _planes([p.astype(np.uint16) * 4 for p in planes], "yuv420p10le")
        for planes in _yuv_planes(eight)
    ]
    ten = _encode(tmp_path / "10.mkv", frames10, "ffv1", "yuv420p10le")
    a, b = _read(eight), _read(ten)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert all(np.abs(x.astype(int) - f).mean() < 8 for x, f in zip(a, _frames8(), strict=True))


def test_white_and_mid_gray_in_10bit_yuv(tmp_path: Path) -> None:
    """swscale's default rgb24 made 10-bit white 253 and Y=504 126; exact is 255 and 128."""
    frames = [
        _planes(
            [
                np.full((H, W), y, np.uint16),
                np.full((H // 2, W // 2), 512, np.uint16),
                np.full((H // 2, W // 2), 512, np.uint16),
            ],
            "yuv420p10le",
        )
        for y in (940, 504, 64)
    ]
    got = _read(_encode(tmp_path / "g.mkv", frames, "ffv1", "yuv420p10le"))
    assert [int(g[0, 0, 0]) for g in got] == [255, 128, 0]


def test_10bit_h264_is_close_to_8bit_h264(tmp_path: Path) -> None:
    a = _read(_encode(tmp_path / "8.mp4", _rgb_frames(), "libx264", "yuv420p"))
    b = _read(_encode(tmp_path / "10.mp4", _rgb_frames(), "libx264", "yuv420p10le"))
    assert all(np.abs(x.astype(int) - y).mean() < 2 for x, y in zip(a, b, strict=True))
    for m, n in zip(_masks(a), _masks(b), strict=True):
        total = m.sum() + n.sum()
        assert total == 0 or 2 * (m & n).sum() / total >= 0.99


@pytest.mark.parametrize("fmt", ["gray16le", "rgb48le"])
def test_16bit_video_holding_8bit_frames_gives_them(tmp_path: Path, fmt: str) -> None:
    frames8 = [f[:, :, 0] for f in _frames8()] if fmt == "gray16le" else list(_frames8())
    frames = [av.VideoFrame.from_ndarray(f.astype(np.uint16) * 257, format=fmt) for f in frames8]
    got = _read(_encode(tmp_path / "v.mkv", frames, "ffv1", fmt))
    expected = [np.dstack([f] * 3) if f.ndim == 2 else f for f in frames8]
    assert all(np.array_equal(x, y) for x, y in zip(got, expected, strict=True))


def test_16bit_video_rounds_from_16_bits(tmp_path: Path) -> None:
    samples = np.random.default_rng(2).integers(0, 65536, (H, W, 3)).astype(np.uint16)
    frame = av.VideoFrame.from_ndarray(samples, format="rgb48le")
    (got,) = _read(_encode(tmp_path / "v.mkv", [frame], "ffv1", "rgb48le"))
    assert np.array_equal(got, (samples.astype(np.int64) * 255 + 32767) // 65535)
