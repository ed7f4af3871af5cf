"""Every runtime plug-in by name: adding one is a module in backends/, its name in the role
it plays in its target's row of ``runtimes.targets`` and a line here. The libraries each runs
on are imported inside it, when it opens a file."""

from __future__ import annotations

from model.config import unknown_choice

from .backend import Backend
from .backends.arm64 import LiteRTArm64Backend, OnnxRuntimeArm64Backend
from .backends.coreml import CoreMLBackend, MilReferenceBackend
from .backends.executorch import ExecuTorchBackend
from .backends.litert import LiteRTBackend, LiteRTFP16Backend
from .backends.onnxruntime import OnnxRuntimeBackend
from .backends.pytorch import PyTorchBackend
from .manifest import ArtifactError
from .targets import RUNTIME_NAMES, get_target_spec

BACKENDS: dict[str, type[Backend]] = {
    backend.name: backend
    for backend in (
        PyTorchBackend,
        OnnxRuntimeBackend,
        OnnxRuntimeArm64Backend,
        LiteRTBackend,
        LiteRTFP16Backend,
        LiteRTArm64Backend,
        CoreMLBackend,
        MilReferenceBackend,
        ExecuTorchBackend,
    )
}


def get_backend(name: str) -> Backend:
    if name not in RUNTIME_NAMES:
        raise ArtifactError(unknown_choice("runtime", name, RUNTIME_NAMES))
    return BACKENDS[name]()


def runtimes_for(target: str) -> tuple[str, ...]:
    """The runtimes that open artifacts of ``target``, the default first."""
    return get_target_spec(target).runtimes
