"""runtimes: the manifest says what each file really takes and returns; loading checks it.

The raw I/O of every artifact of the parity matrix is read here with each runtime's own
API (not through ``runtimes.backends``) and compared with its manifest, so a manifest that
describes our adapter instead of the file fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import runtimes
from model.data.synth import render_video
from model.hub import build_bas
from runtimes import ArtifactError
from runtimes.backends.pytorch import pytorch_manifest
from runtimes.manifest import SCHEMA, manifest_path, read_manifest, write_manifest
from runtimes.session import to_input
from tests.support.matrix import CI_MATRIX, CI_MATRIX_IDS


def _onnxruntime_reads(artifact: Path) -> tuple[list[tuple], list[tuple]]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
    types = {"tensor(float)": "float32"}

    def ort_io(args):
        return [(a.name, i, tuple(a.shape), types[a.type], None) for i, a in enumerate(args)]

    return ort_io(session.get_inputs()), ort_io(session.get_outputs())


def _litert_reads(artifact: Path) -> tuple[list[tuple], list[tuple]]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(artifact))

    def lite_io(details):
        return [
            (
                d["name"],
                d["index"],
                tuple(d["shape"]),
                np.dtype(d["dtype"]).name,
                d["quantization"] if d["quantization"][0] else None,
            )
            for d in details
        ]

    return lite_io(interpreter.get_input_details()), lite_io(interpreter.get_output_details())


def _executorch_reads(artifact: Path) -> tuple[list[tuple], list[tuple]]:
    from executorch.runtime import Runtime

    meta = Runtime.get().load_program(str(artifact)).metadata("forward")
    float32 = 6  # ScalarType::Float

    def et_io(get, count):
        infos = [get(i) for i in range(count)]
        assert all(int(info.dtype()) == float32 for info in infos)
        return [("", i, tuple(info.sizes()), "float32", None) for i, info in enumerate(infos)]

    return (
        et_io(meta.input_tensor_meta, meta.num_inputs()),
        et_io(meta.output_tensor_meta, meta.num_outputs()),
    )


def _coremltools_reads(artifact: Path) -> tuple[list[tuple], list[tuple]]:
    import coremltools as ct

    description = ct.models.MLModel(str(artifact), skip_model_load=True).get_spec().description

    def ml_io(features):
        float32 = ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
        assert all(f.type.multiArrayType.dataType == float32 for f in features)
        return [
            (f.name, i, tuple(f.type.multiArrayType.shape), "float32", None)
            for i, f in enumerate(features)
        ]

    return ml_io(description.input), ml_io(description.output)


# (name, index, shape, dtype, quantisation) of inputs and outputs, read with the API of each
# converted target's runtime: a target without a line here fails by name (KeyError).
AS_RUNTIME_READS = {
    "onnx": _onnxruntime_reads,
    "tflite": _litert_reads,
    "executorch": _executorch_reads,
    "coreml": _coremltools_reads,
}


def _manifest_io(specs) -> list[tuple]:
    return sorted(
        (
            s.name,
            s.index,
            s.shape,
            s.dtype,
            None if s.quantization is None else (s.quantization.scale, s.quantization.zero_point),
        )
        for s in specs
    )


@pytest.mark.slow
@pytest.mark.parametrize(("target", "variant", "precision", "form"), CI_MATRIX, ids=CI_MATRIX_IDS)
def test_manifest_describes_the_file_as_its_runtime_reads_it(
    built_artifact, target, variant, precision, form
) -> None:
    artifact = built_artifact(target, variant, precision, form)
    manifest = read_manifest(artifact)
    inputs, outputs = AS_RUNTIME_READS[target](artifact)
    assert _manifest_io(manifest.inputs) == sorted(inputs)
    assert _manifest_io(manifest.outputs) == sorted(outputs)
    wanted = {"frame": ("frame",), "stream": ("frame", "state")}[form]
    assert tuple(s.canonical for s in manifest.inputs) == wanted
    for spec in (*manifest.inputs, *manifest.outputs):  # the layout letters follow the axes
        assert sorted(spec.from_canonical) == list(range(len(spec.shape)))
        assert len(spec.layout) == len(spec.shape)


@pytest.mark.slow
def test_tflite_manifest_is_enough_to_feed_and_read_the_flatbuffer(built_artifact) -> None:
    """What an Android developer does: the manifest's indices and layouts, LiteRT, nothing of ours.

    The stream form's two inputs and two outputs, one frame after another, against PyTorch.
    """
    from ai_edge_litert.interpreter import Interpreter

    artifact = built_artifact("tflite", "S", "fp32", "stream")
    manifest = json.loads(manifest_path(artifact).read_text())
    tensors = {t["canonical"]: t for t in manifest["inputs"] + manifest["outputs"]}
    assert (tensors["logits"]["name"], tensors["logits"]["shape"]) == ("Identity", [1, 240, 240, 1])
    assert tensors["logits"]["layout"] == "NHWC" and tensors["frame"]["layout"] == "NHWC"

    interpreter = Interpreter(model_path=str(artifact))
    interpreter.allocate_tensors()
    model = build_bas("S", weights="shipped").eval()
    state = np.zeros(manifest["state"]["shape"], np.float32)
    torch_state = model.initial_state(1)
    for image, _ in render_video(1, 0, 3):
        frame = to_input(image, 240)
        for name, value in (("frame", frame), ("state", state)):
            spec = tensors[name]
            interpreter.set_tensor(spec["index"], value.transpose(spec["from_canonical"]))
        interpreter.invoke()
        logits = interpreter.get_tensor(tensors["logits"]["index"])
        back = np.argsort(tensors["new_state"]["from_canonical"])
        state = interpreter.get_tensor(tensors["new_state"]["index"]).transpose(back)
        with torch.no_grad():
            expected, torch_state = model.stream(torch.from_numpy(frame), torch_state)
        expected = expected.numpy().transpose(tensors["logits"]["from_canonical"])
        assert np.abs(logits - expected).max() < 1e-3


@pytest.mark.slow
def test_running_a_tflite_file_imports_no_converter_toolchain(built_artifact) -> None:
    artifact = built_artifact("tflite", "S", "fp32", "frame")
    code = (
        "import sys, numpy as np, runtimes\n"
        f"s = runtimes.load({str(artifact)!r}, threads=1)\n"
        "s.run(np.full((300, 280, 3), 90, np.uint8))\n"
        "bad = {'tensorflow', 'onnx2tf', 'tf_keras', 'onnx', 'onnxslim', 'coremltools'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & bad))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout


@pytest.fixture
def onnx_copy(built_artifact, tmp_path: Path) -> Path:
    """A private copy of a converted artifact and its manifest, to damage."""
    artifact = built_artifact("onnx", "S", "fp32", "frame")
    shutil.copyfile(artifact, tmp_path / artifact.name)
    shutil.copyfile(manifest_path(artifact), manifest_path(tmp_path / artifact.name))
    return tmp_path / artifact.name


def _refused(artifact: Path, match: str) -> None:
    with pytest.raises(ArtifactError, match=match) as info:
        runtimes.load(artifact)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_a_changed_file_is_refused_before_loading(onnx_copy: Path) -> None:
    runtimes.load(onnx_copy).run(np.zeros((64, 64), np.uint8) + 1)  # intact: runs
    data = bytearray(onnx_copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx_copy.write_bytes(bytes(data))
    _refused(onnx_copy, "does not match the sha256 in its manifest")
    onnx_copy.write_bytes(bytes(data[: len(data) // 3]))
    _refused(onnx_copy, "truncated or replaced")


@pytest.mark.slow
def test_a_missing_or_foreign_manifest_is_refused(onnx_copy: Path) -> None:
    record = json.loads(manifest_path(onnx_copy).read_text())
    manifest_path(onnx_copy).write_text(json.dumps({**record, "schema": "bas-deploy-manifest/1"}))
    _refused(onnx_copy, "has manifest schema 'bas-deploy-manifest/1'; this version reads")
    manifest_path(onnx_copy).write_text(json.dumps({**record, "color_order": "BGR"}))
    _refused(onnx_copy, "unknown Manifest keys: color_order")
    manifest_path(onnx_copy).write_text("{not json")
    _refused(onnx_copy, "is not valid JSON")
    manifest_path(onnx_copy).unlink()
    _refused(onnx_copy, "no manifest beside")


@pytest.mark.slow
def test_an_unavailable_runtime_is_refused_by_name(onnx_copy: Path, monkeypatch) -> None:
    from runtimes.backends.onnxruntime import OnnxRuntimeBackend

    monkeypatch.setattr(OnnxRuntimeBackend, "is_available", classmethod(lambda cls: False))
    _refused(onnx_copy, "cannot run .* here: onnxruntime needs onnxruntime importable")
    with pytest.raises(ArtifactError, match="runtime litert does not run onnx artifacts"):
        runtimes.load(onnx_copy, runtime="litert")


def test_manifest_round_trips_through_its_one_writer_and_reader(tmp_path: Path) -> None:
    manifest = pytorch_manifest(form="stream", model=build_bas("S", image_size=64))
    artifact = tmp_path / "bas.bin"
    write_manifest(artifact, manifest)
    assert read_manifest(artifact) == manifest
    assert json.loads(manifest_path(artifact).read_text())["schema"] == SCHEMA
    assert manifest.tensor("new_state").shape == (1, 2, 49, 16, 16)


def test_frames_of_any_kind_and_size_come_back_at_their_size() -> None:
    session = runtimes.from_model(build_bas("S", image_size=64), "stream")
    image = next(iter(render_video(1, 0, 1)))[0]
    rgb = np.asarray(Image.fromarray(image).resize((799, 601)))
    gray = rgb[:, :, 0]
    as_rgb = np.repeat(gray[:, :, None], 3, axis=2)
    rgba = np.concatenate([as_rgb, np.full((601, 799, 1), 255, np.uint8)], axis=2)
    results = [session.run(frame) for frame in (gray, as_rgb, rgba, gray[:, :, None])]
    for result in results:
        assert result.logits.shape == (601, 799) and result.inference_ms > 0
        np.testing.assert_array_equal(result.logits, results[0].logits)
        session.reset()  # every frame here starts a video: no history between them
    probability = results[0].probability
    assert np.array_equal(results[0].mask(0.5), probability > 0.5)
    assert results[0].mask(0.9).sum() <= results[0].mask(0.1).sum()


def test_a_session_over_a_training_model_leaves_its_weights_as_they_were() -> None:
    """The manifest runs the model once: in training mode that moved BatchNorm's statistics."""
    model = build_bas("S", image_size=64).train()
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    for form in ("stream", "frame"):
        runtimes.from_model(model.train(), form)
        for name, buffer in model.named_buffers():
            assert torch.equal(buffer, before[name]), f"{form}: {name} changed"


