"""LiteRT and onnxruntime on ARM64 kernels, emulated: ``litert-arm64``, ``onnxruntime-arm64``.

The runtimes' own aarch64 builds (the NEON, dot-product and FP16 kernels a phone runs) in
the arm64 sysroot of ``make arm64``, under ``qemu-aarch64-static`` (``runtimes.arm64``).
Opening an artifact starts one worker process (``runtimes/arm64/worker.py``) that loads
it once; every call streams the arrays to it over a pipe and back. Emulation is about 85x
(int8) to 300x (float) slower than native: for parity, never for timing. A file whose
manifest asks for FP16 arithmetic (``accumulation: fp16``) is run by LiteRT with XNNPACK's
FP16 inference forced, as an ARMv8.2 phone runs it.
"""

from __future__ import annotations

import collections
import functools
import subprocess
import threading
import weakref
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import arm64
from ..arm64.worker import XNNPACK_FP16, read_message, write_message
from ..backend import Backend, RawRunner, RawTensor
from ..manifest import ArtifactError, Manifest, Quantization, TensorSpec

STOP_SECONDS = 10  # for a worker to end after its stdin closes, before it is killed


def _stop(process: subprocess.Popen) -> None:
    """End a worker: close its stdin (it exits at end of stream), kill it if it lingers."""
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


def _drain(stream: Any, lines: collections.deque[str]) -> None:
    """Keep a worker's stderr (library logs) flowing, its last lines kept for errors."""
    for line in iter(stream.readline, b""):
        if line.strip():
            lines.append(line.decode(errors="replace").strip())
    stream.close()


class Worker:
    """One worker process under QEMU with one artifact open; ended when collected or at exit."""

    def __init__(self, label: str, command: list[str], env: dict[str, str] | None) -> None:
        """Start ``command`` (``worker.py`` and its arguments, under QEMU for the runtimes;
        on the host python in tests), in ``env``, and read its first answer."""
        self.label = label
        self._stderr: collections.deque[str] = collections.deque(maxlen=50)
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
        except OSError as err:
            raise ArtifactError(f"{label}: cannot start the worker: {err.strerror}") from err
        self._finalizer = weakref.finalize(self, _stop, self.process)
        self._drainer = threading.Thread(  # holds no reference to self: collectable
            target=_drain, args=(self.process.stderr, self._stderr), daemon=True
        )
        self._drainer.start()
        self.platform: dict[str, Any] = self._receive()[0]["platform"]

    def _died(self) -> ArtifactError:
        try:
            code = self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            code = None
        self._drainer.join(STOP_SECONDS)  # its last lines
        last = self._stderr[-1] if self._stderr else "no error output"
        status = "stopped answering" if code is None else f"exited with status {code}"
        return ArtifactError(f"{self.label}: the ARM64 worker {status}: {last}")

    def _receive(self) -> tuple[dict[str, Any], list[np.ndarray]]:
        try:
            message = read_message(self.process.stdout)
        except (OSError, EOFError, ValueError) as err:
            raise self._died() from err
        if message is None:
            raise self._died()
        header, arrays = message
        if not header.get("ok"):
            raise ArtifactError(f"{self.label}: {header.get('error')}")
        return header, arrays

    def request(
        self, header: dict[str, Any], arrays: list[np.ndarray] | None = None
    ) -> tuple[dict[str, Any], list[np.ndarray]]:
        """Send one message, return the answer; ArtifactError if it fails or the worker died."""
        if not self._finalizer.alive:
            raise ArtifactError(f"{self.label}: the ARM64 worker was closed")
        try:
            write_message(self.process.stdin, header, arrays or [])
        except (BrokenPipeError, OSError) as err:
            raise self._died() from err
        return self._receive()

    def close(self) -> None:
        self._finalizer()


