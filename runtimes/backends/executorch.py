"""ExecuTorch's Python runtime (the same C++ runtime and XNNPACK kernels an app links)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.errors import one_line

from ..backend import Backend, RawRunner, RawTensor
from ..manifest import ArtifactError, Manifest
from ..threads import aten_single_threaded

# ExecuTorch's ScalarType codes (the same numbering as c10::ScalarType).
_DTYPES = {0: "uint8", 1: "int8", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 11: "bool"}


def _load(artifact: Path):
    from executorch.runtime import Runtime

    try:
        return Runtime.get().load_program(str(artifact))
    except (RuntimeError, ValueError) as err:
        first = one_line(err)
        raise ArtifactError(f"ExecuTorch cannot load {artifact}: {first}") from err


def _raw(info, index: int) -> RawTensor:
    code = int(info.dtype())
    if code not in _DTYPES:
        raise ArtifactError(f"ExecuTorch tensor {index} has scalar type {code}, not one BaS uses")
    return RawTensor("", index, tuple(int(s) for s in info.sizes()), _DTYPES[code])


class ExecuTorchBackend(Backend):
    name = "executorch"
    modules = ("executorch",)

    def inspect(self, artifact: Path) -> tuple[list[RawTensor], list[RawTensor]]:
        meta = _load(artifact).metadata("forward")
        return (
            [_raw(meta.input_tensor_meta(i), i) for i in range(meta.num_inputs())],
            [_raw(meta.output_tensor_meta(i), i) for i in range(meta.num_outputs())],
        )

    def open(self, artifact: Path, manifest: Manifest, threads: int | None) -> RawRunner:
        # XNNPACK's thread pool is process-wide in the Python runtime; ``threads`` sets it.
        import torch

        if threads:
            from executorch.extension.pybindings import portable_lib

            portable_lib._unsafe_reset_threadpool(threads)
        method = _load(artifact).load_method("forward")
        order = [spec.index for spec in manifest.inputs]
        picks = [spec.index for spec in manifest.outputs]

        def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
            by_index = dict(zip(order, arrays, strict=True))
            tensors = [
                torch.from_numpy(np.ascontiguousarray(by_index[i])) for i in sorted(by_index)
            ]
            # Its Python bindings move a call's tensors with ATen (runtimes.threads).
            with aten_single_threaded():
                outputs = method.execute(tensors)
            return [outputs[i].numpy() for i in picks]

        return run
