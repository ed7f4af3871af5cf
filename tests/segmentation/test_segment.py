"""``python -m runtimes.segment`` end to end: every runtime, every input kind, every refusal.

Inputs are short held-out synthetic clips (seed 1). Tests marked ``slow`` need converted
artifacts (``built_artifact``), the rest run PyTorch BaS.
"""

from __future__ import annotations

import csv
import functools
import json
import re
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from PIL import Image

import runtimes
from converters.parity import GATES
from model.data import discover
from model.data.synth import render_video, write_dataset
from model.data.video_writer import write_video
from model.drawing import draw_mask_overlay
from model.evaluate import evaluate
from model.hub import build_bas
from runtimes.session import to_input, to_native
from runtimes.targets import TARGETS
from segmentation.cli import main
from segmentation.report import CSV_COLUMNS
from segmentation.video import open_sources
from tests.support.matrix import PORTABLE_RUNTIMES

CLIP_FRAMES = 8  # mil_reference runs ~0.1 s a frame: keep every runtime's clip this short


@functools.cache
def _clip(frames: int) -> tuple[np.ndarray, ...]:
    """The first ``frames`` frames of held-out video 0 (RGB at its native 304x322)."""
    return tuple(image for image, _ in render_video(1, 0, frames))


def _save_frames(folder: Path, images: list[np.ndarray] | tuple[np.ndarray, ...]) -> Path:
    """Lossless PNG frames, named so that natural order is frame order."""
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"frame_{i}.png")
    return folder


def _segment(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


def _masks(out: Path) -> dict[int, np.ndarray]:
    """The written masks by frame index, checked to be binary 8-bit PNGs."""
    masks = {}
    for path in sorted((out / "masks").iterdir()):
        with Image.open(path) as image:
            assert image.mode == "L", path
            values = np.asarray(image)
        assert set(np.unique(values).tolist()) <= {0, 255}, path
        masks[int(path.stem)] = values > 0
    return masks


def _rows(out: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(out / "frames.csv", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _decoded(path: Path, fps: float) -> list[np.ndarray]:
    """The input's frames exactly as the command reads them."""
    (source,) = open_sources(path, fps)
    return [frame.image for frame in source.frames()]


def _overlay_video(out: Path) -> tuple[int, float, tuple[int, int], list[float]]:
    """overlay.mp4's frame count, frame rate, (H, W) and frame times in seconds."""
    with av.open(str(out / "overlay.mp4")) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate)
        frames = list(container.decode(stream))
    times = [float(f.time) - float(frames[0].time) for f in frames]
    return len(frames), rate, (frames[0].height, frames[0].width), times


def _check_run(
    result: Result, out: Path, images: list[np.ndarray], fps: float, runtime: str
) -> dict[int, np.ndarray]:
    """Everything one clean run must write, consistent with the input; returns the masks."""
    _ok(result)
    n, (height, width) = len(images), images[0].shape[:2]
    masks = _masks(out)
    assert sorted(masks) == list(range(n))
    assert all(m.shape == (height, width) for m in masks.values())

    count, rate, size, _ = _overlay_video(out)
    assert count == n
    assert rate == pytest.approx(fps, rel=1e-3)
    assert size == (height + height % 2, width + width % 2)

    columns, rows = _rows(out)
    assert columns == list(CSV_COLUMNS)
    assert [int(r["frame"]) for r in rows] == list(range(n))
    assert [float(r["timestamp_s"]) for r in rows] == pytest.approx(
        [i / fps for i in range(n)], abs=1e-3
    )
    assert all(r["status"] == "ok" and float(r["inference_ms"]) > 0 for r in rows)
    areas = [int(r["lesion_area_px"]) for r in rows]
    assert areas == [int(masks[i].sum()) for i in range(n)]

    # The still is the overlay of the largest lesion (first on ties), pixel for pixel.
    largest = int(np.argmax(areas))
    assert np.array_equal(
        np.asarray(Image.open(out / "still.png")),
        draw_mask_overlay(images[largest], masks[largest]),
    )
    assert Image.open(out / "area.png").size == (1000, 360)
    # Readable alike: the video must not be the one owner-only file (a temp file's mode).
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir() if p.is_file()}
    assert len(set(modes.values())) == 1, modes

    summary = json.loads((out / "summary.json").read_text())
    assert summary["runtime"] == runtime
    assert (summary["frames_segmented"], summary["frames_skipped"]) == (n, 0)
    assert summary["end_to_end_fps"] > 0 and summary["inference_fps"] > 0

    last = result.stdout.strip().splitlines()[-1]
    assert f"via {runtime}: {n} frames segmented, 0 skipped" in last
    speeds = re.search(r"end-to-end ([\d.]+) FPS, inference ([\d.]+) FPS", last)
    assert speeds and float(speeds[1]) > 0 and float(speeds[2]) > 0, last
    return masks


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * int(np.count_nonzero(a & b)) / (int(a.sum()) + int(b.sum()))


# -- 1. every runtime on Linux agrees with PyTorch, on a real mp4 and on PNG frames ----------

MP4_FPS, FOLDER_FPS = 20.0, 15.0  # different, so a frame rate taken from the wrong place shows


@pytest.fixture(scope="module")
def clip_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, float]]:
    """The same clip as an H.264 mp4 and as a PNG folder: (path, frame rate)."""
    root = tmp_path_factory.mktemp("clip")
    images = list(_clip(CLIP_FRAMES))
    return {
        "mp4": (write_video(root / "clip.mp4", images, MP4_FPS), MP4_FPS),
        "frames": (_save_frames(root / "clip_frames", images), FOLDER_FPS),
    }


