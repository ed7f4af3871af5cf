"""The one table of targets: what each writes, what it builds, what opens it, where it runs.

Each row names its runtimes by the role each plays, and converters, runtimes and device_bench
read those roles here rather than keep lists of their own. ``runtime`` is the default: the
runtime plug-in users run, and the one an artifact's manifest names. ``reference`` stands in
on a host where the default cannot run, reading the same file with the same library (Core ML's
MIL reference evaluator on Linux, where Apple's runtime is missing); parity checks the file
with it there, and its record names the runtime that ran. ``fp16_runtime`` computes the FP16
arithmetic a file allows (LiteRT with XNNPACK's FP16 forced, as an ARMv8.2+ phone runs an fp16
``.tflite``); parity measures such files with it. ``arm64_runtime`` runs the file on the
runtime's own ARM64 kernels, emulated under QEMU (``make arm64``; the ``--arm64`` option of
``converters.parity`` and ``converters.all``). ``phone`` is the platform that
``device_bench run --device PLATFORM:ID`` times the files on, and ``phone_tool`` the standard
tool it runs them with there. ``runtimes`` lists every role that is filled, the default
first, in the order above: the choices of each ``--runtime`` option. A new target is one
converter file (``converters/``), one file per runtime (``runtimes/backends/``) and one row
here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from model.config import VARIANTS, unknown_choice
from model.errors import ProjectError
from model.forms import EXPORT_FORMS

# int16x8: integer-only, int16 activations and int8 weights (LiteRT's 16x8 mode), for NPUs.
PRECISIONS = ("fp32", "fp16", "int8", "int16x8")
QUANTIZED = ("int8", "int16x8")  # calibrated on frames


@dataclass(frozen=True)
class TargetSpec:
    """One deployment target, as every package sees it; its runtimes by role (see above)."""

    name: str
    suffix: str  # the artifact's file (or folder) ending
    precisions: tuple[str, ...]
    runtime: str  # the default, which users run
    reference: str | None = None  # stands in where the default cannot run
    fp16_runtime: str | None = None  # computes the FP16 arithmetic a file allows
    arm64_runtime: str | None = None  # the runtime's ARM64 kernels, under QEMU
    phone: str | None = None  # the phone platform whose tool runs it (device_bench)
    phone_tool: str | None = None
    forms: tuple[str, ...] = EXPORT_FORMS
    converts: bool = True  # False: the network itself (PyTorch), never written to a file

    @property
    def runtimes(self) -> tuple[str, ...]:
        """Every runtime plug-in that opens its files, the default first."""
        roles = (self.runtime, self.reference, self.fp16_runtime, self.arm64_runtime)
        return tuple(name for name in roles if name is not None)


TARGETS: dict[str, TargetSpec] = {
    spec.name: spec
    for spec in (
        TargetSpec("pytorch", ".safetensors", ("fp32", "fp16"), "pytorch", converts=False),
        TargetSpec("onnx", ".onnx", ("fp32",), "onnxruntime", arm64_runtime="onnxruntime-arm64"),
        TargetSpec(
            "tflite",
            ".tflite",
            PRECISIONS,
            "litert",
            fp16_runtime="litert-fp16",
            arm64_runtime="litert-arm64",
            phone="android",
            phone_tool="benchmark_model",
        ),
        TargetSpec(
            "coreml",
            ".mlpackage",
            ("fp32", "fp16", "int8"),
            "coreml",
            reference="mil_reference",
            phone="ios",
            phone_tool="xcodebuild",  # an XCTest harness (device_bench/harness/ios)
        ),
        TargetSpec(
            "executorch",
            ".pte",
            ("fp32", "fp16", "int8"),
            "executorch",
            phone="android",
            phone_tool="executor_runner",
        ),
    )
}
CONVERTED = tuple(name for name, spec in TARGETS.items() if spec.converts)
RUNTIME_NAMES = tuple(name for spec in TARGETS.values() for name in spec.runtimes)


class TargetError(ProjectError):
    """A target, precision or form that the table does not hold; one line, named."""


def get_target_spec(name: str) -> TargetSpec:
    if name not in TARGETS:
        raise TargetError(unknown_choice("target", name, tuple(TARGETS)))
    return TARGETS[name]


def target_of_runtime(runtime: str) -> str:
    """The target whose files ``runtime`` opens."""
    for spec in TARGETS.values():
        if runtime in spec.runtimes:
            return spec.name
    raise TargetError(unknown_choice("runtime", runtime, RUNTIME_NAMES))


def phone_targets(platform: str) -> tuple[str, ...]:
    return tuple(name for name, spec in TARGETS.items() if spec.phone == platform)


@dataclass(frozen=True)
class Cell:
    """One artifact of the matrix: what ``converters.all`` builds and ``device_bench`` times."""

    variant: str
    target: str
    precision: str
    form: str

    @property
    def label(self) -> str:
        return f"BaS-{self.variant} {self.target} {self.precision} {self.form}"


def matrix(
    variants: tuple[str, ...] = tuple(VARIANTS),
    targets: tuple[str, ...] = CONVERTED,
    precisions: tuple[str, ...] = PRECISIONS,
    forms: tuple[str, ...] = EXPORT_FORMS,
) -> Iterator[Cell]:
    """Every cell the table allows among those asked for, in table order."""
    for variant in variants:
        for target in targets:
            spec = get_target_spec(target)
            for precision in precisions:
                if precision not in spec.precisions:
                    continue
                for form in forms:
                    if form in spec.forms:
                        yield Cell(variant, target, precision, form)


class Status(StrEnum):
    """What became of one cell, in every matrix report (converters.all, device_bench sweep)."""

    PASSED = "passed"  # built, and parity passed
    REFERENCE = "reference"  # PyTorch itself: nothing to compare against
    FAILED_PARITY = "failed parity"
    FAILED_TO_CONVERT = "failed to convert"  # the build stopped, with its one-line reason
    NOT_RUN_HERE = "not run here"  # its toolchain or runtime is not installed on this host
