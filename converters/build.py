"""Turn a request into an artifact and its manifest, atomically."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import torch

from model.checkpoint import sha256
from model.errors import one_line
from model.forms import FrameForm, StreamForm
from model.hub import build_bas, shipped_weights
from model.layers import with_sigmoid_gelu
from model.signals import stop_if_signalled
from runtimes.backend import RawTensor
from runtimes.manifest import (
    CANONICAL_LAYOUTS,
    ArtifactFile,
    Manifest,
    StateSpec,
    TensorSpec,
    WeightsRef,
    artifact_bytes,
    artifact_sha256,
    manifest_path,
    write_manifest,
)
from runtimes.registry import get_backend

from .base import ConversionJob, Target
from .calibration import calibration_clips, check_folder
from .spec import ConversionError, ConvertRequest, validate


def _permutation(canonical: tuple[int, ...], actual: tuple[int, ...], name: str) -> tuple[int, ...]:
    """How the file's tensor is laid out relative to the canonical one: as is or channels-last."""
    rank = len(canonical)
    candidates = (
        [tuple(range(rank)), (0, *range(2, rank), 1)] if rank >= 4 else [tuple(range(rank))]
    )
    fits = list(dict.fromkeys(p for p in candidates if tuple(canonical[i] for i in p) == actual))
    if len(fits) != 1:
        raise ConversionError(
            f"cannot tell the layout of {name}: canonical {canonical}, in the file {actual}"
        )
    return fits[0]


def converter_digest() -> str:
    """sha256 (16 hex digits) of the converters' and model's sources: an artifact built by
    other code is not the same artifact, even from the same weights and tools."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for package in ("converters", "model"):
        for source in sorted((root / package).rglob("*.py")):
            digest.update(source.relative_to(root).as_posix().encode())
            digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def describe_io(
    target: Target, job: ConversionJob, options: dict
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The artifact's inputs and outputs as its runtime reads them, bound to BaS's tensors."""
    raw_in, raw_out = get_backend(target.runtime).inspect(job.artifact)
    names_in, names_out = target.canonical_names(raw_in, raw_out, job, options)
    with torch.no_grad():
        outputs = job.module(*job.example_inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    shapes = {
        **dict(zip(job.request.input_names, job.example_inputs, strict=True)),
        **dict(zip(job.request.output_names, outputs, strict=True)),
    }

    def bind(raw: list[RawTensor], names: list[str], wanted: tuple[str, ...]) -> tuple:
        if sorted(names) != sorted(wanted):
            raise ConversionError(f"{target.name}: the file's tensors are {names}, not {wanted}")
        specs = []
        for tensor, name in zip(raw, names, strict=True):
            canonical = tuple(shapes[name].shape)
            perm = target.file_layout(name, job) or _permutation(canonical, tensor.shape, name)
            if tuple(canonical[i] for i in perm) != tensor.shape:
                raise ConversionError(
                    f"{target.name}: {name} is {tensor.shape} in the file, not canonical "
                    f"{canonical} permuted by {perm}"
                )
            specs.append(
                TensorSpec(
                    canonical=name,
                    name=tensor.name,
                    index=tensor.index,
                    shape=tensor.shape,
                    dtype=tensor.dtype,
                    layout="".join(CANONICAL_LAYOUTS[name][i] for i in perm),
                    from_canonical=perm,
                    quantization=tensor.quantization,
                )
            )
        return tuple(sorted(specs, key=lambda s: wanted.index(s.canonical)))

    return (
        bind(raw_in, names_in, job.request.input_names),
        bind(raw_out, names_out, job.request.output_names),
    )


def check_replaceable(final: Path) -> None:
    """Refuse to replace anything at an artifact's path but an earlier artifact of ours.

    Ours: the artifact with its manifest beside it (a file). A same-named file or folder
    without one, or a manifest's name taken by a folder, is someone else's: never deleted.
    """
    manifest = manifest_path(final)
    if manifest.exists() and not manifest.is_file():
        raise ConversionError(
            f"{manifest} is a folder, not an artifact's manifest; move it or choose another --out"
        )
    if final.exists() and not manifest.is_file():
        kind = "folder" if final.is_dir() else "file"
        raise ConversionError(
            f"{final} exists and is not an artifact of this project (a {kind} without the "
            f"manifest {manifest.name}); move it or choose another --out (nothing was changed)"
        )


def convert(target: Target, request: ConvertRequest) -> Path:
    """Build one artifact; on any failure nothing is left in ``request.out``."""
    validate(request, target.precisions, target.name, target.calibrates)
    if request.calibration is not None:
        check_folder(request.calibration)
    check_replaceable(Path(request.out) / f"{request.stem}{target.suffix}")
    if not target.is_available():
        raise ConversionError(
            f"target {target.name} needs {', '.join(target.modules)}, not all importable here"
        )
    weights_path = (
        shipped_weights(request.variant) if request.weights == "shipped" else Path(request.weights)
    )
    model = build_bas(request.variant, request.image_size, weights=request.weights).eval()
    # Float targets get GELU as a sigmoid (their fused tanh-GELU is coarse), and so does
    # int16x8 (LiteRT has no 16x8 GELU kernel); int8 keeps the fused op, which quantizers map
    # to their own GELU kernels.
    exported = model if request.precision == "int8" else with_sigmoid_gelu(copy.deepcopy(model))
    module = (FrameForm if request.form == "frame" else StreamForm)(exported).eval()
    size = request.image_size
    frame = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    inputs = (frame,) if request.form == "frame" else (frame, model.initial_state(1))

    def calibration(contrast: float = 1.0) -> Iterator[tuple[torch.Tensor, ...]]:
        return calibration_clips(model, request.form, request.calibration, size, contrast)

    out = Path(request.out)
    made = [p for p in (out, *out.parents) if not p.exists()]  # removed again on failure
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
            first = one_line(err)
            raise ConversionError(
                f"{target.name} conversion of {request.stem} failed: {type(err).__name__}: {first}"
            ) from err
        seconds = time.perf_counter() - started
        if not artifact.exists():
            raise ConversionError(f"target {target.name} wrote no artifact at {artifact}")
        inputs, outputs = describe_io(target, job, options)
        manifest = Manifest(
            target=target.name,
            runtime=target.runtime,
            variant=request.variant,
            form=request.form,
            precision=request.precision,
            image_size=size,
            temporal_window=model.config.temporal_window,
            artifact=ArtifactFile(
                artifact.name, artifact_sha256(artifact), artifact_bytes(artifact)
            ),
            weights=WeightsRef(request.weights, sha256(weights_path)),
            inputs=inputs,
            outputs=outputs,
            state=None
            if request.form == "frame"
            else StateSpec("state", "new_state", (1, *model.state_shape)),
            export_transforms=(
                ()
                if exported is model
                else ("tanh-GELU written as x * sigmoid(2z) (same function)",)
            )
            + tuple(options.pop("export_transforms", ())),
            tools={**target.versions(), "converters": converter_digest()},
            options={k: str(v) if isinstance(v, Path) else v for k, v in options.items()},
            conversion_seconds=round(seconds, 2),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            graph=target.graph_summary(job, options),
            accumulation=target.accumulation(job, options),
        )
        write_manifest(artifact, manifest)
        final = out / artifact.name
        check_replaceable(final)  # again: the conversion may have taken long
        stop_if_signalled()  # a toolchain may have swallowed the signal's exception
        for path in (final, manifest_path(final)):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        os.replace(artifact, final)
        os.replace(manifest_path(artifact), manifest_path(final))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in made:  # innermost first; only if still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
