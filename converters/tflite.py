"""TFLite / LiteRT (Android) through ONNX and onnx2tf: fp32, fp16, int8, int16x8; float I/O.

    python -m converters.tflite --variant S --precision int8 [--calibration DIR]

onnx2tf writes the float model and a SavedModel; int8 is quantized from that SavedModel
by TensorFlow's converter on our calibration frames, with GroupNorm's statistics and the
MULs but SiLU's kept in float (``FLOAT_OPS``, ``_float_nodes``). ``int16x8`` instead
quantizes every op, in 16x8 (int16 activations, int8 weights), so that an NPU delegate gets
the whole graph; see
``INTEGER_ONLY``. LiteRT's CPU runs 16x8 on reference kernels (~40x slower than int8 here):
it is the precision for phones' accelerators, not for CPUs. onnx2tf runs offline: every
input gets sample data from the project (it would otherwise download a sample image). The
flatbuffer is checked for Flex (select-TF) ops, which phones without the Flex delegate
cannot run; any Flex op fails the conversion.
The manifest's ``graph`` counts what a delegate is handed (``summarize``).

fp16 stores fp16 weights (DEQUANTIZEd to fp32 at load) and declares FP16 arithmetic allowed
(metadata ``reduced_precision_support`` = ``fp16accfp16``): XNNPACK then computes in fp16 where
the CPU has it natively (ARMv8.2+ phones; XNNPACK documents up to 2x, not measured here);
without the declaration (``fp16accfp32``, TensorFlow's default) the file is only smaller.
Runtime ``litert-fp16`` forces that arithmetic on any CPU, for parity.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from model.data.synth import render_video
from runtimes.backend import RawTensor
from runtimes.manifest import GraphSummary

from .base import ConversionJob, Target
from .calibration import CALIBRATION_SEED
from .command import target_command
from .onnx import export_onnx
from .spec import ConversionError
from .xnnpack_export import STATE_CHANNELS_LAST, ChannelsLastStream

SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
ONNX2TF_SUFFIX = {"fp32": "_float32", "fp16": "_float16"}  # int8: see _quantize

# TFLite's reduced-precision declaration (tensorflow/lite/tools/optimize/
# reduced_precision_support.h): inference types, "acc", accumulation type. XNNPACK hints FP16
# inference only for fp16 inference with fp16 accumulation, and only on native-FP16 CPUs.
REDUCED_PRECISION_KEY = "reduced_precision_support"
FP16_ARITHMETIC = "fp16accfp16"


# Inputs onnx2tf is told to keep exactly as exported (keep_shape_absolutely_input_names):
# the stream state, already channels-last (ChannelsLastStream).
KEPT_AS_EXPORTED = ("state",)


def _onnx2tf_layout(name: str, array: np.ndarray) -> np.ndarray:
    """An exported input as onnx2tf's model takes it: as exported if kept, else channels-last."""
    if name in KEPT_AS_EXPORTED or array.ndim < 4:
        return array
    return np.moveaxis(array, 1, -1)


STREAM_TRANSFORM = (
    "stream state channels-last (B, K-1, h, w, C), TempLP's step one 1x1 conv over the "
    "frames' features concatenated on channels (same function)"
)


def _state_channels_last(job: ConversionJob) -> bool:
    """Stream forms with a history (a window of one frame has an empty state) export it so."""
    return job.request.form == "stream" and job.module.model.temporal.window > 1


