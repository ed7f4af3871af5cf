"""ExecuTorch: the NHWC rewrites compute the same function, and the graph summary adds up.

The graph summary is what a phone's delegate would be handed; the rewrites are why the
fp32 artifact is one channels-last XNNPACK call (``converters.xnnpack_export``).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from converters.executorch import FLOAT_UNITS, summarize
from converters.xnnpack_export import nhwc_float_module, nhwc_half_module
from model.forms import FrameForm, StreamForm
from model.hub import build_bas
from model.layers import with_sigmoid_gelu
from runtimes.manifest import read_manifest

PARTITIONS_SOURCE = "ExecuTorch delegation (to_edge_transform_and_lower)"


def _run_both(form: str, rewrite):
    """BaS-S's form module and ``rewrite`` of it, run on one frame (and a state): the module,
    the rewritten one, its rewrites, and both outputs as tuples."""
    model = build_bas("S", weights="shipped").eval()
    module = (FrameForm if form == "frame" else StreamForm)(with_sigmoid_gelu(model)).eval()
    rewritten, rewrites = rewrite(module)
    frame = torch.rand(1, 3, 240, 240, generator=torch.Generator().manual_seed(3))
    inputs = (frame,) if form == "frame" else (frame, torch.randn(1, *model.state_shape))
    with torch.no_grad():
        expected, got = module(*inputs), rewritten(*inputs)
    expected, got = (out if isinstance(out, tuple) else (out,) for out in (expected, got))
    return module, rewritten, rewrites, expected, got


@pytest.mark.parametrize("form", ["frame", "stream"])
def test_nhwc_rewrites_compute_the_same_function(form: str) -> None:
    module, _, rewrites, expected, got = _run_both(form, nhwc_float_module)
    assert len(rewrites) == 4, rewrites
    for want, have in zip(expected, got, strict=True):
        assert torch.allclose(want, have, atol=1e-4, rtol=0), (want - have).abs().max()
    # The job's module is left as it was (describe_io and parity still run it).
    assert not any(type(m).__module__ == "converters.xnnpack_export" for m in module.modules())


@pytest.mark.parametrize("form", ["frame", "stream"])
def test_half_module_is_fp16_inside_fp32_outside(form: str) -> None:
    _, half, rewrites, expected, got = _run_both(form, nhwc_half_module)
    assert rewrites[-1].startswith("SiLU as x * sigmoid(x)")
    assert {p.dtype for p in half.parameters()} == {torch.float16}
    assert not any(isinstance(m, nn.SiLU) for m in half.modules())
    # dtypes and shapes only: eager PyTorch's fp16 on a CPU is not XNNPACK's (its logits are
    # 8 off here, the artifact's 0.03); the artifact's numbers are the parity matrix's
    for want, have in zip(expected, got, strict=True):
        assert have.dtype == torch.float32 and have.shape == want.shape


def _lower(module: nn.Module, inputs: tuple[torch.Tensor, ...]):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    exported = torch.export.export(module, inputs, strict=True)
    return to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pw = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(torch.relu(self.conv(x))).view(1, 4, 64)


@pytest.mark.slow
def test_summary_of_a_quantized_graph_counts_no_float_compute() -> None:
    """dequantize -> op -> quantize is an integer op; a float op outside that is counted."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    inputs = (torch.rand(1, 3, 8, 8),)
    module = _Tiny().eval()
    float_summary = summarize(_lower(module, inputs))
    assert float_summary.quantize_ops == float_summary.dequantize_ops == 0
    assert float_summary.float_op_types == {"convolution": 2, "relu": 1}
    assert float_summary.ops == 4  # view is counted as an op, not as compute
    assert float_summary.partitions == 1
    assert float_summary.partitions_source == PARTITIONS_SOURCE

    captured = torch.export.export(module, inputs, strict=True).module()
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config())
    prepared = prepare_pt2e(captured, quantizer)
    prepared(*inputs)
    quantized = summarize(_lower(convert_pt2e(prepared), inputs))
    assert quantized.float_compute_ops == 0, quantized
    assert quantized.quantize_ops > 0 and quantized.dequantize_ops > 0


def _check_consistent(summary) -> None:
    assert summary.partitions_source == PARTITIONS_SOURCE
    assert summary.float_compute_ops == sum(summary.float_op_types.values())
    assert summary.ops >= (
        summary.float_compute_ops + summary.quantize_ops + summary.dequantize_ops
    )


@pytest.mark.slow
@pytest.mark.parametrize("form", ["frame", "stream"])
def test_fp32_artifact_summary(built_artifact, form: str) -> None:
    manifest = read_manifest(built_artifact("executorch", "S", "fp32", form))
    summary = manifest.graph
    assert summary is not None
    _check_consistent(summary)
    assert summary.float_compute_ops > 0
    assert summary.quantize_ops == summary.dequantize_ops == 0
    assert summary.partitions == manifest.options["delegate_calls"]
    assert len(manifest.export_transforms) == 5  # sigmoid GELU, then the 4 NHWC rewrites
    assert "export_transforms" not in manifest.options
    if form == "frame":  # TempLP's frame weight is folded: nothing on the portable kernels
        assert summary.partitions == 1
        assert manifest.options["portable_ops"] == {}
    assert "view_copy" not in summary.float_op_types  # data movement is not compute


@pytest.mark.slow
def test_fp16_artifact_is_one_fp16_delegate_call(built_artifact) -> None:
    """The casts at the edges are the only ops outside XNNPACK (nn.SiLU split it in 13)."""
    manifest = read_manifest(built_artifact("executorch", "S", "fp16", "frame"))
    assert manifest.accumulation == "fp16"
    assert manifest.options["delegate_calls"] == manifest.graph.partitions == 1
    assert manifest.options["portable_ops"] == {"_to_dim_order_copy": 2}
    assert [t.dtype for t in (*manifest.inputs, *manifest.outputs)] == ["float32"] * 2


@pytest.mark.slow
def test_int8_artifact_runs_its_convolutions_in_integers(built_artifact) -> None:
    manifest = read_manifest(built_artifact("executorch", "L", "int8", "frame"))
    assert manifest.options["float_units"] == []
    summary = manifest.graph
    assert summary is not None
    _check_consistent(summary)
    assert summary.quantize_ops > 0 and summary.dequantize_ops > 0
    assert summary.partitions == manifest.options["delegate_calls"]
    # What stays float is the one-group norm and TempLP (FLOAT_MODULES), not the convolutions
    # of the blocks: fewer float convolutions than norms + TempLP's projection.
    assert summary.float_op_types.get("convolution", 0) <= 1, summary.float_op_types


@pytest.mark.slow
def test_bas_s_int8_keeps_its_sensitive_units_float(built_artifact) -> None:
    """converters.sensitivity's finding, applied: decoder1 and up2 float, the rest integer."""
    manifest = read_manifest(built_artifact("executorch", "S", "int8", "frame"))
    assert manifest.options["float_units"] == list(FLOAT_UNITS["S"])
    summary = manifest.graph
    assert summary is not None and summary.quantize_ops > 0
    # decoder1's three blocks and up2 (a transposed convolution): more than the norms' share
    assert summary.float_op_types.get("convolution", 0) > 3, summary.float_op_types
