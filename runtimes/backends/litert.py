"""LiteRT (``ai_edge_litert``): the TFLite interpreter, without TensorFlow or onnx2tf."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.errors import one_line

from ..backend import Backend, RawRunner, RawTensor
from ..manifest import ArtifactError, Manifest, Quantization


def _raw(detail: dict) -> RawTensor:
    scale, zero_point = detail["quantization"]
    quantized = scale != 0.0
    return RawTensor(
        detail["name"],
        int(detail["index"]),
        tuple(int(d) for d in detail["shape"]),
        np.dtype(detail["dtype"]).name,
        Quantization(float(scale), int(zero_point)) if quantized else None,
    )


class LiteRTBackend(Backend):
    name = "litert"
    target = "tflite"
    modules = ("ai_edge_litert",)

    def _interpreter(self, artifact: Path, threads: int | None):
        from ai_edge_litert.interpreter import Interpreter

        try:
            interpreter = Interpreter(model_path=str(artifact), num_threads=threads)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            first = one_line(err)
            raise ArtifactError(f"LiteRT cannot load {artifact}: {first}") from err
        return interpreter

    def inspect(self, artifact: Path) -> tuple[list[RawTensor], list[RawTensor]]:
        interpreter = self._interpreter(artifact, 1)
        return (
            [_raw(d) for d in interpreter.get_input_details()],
            [_raw(d) for d in interpreter.get_output_details()],
        )

    def open(self, artifact: Path, manifest: Manifest, threads: int | None) -> RawRunner:
        interpreter = self._interpreter(artifact, threads)
        inputs = [spec.index for spec in manifest.inputs]
        outputs = [spec.index for spec in manifest.outputs]

        def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
            for index, array in zip(inputs, arrays, strict=True):
                interpreter.set_tensor(index, array)
            interpreter.invoke()
            return [interpreter.get_tensor(index) for index in outputs]

        return run
