"""What a phone delegate is handed by the TFLite artifacts: float ops, (de)quantize ops, partitions.

``graph_summary`` is checked against the interpreter's own op details, and the integer-only
artifact (precision int16x8) is checked to have no op computing in float.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

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
    """Today's default int8 keeps the norm's statistics and MUL float (FLOAT_OPS)."""
    artifact = built_artifact("tflite", "S", "int8", "stream")
    _check_consistent(artifact)
    summary = read_manifest(artifact).graph
    assert summary.quantize_ops > 0 and summary.dequantize_ops > 0
    assert summary.float_compute_ops > 0 and summary.partitions > 1


@pytest.mark.slow
def test_int16x8_has_no_float_compute(built_artifact) -> None:
    """Integer-only: a delegate gets the whole graph. (Its parity is the matrix's, test_parity.)"""
    artifact = built_artifact("tflite", "S", "int16x8", "frame")
    _check_consistent(artifact)
    manifest = read_manifest(artifact)
    summary = manifest.graph
    assert summary.float_compute_ops == 0, summary.float_op_types
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
