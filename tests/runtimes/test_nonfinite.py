"""Values outside our assumptions are refused with one line naming the file, never used
(issue 20): non-finite or out-of-range weights, manifest numbers, artifact outputs and
calibration inputs."""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from converters import parity
from converters.calibration import calibration_clips
from converters.spec import ConversionError
from model.checkpoint import CheckpointError, read_state_dict
from model.hub import build_bas, shipped_weights
from runtimes.backends.pytorch import model_runner, pytorch_manifest
from runtimes.manifest import ArtifactError, Manifest, read_manifest, write_manifest
from runtimes.session import ArtifactModel, NonFiniteOutput, Session
from tests.support.records import set_field

# --- weights -----------------------------------------------------------------------------


@functools.cache
def _shipped() -> dict[str, torch.Tensor]:
    return read_state_dict(shipped_weights("S"))


def poisoned(path: Path, key: str, value: float, count: int = 1) -> Path:
    """The shipped BaS-S weights with ``count`` values of ``key`` set to ``value``."""
    state = {k: v.clone() for k, v in _shipped().items()}
    state[key].view(-1)[:count] = value
    save_file(state, path, metadata={"variant": "S"})
    return path


RUNNING_VAR = "decoder1.0.lci.norm_in.running_var"


@pytest.mark.parametrize(
    ("key", "value", "count", "message"),
    [
        ("position", math.nan, 3, r"tensor position has 3 of \d+ values NaN or infinite"),
        ("position", math.inf, 1, r"tensor position has 1 of \d+ values NaN or infinite"),
        (RUNNING_VAR, -math.inf, 1, rf"tensor {re.escape(RUNNING_VAR)} has 1 of"),
        (RUNNING_VAR, -0.5, 2, rf"tensor {re.escape(RUNNING_VAR)} has 2 of \d+ values negative"),
    ],
)
def test_weights_out_of_range_are_refused(
    tmp_path: Path, key: str, value: float, count: int, message: str
) -> None:
    path = poisoned(tmp_path / "w.safetensors", key, value, count)
    with pytest.raises(CheckpointError, match=rf"w\.safetensors: {message}"):
        read_state_dict(path)
    with pytest.raises(CheckpointError, match=message):  # every command's way in
        build_bas("S", weights=path)