def test_bad_frames_are_refused_in_one_line() -> None:
    session = runtimes.from_model(build_bas("S", image_size=64), "stream")
    for frame, match in (
        (np.zeros((20, 20, 3), np.float32), "frames must be uint8 arrays, got float32"),
        (np.zeros((20, 20, 2), np.uint8), r"got \(20, 20, 2\)"),
        (np.zeros((0, 20), np.uint8), r"got \(0, 20, 3\)"),
    ):
        with pytest.raises(ValueError, match=match):
            session.run(frame)


def test_stream_session_carries_state_and_reset_forgets_it() -> None:
    model = build_bas("S", image_size=64)
    with torch.no_grad():  # a TempLP that uses the past, so history changes the logits
        model.temporal.frame_weights.fill_(1.0)
        model.temporal.project.weight.normal_(0, 2.0)
    session = runtimes.from_model(model, "stream")
    frames = [image for image, _ in render_video(1, 0, 3)]
    first = [session.run(frame).logits for frame in frames]
    session.reset()
    again = session.run(frames[0]).logits
    np.testing.assert_array_equal(again, first[0])
    assert not np.array_equal(session.run(frames[0]).logits, first[0])  # now with history


def test_a_state_returned_in_another_layout_is_carried_back_in_the_input_s() -> None:
    """Where a file returns its state in another layout than it takes it, the session puts
    it back into the input's layout before the next call (the canonical round trip)."""
    import dataclasses

    from runtimes.backends.pytorch import model_runner
    from runtimes.session import ArtifactModel, Session

    model = build_bas("S", image_size=64)
    with torch.no_grad():  # a TempLP that uses the past
        model.temporal.frame_weights.fill_(1.0)
        model.temporal.project.weight.normal_(0, 2.0)
    manifest = pytorch_manifest(model=model, form="stream")
    channels_last = (0, 2, 3, 4, 1)
    outputs = tuple(
        dataclasses.replace(
            spec,
            shape=tuple(spec.shape[i] for i in channels_last),
            layout="NCHWT",
            from_canonical=channels_last,
        )
        if spec.canonical == "new_state"
        else spec
        for spec in manifest.outputs
    )
    inner = model_runner(model.eval(), "stream")

    def runner(arrays: list[np.ndarray]) -> list[np.ndarray]:
        logits, new_state = inner(arrays)
        return [logits, new_state.transpose(channels_last)]

    session = Session(ArtifactModel(runner, dataclasses.replace(manifest, outputs=outputs), "x"))
    reference = runtimes.from_model(model, "stream")
    for image, _ in render_video(1, 0, 4):
        np.testing.assert_allclose(session.run(image).logits, reference.run(image).logits)
