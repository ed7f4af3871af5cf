"""ExecuTorch (embedded and mobile): a ``.pte`` lowered to XNNPACK, fp32 or int8 (PT2E).

    python -m converters.executorch --variant L [--precision int8]

The manifest records how many graph nodes XNNPACK took and which ops stayed on the
portable kernels; a convolution or matmul left behind fails the conversion, since a
silent fallback is many times slower.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

from model.layers import SingleGroupNorm, TempLP
from runtimes.backend import RawTensor

from .base import ConversionJob, Target
from .spec import ConversionError

FLOAT_MODULES = (SingleGroupNorm, TempLP)
HEAVY_OPS = ("convolution", "conv2d", "conv_transpose", "mm", "bmm", "addmm", "linear", "matmul")


def _quantize(job: ConversionJob) -> torch.nn.Module:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    captured = torch.export.export(job.module, job.example_inputs, strict=True).module()
    quantizer = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True)
    )
    # Normalisation and temporal mixing stay float: per-tensor int8 scales for squared
    # deviations and the state collapse (mask Dice vs PyTorch fell to 0.47 with them).
    for module_type in FLOAT_MODULES:
        quantizer.set_module_type(module_type, None)
    prepared = prepare_pt2e(captured, quantizer)
    with torch.no_grad():
        for inputs in job.calibration():
            prepared(*inputs)
    return convert_pt2e(prepared)


def _delegation(edge_program: Any) -> dict[str, Any]:
    """Count delegated calls and the ops left outside any delegate."""
    graph = edge_program.exported_program().graph
    delegated = 0
    left = Counter()
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        name = str(node.target)
        if "executorch_call_delegate" in name:
            delegated += 1
        elif not name.startswith("<built-in") and "getitem" not in name:
            left[name.split("::")[-1].split("(")[0].split(".")[0].replace("aten_", "")] += 1
    return {"delegate_calls": delegated, "portable_ops": dict(sorted(left.items()))}


def _delegated_nodes(lowered: Any) -> int:
    from executorch.exir.lowered_backend_module import get_lowered_submodules

    graph_module = lowered.exported_program().graph_module
    total = 0
    for _, submodule, _ in get_lowered_submodules(graph_module):
        total += sum(1 for n in submodule.original_module.graph.nodes if n.op == "call_function")
    return total


class ExecuTorchTarget(Target):
    name = "executorch"
    suffix = ".pte"
    precisions = ("fp32", "int8")
    modules = ("executorch", "torchao")
    distributions = ("executorch", "torchao")
    runtime = "executorch"

    def convert(self, job: ConversionJob) -> dict[str, Any]:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        module = _quantize(job) if job.request.precision == "int8" else job.module
        exported = torch.export.export(module, job.example_inputs, strict=True)
        lowered = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
        delegation = _delegation(lowered)
        delegation["delegated_nodes"] = _delegated_nodes(lowered)
        heavy = [op for op in delegation["portable_ops"] if any(h in op for h in HEAVY_OPS)]
        if heavy:
            raise ConversionError(
                f"executorch: {', '.join(heavy)} not delegated to XNNPACK (portable kernels)"
            )
        program = lowered.to_executorch()
        job.artifact.write_bytes(program.buffer)
        return {
            "backend": "XNNPACK",
            "quantization": "PT2E XNNPACKQuantizer, symmetric per-channel, static"
            if job.request.precision == "int8"
            else None,
            **delegation,
        }

    def canonical_names(
        self, inputs: list[RawTensor], outputs: list[RawTensor], job: ConversionJob, options: dict
    ) -> tuple[list[str], list[str]]:
        """A program's tensors have no names: they are the exported module's, in order."""
        return list(job.request.input_names), list(job.request.output_names)


if __name__ == "__main__":
    from .cli import target_command

    target_command(ExecuTorchTarget())()
