"""PyTorch eager: the reference every converted artifact is compared with.

Its "artifact" is a weights file (the shipped ones or a ``.safetensors`` path); the
manifest is made in memory from the model (:func:`pytorch_manifest`), so a PyTorch session
is set up, fed and read exactly as a converted one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from model.bas import BaS
from model.checkpoint import read_metadata, sha256
from model.config import unknown_choice
from model.errors import ConfigError
from model.forms import IO_NAMES
from model.hub import build_bas, resolve_weights

from ..backend import Backend, RawRunner, RawTensor
from ..manifest import CANONICAL_LAYOUTS, ArtifactFile, Manifest, StateSpec, TensorSpec, WeightsRef


def _model(manifest: Manifest) -> BaS:
    return build_bas(
        manifest.variant,
        manifest.image_size,
        manifest.temporal_window,
        weights=manifest.weights.source,
    ).eval()


def _example(model: BaS, form: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    size = model.config.image_size
    frame = torch.zeros(1, model.config.in_channels, size, size)
    with torch.no_grad():
        if form == "frame":
            return [frame], [model.forward_frame(frame)]
        state = model.initial_state(1)
        return [frame, state], list(model.stream(frame, state))


def _specs(names: tuple[str, ...], tensors: list[torch.Tensor]) -> tuple[TensorSpec, ...]:
    return tuple(
        TensorSpec(
            canonical=name,
            name=name,
            index=i,
            shape=tuple(tensor.shape),
            dtype="float32",
            layout=CANONICAL_LAYOUTS[name],
            from_canonical=tuple(range(tensor.dim())),
        )
        for i, (name, tensor) in enumerate(zip(names, tensors, strict=True))
    )


def pytorch_manifest(
    variant: str = "S",
    weights: str | None = None,
    form: str = "stream",
    image_size: int = 240,
    temporal_window: int = 3,
    model: BaS | None = None,
) -> Manifest:
    """The manifest a PyTorch "artifact" would have: canonical tensors, weights by hash.

    ``model``: the network already built (from ``weights``, or, without them, as it is
    in memory: no weights file); otherwise it is built here from ``weights`` (shipped).
    """
    if form not in IO_NAMES:
        raise ConfigError(unknown_choice("form", form, tuple(IO_NAMES)))
    if model is None:
        weights = weights or "shipped"
        model = build_bas(variant, image_size, temporal_window, weights=weights)
    if weights is None:
        weights, file = "in memory", ArtifactFile("", "", 0)
    else:
        path = resolve_weights(model.config.variant, weights)
        file = ArtifactFile(str(path), sha256(path), path.stat().st_size)
    config = model.config
    inputs, outputs = _example(model, form)
    names_in, names_out = IO_NAMES[form]
    return Manifest(
        target="pytorch",
        runtime="pytorch",
        variant=config.variant,
        form=form,
        precision="fp32",
        image_size=config.image_size,
        temporal_window=config.temporal_window,
        artifact=file,
        weights=WeightsRef(weights, file.sha256),
        inputs=_specs(names_in, inputs),
        outputs=_specs(names_out, outputs),
        state=None
        if form == "frame"
        else StateSpec(
            "state", "new_state", (1, *model.state_shape), meaning=model.temporal.state_meaning
        ),
        preprocessing=config.preprocessing,
        tools={"torch": torch.__version__},
    )


def model_runner(model: BaS, form: str) -> RawRunner:
    """The network's forward for ``form`` over NumPy arrays, without autograd."""
    step = model.forward_frame if form == "frame" else model.stream

    @torch.no_grad()
    def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
        result = step(*(torch.from_numpy(a) for a in arrays))
        result = result if isinstance(result, tuple) else (result,)
        return [t.numpy() for t in result]

    return run


class PyTorchBackend(Backend):
    name = "pytorch"
    modules = ("torch",)

    def inspect(self, artifact: Path) -> tuple[list[RawTensor], list[RawTensor]]:
        """The stream form's tensors (the frame form uses the first of each), per the metadata."""
        meta = read_metadata(artifact)
        model = build_bas(
            meta.get("variant", "S"),
            int(meta.get("image_size", 240)),
            int(meta.get("temporal_window", 3)),
            weights=str(artifact),
        )
        inputs, outputs = _example(model, "stream")

        def raw(names: tuple[str, ...], tensors: list[torch.Tensor]) -> list[RawTensor]:
            return [
                RawTensor(n, i, tuple(t.shape), "float32")
                for i, (n, t) in enumerate(zip(names, tensors, strict=True))
            ]

        return raw(IO_NAMES["stream"][0], inputs), raw(IO_NAMES["stream"][1], outputs)

    def open(self, artifact: Path, manifest: Manifest, threads: int | None) -> RawRunner:
        if threads:
            torch.set_num_threads(threads)  # process-wide, as PyTorch has it
        return model_runner(_model(manifest), manifest.form)