@pytest.fixture(scope="module")
def pytorch_runs(
    clip_inputs: dict[str, tuple[Path, float]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Result, Path]]:
    """The reference: PyTorch BaS (no --artifact) on each input, run once."""
    root = tmp_path_factory.mktemp("pytorch")
    runs = {}
    for kind, (path, fps) in clip_inputs.items():
        out = root / kind
        runs[kind] = (_segment("--input", path, "--out", out, "--fps", fps), out)
    return runs


@pytest.mark.parametrize("kind", ["mp4", "frames"])
def test_pytorch_run_writes_every_output(
    kind: str,
    clip_inputs: dict[str, tuple[Path, float]],
    pytorch_runs: dict[str, tuple[Result, Path]],
) -> None:
    """The reference run itself must be complete and self-consistent before others match it."""
    path, fps = clip_inputs[kind]
    result, out = pytorch_runs[kind]
    masks = _check_run(result, out, _decoded(path, fps), fps, "pytorch")
    assert sum(int(m.any()) for m in masks.values()) >= CLIP_FRAMES // 2  # a lesion is found


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mp4", "frames"])
@pytest.mark.parametrize(
    ("target", "runtime"), PORTABLE_RUNTIMES, ids=[runtime for _, runtime in PORTABLE_RUNTIMES]
)
def test_runtime_agrees_with_pytorch(
    target: str,
    runtime: str,
    kind: str,
    clip_inputs: dict[str, tuple[Path, float]],
    pytorch_runs: dict[str, tuple[Result, Path]],
    built_artifact,
    tmp_path: Path,
) -> None:
    """Each Linux runtime, through the command, gives PyTorch's masks (fp32 parity gate).

    Judged per frame, on every frame where either mask has a lesion: a mean would let one
    badly wrong frame hide among good ones.
    """
    if target == "coreml":
        pytest.importorskip("coremltools")
    artifact = built_artifact(target, "S", "fp32", "stream")
    path, fps = clip_inputs[kind]
    out = tmp_path / "out"
    args = ["--artifact", artifact, "--input", path, "--out", out, "--fps", fps]
    if runtime != TARGETS[target].runtime:
        args += ["--runtime", runtime]
    masks = _check_run(_segment(*args), out, _decoded(path, fps), fps, runtime)

    reference = _masks(pytorch_runs[kind][1])
    gate = GATES["fp32"].dice_vs_pytorch
    scored = {i: _dice(masks[i], reference[i]) for i in masks if (masks[i] | reference[i]).any()}
    assert scored, "no frame with a lesion: the comparison would prove nothing"
    assert min(scored.values()) >= gate, scored


# -- 2. the command's stream equals the model's clip form ----------------------------------

CLIP_FORM_FRAMES = 12
CLIP_FORM_MAX_DIFFERENT_PIXELS = 0  # measured: stream and clip forms give identical masks


def test_command_equals_the_clip_form(tmp_path: Path) -> None:
    """Streaming frame by frame with carried state is the clip form, frame for frame."""
    images = list(_clip(CLIP_FORM_FRAMES))
    folder = _save_frames(tmp_path / "frames", images)
    out = tmp_path / "out"
    _ok(_segment("--input", folder, "--out", out))
    got = _masks(out)

    model = build_bas("S", weights="shipped").eval()
    size = model.config.image_size
    clip = torch.from_numpy(np.concatenate([to_input(im, size) for im in images]))[None]
    with torch.inference_mode():
        logits = model.forward_clip(clip).numpy()  # (1, T, 1, s, s)
    height, width = images[0].shape[:2]
    expected = [to_native(logits[:, t], (height, width)) > 0 for t in range(len(images))]

    assert sorted(got) == list(range(len(images)))
    assert sum(int(m.any()) for m in expected) >= len(images) // 2
    different = sum(int(np.count_nonzero(got[t] != expected[t])) for t in range(len(images)))
    assert different <= CLIP_FORM_MAX_DIFFERENT_PIXELS


