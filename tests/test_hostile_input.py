"""Every command survives hostile input: one ``error:`` line, the right exit code, no traceback,
nothing left behind and nothing the user had touched (issue 9).

One table, one test: each case sets up files under ``tmp_path``, runs a command through
click's runner (in ``tmp_path``, so default output folders land there too) and checks
that the only error line names the problem, that the tree under ``tmp_path`` is exactly
what the case set up (no new file, no hidden ``.name.*`` staging folder, every file
unchanged) and that no traceback was printed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from PIL import Image
from pydicom import examples as pydicom_examples
from pydicom.data import get_testdata_file
from pydicom.uid import MPEG4HP41

from converters import all as convert_all
from converters import parity
from converters.build import check_replaceable
from converters.command import target_command
from converters.registry import get_target
from converters.spec import ConversionError
from device_bench import cli as device_bench_cli
from model import demo, info, train
from model.atomic import OUTPUT_MARKER
from model.data import synth
from runtimes import evaluate, fastest
from runtimes.manifest import SCHEMA, artifact_bytes, artifact_sha256
from runtimes.targets import Status
from segmentation import cli as segment

COMMANDS: dict[str, click.Command] = {
    "info": info.main,
    "synth": synth.main,
    "train": train.main,
    "evaluate": evaluate.main,  # runtimes.evaluate: model.evaluate's options and --artifact
    "demo": demo.main,
    "onnx": target_command(get_target("onnx")),
    "tflite": target_command(get_target("tflite")),
    "coreml": target_command(get_target("coreml")),
    "executorch": target_command(get_target("executorch")),
    "parity": parity.main,
    "all": convert_all.main,
    "segment": segment.main,
    "fastest": fastest.main,
    "bench": device_bench_cli.main,
}

SR_FILE = get_testdata_file("test-SR.dcm")  # a structured report: no pixels
ONNX_NAME = "bas_s_frame_240_fp32.onnx"  # what `converters.onnx` writes by default
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
READ_ONLY = pytest.mark.skipif(ROOT, reason="root ignores file permissions")
SLOW = pytest.mark.slow


class Setup:
    """What a case builds under ``tmp_path`` before the command runs."""

    def __init__(self, root: Path, built: Callable[..., Path]) -> None:
        self.root = root
        self._built = built
        self.locked: list[Path] = []

    def path(self, name: str) -> str:
        return str(self.root / name)

    def text(self, name: str = "notes.txt", body: str = "not what was asked for\n") -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
        return str(path)

    def data(self, name: str, payload: bytes) -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
        return str(path)

    def folder(self, name: str = "empty") -> str:
        (self.root / name).mkdir(parents=True, exist_ok=True)
        return str(self.root / name)

    def png(self, name: str = "frame.png", size: int = 48) -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((size, size, 3), 90, np.uint8)).save(path, format="PNG")
        return str(path)

    def frames(self, name: str = "frames") -> str:
        """A folder of three frame images: a valid --input for runtimes.segment."""
        for t in range(3):
            self.png(f"{name}/{t}.png")
        return str(self.root / name)

    # Frames whose pixel values have no clear meaning (issue 20).
    def tiffs(self, array: np.ndarray, name: str = "frames") -> str:
        """A folder of three TIFF frames holding ``array`` (float or 32-bit integer)."""
        (self.root / name).mkdir(parents=True, exist_ok=True)
        for t in range(3):
            Image.fromarray(array).save(self.root / name / f"{t}.tif")
        return str(self.root / name)

    def dataset(self, name: str = "data") -> str:
        """Two tiny synthetic videos in the BUV layout (seed 5)."""
        return str(synth.write_dataset(self.root / name, videos=2, frames=2, seed=5))

    def split(self, name: str = "split.json", splits: object = None) -> str:
        record = {"seed": 0, "fractions": {}, "splits": splits or {"train": ["a"], "val": ["b"]}}
        return self.text(name, json.dumps(record))

    def precious(self, name: str = "u") -> str:
        """A folder the project did not write, holding the user's file."""
        return self.text(f"{name}/precious.txt", "keep\n").rsplit("/", 1)[0]

    def read_only(self, name: str = "ro") -> str:
        folder = self.root / name
        folder.mkdir()
        folder.chmod(0o555)
        self.locked.append(folder)
        return str(folder)

    def manifest(self, record: object, name: str = "a.onnx", raw: str | None = None) -> str:
        """A file ``name`` with a manifest beside it holding ``record`` (or ``raw`` text)."""
        artifact = self.text(name, "bytes\n")
        self.text(f"{name}.json", raw if raw is not None else json.dumps(record))
        return artifact

    def onnx(self, name: str = "copy") -> Path:
        """A copy of the session's BaS-S fp32 frame ONNX artifact and its manifest."""
        built = self._built("onnx", "S", "fp32", "frame")
        folder = self.root / name
        folder.mkdir()
        shutil.copy(built, folder / built.name)
        shutil.copy(built.parent / f"{built.name}.json", folder / f"{built.name}.json")
        return folder / built.name

    def unscored(self) -> str:
        """The ONNX copy with its manifest's parity record taken out: the parity tests record
        one into the session's artifact, whichever runs first."""
        path = self.onnx("unscored")
        manifest_file = path.parent / f"{path.name}.json"
        record = json.loads(manifest_file.read_text())
        record.pop("parity", None)
        manifest_file.write_text(json.dumps(record))
        return str(path)

    def truncated(self, matching_manifest: bool = False) -> str:
        """The ONNX copy cut to half; with ``matching_manifest``, its manifest says so too."""
        path = self.onnx()
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        if matching_manifest:
            manifest_file = path.parent / f"{path.name}.json"
            record = json.loads(manifest_file.read_text())
            record["artifact"] |= {"sha256": artifact_sha256(path), "bytes": artifact_bytes(path)}
            manifest_file.write_text(json.dumps(record))
        return str(path)

    def tampered(self) -> str:
        """The ONNX copy with some bytes changed in the middle (same size)."""
        path = self.onnx()
        data = bytearray(path.read_bytes())
        middle = len(data) // 2
        data[middle : middle + 64] = bytes(64)
        path.write_bytes(bytes(data))
        return str(path)

    def renamed(self) -> str:
        """The ONNX copy and its manifest renamed together: the manifest names another file."""
        path = self.onnx()
        other = path.with_name("bas_other.onnx")
        path.rename(other)
        (path.parent / f"{path.name}.json").rename(other.parent / f"{other.name}.json")
        return str(other)

    # Values outside our assumptions (issue 20): poisoned weights and artifacts, damaged manifests.
    def poisoned(self, key: str = "position", value: float = float("nan")) -> str:
        """The shipped BaS-S weights with the first value of ``key`` set to ``value``."""
        from safetensors.torch import save_file

        from model.checkpoint import read_state_dict
        from model.hub import shipped_weights

        state = {k: v.clone() for k, v in read_state_dict(shipped_weights("S")).items()}
        state[key].view(-1)[0] = value
        save_file(state, self.root / "w.safetensors", metadata={"variant": "S"})
        return str(self.root / "w.safetensors")

    def bad_manifest(self, path: str, value: object, name: str = "a.onnx") -> str:
        """A BaS-S frame manifest (PyTorch's, parity passed) with the field at dotted ``path``
        set to ``value`` (NaN written as JSON's NaN token), beside a stand-in file ``name``."""
        from model.hub import build_bas
        from runtimes.backends.pytorch import pytorch_manifest

        manifest = pytorch_manifest(model=build_bas("S"), form="frame")
        record = json.loads(manifest.to_json()) | {"parity": {"passed": True}}
        record["inputs"][0] |= {"dtype": "int8", "quantization": {"scale": 0.5, "zero_point": 0}}
        *parents, last = path.split(".")
        where = record
        for part in parents:
            where = where[int(part)] if part.isdigit() else where[part]
        where[int(last) if last.isdigit() else last] = value
        return self.manifest(record, name)

    def nan_onnx(self) -> str:
        """The ONNX copy with NaN in its weights (baked in), its manifest matching the file."""
        import onnx
        from onnx import numpy_helper

        path = self.onnx()
        model = onnx.load(str(path))
        for tensor in model.graph.initializer:
            array = numpy_helper.to_array(tensor)
            if array.dtype == np.float32 and array.ndim >= 2:
                tensor.CopyFrom(numpy_helper.from_array(np.full_like(array, np.nan), tensor.name))
        onnx.save(model, str(path))
        manifest_file = path.parent / f"{path.name}.json"
        record = json.loads(manifest_file.read_text())
        record["artifact"] |= {"sha256": artifact_sha256(path), "bytes": artifact_bytes(path)}
        manifest_file.write_text(json.dumps(record))
        return str(path)

    def textured(self, name: str = "frames") -> str:
        """Three frames of noise: segmented, not skipped as constant like ``frames``'s."""
        folder = self.root / name
        folder.mkdir()
        for t in range(3):
            pixels = np.random.default_rng(t).integers(0, 256, (48, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{t}.png", format="PNG")
        return str(folder)

    # DICOM (issue 20): pydicom's own examples, from the installed package, and copies.
    def dicom(self, name: str, example: str, **changes: object) -> str:
        """pydicom's example ``example`` saved as ``name``, with ``changes`` to its header."""
        ds = pydicom.dcmread(getattr(pydicom_examples, example).filename)
        for keyword, value in changes.items():
            setattr(ds.file_meta if keyword == "TransferSyntaxUID" else ds, keyword, value)
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        return str(path)

    def study(self, *examples: str) -> str:
        """A study folder holding pydicom's ``examples`` as 1.dcm, 2.dcm, ..."""
        for number, example in enumerate(examples, start=1):
            self.dicom(f"study/{number}.dcm", example)
        return str(self.root / "study")

    def cut_dicom(self, name: str = "cut.dcm") -> str:
        """The example cine loop cut at half its bytes."""
        data = Path(pydicom_examples.ybr_color.filename).read_bytes()
        return self.data(name, data[: len(data) // 2])


Args = Callable[[Setup], list[str]]


def case(
    case_id: str, command: str, args: Args, pattern: str, code: int = 2, marks: tuple = ()
) -> object:
    return pytest.param(command, args, code, pattern, id=f"{command}: {case_id}", marks=marks)


CHOICES = [
    case("variant M", "info", lambda s: ["--variant", "M"], r"'--variant': 'M' is not one of S, L"),
    case(
        "variant XL",
        "demo",
        lambda s: ["--variant", "XL", "--out", s.path("o")],
        r"'XL' is not one of S, L",
    ),
    case(
        "variant s2",
        "evaluate",
        lambda s: ["--variant", "s2", "--data", s.folder()],
        r"'s2' is not one of S, L \(did you mean 'S'\?\)",
    ),
    case(
        "screen leterbox",
        "evaluate",
        lambda s: ["--data", s.folder(), "--screen", "leterbox"],
        r"'--screen'.*did you mean 'letterbox'",
    ),
    case(
        "precision fp16",
        "onnx",
        lambda s: ["--precision", "fp16", "--out", s.path("o")],
        r"'--precision': 'fp16' is not one of fp32",
    ),
    case(
        "precision int4",
        "tflite",
        lambda s: ["--precision", "int4", "--out", s.path("o")],
        r"'int4' is not one of fp32, fp16, int8",
    ),
    case(
        "form clip",
        "coreml",
        lambda s: ["--form", "clip", "--out", s.path("o")],
        r"'--form': 'clip' is not one of frame, stream",
    ),
    case(
        "precision int16x8",
        "executorch",
        lambda s: ["--precision", "int16x8", "--out", s.path("o")],
        r"'int16x8' is not one of fp32, fp16, int8",
    ),
    case(
        "variant M",
        "executorch",
        lambda s: ["--variant", "M", "--out", s.path("o")],
        r"'M' is not one of S, L",
    ),
    case(
        "variants M",
        "all",
        lambda s: ["--variants", "S,M", "--out", s.path("o")],
        r"'--variants': 'M' is not one of S, L",
    ),
    case(
        "forms clip",
        "all",
        lambda s: ["--forms", "clip", "--out", s.path("o")],
        r"'--forms': 'clip' is not one of frame, stream",
    ),
    case(
        "targets tensorrt",
        "all",
        lambda s: ["--targets", "tensorrt", "--out", s.path("o")],
        r"'--targets': 'tensorrt' is not one of onnx",
    ),
    case(
        "precisions int4",
        "all",
        lambda s: ["--precisions", "int4", "--out", s.path("o")],
        r"'--precisions': 'int4' is not one of fp32, fp16, int8",
    ),
    case(
        "runtime onnx",
        "parity",
        lambda s: ["--runtime", "onnx", "--artifact", s.text("a.onnx")],
        r"'--runtime': 'onnx' is not one of .*did you mean 'onnxruntime'",
    ),
    case(
        "runtime tflite",
        "segment",
        lambda s: ["--runtime", "tflite", "--input", s.frames(), "--out", s.path("o")],
        r"'--runtime': 'tflite' is not one of pytorch",
    ),
    case(
        "variant M",
        "segment",
        lambda s: ["--variant", "M", "--input", s.frames(), "--out", s.path("o")],
        r"'--variant': 'M' is not one of S, L",
    ),
    case(
        "form clip",
        "fastest",
        lambda s: [s.folder(), "--form", "clip"],
        r"'--form': 'clip' is not one of frame, stream",
    ),
    case("variant M", "fastest", lambda s: [s.folder(), "--variant", "M"], r"'M' is not one of S"),
    case(
        "variant M",
        "train",
        lambda s: ["--set", "variant=M"],
        r"unknown BaS variant 'M'; choose one of S, L",
    ),
    case(
        "mixed precision fp8",
        "train",
        lambda s: ["--set", "mixed_precision=fp8"],
        r"mixed_precision must be no, bf16 or fp16, got 'fp8'",
    ),
]

RANGES = [
    case("image size 0", "info", lambda s: ["--image-size", "0"], r"'--image-size': 0 is not in"),
    case(
        "image size 17",
        "info",
        lambda s: ["--image-size", "17"],
        r"image_size must be a positive multiple of 16, got 17",
    ),
    case("image size -16", "info", lambda s: ["--image-size", "-16"], r"-16 is not in the range"),
    case(
        "temporal window 0",
        "info",
        lambda s: ["--temporal-window", "0"],
        r"'--temporal-window': 0 is not in the range x>=1",
    ),
    case(
        "frames 0",
        "synth",
        lambda s: ["--frames", "0", "--out", s.path("o")],
        r"'--frames': 0 is not in the range x>=1",
    ),
    case(
        "videos 0",
        "synth",
        lambda s: ["--videos", "0", "--out", s.path("o")],
        r"'--videos': 0 is not in the range x>=1",
    ),
    case(
        "seed -1",
        "synth",
        lambda s: ["--seed", "-1", "--out", s.path("o")],
        r"'--seed': -1 is not in the range x>=0",
    ),
    case(
        "workers 0",
        "synth",
        lambda s: ["--workers", "0", "--out", s.path("o")],
        r"'--workers': 0 is not in the range",
    ),
    case(
        "first index -1",
        "synth",
        lambda s: ["--first-index", "-1", "--out", s.path("o")],
        r"'--first-index': -1 is not in the range",
    ),
    case(
        "frames -5",
        "demo",
        lambda s: ["--frames", "-5", "--out", s.path("o")],
        r"'--frames': -5 is not in the range x>=1",
    ),
    case(
        "seed -1",
        "demo",
        lambda s: ["--seed", "-1", "--out", s.path("o")],
        r"'--seed': -1 is not in the range x>=0",
    ),
    case(
        "image size 17",
        "onnx",
        lambda s: ["--image-size", "17", "--out", s.path("o")],
        r"image size must be a positive multiple of 16, got 17",
    ),
    case(
        "image size 0",
        "tflite",
        lambda s: ["--image-size", "0", "--out", s.path("o")],
        r"'--image-size': 0 is not in the range x>=16",
    ),
    case(
        "frames 0",
        "parity",
        lambda s: ["--frames", "0", "--artifact", s.text("a.onnx")],
        r"'--frames': 0 is not in the range x>=1",
    ),
    case(
        "frames 0",
        "all",
        lambda s: ["--frames", "0", "--targets", "onnx", "--out", s.path("o")],
        r"'--frames': 0 is not in the range x>=1",
    ),
    *(
        case(
            f"threshold {value}",
            "segment",
            lambda s, value=value: [
                *("--threshold", value, "--input", s.frames(), "--out", s.path("o"))
            ],
            rf"'--threshold': {re.escape(str(float(value)))} is not in the range 0<x<1",
        )
        for value in ("0", "1", "1.5")
    ),
    *(
        case(
            f"{flag} 0",
            "segment",
            lambda s, flag=flag: [flag, "0", "--input", s.frames(), "--out", s.path("o")],
            rf"'{flag}': 0(\.0)? is not in the range",
        )
        for flag in ("--every", "--threads", "--max-frames", "--fps")
    ),
    case(
        "frames 0",
        "fastest",
        lambda s: [s.folder(), "--frames", "0"],
        r"'--frames': 0 is not in the range x>=1",
    ),
    case(
        "threads 0",
        "fastest",
        lambda s: [s.folder(), "--threads", "0"],
        r"'--threads': 0 is not in the range x>=1",
    ),
    case(
        "image size 17",
        "evaluate",
        lambda s: ["--data", s.dataset(), "--image-size", "17"],
        r"image_size must be a positive multiple of 16, got 17",
    ),
    case(
        "lost contact 0",
        "evaluate",
        lambda s: ["--data", s.dataset(), "--lost-contact", "0"],
        r"'--lost-contact': 0 is not in the range x>=1",
    ),
    case("epochs 0", "train", lambda s: ["--set", "epochs=0"], r"epochs must be >= 1, got 0"),
    case("lr -1", "train", lambda s: ["--set", "lr=-1"], r"need lr > 0.*got lr -1"),
]

MISSING = [
    case(
        "weights",
        "onnx",
        lambda s: ["--weights", s.path("missing.safetensors"), "--out", s.path("o")],
        r"weights file not found: .*missing\.safetensors",
    ),
    case(
        "weights",
        "demo",
        lambda s: ["--weights", s.path("missing.safetensors"), "--frames", "2", "--out", "o"],
        r"not found.*missing\.safetensors|missing\.safetensors.*not found",
    ),
    case(
        "data",
        "evaluate",
        lambda s: ["--data", s.path("none")],
        r"'--data': Directory '.*none' does not exist",
    ),
    case(
        "split",
        "evaluate",
        lambda s: ["--data", s.dataset(), "--split", s.path("none.json")],
        r"'--split': File '.*none\.json' does not exist",
    ),
    case(
        "weights",
        "evaluate",
        lambda s: ["--data", s.dataset(), "--weights", s.path("missing.safetensors")],
        r"missing\.safetensors",
    ),
    case(
        "artifact",
        "parity",
        lambda s: ["--artifact", s.path("a.onnx")],
        r"'--artifact': Path '.*a\.onnx' does not exist",
    ),
    case(
        "artifact",
        "segment",
        lambda s: ["--artifact", s.path("a.onnx"), "--input", s.frames(), "--out", s.path("o")],
        r"'--artifact': Path '.*a\.onnx' does not exist",
    ),
    case(
        "input",
        "segment",
        lambda s: ["--input", s.path("clip.mp4"), "--out", s.path("o")],
        r"clip\.mp4: does not exist",
    ),
    case(
        "weights",
        "segment",
        lambda s: [
            *("--weights", s.path("missing.safetensors")),
            *("--input", s.frames(), "--out", s.path("o")),
        ],
        r"missing\.safetensors",
    ),
    case(
        "config",
        "train",
        lambda s: ["--config", s.path("none.yml")],
        r"'--config': File '.*none\.yml' does not exist",
    ),
    case(
        "calibration",
        "tflite",
        lambda s: [
            *("--precision", "int8", "--calibration", s.path("none")),
            *("--out", s.path("o")),
        ],
        r"'--calibration': Path '.*none' does not exist",
    ),
    case(
        "folder",
        "fastest",
        lambda s: [s.path("none")],
        r"Directory '.*none' does not exist",
    ),
    case(
        "data folder",
        "train",
        lambda s: ["--set", f"data={s.path('none')}"],
        r"none: dataset folder does not exist",
    ),
    case(
        "init weights",
        "train",
        lambda s: ["--set", f"init_weights={s.path('none.safetensors')}"],
        r"init_weights file not found: .*none\.safetensors",
    ),
]

WRONG_KIND = [
    # Pixel values outside our assumptions (issue 20): image and video modes.
    case(
        "float TIFF frames 0..4000",
        "segment",
        lambda s: [
            "--input",
            s.tiffs(np.linspace(0, 4000, 48 * 48, dtype=np.float32).reshape(48, 48)),
            "--out",
            s.path("o"),
        ],
        r"0\.tif: float pixel values 0\.\.4000 lie outside 0\.\.1",
    ),
    case(
        "NaN in float TIFF frames",
        "segment",
        lambda s: ["--input", s.tiffs(np.full((48, 48), np.nan, np.float32)), "--out", s.path("o")],
        r"0\.tif: 2304 float pixel values are NaN or infinite",
    ),
    case(
        "32-bit integer TIFF frames",
        "segment",
        lambda s: [
            "--input",
            s.tiffs(np.arange(48 * 48, dtype=np.int32).reshape(48, 48) * 3),
            "--out",
            s.path("o"),
        ],
        r"0\.tif: 32-bit integer pixels \(values 0\.\.6909\) have no brightness range",
    ),
    case(
        "text as weights",
        "onnx",
        lambda s: ["--weights", s.text("w.safetensors"), "--out", s.path("o")],
        r"w\.safetensors",
    ),
    case(
        "directory as weights",
        "onnx",
        lambda s: ["--weights", s.folder("w.safetensors"), "--out", s.path("o")],
        r"weights file is not a file: .*w\.safetensors",
    ),
    case(
        "text as weights",
        "demo",
        lambda s: ["--weights", s.text("w.safetensors"), "--frames", "2", "--out", "o"],
        r"w\.safetensors",
    ),
    case(
        "directory as weights",
        "evaluate",
        lambda s: ["--data", s.dataset(), "--weights", s.folder("w.safetensors")],
        r"w\.safetensors",
    ),
    case(
        "text as video",
        "segment",
        lambda s: ["--input", s.text("clip.mp4"), "--out", s.path("o")],
        r"clip\.mp4: not a video FFmpeg can read",
    ),
    case(
        "PNG as video",
        "segment",
        lambda s: ["--input", s.png("clip.png"), "--out", s.path("o")],
        r"clip\.png: a single image",
    ),
    case(
        "PNG named .mp4",
        "segment",
        lambda s: ["--input", s.png("clip.mp4"), "--out", s.path("o")],
        r"clip\.mp4: a still image",
    ),
    case(
        "empty video",
        "segment",
        lambda s: ["--input", s.data("clip.mp4", b""), "--out", s.path("o")],
        r"clip\.mp4: empty file",
    ),
    case(
        "text as input",
        "segment",
        lambda s: ["--input", s.text(), "--out", s.path("o")],
        r"notes\.txt: unsupported file type '\.txt'",
    ),
    case(
        "empty folder as input",
        "segment",
        lambda s: ["--input", s.folder(), "--out", s.path("o")],
        r"empty: no frame images",
    ),
    case(
        "manifest a JSON array",
        "parity",
        lambda s: ["--artifact", s.manifest([1, 2])],
        r"a\.onnx\.json is not a manifest \(a JSON object was expected\)",
    ),
    case(
        "manifest of another schema",
        "parity",
        lambda s: ["--artifact", s.manifest({"schema": "bas-deploy-manifest/1"})],
        r"a\.onnx\.json has manifest schema 'bas-deploy-manifest/1'",
    ),
    case(
        "manifest without keys",
        "parity",
        lambda s: ["--artifact", s.manifest({"schema": SCHEMA})],
        rf"a\.onnx\.json does not match schema {re.escape(SCHEMA)}",
    ),
    case(
        "manifest not JSON",
        "parity",
        lambda s: ["--artifact", s.manifest(None, raw="{not json")],
        r"a\.onnx\.json is not valid JSON",
    ),
    case(
        "no manifest",
        "parity",
        lambda s: ["--artifact", s.text("a.onnx")],
        r"no manifest beside .*a\.onnx",
    ),
    case(
        "manifest a JSON array",
        "segment",
        lambda s: ["--artifact", s.manifest([]), "--input", s.frames(), "--out", s.path("o")],
        r"a\.onnx\.json is not a manifest",
    ),
    case(
        "manifest of another schema",
        "evaluate",
        lambda s: ["--data", s.dataset(), "--artifact", s.manifest({"format": "x"})],
        r"a\.onnx\.json has manifest schema 'x'",
    ),
    case(
        "split not JSON",
        "evaluate",
        lambda s: ["--data", s.dataset(), "--split", s.text("split.json", "{")],
        r"split\.json: not a readable split file",
    ),
    case(
        "split a JSON array",
        "evaluate",
        lambda s: ["--data", s.dataset(), "--split", s.text("split.json", "[1]")],
        r"split\.json: not a readable split file",
    ),
    case(
        "file as data",
        "evaluate",
        lambda s: ["--data", s.text()],
        r"'--data': Directory '.*notes\.txt' is a file",
    ),
    case(
        "empty folder as data",
        "evaluate",
        lambda s: ["--data", s.folder()],
        r"empty.*no recognised dataset layout",
    ),
    case(
        "file as folder",
        "fastest",
        lambda s: [s.text()],
        r"Directory '.*notes\.txt' is a file",
    ),
    case(
        "folder of broken manifests",
        "fastest",
        lambda s: [
            s.manifest([1], "x/a.onnx").rsplit("/", 1)[0],
            *("--form", "frame"),
        ],
        r"x: no BaS-S frame artifact that passed parity and can run here",
    ),
    case(
        "empty calibration folder",
        "tflite",
        lambda s: [
            *("--precision", "int8", "--calibration", s.folder("calib")),
            *("--out", s.path("o")),
        ],
        r"calibration folder .*calib.*no recognised dataset layout",
    ),
    case(
        "directory as config",
        "train",
        lambda s: ["--config", s.folder("c.yml")],
        r"'--config': File '.*c\.yml' is a directory",
    ),
    case(
        "truncated ONNX",
        "parity",
        lambda s: ["--artifact", s.truncated()],
        rf"{ONNX_NAME} has \d+ bytes, its manifest says \d+: truncated or replaced",
        marks=(SLOW,),
    ),
    case(
        "truncated ONNX",
        "segment",
        lambda s: ["--artifact", s.truncated(), "--input", s.frames(), "--out", s.path("o")],
        r"truncated or replaced",
        marks=(SLOW,),
    ),
    case(
        "truncated ONNX",
        "evaluate",
        lambda s: ["--data", s.dataset(), "--artifact", s.truncated()],
        r"truncated or replaced",
        marks=(SLOW,),
    ),
    case(
        "truncated ONNX, manifest rewritten to match",
        "parity",
        lambda s: ["--artifact", s.truncated(matching_manifest=True)],
        rf"{ONNX_NAME}",
        marks=(SLOW,),
    ),
    case(
        "truncated ONNX, manifest rewritten to match",
        "segment",
        lambda s: [
            *("--artifact", s.truncated(matching_manifest=True)),
            *("--input", s.frames(), "--out", s.path("o")),
        ],
        rf"{ONNX_NAME}",
        marks=(SLOW,),
    ),
    case(
        "ONNX modified, same size",
        "segment",
        lambda s: ["--artifact", s.tampered(), "--input", s.frames(), "--out", s.path("o")],
        r"does not match the sha256 in its manifest",
        marks=(SLOW,),
    ),
    case(
        "ONNX renamed with its manifest",
        "parity",
        lambda s: ["--artifact", s.renamed()],
        rf"bas_other\.onnx is not the file its manifest describes \({ONNX_NAME}\)",
        marks=(SLOW,),
    ),
    case(
        "runtime litert for an ONNX artifact",
        "parity",
        lambda s: ["--artifact", str(s.onnx()), "--runtime", "litert"],
        r"runtime litert does not run onnx artifacts; use onnxruntime",
        marks=(SLOW,),
    ),
    # Values outside our assumptions (issue 20): weights, manifests, outputs.
    case(
        "weights with a NaN",
        "onnx",
        lambda s: ["--weights", s.poisoned(), "--out", s.path("o")],
        r"w\.safetensors: tensor position has 1 of \d+ values NaN or infinite",
    ),
    case(
        "weights with an infinity",
        "onnx",
        lambda s: ["--weights", s.poisoned(value=float("inf")), "--out", s.path("o")],
        r"w\.safetensors: tensor position has 1 of \d+ values NaN or infinite",
    ),
    case(
        "weights with a negative BatchNorm variance",
        "onnx",
        lambda s: [
            *("--weights", s.poisoned("decoder1.0.lci.norm_in.running_var", -1.0)),
            *("--out", s.path("o")),
        ],
        r"w\.safetensors: tensor decoder1\.0\.lci\.norm_in\.running_var has 1 of \d+ "
        r"values negative",
    ),
    case(
        "weights with a NaN",
        "tflite",
        lambda s: ["--weights", s.poisoned(), "--precision", "int8", "--out", s.path("o")],
        r"w\.safetensors: tensor position has 1 of \d+ values NaN or infinite",
    ),
    case(
        "weights with a NaN",
        "executorch",
        lambda s: ["--weights", s.poisoned(), "--out", s.path("o")],
        r"w\.safetensors: tensor position has 1 of \d+ values NaN or infinite",
    ),
    case(
        "weights with a NaN",
        "evaluate",
        lambda s: ["--data", s.dataset(), "--weights", s.poisoned()],
        r"w\.safetensors: tensor position has 1 of \d+ values NaN or infinite",
    ),
    case(
        "weights with an infinity",
        "segment",
        lambda s: [
            *("--weights", s.poisoned(value=float("-inf")), "--input", s.frames()),
            *("--out", s.path("o")),
        ],
        r"w\.safetensors: tensor position has 1 of \d+ values NaN or infinite",
    ),
    case(
        "weights with a NaN",
        "demo",
        lambda s: ["--weights", s.poisoned(), "--frames", "2", "--out", "o"],
        r"w\.safetensors: tensor position has 1 of \d+ values NaN or infinite",
    ),
    case(
        "weights with a NaN",
        "bench",
        lambda s: ["run", "--target", "torch", "--weights", s.poisoned(), "--iters", "1"],
        r"w\.safetensors: tensor position has 1 of \d+ values NaN or infinite",
    ),
    case(
        "manifest scale NaN",
        "segment",
        lambda s: [
            *("--artifact", s.bad_manifest("inputs.0.quantization.scale", float("nan"))),
            *("--input", s.frames(), "--out", s.path("o")),
        ],
        r"a\.onnx\.json: inputs\[0\]\.quantization\.scale is nan, not a finite number",
    ),
    case(
        "manifest zero point out of range",
        "segment",
        lambda s: [
            *("--artifact", s.bad_manifest("inputs.0.quantization.zero_point", 300)),
            *("--input", s.frames(), "--out", s.path("o")),
        ],
        r"a\.onnx\.json: inputs\[0\]\.quantization\.zero_point is 300, outside int8's range",
    ),
    case(
        "manifest with a negative shape",
        "segment",
        lambda s: [
            *("--artifact", s.bad_manifest("outputs.0.shape", [1, 1, -240, 240])),
            *("--input", s.frames(), "--out", s.path("o")),
        ],
        r"a\.onnx\.json: outputs\[0\]\.shape is \(1, 1, -240, 240\)",
    ),
    case(
        "manifest with an Infinity token",
        "evaluate",
        lambda s: [
            *("--data", s.dataset()),
            *("--artifact", s.bad_manifest("preprocessing.range", [0.0, float("inf")])),
        ],
        r"a\.onnx\.json: preprocessing\.range\[1\] is inf, not a finite number",
    ),
    case(
        "manifest scale 0",
        "bench",
        lambda s: [
            *("run", "--target", "onnx"),
            *("--artifact", s.bad_manifest("inputs.0.quantization.scale", 0)),
        ],
        r"a\.onnx\.json: inputs\[0\]\.quantization\.scale is 0\.0, must be > 0",
    ),
    case(
        "manifest with parity passed 'yes'",
        "fastest",
        lambda s: [
            str(Path(s.bad_manifest("parity.passed", "yes", "x/a.onnx")).parent),
            *("--form", "frame"),
        ],
        r"x: no BaS-S frame artifact that passed parity and can run here",
    ),
    case(
        "ONNX with NaN weights baked in",
        "segment",
        lambda s: ["--artifact", s.nan_onnx(), "--input", s.textured(), "--out", s.path("o")],
        rf"{ONNX_NAME}: onnxruntime returned 57600 of 57600 values of its logits output "
        r"'logits' NaN or infinite .*, at frame 1 of the video",
        marks=(SLOW,),
    ),
    # DICOM (issue 20): what runtimes.segment refuses, naming the file.
    case(
        "DICOM CT image",
        "segment",
        lambda s: ["--input", s.dicom("ct.dcm", "ct"), "--out", s.path("o")],
        r"ct\.dcm: CT Image Storage \(modality CT\): not an ultrasound image",
    ),
    case(
        "DICOM structured report",
        "segment",
        lambda s: ["--input", SR_FILE, "--out", s.path("o")],
        r"test-SR\.dcm: Comprehensive SR Storage \(modality SR\): no Pixel Data",
    ),
    case(
        "DICOM MR image",
        "segment",
        lambda s: ["--input", s.dicom("mr.dcm", "mr"), "--out", s.path("o")],
        r"mr\.dcm: MR Image Storage \(modality MR\): not an ultrasound image",
    ),
    case(
        "DICOM study without ultrasound",
        "segment",
        lambda s: ["--input", s.study("mr", "ct"), "--out", s.path("o")],
        r"study: no ultrasound image among its 2 DICOM files",
    ),
    case(
        "DICOM H.264 video",
        "segment",
        lambda s: [
            *("--input", s.dicom("v.dcm", "ybr_color", TransferSyntaxUID=MPEG4HP41)),
            *("--out", s.path("o")),
        ],
        r"v\.dcm: MPEG-4 AVC/H\.264 .* video stream cannot be read \(it holds mjpeg, not h264\)",
    ),
    case(
        "DICOM Frame Time 0",
        "segment",
        lambda s: ["--input", s.dicom("t.dcm", "ybr_color", FrameTime=0), "--out", s.path("o")],
        r"t\.dcm: Frame Time \(0018,1063\) '0\.0' is not a positive time or rate",
    ),
    case(
        "DICOM truncated",
        "segment",
        lambda s: ["--input", s.cut_dicom(), "--out", s.path("o")],
        r"cut\.dcm: truncated DICOM file",
    ),
    case(
        "text named .dcm",
        "segment",
        lambda s: ["--input", s.text("x.dcm"), "--out", s.path("o")],
        r"x\.dcm: not a DICOM file, or a damaged one",
    ),
    case(
        "crop one DICOM frame with no region",
        "segment",
        lambda s: [
            *("--input", s.dicom("one.dcm", "rgb_color"), "--out", s.path("o")),
            "--crop-to-region",
        ],
        r"one\.dcm: --crop-to-region: no usable image region stated, and none detected "
        r"\(one frame",
    ),
]

OUTPUT = [
    case(
        "out is a file",
        "demo",
        lambda s: ["--frames", "2", "--out", s.text("o")],
        r"'--out': Directory '.*o' is a file",
    ),
    case(
        "out under a file",
        "demo",
        lambda s: ["--frames", "2", "--out", s.text("f") + "/sub"],
        r"output folder .*f/sub cannot be made: .*f is a file",
    ),
    case(
        "out not ours (precious.txt)",
        "demo",
        lambda s: ["--frames", "2", "--out", s.precious()],
        r"output folder .*u is not empty and is not an earlier output of this project",
    ),
    case(
        "out not ours",
        "synth",
        lambda s: ["--videos", "1", "--frames", "2", "--out", s.precious()],
        r"output folder .*u is not empty and is not an earlier output",
    ),
    case(
        "out under a file",
        "synth",
        lambda s: ["--videos", "1", "--frames", "2", "--out", s.text("f") + "/sub"],
        r"cannot be made: .*f is a file",
    ),
    case(
        "out not ours",
        "segment",
        lambda s: ["--input", s.frames(), "--out", s.precious()],
        r"output folder .*u is not empty and is not an earlier output",
    ),
    case(
        "out is a file",
        "segment",
        lambda s: ["--input", s.frames(), "--out", s.text("o")],
        r"'--out': Directory '.*o' is a file",
    ),
    case(
        "out is a file",
        "onnx",
        lambda s: ["--out", s.text("o")],
        r"'--out': Directory '.*o' is a file",
    ),
    case(
        "out under a file",
        "onnx",
        lambda s: ["--out", s.text("f") + "/sub"],
        r"output folder .*f/sub cannot be made: .*f is a file",
    ),
    case(
        "same-named file without a manifest",
        "onnx",
        lambda s: ["--out", s.text(f"o/{ONNX_NAME}").rsplit("/", 1)[0]],
        rf"{ONNX_NAME} exists and is not an artifact of this project \(a file without",
    ),
    case(
        "same-named folder without a manifest",
        "coreml",
        lambda s: ["--out", s.text("o/bas_s_frame_240_fp32.mlpackage/x").rsplit("/", 2)[0]],
        r"bas_s_frame_240_fp32\.mlpackage exists and is not an artifact of this project \(a fold",
    ),
    case(
        "out under a file",
        "all",
        lambda s: ["--targets", "onnx", "--out", s.text("f") + "/sub"],
        r"output folder .*f/sub cannot be made: .*f is a file",
    ),
    case(
        "same-named file without a manifest",
        "all",
        lambda s: [
            *("--targets", "onnx", "--variants", "S", "--forms", "frame"),
            *("--out", s.text(f"o/{ONNX_NAME}").rsplit("/", 1)[0]),
        ],
        rf"{ONNX_NAME} exists and is not an artifact of this project",
    ),
    case(
        "out not ours",
        "train",
        lambda s: ["--set", f"out={s.precious()}"],
        r"run folder .*u is not empty and is not an earlier output of this project "
        r"\(it holds no split\.json\)",
    ),
    case(
        "out is a file",
        "train",
        lambda s: ["--set", f"out={s.text('o')}"],
        r"run folder .*o cannot be made: .*o is a file",
    ),
    case(
        "out read-only",
        "demo",
        lambda s: ["--frames", "2", "--out", s.read_only() + "/sub"],
        r"cannot be written \(.*ro is read-only\)",
        marks=(READ_ONLY,),
    ),
    case(
        "out read-only",
        "synth",
        lambda s: ["--videos", "1", "--frames", "2", "--out", s.read_only()],
        r"cannot be written \(.*ro is read-only\)",
        marks=(READ_ONLY,),
    ),
    case(
        "out read-only",
        "onnx",
        lambda s: ["--out", s.read_only()],
        r"cannot be written \(.*ro is read-only\)",
        marks=(READ_ONLY,),
    ),
    case(
        "out read-only",
        "all",
        lambda s: ["--targets", "onnx", "--out", s.read_only() + "/sub"],
        r"cannot be written \(.*ro is read-only\)",
        marks=(READ_ONLY,),
    ),
    case(
        "out read-only",
        "segment",
        lambda s: ["--input", s.frames(), "--out", s.read_only() + "/sub"],
        r"cannot be written \(.*ro is read-only\)",
        marks=(READ_ONLY,),
    ),
    case(
        "out read-only",
        "train",
        lambda s: ["--set", f"out={s.read_only()}/run"],
        r"cannot be written \(.*ro is read-only\)",
        marks=(READ_ONLY,),
    ),
]

COMBINATIONS = [
    case(
        "--subset without --split",
        "evaluate",
        lambda s: ["--data", s.dataset(), "--subset", "val"],
        r"--subset val needs --split",
    ),
    case(
        "subset the split lacks",
        "evaluate",
        lambda s: ["--data", s.dataset(), "--split", s.split(), "--subset", "test"],
        r"split file .*split\.json has no subset 'test'; it has train, val",
    ),
    case(
        "split lists a video the data lacks",
        "evaluate",
        lambda s: [
            *("--data", s.dataset(), "--subset", "val"),
            *("--split", s.split(splits={"val": ["nosuchvideo"]})),
        ],
        r"no video named 'nosuchvideo'",
    ),
    case(
        "--calibration with fp32",
        "tflite",
        lambda s: ["--calibration", s.folder("calib"), "--out", s.path("o")],
        r"--calibration is only used with --precision int8",
    ),
    case(
        "--calibration with fp32",
        "onnx",
        lambda s: ["--calibration", s.folder("calib"), "--out", s.path("o")],
        r"--calibration is only used with --precision int8",
    ),
    case(
        "--calibration for int8 (weight-only)",
        "coreml",
        lambda s: [
            *("--precision", "int8", "--calibration", s.dataset("calib")),
            *("--out", s.path("o")),
        ],
        r"--calibration is not used by target coreml: its int8 quantizes the weights only",
    ),
    case(
        "--runtime without --artifact",
        "segment",
        lambda s: ["--runtime", "onnxruntime", "--input", s.frames(), "--out", s.path("o")],
        r"--runtime onnxruntime needs --artifact",
    ),
    case(
        "--precisions fp16 for onnx only",
        "all",
        lambda s: ["--targets", "onnx", "--precisions", "fp16", "--out", s.path("o")],
        r"no cell to build: none of onnx builds precision fp16 \(onnx builds fp32\)",
    ),
    case(
        "--precisions int16x8 for executorch only",
        "all",
        lambda s: ["--targets", "executorch", "--precisions", "int16x8", "--out", s.path("o")],
        r"no cell to build: .*executorch builds fp32, fp16, int8",
    ),
]

TRAIN_CONFIG = [
    case(
        "broken YAML",
        "train",
        lambda s: ["--config", s.text("c.yml", "epochs: [1, 2\nlr: 0.1\n")],
        r"config file .*c\.yml is not valid YAML: .* at line \d+",
    ),
    case(
        "YAML list",
        "train",
        lambda s: ["--config", s.text("c.yml", "- epochs\n- lr\n")],
        r"config file .*c\.yml must be a mapping of TrainConfig fields, got list",
    ),
    case(
        "binary file",
        "train",
        lambda s: ["--config", s.data("c.yml", b"\xff\xfe\x00garbage")],
        r"config file .*c\.yml is not text",
    ),
    case(
        "unknown key",
        "train",
        lambda s: ["--config", s.text("c.yml", "batchsize: 3\n")],
        r"c\.yml: unknown TrainConfig keys: batchsize \(did you mean 'batch_size'\?\)",
    ),
    case(
        "wrong type",
        "train",
        lambda s: ["--config", s.text("c.yml", "epochs: ten\n")],
        r"c\.yml: epochs must be an integer, got 'ten'",
    ),
    case(
        "nested field not a mapping",
        "train",
        lambda s: ["--config", s.text("c.yml", "loss: 3\n")],
        r"c\.yml: loss must be a mapping of LossWeights fields, got 3",
    ),
    case(
        "nested value out of range",
        "train",
        lambda s: ["--config", s.text("c.yml", "augment: {hflip: 2}\n")],
        r"Augment\.hflip must be in \[0, 1\], got 2",
    ),
    case(
        "doubly nested value out of range",
        "train",
        lambda s: ["--config", s.text("c.yml", "augment: {screen: {screen: 2}}\n")],
        r"c\.yml: augment\.screen: ScreenAugment\.screen must be in \[0, 1\], got 2",
    ),
    case(
        "--set without =",
        "train",
        lambda s: ["--set", "epochs"],
        r"--set 'epochs': expected KEY=VALUE",
    ),
    case(
        "--set betas=3",
        "train",
        lambda s: ["--set", "betas=3"],
        r"--set betas=3: betas must be a list of 2 numbers, got 3",
    ),
    case(
        "--set epochs=abc",
        "train",
        lambda s: ["--set", "epochs=abc"],
        r"--set epochs=abc: epochs must be an integer, got 'abc'",
    ),
    case(
        "--set bad YAML value",
        "train",
        lambda s: ["--set", "betas=[0.9,"],
        r"--set betas=\[0\.9,: '\[0\.9,' is not a valid YAML value",
    ),
    case(
        "--set unknown key",
        "train",
        lambda s: ["--set", "epoch=2"],
        r"^error: --set epoch=2: unknown config key epoch \(did you mean 'epochs'\?\)$",
    ),
    case(
        "--set wrong type for a flag",
        "train",
        lambda s: ["--set", "preload=maybe"],
        r"preload must be true or false, got 'maybe'",
    ),
]

# device_bench (issue 10): each subcommand, in every category.
RECORD = {
    "name": "bas_s_frame_240_fp32.onnx",
    "target": "onnx",
    "variant": "S",
    "precision": "fp32",
    "form": "frame",
    "metric": "median_latency",
    "value": 10.0,
    "unit": "ms",
    "device": "host: cpu",
    "timestamp": "2026-11-27T09:00:00+00:00",
}
CHOICES += [
    case("target tpu", "bench", lambda s: ["run", "--target", "tpu"], r"'tpu' is not one of"),
    case(
        "precision int4",
        "bench",
        lambda s: ["run", "--target", "onnx", "--precision", "int4"],
        r"'--precision': 'int4' is not one of fp32, fp16, int8",
    ),
    case(
        "device phone",
        "bench",
        lambda s: ["run", "--target", "tflite", "--device", "phone"],
        r"'--device': 'phone'",
    ),
    case(
        "device android without a serial",
        "bench",
        lambda s: ["run", "--target", "tflite", "--device", "android:"],
        r"'android:' names no device",
    ),
    case(
        "targets in a list",
        "bench",
        lambda s: ["sweep", "--targets", "onnx,tflte"],
        r"'tflte' is not one of .*did you mean 'tflite'",
    ),
]
RANGES += [
    case("iters 0", "bench", lambda s: ["run", "--target", "torch", "--iters", "0"], r"0 is not"),
    case("rounds 0", "bench", lambda s: ["sweep", "--rounds", "0"], r"'--rounds': 0 is not"),
    case(
        "video frames 299",
        "bench",
        lambda s: ["video", "--input", s.frames(), "--frames", "299"],
        r"'--frames': 299 is not in the range x>=300",
    ),
]
MISSING += [
    case(
        "artifact",
        "bench",
        lambda s: ["run", "--target", "onnx", "--artifact", s.path("gone.onnx")],
        r"'--artifact'.*gone\.onnx' does not exist",
    ),
    case(
        "video input",
        "bench",
        lambda s: ["video", "--input", s.path("gone.mp4")],
        r"gone\.mp4: does not exist",
    ),
    case("results", "bench", lambda s: ["report", s.path("r.jsonl")], r"r\.jsonl' does not"),
]
WRONG_KIND += [
    case(
        "results not records",
        "bench",
        lambda s: ["report", s.text("r.jsonl", "{not json\n")],
        r"r\.jsonl:1 is not a benchmark record",
    ),
    case(
        "a record of another status",
        "bench",
        lambda s: ["report", s.text("r.jsonl", json.dumps({**RECORD, "status": "fine"}))],
        r"r\.jsonl:1 is not a benchmark record: status must be one of passed, .*got 'fine'",
    ),
    case(
        "artifact without a manifest",
        "bench",
        lambda s: ["run", "--target", "onnx", "--artifact", s.text("a.onnx")],
        r"no manifest beside .*a\.onnx",
    ),
    case(
        "artifact without parity",
        "bench",
        lambda s: ["run", "--target", "onnx", "--artifact", s.unscored()],
        r"has no parity record: run converters\.parity on it first",
        marks=(SLOW,),
    ),
    case(
        "video that is text",
        "bench",
        lambda s: ["video", "--input", s.text("clip.mp4")],
        r"clip\.mp4",
    ),
]
OUTPUT += [
    case(
        "results a folder",
        "bench",
        lambda s: ["run", "--target", "torch", "--results", s.folder("r")],
        r"'--results'.* is a directory",
    ),
    case(
        "chart a folder",
        "bench",
        lambda s: ["report", s.text("r.jsonl", json.dumps(RECORD)), "--chart", s.folder("c")],
        r"'--chart'.* is a directory",
    ),
    case(
        "video plot a folder",
        "bench",
        lambda s: ["video", "--input", s.frames(), "--plot", s.folder("p")],
        r"'--plot'.* is a directory",
    ),
]
COMBINATIONS += [
    case(
        "a delegate on the host",
        "bench",
        lambda s: ["run", "--target", "tflite", "--delegate", "gpu"],
        r"--delegate is for --device android:SERIAL",
    ),
    case(
        "ios without Xcode",
        "bench",
        lambda s: ["run", "--target", "coreml", "--device", "ios:00008110-000A1B2C3D4E5F60"],
        r"--device ios needs xcrun and xcodebuild",
        marks=(pytest.mark.skipif(shutil.which("xcrun") is not None, reason="Xcode here"),),
    ),
    case(
        "android without adb",
        "bench",
        lambda s: ["run", "--target", "tflite", "--device", "android:emulator-5554"],
        r"adb not found",
        marks=(pytest.mark.skipif(shutil.which("adb") is not None, reason="adb here"),),
    ),
    case(
        "torch in int8",
        "bench",
        lambda s: ["run", "--target", "torch", "--precision", "int8"],
        r"--target pytorch runs fp32 only on host",
    ),
    case(
        "torch with an artifact",
        "bench",
        lambda s: ["run", "--target", "torch", "--artifact", str(s.onnx())],
        r"--target pytorch runs the weights \(--weights\), not an --artifact",
        marks=(SLOW,),
    ),
    case(
        "an onnx file as tflite",
        "bench",
        lambda s: ["run", "--target", "tflite", "--artifact", str(s.onnx())],
        r"is an artifact for onnx, not tflite",
        marks=(SLOW,),
    ),
]

CASES = [*CHOICES, *RANGES, *MISSING, *WRONG_KIND, *OUTPUT, *COMBINATIONS, *TRAIN_CONFIG]
CATEGORIES = {
    "unknown or misspelled choices": CHOICES,
    "out-of-range integers and floats": RANGES,
    "missing paths": MISSING,
    "wrong kinds of file": WRONG_KIND,
    "output folders (files, under files, not ours, read-only)": OUTPUT,
    "option combinations that make no sense": COMBINATIONS,
    "train config problems": TRAIN_CONFIG,
}


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (hidden ones too): a file's sha256, 'dir' for a folder."""
    tree = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            tree[os.path.relpath(os.path.join(folder, name), root)] = "dir"
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                tree[os.path.relpath(path, root)] = hashlib.sha256(handle.read()).hexdigest()
    return tree


@pytest.fixture
def setup(tmp_path: Path, built_artifact, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # default output folders (runs/, artifacts/) land here
    made = Setup(tmp_path, built_artifact)
    yield made
    for folder in made.locked:
        folder.chmod(0o755)


def test_the_table_covers_every_command_and_category() -> None:
    assert len(CASES) >= 60
    assert {p.values[0] for p in CASES} == set(COMMANDS)
    assert all(len(cases) >= 3 for cases in CATEGORIES.values())


@pytest.mark.parametrize(("command", "args", "code", "pattern"), CASES)
def test_hostile_input(setup: Setup, command: str, args: Args, code: int, pattern: str) -> None:
    argv = args(setup)
    before = snapshot(setup.root)
    result = CliRunner().invoke(COMMANDS[command], argv)
    output = result.output + result.stderr
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), output
    assert result.exit_code == code, output
    errors = [line for line in result.stderr.splitlines() if line.startswith(("error:", "Error:"))]
    assert len(errors) == 1, result.stderr
    assert re.search(pattern, errors[0]), errors[0]
    assert result.stderr.rstrip().splitlines()[-1] == errors[0], "the error line comes last"
    assert snapshot(setup.root) == before, "left something behind, or changed what was there"


def test_demo_replaces_its_own_earlier_output(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / OUTPUT_MARKER).write_text("written by bas-deploy\n")
    (out / "old.txt").write_text("from an earlier run\n")
    result = CliRunner().invoke(demo.main, ["--frames", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert not (out / "old.txt").exists() and (out / "metrics.json").is_file()
    assert (out / OUTPUT_MARKER).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no staging folder left


def test_a_bug_shows_its_traceback_and_asks_for_a_report(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug in the project")

    monkeypatch.setattr(info, "describe", broken)
    result = CliRunner().invoke(info.main, ["--image-size", "64"])
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "RuntimeError: a bug in the project" in result.stderr
    last = result.stderr.rstrip().splitlines()[-1]
    assert last.startswith("error: internal error") and "please report" in last


def test_an_artifact_is_replaced_only_if_ours(tmp_path: Path) -> None:
    ours = tmp_path / ONNX_NAME
    ours.write_bytes(b"onnx")
    (tmp_path / f"{ONNX_NAME}.json").write_text("{}")
    check_replaceable(ours)  # an earlier artifact with its manifest: replaced
    check_replaceable(tmp_path / "absent.onnx")
    stranger = tmp_path / "b.onnx"
    stranger.write_bytes(b"theirs")
    with pytest.raises(ConversionError, match=r"b\.onnx exists and is not an artifact"):
        check_replaceable(stranger)
    (tmp_path / "c.onnx.json").mkdir()
    with pytest.raises(ConversionError, match=r"c\.onnx\.json is a folder"):
        check_replaceable(tmp_path / "c.onnx")


def test_the_matrix_reports_say_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failed = convert_all.MatrixResult(
        "onnx", "S", "fp32", "frame", Status.FAILED_TO_CONVERT, error="x"
    )
    monkeypatch.setattr(convert_all, "build_matrix", lambda *args: [failed])
    argv = ["--targets", "onnx", "--variants", "S", "--forms", "frame", "--out", str(tmp_path)]
    result = CliRunner().invoke(convert_all.main, argv)
    assert result.exit_code == 1
    assert (tmp_path / "parity.md").read_text().rstrip().endswith("FAILED: 1 of 1 cells failed")
    report = json.loads((tmp_path / "parity.json").read_text())
    assert report["passed"] is False and report["failed"] == ["onnx BaS-S fp32 frame"]
    assert report["results"][0]["status"] == "failed to convert"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parity.json", "parity.md"]
