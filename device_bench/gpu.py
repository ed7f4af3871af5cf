"""``--device cuda``: PyTorch and onnxruntime on a CUDA GPU, to set beside the paper's RTX 3090.

PyTorch runs fp32 and fp16 at batch 1 and 32 (the paper's FPS is a GPU figure, and a batch
shows the throughput a server would get). onnxruntime runs the parity-checked fp32 artifact
through its CUDA execution provider, at batch 1 only: that is the file we ship.
A GPU runs asynchronously, so every timed call ends with a synchronisation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from model.errors import ProjectError
from model.forms import FORMS, example_inputs
from model.hub import build_bas
from runtimes.backends.pytorch import pytorch_manifest
from runtimes.manifest import Manifest
from runtimes.session import to_input
from runtimes.timing import LatencyStats, summarise, time_calls

from .bench import artifact_records, checked_artifact, host_latency_figures
from .records import BenchRecord

BATCHES = (1, 32)


@dataclass(frozen=True)
class CudaTiming:
    """What one target measured on the GPU: the manifest its records name, and per batch."""

    manifest: Manifest
    runtime: str
    gpu: str
    batches: tuple[tuple[int, LatencyStats], ...]  # (frames per call, latency per call)


def _torch_cuda(
    variant: str, precision: str, form: str, weights: str, warmup: int, iters: int
) -> CudaTiming:
    import torch

    if not torch.cuda.is_available():
        raise ProjectError(
            f"--device cuda: PyTorch {torch.__version__} sees no CUDA GPU "
            "(a CPU-only build, or no driver)"
        )
    dtype = torch.float16 if precision == "fp16" else torch.float32
    model = build_bas(variant, weights=weights).eval()
    manifest = replace(pytorch_manifest(variant, weights, form, model=model), precision=precision)
    module = FORMS[form](model).to("cuda", dtype)
    results = []
    for batch in BATCHES:
        inputs = tuple(t.to("cuda", dtype) for t in example_inputs(model, form, batch))
        with torch.inference_mode():
            latencies = time_calls(
                lambda _, i=inputs: module(*i), iters, warmup, sync=torch.cuda.synchronize
            )
        results.append((batch, summarise(latencies)))
    return CudaTiming(manifest, manifest.runtime, torch.cuda.get_device_name(), tuple(results))


def _onnx_cuda(
    variant: str, precision: str, form: str, weights: str, warmup: int, iters: int
) -> CudaTiming:
    import onnxruntime as ort

    if precision != "fp32":
        raise ProjectError(
            "--device cuda --target onnx runs the fp32 artifact; for fp16 use --target pytorch"
        )
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise ProjectError(
            f"--device cuda: onnxruntime {ort.__version__} has no CUDAExecutionProvider "
            "(install onnxruntime-gpu in place of onnxruntime)"
        )
    artifact, manifest = checked_artifact("onnx", variant, precision, form, None, weights)
    session = ort.InferenceSession(str(artifact), providers=["CUDAExecutionProvider"])
    size = manifest.image_size
    blank = np.zeros((size, size, 3), np.uint8)
    feed = {manifest.tensor("frame").name: to_input(blank, size, manifest.preprocessing)}
    if manifest.state is not None:
        feed[manifest.tensor("state").name] = np.zeros(manifest.state.shape, np.float32)
    latencies = time_calls(lambda _: session.run(None, feed), iters, warmup)  # run blocks
    runtime = manifest.runtime  # its CUDA execution provider does not name the GPU
    return CudaTiming(
        manifest, f"{runtime}-cuda", f"CUDA ({runtime})", ((1, summarise(latencies)),)
    )


# The targets a CUDA GPU times here, each by its own measurement (names: runtimes.targets).
CUDA_TIMERS: dict[str, Callable[[str, str, str, str, int, int], CudaTiming]] = {
    "pytorch": _torch_cuda,
    "onnx": _onnx_cuda,
}


def run_cuda(
    target: str,
    variant: str,
    precision: str,
    form: str,
    warmup: int,
    iters: int,
    weights: str = "shipped",
) -> tuple[list[BenchRecord], str]:
    """The records of one target on the CUDA GPU (batch 1 and, for PyTorch, 32) and a summary."""
    if target not in CUDA_TIMERS:
        raise ProjectError(f"--device cuda times --target {' or '.join(CUDA_TIMERS)}, not {target}")
    timing = CUDA_TIMERS[target](variant, precision, form, weights, warmup, iters)
    records: list[BenchRecord] = []
    lines = []
    for batch, stats in timing.batches:
        records += artifact_records(
            timing.manifest,
            timing.runtime,
            Path(timing.manifest.artifact.file).name,
            None,
            host_latency_figures(stats, batch),
            device=f"cuda: {timing.gpu}",
            batch=batch,
        )
        lines.append(f"batch {batch}: median {stats.median_ms:.2f} ms, {batch * stats.fps:.1f} FPS")
    summary = f"{target} BaS-{variant} {precision} {form} on {timing.gpu}: " + "; ".join(lines)
    return records, summary
