"""ONNX: the common intermediate (torch.export-based exporter, opset 18, onnxslim, checked).

python -m converters.onnx --variant S
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .base import ConversionJob, Target

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
    runtime = "onnxruntime"

    def convert(self, job: ConversionJob) -> dict[str, Any]:
        export_onnx(job, job.artifact)
        return {"opset": OPSET, "exporter": "torch.onnx dynamo", "simplifier": "onnxslim"}


if __name__ == "__main__":
    from .cli import target_command

    target_command(OnnxTarget())()
