"""Open an artifact (or PyTorch weights) as a session: manifest, hash check, runtime, adapter."""

from __future__ import annotations

from pathlib import Path

import torch

from model.bas import BaS
from model.hub import build_bas

from .backends.pytorch import model_runner, pytorch_manifest
from .manifest import ArtifactError, Manifest, read_manifest, verify
from .registry import get_backend, runtimes_for
from .session import ArtifactModel, Session


def open_model(
    artifact: Path, runtime: str | None = None, threads: int | None = None
) -> ArtifactModel:
    """The artifact in canonical tensors, after its manifest and sha256 are checked.

    ``runtime`` picks a runtime plug-in other than the manifest's (``mil_reference`` for a
    Core ML artifact where Apple's runtime cannot run).
    """
    artifact = Path(artifact)
    if not artifact.exists():
        raise ArtifactError(f"artifact not found: {artifact}")
    manifest = read_manifest(artifact)
    verify(artifact, manifest)
    name = runtime or manifest.runtime
    backend = get_backend(name)
    if backend.target != manifest.target:
        raise ArtifactError(
            f"runtime {name} does not run {manifest.target} artifacts; "
            f"use {' or '.join(runtimes_for(manifest.target))}"
        )
    if not backend.is_available():
        raise ArtifactError(
            f"cannot run {artifact.name} here: {name} {backend.unavailable_reason()}"
        )
    return ArtifactModel(backend.open(artifact, manifest, threads), manifest, name)


def load(artifact: Path, threads: int | None = None, runtime: str | None = None) -> Session:
    """A session over a converted artifact, run by the runtime its manifest names."""
    return Session(open_model(artifact, runtime, threads))


def load_pytorch(
    variant: str = "S",
    weights: str = "shipped",
    form: str = "stream",
    image_size: int = 240,
    temporal_window: int = 3,
    threads: int | None = None,
) -> Session:
    """A session over PyTorch eager BaS: the reference, from shipped or given weights."""
    if threads:
        torch.set_num_threads(threads)  # process-wide, as PyTorch has it
    model = build_bas(variant, image_size, temporal_window, weights=weights).eval()
    manifest = pytorch_manifest(variant, weights, form, model=model)  # built once, not twice
    return Session(ArtifactModel(model_runner(model, form), manifest, "pytorch"))


def from_model(model: BaS, form: str = "stream") -> Session:
    """A session over a BaS already in memory (training, tests), its weights as they are.

    The model is put in eval mode first: the manifest runs it once, and in training mode
    that forward would move its BatchNorm statistics.
    """
    model.eval()
    manifest: Manifest = pytorch_manifest(model=model, form=form)
    return Session(ArtifactModel(model_runner(model, form), manifest, "pytorch"))
