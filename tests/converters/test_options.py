"""What converters refuse, before any work: each a one-line error, exit 2, nothing written."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from converters.build import converter_digest
from converters.calibration import calibration_clips
from converters.command import target_command
from converters.registry import TARGET_CLASSES, get_target
from converters.spec import ConversionError, ConvertRequest, validate
from model.checkpoint import save_weights
from model.hub import build_bas
from runtimes.manifest import artifact_sha256
from runtimes.registry import BACKENDS, RUNTIME_NAMES
from runtimes.targets import CONVERTED, TARGETS


def _refused(argv: list[str], target: str = "onnx") -> str:
    """The last stderr line of a refused command: ``error: ...`` (click's usage errors too)."""
    result = CliRunner().invoke(target_command(get_target(target)), argv)
    assert result.exit_code == 2, result.output
    err = result.stderr.strip().splitlines()[-1]
    assert err.lower().startswith("error:")
    return err


@pytest.mark.parametrize(
    ("argv", "target", "expected"),
    [
        (["--variant", "SS"], "onnx", "did you mean 'S'"),
        (["--precision", "int9"], "tflite", "did you mean 'int8'"),
        (["--precision", "fp16"], "onnx", "'fp16' is not one of fp32"),
        (["--precision", "int16x8"], "executorch", "'int16x8' is not one of fp32, fp16, int8"),
        (["--form", "clip"], "coreml", "'clip' is not one of frame, stream"),
        (["--image-size", "250"], "onnx", "multiple of 16, got 250"),
        (["--calibration", "."], "tflite", "only used with --precision int8"),
        (["--calibration", "no/such/folder"], "tflite", "'no/such/folder' does not exist"),
        (["--weights", "no/such.safetensors"], "onnx", "weights file not found"),
    ],
)
def test_refused_by_name(tmp_path: Path, argv, target, expected) -> None:
    assert expected in _refused([*argv, "--out", str(tmp_path / "out")], target)
    assert not (tmp_path / "out").exists()


def test_unwritable_output_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert f"cannot be made: {blocker} is a file" in _refused(["--out", str(blocker / "sub")])


def test_misspelled_target_gets_a_suggestion() -> None:
    with pytest.raises(ConversionError, match="did you mean 'tflite'"):
        get_target("tflit")
    assert {get_target(n).name for n in CONVERTED} == set(CONVERTED)


def test_every_row_of_the_table_has_its_plug_ins() -> None:
    """A converter for each converted target, a runtime for each runtime name, none else."""
    assert set(TARGET_CLASSES) == set(CONVERTED)
    assert set(BACKENDS) == set(RUNTIME_NAMES)
    for name, spec in TARGETS.items():
        assert all(BACKENDS[runtime].target == name for runtime in spec.runtimes)
        if spec.converts:
            target = get_target(name)
            assert (target.suffix, target.precisions) == (spec.suffix, spec.precisions)
            assert target.runtime == spec.runtime


def test_every_target_states_its_interface() -> None:
    for name in CONVERTED:
        target = get_target(name)
        assert target.precisions and target.suffix.startswith(".")
        assert set(target.versions()) >= {"torch"}
        validate(ConvertRequest(precision=target.precisions[0]), target.precisions, name)


def test_directory_artifacts_hash_names_and_bytes(tmp_path: Path) -> None:
    package = tmp_path / "a.mlpackage"
    (package / "Data").mkdir(parents=True)
    (package / "Data" / "w.bin").write_bytes(b"1234")
    first = artifact_sha256(package)
    (package / "Data" / "w.bin").rename(package / "Data" / "v.bin")
    assert artifact_sha256(package) != first


def _weights_file(tmp_path: Path, variant: str) -> Path:
    path = tmp_path / f"bas_{variant.lower()}.safetensors"
    return save_weights(build_bas(variant), path, {"variant": variant})


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: d, "no recognised dataset layout"),
        (lambda d: (d / "notes.txt").write_text("x") and d / "notes.txt", "does not exist"),
    ],
    ids=["empty folder", "a file"],
)
def test_unusable_calibration_folder(tmp_path: Path, make, expected) -> None:
    folder = tmp_path / "calibration"
    folder.mkdir()
    argv = ["--precision", "int8", "--calibration", str(make(folder))]
    err = _refused([*argv, "--out", str(tmp_path / "out")], "executorch")
    assert "calibration folder" in err and expected in err
    assert not (tmp_path / "out").exists()


def test_corrupt_weights(tmp_path: Path) -> None:
    corrupt = tmp_path / "bas_s.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    err = _refused(["--weights", str(corrupt), "--out", str(tmp_path / "out")])
    assert str(corrupt) in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_weights_of_the_other_variant(tmp_path: Path) -> None:
    weights = _weights_file(tmp_path, "L")
    err = _refused(["--variant", "s", "--weights", str(weights), "--out", str(tmp_path / "out")])
    assert "holds BaS-L weights, not BaS-S" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_low_contrast_calibration_clips_carry_their_own_state() -> None:
    """Half-contrast clips: each frame scaled about its mean, and the stream state PyTorch
    computed from those frames, not from the originals."""
    model = build_bas("S", 64, weights=None).eval()
    plain = list(itertools.islice(calibration_clips(model, "stream", None, 64), 2))
    dull = list(itertools.islice(calibration_clips(model, "stream", None, 64, 0.5), 2))
    for (frame, _), (dull_frame, _) in zip(plain, dull, strict=True):
        mean = frame.mean()
        torch.testing.assert_close(dull_frame, mean + 0.5 * (frame - mean))
    with torch.no_grad():
        _, expected = model.stream(dull[0][0], dull[0][1])
    torch.testing.assert_close(dull[1][1], expected)
    assert not torch.allclose(dull[1][1], plain[1][1])


def test_the_converter_digest_covers_what_writes_an_artifact_only(tmp_path: Path) -> None:
    """Editing an evaluation table keeps cached artifacts; editing the network does not."""
    root = Path(__file__).resolve().parents[2]
    for package in ("model", "runtimes", "converters"):
        shutil.copytree(
            root / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    first = converter_digest(tmp_path)
    assert first == converter_digest()
    with (tmp_path / "model" / "metrics.py").open("a") as source:
        source.write("# an evaluation table changed\n")
    with (tmp_path / "converters" / "parity.py").open("a") as source:
        source.write("# a parity report changed\n")
    assert converter_digest(tmp_path) == first
    with (tmp_path / "model" / "bas.py").open("a") as source:
        source.write("# the network changed\n")
    assert converter_digest(tmp_path) != first
