"""Core ML (iOS): an ML program, fp32 or fp16 compute, or int8 weights.

    python -m converters.coreml --variant S [--precision fp16|int8] [--form stream]

The stream form has an explicit state input and output (``state`` -> ``new_state``),
which runs from iOS 17 / macOS 14 without MLState. Apple's runtime predicts only on
macOS 14 or later; elsewhere ``load`` runs the saved ML program with
``converters.mil_reference``, a NumPy evaluator of the operations BaS uses.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.config import closest

from .base import ConversionJob, Runner, Target
from .spec import ConversionError

DEPLOYMENT_TARGET = "iOS17"
RUNTIMES = ("auto", "apple", "mil_reference")


def apple_runtime_available() -> bool:
    """Whether coremltools can predict here, as coremltools itself decides before predicting.

    macOS alone is not enough: predict needs coremltools' compiled bridge to Core ML
    (``libcoremlpython``, which Linux wheels do not ship) and an OS whose Core ML
    runs programs of the deployment target's specification version (iOS 17: macOS 14).
    """
    if sys.platform != "darwin":  # coremltools' own _is_macos(); skips importing it elsewhere
        return False
    try:
        import coremltools as ct
        from coremltools.libcoremlpython import _MLModelProxy
    except ImportError:
        return False
    needed = getattr(ct.target, DEPLOYMENT_TARGET).value
    return _MLModelProxy.maximum_supported_specification_version() >= needed


class CoreMLTarget(Target):
    name = "coreml"
    suffix = ".mlpackage"
    precisions = ("fp32", "fp16", "int8")
    modules = ("coremltools",)
    distributions = ("coremltools",)

    def convert(self, job: ConversionJob) -> dict[str, Any]:
        import coremltools as ct
        import coremltools.optimize.coreml as cto

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
            config = cto.OptimizationConfig(
                global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8")
            )
            model = cto.linear_quantize_weights(model, config=config)
            options["weights"] = "int8 linear symmetric per-channel (coremltools.optimize)"
        model.short_description = f"BaS-{request.variant} lesion segmentation, {request.form} form"
        model.save(str(job.artifact))
        return options

    def load(self, artifact: Path, manifest: dict[str, Any], runtime: str = "auto") -> Runner:
        """Apple's runtime where it predicts, else the ML-program reference evaluator.

        ``runtime`` forces one ("apple" or "mil_reference"), so that the two can be compared;
        the returned runner's ``runtime`` attribute says which one runs.
        """
        if runtime not in RUNTIMES:
            raise ConversionError(
                f"unknown Core ML runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}"
                + closest(runtime, RUNTIMES)
            )
        if runtime == "auto":
            runtime = "apple" if apple_runtime_available() else "mil_reference"
        elif runtime == "apple" and not apple_runtime_available():
            raise ConversionError(
                f"Apple's Core ML runtime cannot predict on this machine ({sys.platform}): it "
                "needs macOS 14 or later and coremltools' libcoremlpython; use 'mil_reference'"
            )
        renamed = manifest["options"]["model_input_names"]
        if runtime == "apple":
            import coremltools as ct

            # CPU only: parity judges the file's numerics, not which unit Core ML picks.
            units = ct.ComputeUnit.CPU_ONLY
            run = ct.models.MLModel(str(artifact), compute_units=units).predict
        else:
            from .mil_reference import load_program

            run = load_program(artifact)

        def predict(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            result = run({renamed[k]: v.astype(np.float32) for k, v in inputs.items()})
            return {k: np.asarray(v, dtype=np.float32) for k, v in result.items()}

        predict.runtime = runtime  # type: ignore[attr-defined]
        return predict


if __name__ == "__main__":
    from .cli import main

    sys.exit(main("coreml"))
