"""A NumPy/PyTorch evaluator of Core ML programs, to check them where Apple's runtime is absent.

It loads the saved ``.mlpackage`` (program and weight blobs) into coremltools' MIL form and
runs each operation in order with its MIL semantics: the handful of operations BaS
converts to. An operation it does not know is an error naming it, never a silent skip.
What it proves: the converted program (graph, weights, layouts, int8 weight encoding,
fp16 casts) computes BaS's logits. What it does not: Apple's kernels, their fp16
accumulation on GPU/ANE, or that the package loads on a device; the macOS workflow checks those.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import expit  # sigmoid without exp's overflow

from .manifest import ArtifactError

_DTYPES = {"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "bool": np.bool_}


def _working(array: np.ndarray) -> np.ndarray:
    """float64 stays float64 (``wide`` evaluation); anything else is computed in float32."""
    return np.asarray(array, dtype=np.float64 if array.dtype == np.float64 else np.float32)


def _t(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(_working(array)))


def _like(result: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    return result.numpy().astype(dtype)


def _padding(a: dict[str, Any], spatial: int) -> tuple[int, ...] | str:
    pad_type = a.get("pad_type", "valid")
    if pad_type == "valid":
        return (0,) * spatial
    if pad_type == "custom":
        pad = [int(p) for p in a["pad"]]
        if pad[0::2] != pad[1::2]:
            raise ArtifactError("mil_reference: asymmetric conv padding is not supported")
        return tuple(pad[0::2])
    if pad_type == "same":
        return "same"
    raise ArtifactError(f"mil_reference: pad_type {pad_type!r} is not supported")


def _conv(a: dict[str, Any]) -> np.ndarray:
    x, w = a["x"], a["weight"]
    bias = _t(a["bias"]) if a.get("bias") is not None else None
    out = F.conv2d(
        _t(x),
        _t(w),
        bias,
        stride=tuple(int(s) for s in a.get("strides", (1, 1))),
        padding=_padding(a, 2),
        dilation=tuple(int(d) for d in a.get("dilations", (1, 1))),
        groups=int(a.get("groups", 1)),
    )
    return _like(out, x.dtype)


def _conv_transpose(a: dict[str, Any]) -> np.ndarray:
    x, w = a["x"], a["weight"]
    bias = _t(a["bias"]) if a.get("bias") is not None else None
    padding = _padding(a, 2)
    if padding == "same":
        raise ArtifactError("mil_reference: 'same' conv_transpose padding is not supported")
    out = F.conv_transpose2d(
        _t(x),
        _t(w),
        bias,
        stride=tuple(int(s) for s in a["strides"]),
        padding=padding,
        groups=int(a.get("groups", 1)),
        dilation=tuple(int(d) for d in a.get("dilations", (1, 1))),
    )
    return _like(out, x.dtype)


def _avg_pool(a: dict[str, Any]) -> np.ndarray:
    """2-D average pooling; ``exclude_padding_from_average`` is PyTorch's ``count_include_pad``
    negated, ``ceil_mode`` PyTorch's."""
    x = a["x"]
    padding = _padding(a, 2)
    if padding == "same" or x.ndim != 4:
        raise ArtifactError("mil_reference: avg_pool is supported in 2-D without 'same' padding")
    out = F.avg_pool2d(
        _t(x),
        tuple(int(k) for k in a["kernel_sizes"]),
        stride=tuple(int(s) for s in a.get("strides", (1, 1))),
        padding=padding,
        ceil_mode=bool(a.get("ceil_mode", False)),
        count_include_pad=not bool(a.get("exclude_padding_from_average", False)),
    )
    return _like(out, x.dtype)


def _batch_norm(a: dict[str, Any]) -> np.ndarray:
    x = a["x"]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale = a.get("gamma", 1.0) / np.sqrt(a["variance"] + a.get("epsilon", 1e-5))
    out = (x - a["mean"].reshape(shape)) * np.reshape(scale, shape)
    return (
        out + np.reshape(a.get("beta", 0.0), shape) if a.get("beta") is not None else out
    ).astype(x.dtype)


