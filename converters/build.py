"""Turn a request into an artifact and its manifest, atomically."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import torch

from model.checkpoint import sha256
from model.forms import FrameForm, StreamForm
from model.hub import build_bas, shipped_weights
from model.layers import with_sigmoid_gelu

from .base import ConversionJob, Target
from .calibration import calibration_clips, check_folder
from .manifest import (
    MANIFEST_FORMAT,
    artifact_bytes,
    artifact_sha256,
    manifest_path,
    write_json_atomic,
)
from .spec import ConversionError, ConvertRequest, validate


def _tensor_spec(name: str, tensor: torch.Tensor, layout: str) -> dict:
    shape = list(tensor.shape)
    if layout == "NHWC" and tensor.dim() == 4 and name == "frame":
        shape = [shape[0], shape[2], shape[3], shape[1]]
    return {
        "name": name,
        "shape": shape,
        "dtype": "float32",
        "layout": layout if name == "frame" else "NCHW",
    }


def _io_specs(request: ConvertRequest, module: torch.nn.Module, inputs, layout: str) -> dict:
    with torch.no_grad():
        outputs = module(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    return {
        "inputs": [
            _tensor_spec(n, t, layout) for n, t in zip(request.input_names, inputs, strict=True)
        ],
        "outputs": [
            {"name": n, "shape": list(t.shape), "dtype": "float32", "layout": "NCHW"}
            for n, t in zip(request.output_names, outputs, strict=True)
        ],
    }


def convert(target: Target, request: ConvertRequest) -> Path:
    """Build one artifact; on any failure nothing is left in ``request.out``."""
    validate(request, target.precisions, target.name)
    if request.calibration is not None:
        check_folder(request.calibration)
    if not target.is_available():
        raise ConversionError(
            f"target {target.name} needs {', '.join(target.modules)}, not all importable here"
        )
    weights_path = (
        shipped_weights(request.variant) if request.weights == "shipped" else Path(request.weights)
    )
    model = build_bas(request.variant, request.image_size, weights=request.weights).eval()
    # Float targets get GELU as a sigmoid (their fused tanh-GELU is coarse); int8 keeps the
    # fused op, which quantizers map to their own GELU kernels.
    exported = model if request.precision == "int8" else with_sigmoid_gelu(copy.deepcopy(model))
    module = (FrameForm if request.form == "frame" else StreamForm)(exported).eval()
    size = request.image_size
    frame = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    inputs = (frame,) if request.form == "frame" else (frame, model.initial_state(1))

    def calibration() -> Iterator[tuple[torch.Tensor, ...]]:
        return calibration_clips(model, request.form, request.calibration, size)

    out = Path(request.out)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{request.stem}.", dir=out))
    artifact = staging / f"{request.stem}{target.suffix}"
    try:
        started = time.perf_counter()
        job = ConversionJob(request, module, inputs, artifact, calibration)
        try:
            options = target.convert(job)
        except ConversionError:
            raise
        except Exception as err:  # each toolchain raises its own types; report one line
            first = (str(err).strip().splitlines() or [""])[0]
            raise ConversionError(
                f"{target.name} conversion of {request.stem} failed: {type(err).__name__}: {first}"
            ) from err
        seconds = time.perf_counter() - started
        if not artifact.exists():
            raise ConversionError(f"target {target.name} wrote no artifact at {artifact}")
        record = {
            "format": MANIFEST_FORMAT,
            "target": target.name,
            "variant": request.variant,
            "form": request.form,
            "precision": request.precision,
            "image_size": size,
            "artifact": {
                "file": artifact.name,
                "sha256": artifact_sha256(artifact),
                "bytes": artifact_bytes(artifact),
            },
            "weights": {"source": request.weights, "sha256": sha256(weights_path)},
            **_io_specs(request, module, inputs, target.layout),
            "state": None
            if request.form == "frame"
            else {
                "input": "state",
                "output": "new_state",
                "shape": [1, *model.state_shape],
                "initial": "zeros",
                "meaning": "stem features of the previous temporal_window - 1 frames, oldest first",
            },
            "normalisation": {
                "color": "RGB",
                "range": [0.0, 1.0],
                "mean": None,
                "std": None,
                "resize": "bilinear to image_size x image_size",
            },
            "postprocess": "resize logits bilinearly to the frame's size; logit > 0 is lesion",
            "temporal_window": model.config.temporal_window,
            "export_transforms": []
            if exported is model
            else ["tanh-GELU written as x * sigmoid(2z) (same function)"],
            "tools": target.versions(),
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in options.items()},
            "conversion_seconds": round(seconds, 2),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "parity": None,
        }
        write_json_atomic(manifest_path(artifact), record)
        final = out / artifact.name
        for path in (final, manifest_path(final)):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        os.replace(artifact, final)
        os.replace(manifest_path(artifact), manifest_path(final))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
