"""What a phone delegate is handed by the TFLite artifacts: float ops, (de)quantize ops, partitions.

``graph_summary`` is checked against the interpreter's own op details, and the integer-only
artifact (precision int16x8) is checked to have no op computing in float.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from converters.calibration import CALIBRATION_FRAMES, CALIBRATION_VIDEOS
from runtimes.manifest import read_manifest

pytest.importorskip("ai_edge_litert")
pytest.importorskip("onnx2tf")


def _interpreter_ops(artifact: Path) -> tuple[Counter, list[dict], set[int]]:
    """Op types, op details and float tensor indices, straight from the interpreter."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(artifact))
    ops = interpreter._get_ops_details()
    floating = {
        t["index"]
        for t in interpreter.get_tensor_details()
        if np.issubdtype(np.dtype(t["dtype"]), np.floating)
    }
    return Counter(op["op_name"] for op in ops), ops, floating


def _check_consistent(artifact: Path) -> None:
    """The manifest's graph summary agrees with the interpreter's op details."""
    from converters.tflite import CONVERSIONS, DATA_MOVEMENT, summarize

    summary = read_manifest(artifact).graph
    assert summary == summarize(artifact)
    types, ops, floating = _interpreter_ops(artifact)
    assert summary.ops == len(ops) == sum(types.values())
    assert summary.quantize_ops == types["QUANTIZE"]
    assert summary.dequantize_ops == types["DEQUANTIZE"]
    float_compute = Counter(
        op["op_name"]
        for op in ops
        if op["op_name"] not in DATA_MOVEMENT | CONVERSIONS
        and any(i in floating for i in (*op["inputs"], *op["outputs"]) if i >= 0)
    )
    assert summary.float_op_types == dict(float_compute)
    assert summary.float_compute_ops == sum(float_compute.values())
    assert summary.partitions_source


@pytest.mark.slow
def test_fp32_graph_is_all_float_without_quantize(built_artifact) -> None:
    artifact = built_artifact("tflite", "S", "fp32", "frame")
    _check_consistent(artifact)
    summary = read_manifest(artifact).graph
    assert summary.quantize_ops == summary.dequantize_ops == 0
    assert summary.float_compute_ops > 0 and "CONV_2D" in summary.float_op_types
    assert summary.partitions is None


@pytest.mark.slow
def test_default_int8_graph_counts_its_float_islands(built_artifact) -> None:
    """Today's default int8 keeps the norm's statistics and MUL but SiLU's float."""
    artifact = built_artifact("tflite", "S", "int8", "stream")
    _check_consistent(artifact)
    summary = read_manifest(artifact).graph
    assert summary.quantize_ops > 0 and summary.dequantize_ops > 0
    assert summary.float_compute_ops > 0 and summary.partitions > 1


@pytest.mark.slow
def test_int8_keeps_every_mul_float_but_silus(built_artifact) -> None:
    """SiLU's x * sigmoid(x) (a MUL reading LOGISTIC's output) is int8; every other MUL float."""
    artifact = built_artifact("tflite", "S", "int8", "frame")
    _, ops, floating = _interpreter_ops(artifact)
    producer = {index: op["op_name"] for op in ops for index in op["outputs"]}
    integer, other = [], []
    for op in (op for op in ops if op["op_name"] == "MUL"):
        silu = "LOGISTIC" in {producer.get(i) for i in op["inputs"]}
        (integer if silu else other).append(op["outputs"][0] not in floating)
    assert integer and all(integer), "SiLU's MUL is not int8"
    assert other and not any(other), "a MUL other than SiLU's is int8"


@pytest.mark.slow
def test_int16x8_has_no_float_compute(built_artifact) -> None:
    """Integer-only: a delegate gets the whole graph. (Its parity is the matrix's, test_parity.)"""
    artifact = built_artifact("tflite", "S", "int16x8", "frame")
    _check_consistent(artifact)
    manifest = read_manifest(artifact)
    summary = manifest.graph
    assert summary.float_compute_ops == 0, summary.float_op_types
    # calibrated on the clips and their half-contrast copies (converters.tflite.LOW_CONTRAST)
    assert manifest.options["calibration_samples"] == 2 * CALIBRATION_VIDEOS * CALIBRATION_FRAMES
    # float I/O: the only float tensors are the inputs and outputs themselves, each with
    # one QUANTIZE or DEQUANTIZE (further QUANTIZE ops may requantize int16 to int16)
    _, ops, floating = _interpreter_ops(artifact)
    boundary = {spec.index for spec in (*manifest.inputs, *manifest.outputs)}
    assert floating == boundary
    touching = [op["op_name"] for op in ops if floating & {*op["inputs"], *op["outputs"]}]
    assert sorted(touching) == sorted(
        ["QUANTIZE"] * len(manifest.inputs) + ["DEQUANTIZE"] * len(manifest.outputs)
    )
    assert summary.dequantize_ops == len(manifest.outputs)
    assert summary.partitions == 1