def _instance_norm(a: dict[str, Any]) -> np.ndarray:
    x = _working(a["x"])
    axes = tuple(range(2, x.ndim))
    out = (x - x.mean(axes, keepdims=True)) / np.sqrt(
        x.var(axes, keepdims=True) + a.get("epsilon", 1e-5)
    )
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if a.get("gamma") is not None:
        out = out * a["gamma"].reshape(shape)
    if a.get("beta") is not None:
        out = out + a["beta"].reshape(shape)
    return out.astype(a["x"].dtype)


def _layer_norm(a: dict[str, Any]) -> np.ndarray:
    x = _working(a["x"])
    axes = tuple(int(i) for i in a["axes"])
    out = (x - x.mean(axes, keepdims=True)) / np.sqrt(
        x.var(axes, keepdims=True) + a.get("epsilon", 1e-5)
    )
    if a.get("gamma") is not None:
        out = out * a["gamma"]
    if a.get("beta") is not None:
        out = out + a["beta"]
    return out.astype(a["x"].dtype)


def _gelu(a: dict[str, Any]) -> np.ndarray:
    mode = a.get("mode", "EXACT")
    approximate = {"EXACT": "none", "TANH_APPROXIMATION": "tanh"}.get(mode)
    if approximate is None:
        raise ArtifactError(f"mil_reference: gelu mode {mode} is not supported")
    return _like(F.gelu(_t(a["x"]), approximate=approximate), a["x"].dtype)


def _slice_by_index(a: dict[str, Any]) -> np.ndarray:
    x = a["x"]
    begin, end = list(a["begin"]), list(a["end"])
    stride = list(a.get("stride", [1] * x.ndim))
    begin_mask = list(a.get("begin_mask", [False] * x.ndim))
    end_mask = list(a.get("end_mask", [False] * x.ndim))
    squeeze = list(a.get("squeeze_mask", [False] * x.ndim))
    index = []
    for d in range(x.ndim):
        if squeeze[d]:
            index.append(int(begin[d]))
            continue
        start = None if begin_mask[d] else int(begin[d])
        stop = None if end_mask[d] else int(end[d])
        index.append(slice(start, stop, int(stride[d])))
    return x[tuple(index)]


def _dequantize(a: dict[str, Any]) -> np.ndarray:
    """constexpr_affine_dequantize: (q - zero_point) * scale along ``axis``."""
    q = a["quantized_data"].astype(np.float32)
    axis = int(a["axis"])
    shape = [1] * q.ndim
    shape[axis] = -1
    zero = np.reshape(
        np.asarray(a["zero_point"], np.float32), shape if np.ndim(a["zero_point"]) else ()
    )
    scale = np.reshape(np.asarray(a["scale"], np.float32), shape if np.ndim(a["scale"]) else ())
    return (q - zero) * scale


