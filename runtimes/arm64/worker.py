"""Run one artifact for the host, over stdin/stdout: the ARM side of the ``*-arm64`` runtimes.

    python worker.py {litert|onnxruntime} ARTIFACT [--threads N] [--xnnpack-flags F]
    python worker.py facts

Standalone (stdlib, numpy and the runtime only): it runs under QEMU in the arm64 sysroot,
where neither torch nor this project is installed. The artifact is opened once; then each
message is one JSON line, followed by the raw bytes of the arrays it lists
(``{"arrays": [{"dtype", "shape"}, ...]}``, C order), and is answered the same way:

- first, unasked: ``{"ok": true, "platform": {...}}`` (or ``{"ok": false, "error": ...}``);
- ``{"op": "inspect"}`` -> ``{"ok": true, "inputs": [...], "outputs": [...]}``;
- ``{"op": "run", "inputs": [key, ...], "outputs": [key, ...], "arrays": [...]}`` + arrays
  -> ``{"ok": true, "arrays": [...]}`` + arrays; a key is LiteRT's tensor index or
  onnxruntime's tensor name.

A failure to run is answered ``{"ok": false, "error": "one line"}`` and the worker goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import sys
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

# XNNPACK delegate flags; passing any replaces its defaults (QS8 | QU8).
XNNPACK_QS8, XNNPACK_QU8, XNNPACK_FORCE_FP16 = 0x1, 0x2, 0x4
XNNPACK_FP16 = XNNPACK_QS8 | XNNPACK_QU8 | XNNPACK_FORCE_FP16

CPUINFO_FIELDS = ("model name", "CPU implementer", "CPU part", "CPU architecture", "Features")

Tensor = dict[str, Any]  # name, index, shape, dtype, quantization ([scale, zero point] | None)
Run = Callable[[list[Any], list[Any], list[np.ndarray]], list[np.ndarray]]


def facts() -> dict[str, Any]:
    """What this process runs on, as the emulated machine reports it."""
    cpu: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in CPUINFO_FIELDS:
                    cpu.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    versions = {}
    for dist in ("numpy", "ai-edge-litert", "onnxruntime"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    return {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu": cpu,
        "versions": versions,
    }


def read_message(stream: BinaryIO) -> tuple[dict[str, Any], list[np.ndarray]] | None:
    """One JSON line and the arrays it announces; None at end of stream."""
    line = stream.readline()
    if not line:
        return None
    header = json.loads(line)
    arrays = []
    for spec in header.get("arrays", []):
        array = np.empty(spec["shape"], dtype=spec["dtype"])
        view = memoryview(array.reshape(-1).view(np.uint8)) if array.size else memoryview(b"")
        filled = 0
        while filled < view.nbytes:
            count = stream.readinto(view[filled:])
            if not count:
                raise EOFError("stream ended inside an array")
            filled += count
        arrays.append(array)
    return header, arrays


def write_message(stream: BinaryIO, header: dict[str, Any], arrays: list[np.ndarray]) -> None:
    """``header`` with the arrays' dtypes and shapes, as one JSON line, then their bytes."""
    arrays = [np.ascontiguousarray(a) for a in arrays]
    specs = [{"dtype": a.dtype.name, "shape": list(a.shape)} for a in arrays]
    stream.write((json.dumps({**header, "arrays": specs}) + "\n").encode())
    for array in arrays:
        stream.write(array.reshape(-1).view(np.uint8).data)
    stream.flush()


def _litert_tensor(detail: dict[str, Any]) -> Tensor:
    scale, zero_point = detail["quantization"]
    return {
        "name": detail["name"],
        "index": int(detail["index"]),
        "shape": [int(d) for d in detail["shape"]],
        "dtype": np.dtype(detail["dtype"]).name,
        "quantization": [float(scale), int(zero_point)] if scale != 0.0 else None,
    }