# -- 3. a frame-form artifact ------------------------------------------------------------


@pytest.mark.slow
def test_frame_form_artifact_runs_frame_by_frame_and_says_so(
    built_artifact, tmp_path: Path
) -> None:
    """No state is carried, so each mask is the artifact's answer to that frame alone."""
    artifact = built_artifact("onnx", "S", "fp32", "frame")
    images = list(_clip(4))
    folder = _save_frames(tmp_path / "frames", images)
    out = tmp_path / "out"
    result = _ok(_segment("--artifact", artifact, "--input", folder, "--out", out))
    assert "note: frame-form artifact: each frame runs alone (no temporal state)" in result.stderr
    assert json.loads((out / "summary.json").read_text())["form"] == "frame"

    session = runtimes.load(artifact)
    got = _masks(out)
    for i in reversed(range(len(images))):  # any order: nothing carries over
        assert np.array_equal(got[i], session.run(images[i]).mask()), i


# -- 4. a dataset folder --------------------------------------------------------------------


def test_dataset_folder_scores_like_model_evaluate(tmp_path: Path) -> None:
    """Ground truth in the input gives the same scores as ``model.evaluate`` (one meter)."""
    root = write_dataset(tmp_path / "ds", videos=2, frames=6, seed=1)
    out = tmp_path / "out"
    _ok(_segment("--input", root, "--out", out))

    meter, _, _ = evaluate(runtimes.load_pytorch("S"), discover(root))
    expected = json.loads(json.dumps(meter.summary()))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == expected
    assert metrics["counts"]["frames"] == 12 and (out / "metrics.md").is_file()

    names = ["synth_0001_0000", "synth_0001_0001"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == names
    assert json.loads((out / "summary.json").read_text())["videos"] == names
    per_video = meter.per_video_scores()
    for name in names:
        columns, rows = _rows(out / name)
        assert columns == [*CSV_COLUMNS, "dice"]
        assert len(rows) == 6 and len(_masks(out / name)) == 6
        dice = [float(r["dice"]) for r in rows]
        assert np.mean(dice) == pytest.approx(per_video[name]["dice"], abs=1e-4)


# -- 5. scanner-shaped frames and a variable frame rate ----------------------------------


@pytest.mark.parametrize(
    ("mode", "size"),
    [("L", (580, 600)), ("RGB", (600, 800)), ("RGBA", (601, 799))],
    ids=["gray-580x600", "rgb-600x800", "rgba-601x799"],
)
def test_scanner_sized_frames_give_masks_at_their_own_size(
    tmp_path: Path, mode: str, size: tuple[int, int]
) -> None:
    """Masks come back at the scanner's size, odd sizes included, whatever the colour mode."""
    height, width = size
    images = []
    for image in _clip(4):
        resized = Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)
        if mode == "RGBA":
            resized.putalpha(128)  # an alpha that must not leak into the colours
        images.append(np.asarray(resized.convert(mode)))
    folder = _save_frames(tmp_path / "frames", images)
    out = tmp_path / "out"
    _ok(_segment("--input", folder, "--out", out))

    masks = _masks(out)
    assert sorted(masks) == [0, 1, 2, 3]
    assert all(m.shape == size for m in masks.values())
    assert np.asarray(Image.open(out / "still.png")).shape == (height, width, 3)
    assert _overlay_video(out)[2] == (height + height % 2, width + width % 2)
    reference = runtimes.stream_masks(runtimes.load_pytorch("S"), images)
    assert all(np.array_equal(masks[i], m) for i, m in enumerate(reference))


def test_variable_frame_rate_video_keeps_its_timestamps(tmp_path: Path) -> None:
    """The CSV and the overlay video carry each frame's own time, not index / fps."""
    times = [0.0, 0.01, 0.05, 0.1, 0.4, 0.41, 0.9, 1.3]
    path = write_video(tmp_path / "vfr.mp4", list(_clip(len(times))), 25, timestamps=times)
    out = tmp_path / "out"
    _ok(_segment("--input", path, "--out", out))
    _, rows = _rows(out)
    assert [float(r["timestamp_s"]) for r in rows] == pytest.approx(times, abs=1e-3)
    assert all(r["status"] == "ok" for r in rows)
    count, _, _, shown = _overlay_video(out)
    assert count == len(times)
    assert shown == pytest.approx(times, abs=1e-3)


