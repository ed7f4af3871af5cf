"""ONNX: the common intermediate (torch.export-based exporter, opset 18, onnxslim, checked).

python -m converters.onnx --variant S
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import ConversionJob, Runner, Target
from .spec import ConversionError

OPSET = 18


def export_onnx(job: ConversionJob, path: Path) -> None:
    """Export, simplify (GroupNorm's InstanceNormalization form trips onnx2tf) and check."""
    import onnx
    import onnxslim

    # The TorchScript exporter (dynamo=False) was seen to produce wrong logits for BaS.
    program = torch.onnx.export(
        job.module,
        job.example_inputs,
        input_names=list(job.request.input_names),
        output_names=list(job.request.output_names),
        opset_version=OPSET,
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    slim = onnxslim.slim(program.model_proto)
    onnx.checker.check_model(slim, full_check=True)
    onnx.save(slim, path)


class OnnxTarget(Target):
    name = "onnx"
    suffix = ".onnx"
    precisions = ("fp32",)
    modules = ("onnx", "onnxruntime", "onnxslim", "onnxscript")
    distributions = ("onnx", "onnxruntime", "onnxslim", "onnxscript")

    def convert(self, job: ConversionJob) -> dict[str, Any]:
        export_onnx(job, job.artifact)
        self.load(job.artifact, {})  # onnxruntime must accept it
        return {"opset": OPSET, "exporter": "torch.onnx dynamo", "simplifier": "onnxslim"}

    def load(self, artifact: Path, manifest: dict[str, Any]) -> Runner:
        import onnxruntime as ort

        try:
            session = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise ConversionError(f"onnxruntime cannot load {artifact}: {err}") from err
        names = [o.name for o in session.get_outputs()]

        def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return dict(zip(names, session.run(names, inputs), strict=True))

        return run


if __name__ == "__main__":
    from .cli import main

    sys.exit(main("onnx"))