def _export_job(job: ConversionJob) -> ConversionJob:
    """What onnx2tf is given: ChannelsLastStream where the state is channels-last."""
    if not _state_channels_last(job):
        return job

    def file_layout(inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        frame, state = inputs
        return frame, state.permute(STATE_CHANNELS_LAST).contiguous()

    return dataclasses.replace(
        job,
        module=ChannelsLastStream(job.module).eval(),
        example_inputs=file_layout(job.example_inputs),
        calibration=lambda contrast=1.0: map(file_layout, job.calibration(contrast)),
    )


def _sample_files(job: ConversionJob, folder: Path) -> list[list[Any]]:
    """onnx2tf's per-input sample data (the example inputs) in its inputs' layouts, float32."""
    entries = []
    for name, tensor in zip(job.request.input_names, job.example_inputs, strict=True):
        path = folder / f"{name}.npy"
        np.save(path, _onnx2tf_layout(name, tensor.numpy()).astype(np.float32))
        entries.append([name, str(path), 0.0, 1.0])
    return entries


def write_onnx2tf_sample(folder: Path) -> None:
    """Put our own frames where onnx2tf looks before downloading its sample images.

    For a model whose inputs all look like images, onnx2tf loads
    ``./calibration_image_sample_data_20x128x128x3_float32.npy`` from the working folder
    and downloads it when absent, whatever other data it is given.
    """
    frames = [
        np.asarray(Image.fromarray(image).resize((128, 128), Image.Resampling.BILINEAR))
        for image, _ in render_video(CALIBRATION_SEED, 0, 20)
    ]
    np.save(folder / SAMPLE_FILE, np.stack(frames).astype(np.float32) / 255.0)


# Op types kept in float: GroupNorm's statistics, whose per-frame variance spans orders of
# magnitude, so an int8 variance rounds to zero and LiteRT's int8 DIV refuses it.
FLOAT_OPS = ("MEAN", "SUB", "SQRT", "DIV")
# MUL stays float too (the norm's squares and scales, BatchNorm's scales): on BaS-S, int8
# MUL put Dice vs ground truth 1.45 points below PyTorch (gate: 1), float MUL 0.65. But
# not SiLU's x * sigmoid(x) (a MUL fed by LOGISTIC): int8 there left BaS-S's mask figures
# unchanged to the fourth decimal, on frame and stream, and ran 7 % faster (the 4x-wide
# tensors of the blocks' ASE need no DEQUANTIZE and QUANTIZE around it).
INT8_MUL_AFTER = "LOGISTIC"
QUANTIZATION = {
    "scheme": "int8 full-integer, float input/output (TFLite converter, per-channel weights)",
    "float_ops": [*FLOAT_OPS, f"MUL (except after {INT8_MUL_AFTER}: SiLU)"],
    "float_tensors": "statistics: every op output with one value per channel or per frame",
}


# int16x8, integer-only: every op in TFLite's 16x8 mode, int16 activations and int8 weights.
# The one-group norm's input spans +-72 on one frame and +-4,000 on another, which int8
# activations keep in a few levels; int16 keeps thousands. The norm's 1/sqrt becomes RSQRT
# (SQRT and DIV have no 16x8 kernel) and GELU its sigmoid form (no 16x8 GELU kernel;
# converters.build exports it so); float I/O, so only the input QUANTIZE and the output
# DEQUANTIZE touch float.
# Calibrated on the clips and on copies at half their contrast: a per-frame statistic has
# one int16 range for every frame, and held-out video 2's frame 7 had a stem-norm 1/std
# 1.45x the calibration maximum, which saturated and lost BaS-L's 1,175-pixel lesion.
# Half the contrast doubles 1/std's calibrated range (one of int16's fifteen bits).
LOW_CONTRAST = 0.5
INTEGER_ONLY = {
    "scheme": "integer-only 16x8: int16 activations, int8 per-channel weights, float input/output",
    "float_ops": [],
    "rewrites": ["Reciprocal(Sqrt(v)) as RSQRT(v)", "tanh-GELU as x * sigmoid(2z)"],
    "calibration": f"the calibration clips, and copies at {LOW_CONTRAST} of their contrast",
}


def _integer_only_ops_set() -> Any:
    import tensorflow as tf

    return tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8


@contextlib.contextmanager
def _fused_rsqrt() -> Iterator[None]:
    """While onnx2tf converts, write ONNX ``Reciprocal(Sqrt(v))`` (torch's rsqrt) as tf.math.rsqrt.

    onnx2tf maps it to SQRT and DIV, neither of which has an integer kernel in LiteRT;
    RSQRT has int8 and int16 ones. The orphaned SQRT is pruned by the TFLite converter.
    """
    import tensorflow as tf
    from onnx2tf.ops import Reciprocal

    original = Reciprocal.make_node

    def make_node(*, graph_node, tf_layers_dict, **kwargs):
        original(graph_node=graph_node, tf_layers_dict=tf_layers_dict, **kwargs)
        source = graph_node.inputs[0].inputs
        if source and source[0].op == "Sqrt" and source[0].inputs[0].name in tf_layers_dict:
            radicand = tf_layers_dict[source[0].inputs[0].name]["tf_node"]
            out = tf_layers_dict[graph_node.outputs[0].name]
            out["tf_node"] = tf.math.rsqrt(radicand, name=f"{graph_node.name}_rsqrt")

    Reciprocal.make_node = make_node
    try:
        yield
    finally:
        Reciprocal.make_node = original


def _representative(saved_model: Path, samples: list[tuple[Any, ...]], job: ConversionJob):
    """The calibration frames in the layout of the SavedModel's inputs (onnx2tf's NHWC)."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    shapes = {n: tuple(s.shape) for n, s in signature.structured_input_signature[1].items()}
    names = job.request.input_names

    def dataset():
        for sample in samples:
            feed = {}
            for name, tensor in zip(names, sample, strict=True):
                feed[name] = _onnx2tf_layout(name, tensor.numpy()).astype(np.float32)
                if feed[name].shape != shapes[name]:
                    raise ConversionError(
                        f"tflite: calibration {name} is {feed[name].shape}, the model takes "
                        f"{shapes[name]}"
                    )
            yield feed

    return dataset


def _float_nodes(calibrated: bytes) -> list[str]:
    """Names of the op outputs kept float: statistics, and every MUL but SiLU's.

    Statistics are outputs with one value per channel or per frame. The norms' variances
    and means reach their divisions through ops of other types (the variance's ``+ eps``
    ADD, the per-channel statistics' RESHAPE), which int8 quantized with one range for
    all frames: BaS-S's decoder norm's variance spans 112 to 87,897 over the calibration
    frames (int8 step 345), so a held-out frame without a lesion (variance ~150) got 0
    and its norm divided by sqrt(eps). Float here costs nothing.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=calibrated)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    producer = {index: op["op_name"] for op in ops for index in op["outputs"]}
    names = []
    for op in ops:
        for index in op["outputs"]:
            shape = tensors[index]["shape"]
            statistic = len(shape) and shape.prod() == shape.max()
            sources = {producer.get(i) for i in op["inputs"]}
            float_mul = op["op_name"] == "MUL" and INT8_MUL_AFTER not in sources
            if statistic or float_mul:
                names.append(tensors[index]["name"])
    return names


def _quantize(saved_model: Path, samples: list[tuple[Any, ...]], job: ConversionJob) -> bytes:
    """int8 from onnx2tf's float SavedModel, FLOAT_OPS and ``_float_nodes`` kept float."""
    import tensorflow as tf

    dataset = _representative(saved_model, samples, job)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
        tf.lite.OpsSet.TFLITE_BUILTINS,
    ]
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(FLOAT_OPS))
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=dataset, debug_options=options
    )
    options.denylisted_nodes = _float_nodes(debugger.calibrated_model)
    return debugger.get_nondebug_quantized_model()


