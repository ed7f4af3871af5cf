"""ONNX: the common intermediate (torch.export-based exporter, opset 18, onnxslim, checked).

python -m converters.onnx --variant S
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from runtimes.manifest import GraphSummary

from .base import ConversionJob, Target
from .command import target_command

OPSET = 18
# Ops that only move or reshape data: not compute.
DATA_MOVEMENT = frozenset(
    {
        "Reshape", "Transpose", "Concat", "Slice", "Pad", "Gather", "GatherND", "Squeeze",
        "Unsqueeze", "Split", "Tile", "Expand", "Shape", "Identity", "Flatten", "Constant",
        "DepthToSpace", "SpaceToDepth",
    }
)  # fmt: skip


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
    modules = ("onnx", "onnxruntime", "onnxslim", "onnxscript")
    distributions = ("onnx", "onnxruntime", "onnxslim", "onnxscript")

    def convert(self, job: ConversionJob) -> dict[str, Any]:
        export_onnx(job, job.artifact)
        return {"opset": OPSET, "exporter": "torch.onnx dynamo", "simplifier": "onnxslim"}

    def graph_summary(self, job: ConversionJob, options: dict) -> GraphSummary | None:
        """fp32 ONNX computes every op in float: for an integer NPU, all of them are float ops."""
        import onnx

        graph = onnx.load(job.artifact).graph
        float_types: dict[str, int] = {}
        for node in graph.node:
            if node.op_type not in DATA_MOVEMENT:
                float_types[node.op_type] = float_types.get(node.op_type, 0) + 1
        types = [node.op_type for node in graph.node]
        return GraphSummary(
            ops=len(types),
            float_compute_ops=sum(float_types.values()),
            quantize_ops=types.count("QuantizeLinear"),
            dequantize_ops=types.count("DequantizeLinear"),
            float_op_types=dict(sorted(float_types.items())),
            partitions=None,
            partitions_source="float graph: no integer partitions",
        )


if __name__ == "__main__":
    target_command(OnnxTarget())()