class WorkerRunner:
    """A RawRunner over a worker: the file's tensors in manifest order, outputs likewise.

    ``platform`` holds what the worker reported about the machine it runs on."""

    def __init__(self, worker: Worker, keys_in: list[Any], keys_out: list[Any]) -> None:
        self.worker = worker
        self.keys_in = keys_in
        self.keys_out = keys_out
        self.platform = {**_host_facts(), **worker.platform}

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        header = {"op": "run", "inputs": self.keys_in, "outputs": self.keys_out}
        return self.worker.request(header, [np.asarray(a) for a in arrays])[1]


def _emulated(label: str, args: list[str]) -> Worker:
    """The worker with ``args`` under QEMU, in the sysroot."""
    return Worker(label, arm64.worker_command(args), arm64.python_environment())


@functools.cache
def qemu_version() -> str:
    """``qemu-aarch64 version 7.2.x (Debian ...)``, or "" where QEMU is missing."""
    binary = arm64.qemu()
    if binary is None:
        return ""
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.splitlines()[0] if done.stdout else ""


def _host_facts() -> dict[str, Any]:
    return {"platform": arm64.PLATFORM, "qemu": qemu_version()}


def _raw(tensor: dict[str, Any]) -> RawTensor:
    quantization = tensor["quantization"]
    return RawTensor(
        tensor["name"],
        int(tensor["index"]),
        tuple(tensor["shape"]),
        tensor["dtype"],
        Quantization(*quantization) if quantization else None,
    )


class Arm64Backend(Backend):
    """A runtime's aarch64 build run in the emulated worker; subclasses name the runtime."""

    worker_runtime: ClassVar[str]  # the worker's runtime argument: litert | onnxruntime
    modules = ()
    needs = "needs the arm64 sysroot and qemu-aarch64-static: run make arm64"

    @classmethod
    def is_available(cls) -> bool:
        return arm64.is_ready() and arm64.qemu() is not None

    @classmethod
    def platform(cls) -> dict[str, Any]:
        """Where this runtime computes: the emulated machine, QEMU and the library versions."""
        return {**_host_facts(), **_emulated_facts()}

    def key(self, spec: TensorSpec) -> int | str:
        """How the worker addresses a tensor of the manifest: LiteRT's index, onnx's name."""
        return spec.index if self.worker_runtime == "litert" else spec.name

    def _worker(self, artifact: Path, threads: int | None, flags: int | None = None) -> Worker:
        if not self.is_available():
            raise ArtifactError(f"cannot run {artifact.name} here: {self.name} {self.needs}")
        args = [self.worker_runtime, str(Path(artifact).resolve())]
        args += [] if threads is None else ["--threads", str(threads)]
        args += [] if flags is None else ["--xnnpack-flags", str(flags)]
        return _emulated(f"{self.name} {artifact.name}", args)

    def inspect(self, artifact: Path) -> tuple[list[RawTensor], list[RawTensor]]:
        worker = self._worker(artifact, 1)
        try:
            header, _ = worker.request({"op": "inspect"})
        finally:
            worker.close()
        return [_raw(t) for t in header["inputs"]], [_raw(t) for t in header["outputs"]]

    def flags(self, manifest: Manifest) -> int | None:
        """XNNPACK flags for the file: None, the runtime's defaults."""
        return None

    def open(self, artifact: Path, manifest: Manifest, threads: int | None) -> RawRunner:
        worker = self._worker(artifact, threads, self.flags(manifest))
        return WorkerRunner(
            worker,
            [self.key(spec) for spec in manifest.inputs],
            [self.key(spec) for spec in manifest.outputs],
        )


@functools.cache
def _emulated_facts() -> dict[str, Any]:
    worker = _emulated("arm64 facts", ["facts"])
    worker.close()
    return worker.platform


class LiteRTArm64Backend(Arm64Backend):
    name = "litert-arm64"
    worker_runtime = "litert"

    def flags(self, manifest: Manifest) -> int | None:
        """FP16 arithmetic forced where the file allows it, as on an ARMv8.2 phone."""
        return XNNPACK_FP16 if manifest.accumulation == "fp16" else None


class OnnxRuntimeArm64Backend(Arm64Backend):
    name = "onnxruntime-arm64"
    worker_runtime = "onnxruntime"