def test_a_torch_save_file_is_checked_too_and_integers_pass(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save({"a": torch.tensor([1.0, math.nan]), "n": torch.tensor(7)}, path)
    with pytest.raises(CheckpointError, match=r"w\.pt: tensor a has 1 of 2 values NaN"):
        read_state_dict(path)
    torch.save({"n": torch.tensor(-7), "norm.running_var": torch.zeros(3)}, path)
    assert set(read_state_dict(path)) == {"n", "norm.running_var"}  # zero variance is fine


# --- manifests ---------------------------------------------------------------------------


@functools.cache
def _frame_manifest() -> Manifest:
    return pytorch_manifest(model=build_bas("S"), form="frame")


def _record() -> dict[str, Any]:
    return json.loads(_frame_manifest().to_json())


def _quantized(record: dict[str, Any], scale: float = 0.004, zero_point: int = -128) -> None:
    record["inputs"][0] |= {"dtype": "int8", "quantization": {"scale": scale, "zero_point": 0}}
    record["inputs"][0]["quantization"]["zero_point"] = zero_point


MANIFEST_CASES = [
    (set_field("image_size", 0), r"image_size is 0, must be > 0"),
    (set_field("temporal_window", 0), r"temporal_window is 0, must be >= 1"),
    (set_field("inputs.0.shape", [1, 3, -240, 240]), r"inputs\[0\]\.shape is \(1, 3, -240, 240\)"),
    (set_field("outputs.0.shape", [1, 1, 0, 240]), r"outputs\[0\]\.shape .* must be >= 1"),
    (set_field("inputs.0.from_canonical", [0, 1, 1, 3]), r"inputs\[0\]\.from_canonical .*permutat"),
    (set_field("inputs.0.index", -1), r"inputs\[0\]\.index is -1"),
    (set_field("inputs.0.dtype", "object"), r"inputs\[0\]\.dtype is 'object'"),
    (lambda r: _quantized(r, scale=0.0), r"inputs\[0\]\.quantization\.scale is 0\.0"),
    (lambda r: _quantized(r, scale=-1.0), r"inputs\[0\]\.quantization\.scale is -1\.0"),
    (
        lambda r: _quantized(r, zero_point=128),
        r"inputs\[0\]\.quantization\.zero_point is 128, outside int8's range",
    ),
    (lambda r: _quantized(r, scale=math.nan), r"inputs\[0\]\.quantization\.scale is nan"),
    (set_field("preprocessing.range", [1.0, 0.0]), r"preprocessing\.range is \(1\.0, 0\.0\)"),
    (set_field("preprocessing.std", [0.2, 0.0, 0.2]), r"preprocessing\.std .* must be > 0"),
    (set_field("conversion_seconds", -3), r"conversion_seconds is -3\.0"),
    (set_field("artifact.bytes", -1), r"artifact\.bytes is -1"),
    (
        set_field("parity", {"passed": "yes"}),
        r"does not match schema \S+: parity\.passed must be true or false, got 'yes'",
    ),
    (
        set_field("parity", {"passed": True, "masks_vs_pytorch": {"pooled_dice": 1.5}}),
        r"parity\.masks_vs_pytorch\.pooled_dice is 1\.5, must be a fraction",
    ),
    (set_field("options", {"x": [1.0, math.inf]}), r"options\.x\[1\] is inf, not a finite number"),
]


@pytest.mark.parametrize(("change", "message"), MANIFEST_CASES)
def test_manifest_values_out_of_range_are_refused(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    record = _record()
    change(record)
    (tmp_path / "a.onnx.json").write_text(json.dumps(record))  # NaN written as the NaN token
    with pytest.raises(ArtifactError, match=rf"^\S*a\.onnx\.json:? {message}"):
        read_manifest(tmp_path / "a.onnx")


@pytest.mark.parametrize(
    ("token", "shown"),
    [("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf"), ("1e999", "inf")],
)
def test_non_finite_json_numbers_are_refused(tmp_path: Path, token: str, shown: str) -> None:
    text = (
        _frame_manifest()
        .to_json()
        .replace('"conversion_seconds": 0.0', f'"conversion_seconds": {token}')
    )
    assert token in text
    (tmp_path / "a.onnx.json").write_text(text)
    with pytest.raises(ArtifactError, match=rf"a\.onnx\.json: conversion_seconds is {shown}, not"):
        read_manifest(tmp_path / "a.onnx")


def test_a_valid_manifest_still_reads(tmp_path: Path) -> None:
    record = _record()
    _quantized(record, zero_point=-128)
    (tmp_path / "a.onnx.json").write_text(json.dumps(record))
    assert read_manifest(tmp_path / "a.onnx").inputs[0].quantization.zero_point == -128


# --- artifacts' outputs ------------------------------------------------------------------


def _nan_after(frames: int, form: str) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    """A runner like BaS's, whose logits turn NaN after ``frames`` good calls."""
    real = model_runner(build_bas("S"), form)
    calls = [0]

    def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
        calls[0] += 1
        outputs = [np.array(o) for o in real(arrays)]
        if calls[0] > frames:
            outputs[0][0, 0, :2, 0] = np.nan
        return outputs

    return run


@pytest.mark.parametrize("form", ["frame", "stream"])
def test_a_session_refuses_nan_logits_naming_artifact_output_and_frame(form: str) -> None:
    manifest = pytorch_manifest(model=build_bas("S"), form=form)
    session = Session(ArtifactModel(_nan_after(2, form), manifest, "fake"))
    image = np.full((64, 80), 90, np.uint8)
    session.run(image)
    session.run(image)
    pattern = r"fake returned 2 of 57600 values of its logits output 'logits' NaN or infinite"
    with pytest.raises(NonFiniteOutput, match=rf"{pattern}.*, at frame 3 of the video$"):
        session.run(image)
    session.reset()
    with pytest.raises(NonFiniteOutput, match=r"at frame 1 of the video"):  # counted per video
        session.run(image)


def test_parity_reports_a_nan_artifact_as_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = pytorch_manifest("S", "shipped", "frame")  # the weights parity compares with
    artifact = tmp_path / "bas.pt"
    artifact.write_bytes(b"a stand-in: parity's runtime is the NaN runner below\n")
    write_manifest(artifact, manifest)
    model = ArtifactModel(_nan_after(5, "frame"), manifest, "pytorch")
    monkeypatch.setattr(parity, "open_model", lambda path, runtime: model)
    record = parity.record_parity(artifact, frames=parity.MIN_FRAMES)
    assert not record.passed
    assert len(record.failures) == 1
    assert re.search(r"pytorch returned \d+ of 57600 values .* NaN or infinite", record.failures[0])
    assert read_manifest(artifact).parity == record  # written as strict JSON, and reads back


# --- calibration -------------------------------------------------------------------------


def test_calibration_refuses_a_non_finite_state() -> None:
    model = build_bas("S")
    with torch.no_grad():
        model.stem.conv.bias.fill_(math.inf)  # the stem makes the carried state
    clips = calibration_clips(model, "stream", None, 240)
    next(clips)  # the first frame carries the zero state
    with pytest.raises(
        ConversionError,
        match=r"synthetic calibration set: the PyTorch state fed "
        r"with frame 2 of video 1 holds NaN or infinite values",
    ):
        next(clips)


def test_calibration_refuses_a_non_finite_frame(tmp_path: Path) -> None:
    clips = calibration_clips(build_bas("S"), "frame", None, 240, contrast=math.nan)
    with pytest.raises(ConversionError, match=r"the frame fed with frame 1 of video 1"):
        next(clips)
