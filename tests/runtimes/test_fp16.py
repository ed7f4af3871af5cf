"""FP16 arithmetic: the fp16 TFLite file allows it, and parity can measure it (``litert-fp16``).

A file with fp16 weights but no FP16 declaration is only smaller: XNNPACK dequantises the
weights and computes in fp32. The declaration is TFLite's ``reduced_precision_support``
metadata; ``litert-fp16`` forces the FP16 arithmetic an ARMv8.2+ phone would then use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runtimes.manifest import read_manifest
from runtimes.registry import get_backend, runtimes_for
from runtimes.targets import TARGETS

pytest.importorskip("ai_edge_litert")

TFLITE = TARGETS["tflite"]


def _metadata(path: Path) -> dict[str, bytes]:
    """Every metadata entry of a flatbuffer, read with TFLite's own schema."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    return {
        entry.name.decode(): np.asarray(model.buffers[entry.buffer].data, np.uint8).tobytes()
        for entry in model.metadata or []
    }


def _tiny_model(path: Path, metadata: dict[str, bytes]) -> None:
    """A flatbuffer with no graph, only ``metadata``, for the reader."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT()
    model.version = 3
    model.buffers = [schema.BufferT()]
    model.metadata = []
    for name, value in metadata.items():
        buffer = schema.BufferT()
        buffer.data = list(value)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name, entry.buffer = name, len(model.buffers) - 1
        model.metadata.append(entry)
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(builder.Output())


def test_reader_finds_the_declaration(tmp_path: Path) -> None:
    from converters.tflite import reduced_precision

    path = tmp_path / "m.tflite"
    declared = {"min_runtime_version": b"2.9.0", "reduced_precision_support": b"fp16accfp16"}
    _tiny_model(path, declared)
    assert reduced_precision(path) == "fp16accfp16"
    _tiny_model(path, {"min_runtime_version": b"2.9.0"})
    assert reduced_precision(path) is None


def test_litert_fp16_is_offered_for_tflite_but_not_the_default() -> None:
    names = runtimes_for("tflite")
    assert names[0] == TFLITE.runtime != TFLITE.fp16_runtime
    assert TFLITE.fp16_runtime in names


@pytest.mark.slow
def test_fp16_file_declares_fp16_arithmetic(built_artifact) -> None:
    """XNNPACK hints FP16 inference only for fp16 inference with fp16 accumulation."""
    artifact = built_artifact("tflite", "S", "fp16", "frame")
    assert _metadata(artifact)["reduced_precision_support"] == b"fp16accfp16"
    manifest = read_manifest(artifact)
    assert manifest.options["reduced_precision_support"] == "fp16accfp16"
    assert manifest.accumulation == "fp16"


@pytest.mark.slow
def test_fp32_file_declares_nothing(built_artifact) -> None:
    artifact = built_artifact("tflite", "S", "fp32", "frame")
    assert "reduced_precision_support" not in _metadata(artifact)
    assert read_manifest(artifact).accumulation == "fp32"


@pytest.mark.slow
def test_litert_fp16_computes_in_fp16(built_artifact) -> None:
    """Same file, same input: FP16 arithmetic moves the logits, by a few thousandths."""
    artifact = built_artifact("tflite", "S", "fp16", "frame")
    manifest = read_manifest(artifact)
    frame = np.random.default_rng(0).random(manifest.inputs[0].shape, dtype=np.float32)
    (fp32,) = get_backend(TFLITE.runtime).open(artifact, manifest, 2)([frame])
    (fp16,) = get_backend(TFLITE.fp16_runtime).open(artifact, manifest, 2)([frame])
    assert fp16.shape == fp32.shape and fp16.dtype == np.float32
    assert 1e-4 < np.abs(fp16 - fp32).max() < 0.05


@pytest.mark.slow
def test_litert_fp16_matches_pytorch(built_artifact) -> None:
    from converters.parity import measure

    artifact = built_artifact("tflite", "S", "fp16", "frame")
    record = measure(artifact, 6, runtime=TFLITE.fp16_runtime)
    assert record.runtime == TFLITE.fp16_runtime
    assert record.masks_vs_pytorch.dice >= 0.99
    assert record.logits.max_abs_err < 0.1