@pytest.mark.slow
def test_onnx_fp32_graph_counts_every_compute_op_as_float(built_artifact) -> None:
    import onnx

    from converters.onnx import DATA_MOVEMENT

    artifact = built_artifact("onnx", "S", "fp32", "frame")
    summary = read_manifest(artifact).graph
    types = Counter(node.op_type for node in onnx.load(artifact).graph.node)
    assert summary.ops == sum(types.values())
    assert summary.quantize_ops == summary.dequantize_ops == 0
    assert summary.float_op_types == {t: n for t, n in types.items() if t not in DATA_MOVEMENT}
    assert summary.float_compute_ops == summary.ops - sum(types[t] for t in DATA_MOVEMENT)


def test_channels_last_stream_computes_the_stream_step() -> None:
    """The stream form onnx2tf is given: same logits and state, the state channels-last."""
    import torch

    from converters.xnnpack_export import STATE_CHANNELS_LAST, ChannelsLastStream
    from model.forms import StreamForm
    from model.hub import build_bas

    form = StreamForm(build_bas("S", weights="shipped").eval()).eval()
    generator = torch.Generator().manual_seed(5)
    gate = form.model.temporal
    with torch.no_grad():  # an open gate, whatever the shipped weights hold
        for weight in (gate.gate.weight, gate.gate.bias, gate.prior.weight):
            weight.copy_(0.3 * torch.randn(weight.shape, generator=generator))
    rewritten = ChannelsLastStream(form).eval()
    frame = torch.rand(1, 3, 240, 240, generator=generator)
    state = torch.randn(1, *form.model.state_shape, generator=generator)
    with torch.no_grad():
        logits, new_state = form(frame, state)
        got_logits, got_state = rewritten(frame, state.permute(STATE_CHANNELS_LAST))
    assert torch.allclose(got_logits, logits, atol=1e-4, rtol=0)
    expected_state = new_state.permute(STATE_CHANNELS_LAST)
    assert torch.equal(got_state[..., :48], expected_state[..., :48])  # the stem's features
    # the lesion probability per stem cell, from logits that agree to 1e-4
    assert torch.allclose(got_state[..., 48:], expected_state[..., 48:], atol=1e-4, rtol=0)


@pytest.mark.slow
def test_stream_state_is_channels_last_and_templp_leaves_no_5d_compute(built_artifact) -> None:
    """onnx2tf computed a 5-D state in its ONNX layout, transposing around 5-D ops (stream
    1.14-1.49 x the frame form's latency); channels-last, the state is only sliced and
    concatenated, and the new state comes back in the layout the next call takes."""
    from converters.tflite import DATA_MOVEMENT, STREAM_TRANSFORM

    artifact = built_artifact("tflite", "S", "fp32", "stream")
    manifest = read_manifest(artifact)
    state = {s.canonical: s for s in (*manifest.inputs, *manifest.outputs)}
    for name in ("state", "new_state"):
        assert state[name].layout == "NTHWC" and state[name].from_canonical == (0, 1, 3, 4, 2)
    assert state["state"].shape == state["new_state"].shape == (1, 2, 60, 60, 49)
    assert STREAM_TRANSFORM in manifest.export_transforms
    _, ops, _ = _interpreter_ops(artifact)
    from ai_edge_litert.interpreter import Interpreter

    ranks = {t["index"]: len(t["shape"]) for t in Interpreter(str(artifact)).get_tensor_details()}
    five_d = [
        op["op_name"]
        for op in ops
        if any(ranks[i] == 5 for i in (*op["inputs"], *op["outputs"]) if i >= 0)
    ]
    assert five_d and set(five_d) <= DATA_MOVEMENT, five_d


@pytest.mark.slow
def test_session_carries_the_state_in_the_files_layout(built_artifact) -> None:
    """Session.infer keeps the state as the file takes it; the canonical round trip (what
    parity runs) gives the same logits frame after frame."""
    import numpy as np

    from model.data.synth import render_video
    from runtimes import load
    from runtimes.session import to_input

    session = load(built_artifact("tflite", "S", "fp32", "stream"))
    state = np.zeros(session.manifest.state.shape, np.float32)
    for image, _ in render_video(4, 0, 4):
        x = to_input(image, 240)
        logits = session.infer(x)
        canonical = session.model({"frame": x, "state": state})
        state = canonical["new_state"]
        assert np.array_equal(logits, canonical["logits"])
    assert session._state.shape == (1, 2, 60, 60, 49)