def open_litert(
    artifact: str, threads: int | None, xnnpack_flags: int | None
) -> tuple[list[Tensor], list[Tensor], Run]:
    """The interpreter; with ``xnnpack_flags``, LiteRT's CompiledModel run with those flags
    (the Interpreter's API takes none), addressed by the same tensor indices."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # With flags, the interpreter only describes the file: no XNNPACK delegate to build.
    resolver = (
        OpResolverType.AUTO
        if xnnpack_flags is None
        else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    interpreter = Interpreter(
        model_path=artifact, num_threads=threads, experimental_op_resolver_type=resolver
    )
    interpreter.allocate_tensors()
    inputs = [_litert_tensor(d) for d in interpreter.get_input_details()]
    outputs = [_litert_tensor(d) for d in interpreter.get_output_details()]
    if xnnpack_flags is None:

        def run(keys_in: list[Any], keys_out: list[Any], arrays: list[np.ndarray]):
            for index, array in zip(keys_in, arrays, strict=True):
                interpreter.set_tensor(int(index), array)
            interpreter.invoke()
            return [interpreter.get_tensor(int(index)) for index in keys_out]

        return inputs, outputs, run
    return inputs, outputs, _compiled_model(artifact, interpreter, threads, xnnpack_flags)


def _compiled_model(artifact: str, interpreter: Any, threads: int | None, flags: int) -> Run:
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.cpu_options import CpuOptions
    from ai_edge_litert.options import Options

    cpu = CpuOptions(num_threads=threads or 0, xnnpack_flags=flags)
    model = CompiledModel.from_file(artifact, options=Options(cpu_options=cpu))
    signatures = interpreter._get_full_signature_list()  # key -> {inputs: {name: index}}
    if signatures:
        key = next(iter(signatures))
        order_in = list(model.get_signature_list()[key]["inputs"])
        order_out = list(model.get_signature_list()[key]["outputs"])
        in_index = [signatures[key]["inputs"][name] for name in order_in]
        out_index = [signatures[key]["outputs"][name] for name in order_out]
    else:  # no signature: the subgraph's own input and output order
        in_index = [d["index"] for d in interpreter.get_input_details()]
        out_index = [d["index"] for d in interpreter.get_output_details()]
    shapes = {d["index"]: (d["shape"], d["dtype"]) for d in interpreter.get_output_details()}
    buffers_in = model.create_input_buffers(0)
    buffers_out = model.create_output_buffers(0)

    def run(keys_in: list[Any], keys_out: list[Any], arrays: list[np.ndarray]):
        by_index = dict(zip((int(k) for k in keys_in), arrays, strict=True))
        for index, buffer in zip(in_index, buffers_in, strict=True):
            buffer.write(np.ascontiguousarray(by_index[index]))
        model.run_by_index(0, buffers_in, buffers_out)
        results = {}
        for index, buffer in zip(out_index, buffers_out, strict=True):
            shape, dtype = shapes[index]
            results[index] = buffer.read(int(np.prod(shape)), dtype).reshape(shape)
        return [results[int(index)] for index in keys_out]

    return run


_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int8)": "int8"}


def open_onnxruntime(artifact: str, threads: int | None) -> tuple[list[Tensor], list[Tensor], Run]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        artifact, sess_options=options, providers=["CPUExecutionProvider"]
    )

    def tensors(args: list[Any]) -> list[Tensor]:
        return [
            {
                "name": a.name,
                "index": i,
                "shape": list(a.shape),
                "dtype": _ORT_TYPES.get(a.type, a.type),
                "quantization": None,
            }
            for i, a in enumerate(args)
        ]

    def run(keys_in: list[Any], keys_out: list[Any], arrays: list[np.ndarray]):
        return session.run(list(keys_out), dict(zip(keys_in, arrays, strict=True)))

    return tensors(session.get_inputs()), tensors(session.get_outputs()), run


def _one_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return f"{type(err).__name__}: {text.splitlines()[0]}"


def serve(replies: BinaryIO, requests: BinaryIO, args: argparse.Namespace) -> None:
    try:
        if args.runtime == "litert":
            inputs, outputs, run = open_litert(args.artifact, args.threads, args.xnnpack_flags)
        else:
            inputs, outputs, run = open_onnxruntime(args.artifact, args.threads)
    except Exception as err:  # the runtimes raise their own types
        write_message(replies, {"ok": False, "error": f"cannot load: {_one_line(err)}"}, [])
        return
    write_message(replies, {"ok": True, "platform": facts()}, [])
    while (message := read_message(requests)) is not None:
        header, arrays = message
        if header.get("op") == "inspect":
            write_message(replies, {"ok": True, "inputs": inputs, "outputs": outputs}, [])
            continue
        try:
            results = [np.asarray(r) for r in run(header["inputs"], header["outputs"], arrays)]
        except Exception as err:  # the runtimes raise their own types
            write_message(replies, {"ok": False, "error": _one_line(err)}, [])
            continue
        write_message(replies, {"ok": True}, results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runtime", choices=("litert", "onnxruntime", "facts"))
    parser.add_argument("artifact", nargs="?")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--xnnpack-flags", type=int, default=None)
    args = parser.parse_args()
    if args.runtime != "facts" and args.artifact is None:
        parser.error(f"{args.runtime} needs an ARTIFACT")
    # The protocol owns the original stdout; anything a library prints goes to stderr.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    if args.runtime == "facts":
        write_message(replies, {"ok": True, "platform": facts()}, [])
        return
    serve(replies, sys.stdin.buffer, args)


if __name__ == "__main__":
    main()
