"""onnxruntime, CPU execution provider."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.errors import one_line

from ..backend import Backend, RawRunner, RawTensor
from ..manifest import ArtifactError, Manifest

_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int8)": "int8"}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    modules = ("onnxruntime",)

    def _session(self, artifact: Path, threads: int | None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            return ort.InferenceSession(
                str(artifact), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own exception types
            first = one_line(err)
            raise ArtifactError(f"onnxruntime cannot load {artifact}: {first}") from err

    def inspect(self, artifact: Path) -> tuple[list[RawTensor], list[RawTensor]]:
        session = self._session(artifact, 1)

        def raw(args) -> list[RawTensor]:
            return [
                RawTensor(a.name, i, tuple(a.shape), _ORT_TYPES.get(a.type, a.type))
                for i, a in enumerate(args)
            ]

        return raw(session.get_inputs()), raw(session.get_outputs())

    def open(self, artifact: Path, manifest: Manifest, threads: int | None) -> RawRunner:
        session = self._session(artifact, threads)
        inputs = [spec.name for spec in manifest.inputs]
        outputs = [spec.name for spec in manifest.outputs]

        def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
            return session.run(outputs, dict(zip(inputs, arrays, strict=True)))

        return run
