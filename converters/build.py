"""Turn a request into an artifact and its manifest, atomically."""

from __future__ import annotations

import ast
import copy
import functools
import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from model.atomic import staging_folder
from model.bas import BaS
from model.checkpoint import sha256
from model.errors import one_line
from model.forms import FrameForm, StreamForm
from model.hub import build_bas, resolve_weights
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

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = ("model", "runtimes", "converters")
# The modules whose code writes an artifact: the conversion and every target. What they
# import (the network, its forms and config, weight loading, calibration frames, the
# runtimes that read the file back for its manifest) is digested with them; what they do
# not (parity, metrics, evaluation, reports) is not, so editing it keeps cached artifacts.
ARTIFACT_MODULES = ("converters.build", "converters.registry")
SIGMOID_GELU = "tanh-GELU written as x * sigmoid(2z) (same function)"


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


def _module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    return next((f for f in (base.with_suffix(".py"), base / "__init__.py") if f.is_file()), None)


def _project_imports(module: str, source: Path) -> Iterator[str]:
    """Project modules (and their packages) that ``source`` imports, at its top or inside."""
    package = module if source.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1]) if node.level else ""
            base = ".".join(filter(None, (base, node.module)))
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] in PROJECT_PACKAGES:
                yield from (".".join(parts[:i]) for i in range(1, len(parts) + 1))


@functools.cache
def artifact_sources(root: Path = PROJECT_ROOT) -> tuple[Path, ...]:
    """The source files of ``ARTIFACT_MODULES`` and of every project module they import
    (read once a process: every conversion and every cache check digests them)."""
    found: dict[str, Path] = {}
    pending = list(ARTIFACT_MODULES)
    while pending:
        module = pending.pop()
        source = _module_file(root, module)
        if module in found or source is None:
            continue
        found[module] = source
        pending += _project_imports(module, source)
    return tuple(sorted(set(found.values())))


def converter_digest(root: Path = PROJECT_ROOT) -> str:
    """sha256 (16 hex digits) of the sources that write an artifact: one built by other code
    is not the same artifact, even from the same weights and tools."""
    digest = hashlib.sha256()
    for source in artifact_sources(root):
        digest.update(source.relative_to(root).as_posix().encode())
        digest.update(bytes.fromhex(sha256(source)))
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


def check_request(target: Target, request: ConvertRequest) -> None:
    """Everything refused before any work: the request, the folders, the toolchain."""
    validate(request, target.precisions, target.name, target.calibrates)
    if request.calibration is not None:
        check_folder(request.calibration)
    check_replaceable(Path(request.out) / f"{request.stem}{target.suffix}")
    if not target.is_available():
        raise ConversionError(
            f"target {target.name} needs {', '.join(target.modules)}, not all importable here"
        )


def _sigmoid_gelu(request: ConvertRequest) -> bool:
    """Float targets get GELU as a sigmoid (their fused tanh-GELU is coarse), and so does
    int16x8 (LiteRT has no 16x8 GELU kernel); int8 keeps the fused op, which quantizers map
    to their own GELU kernels."""
    return request.precision != "int8"


def conversion_job(model: BaS, request: ConvertRequest, artifact: Path) -> ConversionJob:
    """The form's export wrapper of ``model``, example inputs and calibration frames."""
    exported = with_sigmoid_gelu(copy.deepcopy(model)) if _sigmoid_gelu(request) else model
    module = (FrameForm if request.form == "frame" else StreamForm)(exported).eval()
    size = request.image_size
    frame = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    inputs = (frame,) if request.form == "frame" else (frame, model.initial_state(1))

    def calibration(contrast: float = 1.0) -> Iterator[tuple[torch.Tensor, ...]]:
        return calibration_clips(model, request.form, request.calibration, size, contrast)

    return ConversionJob(request, module, inputs, artifact, calibration)


def run_target(target: Target, job: ConversionJob) -> tuple[dict[str, Any], float]:
    """The target's options and its seconds; any toolchain's failure as one line."""
    started = time.perf_counter()
    try:
        options = target.convert(job)
    except ConversionError:
        raise
    except Exception as err:  # each toolchain raises its own types; report one line
        raise ConversionError(
            f"{target.name} conversion of {job.request.stem} failed: "
            f"{type(err).__name__}: {one_line(err)}"
        ) from err
    if not job.artifact.exists():
        raise ConversionError(f"target {target.name} wrote no artifact at {job.artifact}")
    return options, time.perf_counter() - started


def describe_artifact(
    target: Target, job: ConversionJob, model: BaS, options: dict[str, Any], seconds: float
) -> Manifest:
    """The manifest of the written artifact: what it takes and returns, and how it was made."""
    request, artifact = job.request, job.artifact
    inputs, outputs = describe_io(target, job, options)
    transforms = (SIGMOID_GELU,) if _sigmoid_gelu(request) else ()
    return Manifest(
        target=target.name,
        runtime=target.runtime,
        variant=request.variant,
        form=request.form,
        precision=request.precision,
        image_size=request.image_size,
        temporal_window=model.config.temporal_window,
        artifact=ArtifactFile(artifact.name, artifact_sha256(artifact), artifact_bytes(artifact)),
        weights=WeightsRef(
            request.weights, sha256(resolve_weights(request.variant, request.weights))
        ),
        inputs=inputs,
        outputs=outputs,
        state=None
        if request.form == "frame"
        else StateSpec(
            "state", "new_state", (1, *model.state_shape), meaning=model.temporal.state_meaning
        ),
        export_transforms=transforms + tuple(options.pop("export_transforms", ())),
        tools={**target.versions(), "converters": converter_digest()},
        options={k: str(v) if isinstance(v, Path) else v for k, v in options.items()},
        conversion_seconds=round(seconds, 2),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        graph=target.graph_summary(job, options),
        accumulation=target.accumulation(job, options),
    )


def move_into_place(artifact: Path, final: Path) -> None:
    """The staged artifact and its manifest onto ``final`` (an earlier artifact of ours)."""
    check_replaceable(final)  # again: the conversion may have taken long
    stop_if_signalled()  # a toolchain may have swallowed the signal's exception
    for path in (final, manifest_path(final)):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    os.replace(artifact, final)
    os.replace(manifest_path(artifact), manifest_path(final))


def convert(target: Target, request: ConvertRequest) -> Path:
    """Build one artifact; on any failure nothing is left in ``request.out``."""
    check_request(target, request)
    model = build_bas(request.variant, request.image_size, weights=request.weights).eval()
    out = Path(request.out)
    with staging_folder(out, request.stem) as staging:
        job = conversion_job(model, request, staging / f"{request.stem}{target.suffix}")
        options, seconds = run_target(target, job)
        write_manifest(job.artifact, describe_artifact(target, job, model, options, seconds))
        move_into_place(job.artifact, out / job.artifact.name)
    return out / job.artifact.name