def _quantize_integer_only(
    saved_model: Path, samples: list[tuple[Any, ...]], job: ConversionJob
) -> bytes:
    """16x8 (int16 activations, int8 weights) for every op, no float fallback allowed.

    Only this op set is offered to the converter, so an op without a 16x8 kernel fails the
    conversion instead of silently staying float.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _representative(saved_model, samples, job)
    converter.target_spec.supported_ops = [_integer_only_ops_set()]
    return converter.convert()


def reduced_precision(model_path: Path) -> str | None:
    """The flatbuffer's ``reduced_precision_support`` metadata, if any: what it lets XNNPACK do."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(model_path.read_bytes(), 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == REDUCED_PRECISION_KEY.encode():
            data = model.Buffers(entry.Buffer()).DataAsNumpy()
            return bytes(data).decode() if isinstance(data, np.ndarray) else ""
    return None


def op_counts(model_path: Path) -> dict[str, int]:
    from ai_edge_litert.interpreter import Interpreter

    counts: dict[str, int] = {}
    for d in Interpreter(model_path=str(model_path))._get_ops_details():
        counts[d["op_name"]] = counts.get(d["op_name"], 0) + 1
    return dict(sorted(counts.items()))


# Ops that only move or reshape data: not compute, whatever the dtype they carry.
DATA_MOVEMENT = frozenset(
    {
        "RESHAPE", "TRANSPOSE", "CONCATENATION", "SLICE", "STRIDED_SLICE", "PAD", "PADV2",
        "MIRROR_PAD", "GATHER", "GATHER_ND", "SQUEEZE", "EXPAND_DIMS", "PACK", "UNPACK",
        "SPLIT", "SPLIT_V", "TILE", "BROADCAST_TO", "SHAPE", "DEPTH_TO_SPACE",
        "SPACE_TO_DEPTH",
    }
)  # fmt: skip
CONVERSIONS = frozenset({"QUANTIZE", "DEQUANTIZE"})
PARTITIONS_SOURCE = (
    "estimate: connected groups of ops with no float tensor in or out (flatbuffer tensor "
    "dtypes); each float op or (de)quantize between them splits a delegate's graph"
)