# -- 6. bad input: one error line, exit 2, nothing left behind ----------------------------


def _assert_refused(result: Result, out: Path, words: str) -> str:
    """Exit 2, one ``error:``/``Error:`` line naming the problem, no output or staging left."""
    assert result.exit_code == 2, f"{result.output}\n{result.exception!r}"
    errors = [line for line in result.output.splitlines() if line.startswith(("error:", "Error:"))]
    assert len(errors) == 1, result.output
    assert words in errors[0], errors[0]
    assert "Traceback" not in result.output
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.*"))
    return errors[0]


def _bad_input(tmp_path: Path, case: str) -> tuple[Path, str]:
    """(an input the command must refuse, words its error line must contain)."""
    if case == "missing":
        return tmp_path / "nowhere.mp4", "does not exist"
    if case == "empty":
        (tmp_path / "empty.mp4").write_bytes(b"")
        return tmp_path / "empty.mp4", "empty file (0 bytes)"
    if case == "text":
        (tmp_path / "notes.mp4").write_text("not a video\n")
        return tmp_path / "notes.mp4", "not a video FFmpeg can read"
    if case == "no-frames":
        (tmp_path / "exam").mkdir()
        (tmp_path / "exam" / "readme.txt").write_text("x")
        return tmp_path / "exam", "no frame images"
    if case == "mixed-sizes":
        small, large = _clip(2)[0], np.asarray(Image.fromarray(_clip(2)[1]).resize((400, 300)))
        _save_frames(tmp_path / "exam", [small, large])
        return tmp_path / "exam", "mixed sizes"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing", "empty", "text", "no-frames", "mixed-sizes"])
def test_bad_input_is_refused_in_one_line(tmp_path: Path, case: str) -> None:
    """Refused before any inference, with nothing written."""
    path, words = _bad_input(tmp_path, case)
    out = tmp_path / "result"
    line = _assert_refused(_segment("--input", path, "--out", out), out, words)
    assert path.name in line


def test_truncated_mp4_runs_what_it_can_and_counts_the_damage(tmp_path: Path) -> None:
    """The first 40 % of an mp4 (index at the front) is not refused: it is segmented.

    The frames whose packets survived are segmented; the packet cut in half becomes one
    CSV row "skipped: undecodable packet" and a warning; frames past the cut are absent,
    and a warning says where the video ended against the count its container announces.
    Indices stay 0..n-1 in presentation order and timestamps keep the source's times.
    """
    path = write_video(tmp_path / "full.mp4", list(_clip(10)), 25)
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.4)])
    out = tmp_path / "out"
    result = _ok(_segment("--input", cut, "--out", out))

    _, rows = _rows(out)
    ok = [r for r in rows if r["status"] == "ok"]
    skipped = [r for r in rows if r["status"] != "ok"]
    assert ok and len(rows) < 10
    assert skipped and all(r["status"].startswith("skipped: undecodable packet") for r in skipped)
    assert [int(r["frame"]) for r in rows] == list(range(len(rows)))
    times = [float(r["timestamp_s"]) for r in rows]
    assert times == sorted(times) and all(round(t * 25, 3).is_integer() for t in times)
    assert sorted(_masks(out)) == [int(r["frame"]) for r in ok]
    assert result.stderr.count("warning: skipped cut frame") == len(skipped)
    assert f"cut: the video ended at frame {len(rows)} of the 10 its container" in result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["frames_segmented"], summary["frames_skipped"]) == (len(ok), len(skipped))
    assert f"{len(ok)} frames segmented, {len(skipped)} skipped" in result.stdout
    assert _overlay_video(out)[0] == len(ok)  # an undecodable frame has no image to show


@pytest.fixture
def onnx_copy(built_artifact, tmp_path: Path) -> Path:
    """A private copy of the ONNX stream artifact and its manifest, free to damage."""
    artifact = built_artifact("onnx", "S", "fp32", "stream")
    folder = tmp_path / "artifact"
    folder.mkdir()
    shutil.copy(artifact, folder / artifact.name)
    shutil.copy(artifact.parent / f"{artifact.name}.json", folder / f"{artifact.name}.json")
    return folder / artifact.name


