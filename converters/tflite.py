"""TFLite / LiteRT (Android) through ONNX and onnx2tf: fp32, fp16, int8 with float I/O.

    python -m converters.tflite --variant S --precision int8 [--calibration DIR]

onnx2tf writes the float model and a SavedModel; int8 is quantized from that SavedModel
by TensorFlow's converter on our calibration frames, with the op types in ``FLOAT_OPS``
(GroupNorm's statistics, and MUL) kept in float. onnx2tf runs offline: every input gets
sample data from the project (it would otherwise download a sample image). The flatbuffer
is checked for Flex (select-TF) ops, which phones without the Flex delegate cannot run;
any Flex op fails the conversion.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from model.data.synth import render_video
from runtimes.backend import RawTensor

from .base import ConversionJob, Target
from .calibration import CALIBRATION_SEED
from .onnx import export_onnx
from .spec import ConversionError

SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
ONNX2TF_SUFFIX = {"fp32": "_float32", "fp16": "_float16"}  # int8: see _quantize


def _channels_last(array: np.ndarray) -> np.ndarray:
    return np.moveaxis(array, 1, -1) if array.ndim >= 4 else array


def _in_layout(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """As is if it already has ``shape`` (onnx2tf keeps the state's layout), else channels-last."""
    return array if array.shape == shape else _channels_last(array)


def _sample_files(job: ConversionJob, folder: Path) -> list[list[Any]]:
    """onnx2tf's per-input sample data (the example inputs): channels-last float32, as is."""
    entries = []
    for name, tensor in zip(job.request.input_names, job.example_inputs, strict=True):
        path = folder / f"{name}.npy"
        np.save(path, _channels_last(tensor.numpy()).astype(np.float32))
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


# Op types kept in float. GroupNorm's statistics: its per-frame variance spans orders of
# magnitude, so an int8 variance rounds to zero and LiteRT's int8 DIV refuses it. MUL (the
# norm's squares and scales, and the attention gates): on BaS-S, int8 MUL put Dice vs
# ground truth 1.45 points below PyTorch (gate: 1); float MUL, 0.65.
FLOAT_OPS = ("MEAN", "SUB", "SQRT", "DIV", "MUL")
QUANTIZATION = {
    "scheme": "int8 full-integer, float input/output (TFLite converter, per-channel weights)",
    "float_ops": list(FLOAT_OPS),
}


def _quantize(saved_model: Path, samples: list[tuple[Any, ...]], job: ConversionJob) -> bytes:
    """int8 from onnx2tf's float SavedModel, the op types in FLOAT_OPS kept float."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    shapes = {n: tuple(s.shape) for n, s in signature.structured_input_signature[1].items()}
    names = job.request.input_names

    def dataset():
        for sample in samples:
            yield {
                n: _in_layout(t.numpy(), shapes[n]).astype(np.float32)
                for n, t in zip(names, sample, strict=True)
            }

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
        tf.lite.OpsSet.TFLITE_BUILTINS,
    ]
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter,
        debug_dataset=dataset,
        debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(FLOAT_OPS)),
    )
    return debugger.get_nondebug_quantized_model()


def op_counts(model_path: Path) -> dict[str, int]:
    from ai_edge_litert.interpreter import Interpreter

    counts: dict[str, int] = {}
    for d in Interpreter(model_path=str(model_path))._get_ops_details():
        counts[d["op_name"]] = counts.get(d["op_name"], 0) + 1
    return dict(sorted(counts.items()))


class TFLiteTarget(Target):
    name = "tflite"
    suffix = ".tflite"
    precisions = ("fp32", "fp16", "int8")
    modules = ("onnx2tf", "tensorflow", "tf_keras", "ai_edge_litert", "onnx", "onnxslim")
    distributions = ("onnx2tf", "tensorflow-cpu", "tf-keras", "ai-edge-litert", "onnx", "onnxslim")
    runtime = "litert"

    def convert(self, job: ConversionJob) -> dict[str, Any]:
        import onnx2tf

        with tempfile.TemporaryDirectory(prefix="onnx2tf.") as work:
            work = Path(work)
            onnx_path = work / f"{job.request.stem}.onnx"
            export_onnx(job, onnx_path)
            int8 = job.request.precision == "int8"
            samples = list(job.calibration()) if int8 else []
            options = {
                "output_signaturedefs": True,
                "copy_onnx_input_output_names_to_tflite": True,
                "replace_to_pseudo_operators": ["erf"],
                "custom_input_op_name_np_data_path": _sample_files(job, work),
                "keep_shape_absolutely_input_names": ["state"]
                if job.request.form == "stream"
                else None,
                "non_verbose": True,
            }
            write_onnx2tf_sample(work)
            log = io.StringIO()
            try:
                with contextlib.redirect_stdout(log), contextlib.chdir(work):
                    onnx2tf.convert(
                        input_onnx_file_path=str(onnx_path),
                        output_folder_path=str(work / "tf"),
                        **options,
                    )
            except Exception as err:  # onnx2tf raises bare Exceptions and SystemExit
                raise ConversionError(f"onnx2tf failed: {str(err).splitlines()[0]}") from err
            except SystemExit as err:
                tail = log.getvalue().strip().splitlines()[-1:] or ["no output"]
                raise ConversionError(f"onnx2tf exited ({err.code}): {tail[0]}") from err
            if int8:
                produced = work / f"{job.request.stem}_int8.tflite"
                produced.write_bytes(_quantize(work / "tf", samples, job))
                options["quantization"] = QUANTIZATION
            else:
                suffix = ONNX2TF_SUFFIX[job.request.precision]
                produced = work / "tf" / f"{job.request.stem}{suffix}.tflite"
                if not produced.is_file():
                    raise ConversionError(f"onnx2tf wrote no {produced.name}")
            ops = op_counts(produced)
            flex = [name for name in ops if name.startswith("Flex")]
            if flex:
                raise ConversionError(f"tflite: Flex ops in the flatbuffer: {', '.join(flex)}")
            shutil.copyfile(produced, job.artifact)
        options.pop("custom_input_op_name_np_data_path")
        options["calibration_samples"] = len(samples)
        options["ops"] = ops
        return options

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
    from .cli import target_command

    target_command(TFLiteTarget())()