def summarize(model_path: Path) -> GraphSummary:
    """Op counts of a flatbuffer by tensor dtype, and an estimate of its integer partitions.

    An integer-only NPU delegate takes connected ops whose tensors are all integer; every op
    that reads or writes a float tensor (QUANTIZE / DEQUANTIZE included) is left to the CPU
    and cuts the graph. No LiteRT tool reports partitions for such a delegate on a machine
    without one, so they are estimated (``PARTITIONS_SOURCE``); a float graph has none.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_path))
    floating = {
        t["index"]
        for t in interpreter.get_tensor_details()
        if np.issubdtype(np.dtype(t["dtype"]), np.floating)
    }
    ops = interpreter._get_ops_details()
    float_types: dict[str, int] = {}
    integer_ops, producer = [], {}
    for op in ops:
        tensors = [i for i in (*op["inputs"], *op["outputs"]) if i >= 0]
        for out in op["outputs"]:
            producer[out] = op["index"]
        if any(i in floating for i in tensors):
            if op["op_name"] not in DATA_MOVEMENT | CONVERSIONS:
                float_types[op["op_name"]] = float_types.get(op["op_name"], 0) + 1
        else:
            integer_ops.append(op)
    parent = {op["index"]: op["index"] for op in integer_ops}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for op in integer_ops:
        for tensor in op["inputs"]:
            if producer.get(tensor) in parent:
                parent[root(producer[tensor])] = root(op["index"])
    computes = any(op["op_name"] not in DATA_MOVEMENT for op in integer_ops)
    names = [op["op_name"] for op in ops]
    return GraphSummary(
        ops=len(ops),
        float_compute_ops=sum(float_types.values()),
        quantize_ops=names.count("QUANTIZE"),
        dequantize_ops=names.count("DEQUANTIZE"),
        float_op_types=dict(sorted(float_types.items())),
        partitions=len({root(i) for i in parent}) if computes else None,
        partitions_source=PARTITIONS_SOURCE if computes else "float graph: no integer partitions",
    )


def _onnx2tf_options(job: ConversionJob, work: Path) -> dict[str, Any]:
    """onnx2tf's arguments for this job (its calibration samples written into ``work``)."""
    return {
        "output_signaturedefs": True,
        "copy_onnx_input_output_names_to_tflite": True,
        "replace_to_pseudo_operators": ["erf"],
        "custom_input_op_name_np_data_path": _sample_files(job, work),
        "keep_shape_absolutely_input_names": [
            n for n in job.request.input_names if n in KEPT_AS_EXPORTED
        ]
        or None,
        "non_verbose": True,
        # fp16: write FP16_ARITHMETIC (TFLiteConverter's accumulation type float16)
        "enable_accumulation_type_float16": job.request.precision == "fp16",
    }


def _run_onnx2tf(onnx_path: Path, work: Path, options: dict[str, Any], fused_rsqrt: bool) -> None:
    """onnx2tf in ``work`` (its SavedModel and float files in ``work/tf``), its output
    captured; its bare Exceptions and SystemExit as one ConversionError line."""
    import onnx2tf

    write_onnx2tf_sample(work)
    log = io.StringIO()
    try:
        with (
            contextlib.redirect_stdout(log),
            contextlib.chdir(work),
            _fused_rsqrt() if fused_rsqrt else contextlib.nullcontext(),
        ):
            onnx2tf.convert(
                input_onnx_file_path=str(onnx_path), output_folder_path=str(work / "tf"), **options
            )
    except Exception as err:  # onnx2tf raises bare Exceptions and SystemExit
        raise ConversionError(f"onnx2tf failed: {str(err).splitlines()[0]}") from err
    except SystemExit as err:
        tail = log.getvalue().strip().splitlines()[-1:] or ["no output"]
        raise ConversionError(f"onnx2tf exited ({err.code}): {tail[0]}") from err


def _written_flatbuffer(
    job: ConversionJob, work: Path, samples: list[tuple[torch.Tensor, ...]]
) -> tuple[Path, dict[str, Any] | None]:
    """The flatbuffer of the job's precision (quantized here from onnx2tf's SavedModel, or
    onnx2tf's own float file) and the quantization options used, if any."""
    stem, precision = job.request.stem, job.request.precision
    if precision == "int16x8":
        produced = work / f"{stem}_int16x8.tflite"
        produced.write_bytes(_quantize_integer_only(work / "tf", samples, job))
        return produced, INTEGER_ONLY
    if precision == "int8":
        produced = work / f"{stem}_int8.tflite"
        produced.write_bytes(_quantize(work / "tf", samples, job))
        return produced, QUANTIZATION
    produced = work / "tf" / f"{stem}{ONNX2TF_SUFFIX[precision]}.tflite"
    if not produced.is_file():
        raise ConversionError(f"onnx2tf wrote no {produced.name}")
    return produced, None


