"""ExecuTorch (embedded and mobile): a ``.pte`` lowered to XNNPACK, fp32, fp16 or int8 (PT2E).

    python -m converters.executorch --variant L [--precision int8]

The manifest records how many graph nodes XNNPACK took and which ops stayed on the
portable kernels; a convolution or matmul left behind fails the conversion, since a
silent fallback is many times slower. fp32 exports a copy of the module rewritten so
XNNPACK stays channels-last throughout (``converters.xnnpack_export``; the rewrites are
listed in the manifest's export_transforms), and the manifest's graph summary counts the ops of
the lowered program (delegated and portable). fp16 is that module computing in fp16 (weights
and activations), with fp32 input and output: XNNPACK runs it in fp16 arithmetic, natively on
ARMv8.2+ phones, emulated through fp32 conversions on x86.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from model.layers import SingleGroupNorm, TempLP
from runtimes.backend import RawTensor
from runtimes.manifest import GraphSummary
from runtimes.threads import aten_single_threaded

from .base import ConversionJob, Target
from .command import target_command
from .spec import ConversionError
from .xnnpack_export import nhwc_float_module, nhwc_half_module

FLOAT_MODULES = (SingleGroupNorm, TempLP)
HEAVY_OPS = ("convolution", "conv2d", "conv_transpose", "mm", "bmm", "addmm", "linear", "matmul")


# Units kept float as well, per variant, from `python -m converters.sensitivity` (README,
# "int8 sensitivity"): BaS-S's decoder1 and up2 see ranges that differ by orders of
# magnitude between frames; they win back the most mask agreement of any stage, and
# decoder1 alone left the stream form's Dice vs ground truth 1.1 points below PyTorch's.
FLOAT_UNITS = {"S": ("model.decoder1", "model.up2"), "L": ()}


def quantize_pt2e(
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    calibration: Iterable[tuple[torch.Tensor, ...]],
    float_units: Sequence[str] = (),
) -> torch.nn.Module:
    """The module as ExecuTorch's int8 quantizes it (PT2E, XNNPACK's quantizer), still runnable
    in PyTorch; ``float_units``: submodules (``model.decoder1``) left float as well."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import get_module_name_filter

    captured = torch.export.export(module, example_inputs, strict=True).module()
    quantizer = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True)
    )
    # Normalisation and temporal mixing stay float: per-tensor int8 scales for squared
    # deviations and the state collapse (mask Dice vs PyTorch fell to 0.47 with them).
    for module_type in FLOAT_MODULES:
        quantizer.set_module_type(module_type, None)
    if float_units:  # set_module_name refuses None; a filter keeps their nodes unannotated
        kept = [get_module_name_filter(name) for name in float_units]
        quantizer.set_filter_function(lambda node: not any(f(node) for f in kept))
    prepared = prepare_pt2e(captured, quantizer)
    # One thread while observing: the activation observers' histograms are float sums whose
    # order follows the thread count, and their ranges moved with it (BaS-S frame: mask Dice
    # vs PyTorch 0.957 built on two threads, 0.941 on one).
    with aten_single_threaded(), torch.no_grad():
        for inputs in calibration:
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


# Ops that only move or reinterpret data: not compute, whatever their dtype.
DATA_MOVEMENT = frozenset(
    {
        "view_copy", "view", "reshape", "_unsafe_view", "permute_copy", "permute",
        "transpose_copy", "t_copy", "cat", "slice_copy", "select_copy", "clone",
        "constant_pad_nd", "pad", "expand_copy", "squeeze_copy", "unsqueeze_copy", "split_copy",
        "split_with_sizes_copy", "unbind_copy", "alias_copy", "_to_copy", "_to_dim_order_copy",
        "_clone_dim_order", "flatten", "unflatten", "contiguous", "detach_copy",
    }
)  # fmt: skip
QUANTIZE_OPS = frozenset({"quantize_per_tensor", "quantize_per_channel", "quantize_per_token"})
DEQUANTIZE_OPS = frozenset(
    {"dequantize_per_tensor", "dequantize_per_channel", "dequantize_per_token"}
)
_FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _op_name(node: torch.fx.Node) -> str:
    """``aten.convolution.default`` / ``quantized_decomposed.quantize_per_tensor.default`` -> op."""
    target = node.target
    name = getattr(target, "__name__", str(target))
    schema = getattr(target, "_schema", None)
    if schema is not None:
        name = schema.name.split("::")[-1]
    return name.split(".")[0].removeprefix("aten_")


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _tensors(v)]
    return []


def _is_float(node: Any) -> bool:
    return isinstance(node, torch.fx.Node) and any(
        t.dtype in _FLOATS for t in _tensors(node.meta.get("val"))
    )


FUSED_ACTIVATIONS = frozenset({"relu", "hardtanh", "clamp"})  # XNNPACK folds into the op


