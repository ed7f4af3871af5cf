"""Core ML (iOS): an ML program, fp32 or fp16 compute, or int8 weights.

    python -m converters.coreml --variant S [--precision fp16|int8] [--form stream]

The stream form has an explicit state input and output (``state`` -> ``new_state``),
which runs from iOS 17 / macOS 14 without MLState. Apple's runtime predicts only on
macOS 14 or later (runtimes' ``coreml``); elsewhere parity runs the saved ML program with
``runtimes.mil_reference``, a NumPy evaluator of the operations BaS uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from runtimes.backend import RawTensor
from runtimes.backends.coreml import DEPLOYMENT_TARGET

from .base import ConversionJob, Target
from .command import target_command

# coremltools folds ``x * gamma + beta`` into a batch_norm of mean 0 and variance 1 but
# keeps batch_norm's default epsilon (1e-5), so each fold scales by 1/sqrt(1 + 1e-5): five
# folds in BaS-S moved the logits by 1.7e-3 (5.6e-3 in BaS-L), evaluated in float64.
INEXACT_PASSES = ("common::fuse_elementwise_to_batchnorm",)
WEIGHT_QUANTIZATION = "compression::linear_quantize_weights"


def exact_pass_pipeline(quantize_weights: bool) -> Any:
    """coremltools' default passes less those that change what the program computes.

    int8 weights are quantised as the last pass of the same pipeline:
    ``linear_quantize_weights`` on a saved model runs the default passes again.
    """
    import coremltools as ct
    import coremltools.optimize.coreml as cto

    pipeline = ct.PassPipeline()
    pipeline.remove_passes(INEXACT_PASSES)
    if quantize_weights:
        pipeline.append_pass(WEIGHT_QUANTIZATION)
        config = cto.OptimizationConfig(
            global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8")
        )
        pipeline.set_options(WEIGHT_QUANTIZATION, {"config": config})
    return pipeline


class CoreMLTarget(Target):
    name = "coreml"
    modules = ("coremltools",)
    distributions = ("coremltools",)
    # int8 is weight-only (linear_quantize_weights): a calibration folder is refused, not ignored
    calibrates = False

    def convert(self, job: ConversionJob) -> dict[str, Any]:
        import coremltools as ct

        request = job.request
        # torch.jit.trace fails on BaS's reshapes (a shape tensor cast to a scalar).
        exported = torch.export.export(job.module, job.example_inputs, strict=True)
        compute = ct.precision.FLOAT32 if request.precision == "fp32" else ct.precision.FLOAT16
        model = ct.convert(
            exported.run_decompositions({}),
            inputs=[
                ct.TensorType(name=n, shape=tuple(t.shape), dtype=np.float32)
                for n, t in zip(request.input_names, job.example_inputs, strict=True)
            ],
            outputs=[ct.TensorType(name=n, dtype=np.float32) for n in request.output_names],
            convert_to="mlprogram",
            compute_precision=compute,
            minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET),
            pass_pipeline=exact_pass_pipeline(request.precision == "int8"),
        )
        options: dict[str, Any] = {
            "model_type": "mlprogram",
            "minimum_deployment_target": DEPLOYMENT_TARGET,
            "compute_precision": "float32" if request.precision == "fp32" else "float16",
            "state": "explicit input/output" if request.form == "stream" else None,
            "frontend": "torch.export",
            # Core ML renames some inputs (``state`` is reserved for MLState models).
            "model_input_names": dict(
                zip(
                    request.input_names,
                    [i.name for i in model.get_spec().description.input],
                    strict=True,
                )
            ),
        }
        if request.precision == "int8":
            options["weights"] = "int8 linear symmetric per-channel (coremltools.optimize)"
        model.short_description = f"BaS-{request.variant} lesion segmentation, {request.form} form"
        model.save(str(job.artifact))
        return options

    def accumulation(self, job: ConversionJob, options: dict) -> str:
        """fp16 for a float16 program (fp16 and int8 weights): its ops are typed fp16, which the
        Neural Engine and GPU compute in fp16."""
        return "fp16" if options["compute_precision"] == "float16" else "fp32"

    def canonical_names(
        self, inputs: list[RawTensor], outputs: list[RawTensor], job: ConversionJob, options: dict
    ) -> tuple[list[str], list[str]]:
        """Core ML keeps the names, but renames an input called ``state`` (MLState's word)."""
        renamed = {v: k for k, v in options["model_input_names"].items()}
        return [renamed[t.name] for t in inputs], [t.name for t in outputs]


if __name__ == "__main__":
    target_command(CoreMLTarget())()