def _check_flatbuffer(produced: Path, precision: str) -> tuple[dict[str, int], str | None]:
    """Refuse Flex ops, an fp16 file without FP16 arithmetic allowed, and float ops in an
    integer-only file; the file's op counts and declared reduced precision."""
    ops = op_counts(produced)
    flex = [name for name in ops if name.startswith("Flex")]
    if flex:
        raise ConversionError(f"tflite: Flex ops in the flatbuffer: {', '.join(flex)}")
    declared = reduced_precision(produced)
    if precision == "fp16" and declared != FP16_ARITHMETIC:
        raise ConversionError(
            f"tflite fp16: {REDUCED_PRECISION_KEY} is {declared!r}, not {FP16_ARITHMETIC!r}"
        )
    if precision == "int16x8":
        summary = summarize(produced)
        if summary.float_compute_ops:
            raise ConversionError(f"tflite int16x8: ops left in float: {summary.float_op_types}")
    return ops, declared


class TFLiteTarget(Target):
    name = "tflite"
    modules = ("onnx2tf", "tensorflow", "tf_keras", "ai_edge_litert", "onnx", "onnxslim")
    distributions = ("onnx2tf", "tensorflow-cpu", "tf-keras", "ai-edge-litert", "onnx", "onnxslim")

    def convert(self, job: ConversionJob) -> dict[str, Any]:
        job = _export_job(job)
        precision = job.request.precision
        with tempfile.TemporaryDirectory(prefix="onnx2tf.") as work:
            work = Path(work)
            onnx_path = work / f"{job.request.stem}.onnx"
            export_onnx(job, onnx_path)
            samples = list(job.calibration()) if precision in ("int8", "int16x8") else []
            if precision == "int16x8":
                samples += job.calibration(LOW_CONTRAST)
            options = _onnx2tf_options(job, work)
            _run_onnx2tf(onnx_path, work, options, fused_rsqrt=precision == "int16x8")
            produced, quantization = _written_flatbuffer(job, work, samples)
            ops, declared = _check_flatbuffer(produced, precision)
            shutil.copyfile(produced, job.artifact)
        options.pop("custom_input_op_name_np_data_path")
        if quantization is not None:
            options["quantization"] = quantization
        if _state_channels_last(job):
            options["export_transforms"] = [STREAM_TRANSFORM]
        options["calibration_samples"] = len(samples)
        options["ops"] = ops
        options[REDUCED_PRECISION_KEY] = declared
        return options

    def accumulation(self, job: ConversionJob, options: dict) -> str:
        """fp16 where the file declares FP16 arithmetic allowed (its reduced-precision metadata)."""
        return "fp16" if options.get(REDUCED_PRECISION_KEY) == FP16_ARITHMETIC else "fp32"

    def file_layout(self, canonical: str, job: ConversionJob) -> tuple[int, ...] | None:
        stateful = canonical in ("state", "new_state") and _state_channels_last(job)
        return STATE_CHANNELS_LAST if stateful else None

    def graph_summary(self, job: ConversionJob, options: dict) -> GraphSummary | None:
        """Counted from the written flatbuffer: what a delegate would be handed."""
        return summarize(job.artifact)

    def canonical_names(
        self, inputs: list[RawTensor], outputs: list[RawTensor], job: ConversionJob, options: dict
    ) -> tuple[list[str], list[str]]:
        """onnx2tf's names: inputs keep their ONNX names (int8: ``serving_default_<name>:0``);
        the k-th ONNX output is ``Identity_k`` (``Identity`` for k = 0), or, int8,
        ``StatefulPartitionedCall:k``."""
        wanted_in, wanted_out = job.request.input_names, job.request.output_names
        names_in = []
        for tensor in inputs:
            match = re.fullmatch(r"(?:serving_default_)?(\w+?)(?::0)?", tensor.name)
            if not match or match.group(1) not in wanted_in:
                raise ConversionError(f"tflite: input {tensor.name!r} is none of {wanted_in}")
            names_in.append(match.group(1))
        names_out = []
        for tensor in outputs:
            match = re.fullmatch(r"Identity(?:_(\d+))?|StatefulPartitionedCall:(\d+)", tensor.name)
            k = int(next((g for g in match.groups() if g), 0)) if match else len(wanted_out)
            if k >= len(wanted_out):
                raise ConversionError(f"tflite: cannot tell which output {tensor.name!r} is")
            names_out.append(wanted_out[k])
        return names_in, names_out


if __name__ == "__main__":
    target_command(TFLiteTarget())()
