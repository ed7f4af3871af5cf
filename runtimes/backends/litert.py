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


# XNNPACK delegate flags (tensorflow/lite/delegates/xnnpack/xnnpack_delegate.h). Passing any
# replaces the defaults (QS8 | QU8), so they are passed again with FORCE_FP16.
XNNPACK_QS8, XNNPACK_QU8, XNNPACK_FORCE_FP16 = 0x1, 0x2, 0x4


class LiteRTFP16Backend(LiteRTBackend):
    """LiteRT with XNNPACK's FP16 arithmetic forced: what an ARMv8.2+ phone computes for a file
    that allows FP16 inference (converters.tflite's fp16), measured on any CPU. Without native
    FP16 (x86) XNNPACK emulates it: fp16 tensors, each op computed in fp32, so no faster, and
    an op's own accumulation is more exact than a phone's.

    The Python Interpreter takes no XNNPACK flags; LiteRT's CompiledModel does (CpuOptions).
    """

    name = "litert-fp16"
    flags = XNNPACK_QS8 | XNNPACK_QU8 | XNNPACK_FORCE_FP16

    def open(self, artifact: Path, manifest: Manifest, threads: int | None) -> RawRunner:
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.options import CpuOptions, Options

        cpu = CpuOptions(num_threads=threads or 0, xnnpack_flags=self.flags)
        try:
            model = CompiledModel.from_file(
                str(artifact), options=Options(HardwareAccelerator.CPU, cpu_options=cpu)
            )
            signature = model.get_signature_by_index(0)
            details = (
                model.get_input_tensor_details(signature["key"]),
                model.get_output_tensor_details(signature["key"]),
            )
            inputs, outputs = model.create_input_buffers(0), model.create_output_buffers(0)
            # The signature's buffers are in its own order; the manifest has tensor indices.
            position = [
                {found[name]["index"]: i for i, name in enumerate(signature[side])}
                for found, side in zip(details, ("inputs", "outputs"), strict=True)
            ]
            feed = [inputs[position[0][spec.index]] for spec in manifest.inputs]
            fetch = [
                (outputs[position[1][spec.index]], spec.shape, np.dtype(spec.dtype))
                for spec in manifest.outputs
            ]
        except (ValueError, RuntimeError, KeyError) as err:
            first = one_line(err)
            raise ArtifactError(f"LiteRT (FP16 forced) cannot load {artifact}: {first}") from err

        def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
            for buffer, array in zip(feed, arrays, strict=True):
                buffer.write(array)
            model.run_by_index(0, inputs, outputs)
            return [
                buffer.read(int(np.prod(shape)), dtype).reshape(shape)
                for buffer, shape, dtype in fetch
            ]

        return run
