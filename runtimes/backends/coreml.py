"""Core ML: Apple's runtime where it predicts (macOS 14+), and the reference evaluator.

Apple's runtime is the one that counts; on Linux it cannot run, and loading a Core ML
artifact is refused with that reason. ``mil_reference`` (runtimes.mil_reference) runs the
same saved ML program with NumPy, and is used only when asked for by name: it verifies the
program, not Apple's kernels.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from model.errors import one_line

from ..backend import Backend, RawRunner, RawTensor
from ..manifest import ArtifactError, Manifest
from ..mil_reference import load_program

DEPLOYMENT_TARGET = "iOS17"


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


def _inspect(artifact: Path) -> tuple[list[RawTensor], list[RawTensor]]:
    """The package's declared inputs and outputs (its model description; no runtime needed)."""
    import coremltools as ct
    from coremltools.proto.FeatureTypes_pb2 import ArrayFeatureType

    try:
        spec = ct.utils.load_spec(str(artifact))
    except Exception as err:  # protobuf and coremltools raise their own types
        raise ArtifactError(f"coremltools cannot read {artifact}: {one_line(err)}") from err

    def raw(features) -> list[RawTensor]:
        tensors = []
        for i, feature in enumerate(features):
            array = feature.type.multiArrayType
            dtype = ArrayFeatureType.ArrayDataType.Name(array.dataType).lower()
            tensors.append(RawTensor(feature.name, i, tuple(int(d) for d in array.shape), dtype))
        return tensors

    return raw(spec.description.input), raw(spec.description.output)


def _named(predict, manifest: Manifest) -> RawRunner:
    inputs = [spec.name for spec in manifest.inputs]
    outputs = [spec.name for spec in manifest.outputs]

    def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
        result = predict(dict(zip(inputs, arrays, strict=True)))
        return [np.asarray(result[name]) for name in outputs]

    return run


class CoreMLBackend(Backend):
    name = "coreml"
    modules = ("coremltools",)
    needs = (
        "needs macOS 14 or later with coremltools' libcoremlpython (Apple's Core ML runtime); "
        "to verify the program here, use runtime 'mil_reference'"
    )

    @classmethod
    def is_available(cls) -> bool:
        return apple_runtime_available()

    def inspect(self, artifact: Path) -> tuple[list[RawTensor], list[RawTensor]]:
        return _inspect(artifact)

    def open(self, artifact: Path, manifest: Manifest, threads: int | None) -> RawRunner:
        import coremltools as ct

        # CPU only: parity judges the file's numerics, not which unit Core ML picks.
        try:
            model = ct.models.MLModel(str(artifact), compute_units=ct.ComputeUnit.CPU_ONLY)
        except Exception as err:  # coremltools raises its own types for a damaged package
            raise ArtifactError(f"Core ML cannot load {artifact}: {one_line(err)}") from err
        return _named(model.predict, manifest)


class MilReferenceBackend(Backend):
    name = "mil_reference"
    modules = ("coremltools",)

    def inspect(self, artifact: Path) -> tuple[list[RawTensor], list[RawTensor]]:
        return _inspect(artifact)

    def open(self, artifact: Path, manifest: Manifest, threads: int | None) -> RawRunner:
        try:
            program = load_program(artifact)
        except ArtifactError:
            raise
        except Exception as err:  # coremltools raises its own types for a damaged package
            raise ArtifactError(f"coremltools cannot load {artifact}: {one_line(err)}") from err
        return _named(program, manifest)