def _quantized_out(node: torch.fx.Node) -> bool:
    """Every use quantizes the output, directly or through an activation XNNPACK fuses."""
    users = list(node.users)
    return bool(users) and all(
        u.op == "call_function"
        and (
            _op_name(u) in QUANTIZE_OPS
            or (_op_name(u) in FUSED_ACTIVATIONS and len(users) == 1 and _quantized_out(u))
        )
        for u in users
    )


def _float_inputs(node: torch.fx.Node) -> list[torch.fx.Node]:
    """Float inputs not produced by a dequantize (a conv's or linear's bias aside)."""
    inputs = [a for a in node.all_input_nodes if _is_float(a)]
    if _op_name(node) in ("convolution", "linear") and len(node.args) > 2:
        inputs = [a for a in inputs if a is not node.args[2]]
    return [a for a in inputs if _op_name(a) not in DEQUANTIZE_OPS]


def _runs_float(node: torch.fx.Node) -> bool:
    """Whether a compute op runs in float: quantized ops read dequantized, write quantized.

    In a PT2E graph a quantized op is ``dequantize -> op [-> relu] -> quantize``, which
    XNNPACK fuses into one integer op; the float tensors between are only notation. A
    convolution's or linear's float bias is quantized to int32 by the delegate.
    """
    floats_in = _float_inputs(node)
    if _op_name(node) in FUSED_ACTIVATIONS and len(floats_in) == 1:
        producer = floats_in[0]
        fused = len(producer.users) == 1 and not _float_inputs(producer)
        return not (fused and _quantized_out(node))
    if not _is_float(node):
        return bool(floats_in)
    return bool(floats_in) or not _quantized_out(node)


def _count(nodes: list[torch.fx.Node], summary: Counter, float_types: Counter) -> None:
    for node in nodes:
        if node.op != "call_function" or "getitem" in str(node.target):
            continue
        name = _op_name(node)
        if name in ("alloc", "executorch_call_delegate"):
            continue
        summary["ops"] += 1
        if name in QUANTIZE_OPS:
            summary["quantize"] += 1
        elif name in DEQUANTIZE_OPS:
            summary["dequantize"] += 1
        elif name not in DATA_MOVEMENT and _runs_float(node):
            float_types[name] += 1


def summarize(lowered: Any) -> GraphSummary:
    """Op counts of a lowered program: each delegate's original ops plus the portable ones."""
    from executorch.exir.lowered_backend_module import get_lowered_submodules

    graph_module = lowered.exported_program().graph_module
    counts: Counter = Counter()
    float_types: Counter = Counter()
    delegates = get_lowered_submodules(graph_module)
    for _, submodule, _ in delegates:
        _count(list(submodule.original_module.graph.nodes), counts, float_types)
    _count(list(graph_module.graph.nodes), counts, float_types)
    return GraphSummary(
        ops=counts["ops"],
        float_compute_ops=sum(float_types.values()),
        quantize_ops=counts["quantize"],
        dequantize_ops=counts["dequantize"],
        float_op_types=dict(sorted(float_types.items())),
        partitions=len(delegates),
        partitions_source="ExecuTorch delegation (to_edge_transform_and_lower)",
    )


class ExecuTorchTarget(Target):
    name = "executorch"
    modules = ("executorch", "torchao")
    distributions = ("executorch", "torchao")

    def __init__(self) -> None:
        # graph_summary is asked right after convert: the lowered program is gone by then.
        self._summaries: dict[str, GraphSummary] = {}

    def convert(self, job: ConversionJob) -> dict[str, Any]:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        rewrites: list[str] = []
        float_units: tuple[str, ...] = ()
        if job.request.precision == "int8":
            float_units = FLOAT_UNITS[job.request.variant]
            module = quantize_pt2e(job.module, job.example_inputs, job.calibration(), float_units)
        elif job.request.precision == "fp16":
            module, rewrites = nhwc_half_module(job.module)
        else:
            module, rewrites = nhwc_float_module(job.module)
        exported = torch.export.export(module, job.example_inputs, strict=True)
        lowered = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
        self._summaries[str(job.artifact)] = summarize(lowered)
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
            "export_transforms": rewrites,  # converters.build moves them to the manifest
            "float_units": list(float_units),  # int8: quantizable units kept float
            **delegation,
        }

    def accumulation(self, job: ConversionJob, options: dict) -> str:
        """fp16 for the fp16 program: its delegated ops are typed fp16."""
        return "fp16" if job.request.precision == "fp16" else "fp32"

    def graph_summary(self, job: ConversionJob, options: dict) -> GraphSummary | None:
        """The summary ``convert`` took of the lowered program it wrote at ``job.artifact``."""
        return self._summaries.pop(str(job.artifact), None)

    def canonical_names(
        self, inputs: list[RawTensor], outputs: list[RawTensor], job: ConversionJob, options: dict
    ) -> tuple[list[str], list[str]]:
        """A program's tensors have no names: they are the exported module's, in order."""
        return list(job.request.input_names), list(job.request.output_names)


if __name__ == "__main__":
    target_command(ExecuTorchTarget())()
