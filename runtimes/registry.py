"""Every runtime by name: adding one is a module in backends/ and a line here."""

from __future__ import annotations

from model.config import unknown_choice

from .backend import Backend
from .manifest import ArtifactError

RUNTIME_NAMES = (
    "pytorch",
    "onnxruntime",
    "litert",
    "litert-fp16",
    "executorch",
    "coreml",
    "mil_reference",
    "litert-arm64",
    "onnxruntime-arm64",
)


def _backends() -> dict[str, type[Backend]]:
    from .backends.arm64 import LiteRTArm64Backend, OnnxRuntimeArm64Backend
    from .backends.coreml import CoreMLBackend, MilReferenceBackend
    from .backends.executorch import ExecuTorchBackend
    from .backends.litert import LiteRTBackend, LiteRTFP16Backend
    from .backends.onnxruntime import OnnxRuntimeBackend
    from .backends.pytorch import PyTorchBackend

    found = (
        PyTorchBackend,
        OnnxRuntimeBackend,
        LiteRTBackend,
        LiteRTFP16Backend,
        ExecuTorchBackend,
        CoreMLBackend,
        MilReferenceBackend,
        LiteRTArm64Backend,  # emulated ARM64 kernels: after each target's default
        OnnxRuntimeArm64Backend,
    )
    return {backend.name: backend for backend in found}


def get_backend(name: str) -> Backend:
    if name not in RUNTIME_NAMES:
        raise ArtifactError(unknown_choice("runtime", name, RUNTIME_NAMES))
    return _backends()[name]()


def runtimes_for(target: str) -> tuple[str, ...]:
    """The runtimes that open artifacts of ``target``, the default first."""
    return tuple(name for name, backend in _backends().items() if backend.target == target)
