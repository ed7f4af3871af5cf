"""``--device cuda``: PyTorch and onnxruntime on a CUDA GPU, to set beside the paper's RTX 3090.

PyTorch runs fp32 and fp16 at batch 1 and 32 (the paper's FPS is a GPU figure, and a batch
shows the throughput a server would get). onnxruntime runs the parity-checked fp32 artifact
through its CUDA execution provider, at batch 1 only: that is the file we ship.
A GPU runs asynchronously, so every timed call ends with a synchronisation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from model.errors import ProjectError

from .bench import artifact_records, checked_artifact
from .records import BenchRecord
from .stats import LatencyStats, summarise

BATCHES = (1, 32)


def timed(call: Callable[[], object], sync: Callable[[], None], warmup: int, iters: int) -> list:
    """ms per call, each ended by ``sync`` so the device's work is inside the interval."""
    for _ in range(warmup):
        call()
    sync()
    latencies = []
    for _ in range(iters):
        started = time.perf_counter()
        call()
        sync()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def _torch_cuda(variant: str, precision: str, form: str, weights: str, warmup: int, iters: int):
    import torch

    from model.forms import FORMS, example_inputs
    from model.hub import build_bas
    from runtimes.backends.pytorch import pytorch_manifest

    if not torch.cuda.is_available():
        raise ProjectError(
            f"--device cuda: PyTorch {torch.__version__} sees no CUDA GPU "
            "(a CPU-only build, or no driver)"
        )
    dtype = torch.float16 if precision == "fp16" else torch.float32
    model = build_bas(variant, weights=weights).eval()
    manifest = replace(pytorch_manifest(variant, weights, form, model=model), precision=precision)
    module = FORMS[form](model).to("cuda", dtype)
    name = torch.cuda.get_device_name()
    results = []
    for batch in BATCHES:
        inputs = tuple(t.to("cuda", dtype) for t in example_inputs(model, form, batch))
        with torch.inference_mode():
            latencies = timed(lambda i=inputs: module(*i), torch.cuda.synchronize, warmup, iters)
        results.append((batch, summarise(latencies)))
    return manifest, "pytorch", name, results


def _onnx_cuda(variant: str, precision: str, form: str, weights: str, warmup: int, iters: int):
    import numpy as np
    import onnxruntime as ort

    from runtimes.session import to_input

    if precision != "fp32":
        raise ProjectError(
            "--device cuda --target onnx runs the fp32 artifact; for fp16 use --target torch"
        )
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise ProjectError(
            f"--device cuda: onnxruntime {ort.__version__} has no CUDAExecutionProvider "
            "(install onnxruntime-gpu in place of onnxruntime)"
        )
    artifact, manifest = checked_artifact("onnx", variant, precision, form, None, weights)
    session = ort.InferenceSession(str(artifact), providers=["CUDAExecutionProvider"])
    size = manifest.image_size
    feed = {manifest.tensor("frame").name: to_input(np.zeros((size, size, 3), np.uint8), size)}
    if manifest.state is not None:
        feed[manifest.tensor("state").name] = np.zeros(manifest.state.shape, np.float32)
    latencies = timed(lambda: session.run(None, feed), lambda: None, warmup, iters)  # run blocks
    return manifest, "onnxruntime-cuda", "CUDA (onnxruntime)", [(1, summarise(latencies))]


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
    if target not in ("torch", "onnx"):
        raise ProjectError(f"--device cuda times --target torch or onnx, not {target}")
    measure = _torch_cuda if target == "torch" else _onnx_cuda
    manifest, runtime, gpu, results = measure(variant, precision, form, weights, warmup, iters)
    records: list[BenchRecord] = []
    lines = []
    for batch, stats in results:
        records += artifact_records(
            manifest,
            runtime,
            Path(manifest.artifact.file).name,
            None,
            gpu_figures(stats, batch),
            device=f"cuda: {gpu}",
            batch=batch,
        )
        lines.append(f"batch {batch}: median {stats.median_ms:.2f} ms, {batch * stats.fps:.1f} FPS")
    summary = f"{target} BaS-{variant} {precision} {form} on {gpu}: " + "; ".join(lines)
    return records, summary


def gpu_figures(stats: LatencyStats, batch: int) -> list[tuple[str, float, str]]:
    """Latency per call, and frames per second counting every frame of the batch."""
    return [
        ("median_latency", stats.median_ms, "ms"),
        ("mean_latency", stats.mean_ms, "ms"),
        ("trimmed_mean_latency", stats.trimmed_mean_ms, "ms"),
        ("p90_latency", stats.p90_ms, "ms"),
        ("p99_latency", stats.p99_ms, "ms"),
        ("min_latency", stats.min_ms, "ms"),
        ("max_latency", stats.max_ms, "ms"),
        ("fps", batch * stats.fps, "fps"),
    ]