def _damage(artifact: Path, case: str) -> str:
    """Damage the copy as ``case`` says; the words its error line must contain."""
    manifest = artifact.parent / f"{artifact.name}.json"
    if case == "tampered":
        data = bytearray(artifact.read_bytes())
        data[len(data) // 2] ^= 0xFF
        artifact.write_bytes(bytes(data))
        return "does not match the sha256 in its manifest"
    if case == "truncated":
        artifact.write_bytes(artifact.read_bytes()[: artifact.stat().st_size // 2])
        return "truncated or replaced"
    if case == "no-manifest":
        manifest.unlink()
        return "no manifest beside"
    if case == "other-schema":
        record = json.loads(manifest.read_text())
        record["schema"] = "bas-deploy-manifest/1"
        manifest.write_text(json.dumps(record))
        return "has manifest schema 'bas-deploy-manifest/1'"
    raise AssertionError(case)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["tampered", "truncated", "no-manifest", "other-schema"])
def test_untrustworthy_artifact_is_refused(onnx_copy: Path, tmp_path: Path, case: str) -> None:
    """An artifact that is not the one its manifest describes never runs."""
    words = _damage(onnx_copy, case)
    folder = _save_frames(tmp_path / "frames", list(_clip(2)))
    out = tmp_path / "result"
    result = _segment("--artifact", onnx_copy, "--input", folder, "--out", out)
    _assert_refused(result, out, words)


@pytest.mark.slow
def test_artifact_whose_runtime_is_unavailable_is_refused(
    built_artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing runtime is named, not a crash deep inside an import."""
    from runtimes.backends.litert import LiteRTBackend

    artifact = built_artifact("tflite", "S", "fp32", "stream")
    monkeypatch.setattr(LiteRTBackend, "is_available", classmethod(lambda cls: False))
    folder = _save_frames(tmp_path / "frames", list(_clip(2)))
    out = tmp_path / "result"
    result = _segment("--artifact", artifact, "--input", folder, "--out", out)
    _assert_refused(result, out, f"cannot run {artifact.name} here: litert needs")


@pytest.mark.slow
def test_apple_runtime_on_linux_is_refused(built_artifact, tmp_path: Path) -> None:
    """Core ML's own runtime is macOS only; the message points to what does work."""
    pytest.importorskip("coremltools")
    from runtimes.backends.coreml import apple_runtime_available

    if apple_runtime_available():
        pytest.skip("Apple's Core ML runtime runs here")
    artifact = built_artifact("coreml", "S", "fp32", "stream")
    folder = _save_frames(tmp_path / "frames", list(_clip(2)))
    out = tmp_path / "result"
    args = ["--artifact", artifact, "--runtime", "coreml", "--input", folder, "--out", out]
    result = _segment(*args)
    line = _assert_refused(result, out, "needs macOS")
    assert "mil_reference" in line


def test_constant_frame_is_skipped_with_a_warning(tmp_path: Path) -> None:
    """A blank frame (probe lifted, frozen screen) is skipped and counted, not fatal.

    It carries no image, so it does not advance the stream state either: the other
    frames get the masks of the clip without it.
    """
    images = list(_clip(5))
    blank = 2
    images[blank] = np.full_like(images[blank], 90)
    folder = _save_frames(tmp_path / "frames", images)
    out = tmp_path / "out"
    result = _ok(_segment("--input", folder, "--out", out))

    assert "warning: skipped" in result.stderr and "constant frame" in result.stderr
    assert "4 frames segmented, 1 skipped" in result.stdout
    _, rows = _rows(out)
    assert len(rows) == 5
    assert rows[blank]["status"].startswith("skipped: constant frame")
    assert all(r["status"] == "ok" for i, r in enumerate(rows) if i != blank)
    masks = _masks(out)
    assert sorted(masks) == [0, 1, 3, 4]
    kept = [im for i, im in enumerate(images) if i != blank]
    reference = runtimes.stream_masks(runtimes.load_pytorch("S"), kept)
    assert all(np.array_equal(masks[i], m) for i, m in zip([0, 1, 3, 4], reference, strict=True))
    assert _overlay_video(out)[0] == 5  # shown as it is, so the video keeps its timing


def test_non_empty_output_folder_is_refused_and_left_alone(tmp_path: Path) -> None:
    """A user's folder is never overwritten or merged into."""
    folder = _save_frames(tmp_path / "frames", list(_clip(2)))
    out = tmp_path / "result"
    out.mkdir()
    (out / "keep.txt").write_text("earlier results\n")
    result = _segment("--input", folder, "--out", out)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is not empty and is not an earlier output" in errors[0]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "earlier results\n"
    assert not list(tmp_path.glob(".result.*"))