def _blockwise(a: dict[str, Any]) -> np.ndarray:
    """constexpr_blockwise_shift_scale: scale (and offset) repeated over blocks of the data."""
    data = a["data"].astype(np.float32)
    scale = np.asarray(a["scale"], np.float32)
    offset = np.asarray(a["offset"], np.float32) if a.get("offset") is not None else None
    reps = [d // s for d, s in zip(data.shape, scale.shape, strict=True)]
    if offset is not None:
        data = data - np.tile(offset, reps)
    return data * np.tile(scale, reps)


_OPS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "conv": _conv,
    "conv_transpose": _conv_transpose,
    "avg_pool": _avg_pool,
    "batch_norm": _batch_norm,
    "instance_norm": _instance_norm,
    "layer_norm": _layer_norm,
    "gelu": _gelu,
    "silu": lambda a: (a["x"] * expit(_working(a["x"]))).astype(a["x"].dtype),
    "sigmoid": lambda a: expit(_working(a["x"])).astype(a["x"].dtype),
    "tanh": lambda a: np.tanh(a["x"]),
    "add": lambda a: a["x"] + a["y"],
    "sub": lambda a: a["x"] - a["y"],
    "mul": lambda a: a["x"] * a["y"],
    "real_div": lambda a: a["x"] / a["y"],
    "pow": lambda a: np.power(a["x"], a["y"]),
    "sqrt": lambda a: np.sqrt(a["x"]),
    "rsqrt": lambda a: 1 / np.sqrt(a["x"] + a.get("epsilon", 1e-12)),
    "reduce_mean": lambda a: a["x"].mean(
        tuple(int(i) for i in a["axes"]), keepdims=bool(a.get("keep_dims", False))
    ),
    "reshape": lambda a: np.reshape(a["x"], [int(s) for s in a["shape"]]),
    "transpose": lambda a: np.transpose(a["x"], [int(p) for p in a["perm"]]),
    "concat": lambda a: np.concatenate(list(a["values"]), axis=int(a["axis"])),
    "slice_by_index": _slice_by_index,
    "squeeze": lambda a: (
        np.squeeze(a["x"], tuple(int(i) for i in a["axes"]))
        if a.get("axes") is not None
        else np.squeeze(a["x"])
    ),
    "expand_dims": lambda a: np.expand_dims(a["x"], tuple(int(i) for i in a["axes"])),
    "cast": lambda a: a["x"].astype(_DTYPES[a["dtype"]]),
    "identity": lambda a: a["x"],
    "constexpr_affine_dequantize": _dequantize,
    "constexpr_blockwise_shift_scale": _blockwise,
}


def _value(var: Any, env: dict[str, Any]) -> Any:
    if isinstance(var, list | tuple):
        return [_value(v, env) for v in var]
    if var.name in env:
        return env[var.name]
    if var.val is not None:
        value = var.val
        return np.asarray(value) if not isinstance(value, str) else value
    raise ArtifactError(f"mil_reference: value of {var.name} is not known")


def _widened(value: Any) -> Any:
    if isinstance(value, list):
        return [_widened(v) for v in value]
    if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating):
        return value.astype(np.float64)
    return value


def run_function(
    function: Any, inputs: dict[str, np.ndarray], wide: bool = False
) -> dict[str, np.ndarray]:
    """Evaluate ``function``; ``wide``: every float value in float64, the program's casts
    included, which tells the program's own error from the evaluator's float32 rounding."""
    widen = _widened if wide else (lambda value: value)
    env: dict[str, Any] = {}
    for name, var in function.inputs.items():
        dtype = _DTYPES.get(str(var.dtype.__name__), np.float32)
        env[name] = widen(np.asarray(inputs[name], dtype=dtype))
    for op in function.operations:
        if op.op_type == "const":
            env[op.outputs[0].name] = widen(_value(op.outputs[0], env))
            continue
        kernel = _OPS.get(op.op_type)
        if kernel is None:
            raise ArtifactError(f"mil_reference: operation {op.op_type!r} is not implemented")
        args = {k: _value(v, env) for k, v in op.inputs.items()}
        if wide and op.op_type == "cast" and str(args["dtype"]) in ("fp16", "fp32"):
            env[op.outputs[0].name] = widen(args["x"])
            continue
        env[op.outputs[0].name] = widen(kernel(args))
    dtype = np.float64 if wide else np.float32
    return {var.name: np.asarray(env[var.name], dtype=dtype) for var in function.outputs}


def load_program(
    artifact: Path, wide: bool = False
) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """A runner over the ``main`` function of a saved ML program (``wide``: in float64)."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load as load_milproto

    model = ct.models.MLModel(str(artifact), skip_model_load=True)
    spec = model.get_spec()
    program = load_milproto(spec, spec.specificationVersion, model.weights_dir)
    function = program.functions["main"]
    unknown = sorted({op.op_type for op in function.operations} - set(_OPS) - {"const"})
    if unknown:
        raise ArtifactError(f"mil_reference: operations not implemented: {', '.join(unknown)}")

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return run_function(function, inputs, wide)

    return run
