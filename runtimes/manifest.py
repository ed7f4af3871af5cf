"""The JSON record beside each artifact: what the file really takes and returns, and its hash.

One writer (:func:`write_manifest`, used by the converters) and one reader
(:func:`read_manifest`, used by every runtime), both through the typed :class:`Manifest`.
Each tensor is described as the runtime sees it (its own name, shape, dtype, layout and
quantisation) together with the canonical BaS tensor it carries (``frame``, ``state``,
``logits``, ``new_state``, NCHW-style) and the axis permutation between the two, so that
an app developer reading only the manifest feeds and reads the file correctly.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from model.atomic import atomic_path
from model.checkpoint import sha256
from model.errors import ProjectError
from model.preprocessing import Preprocessing
from model.typed import FieldError, from_data

SCHEMA = "bas-deploy-manifest/2"

# Axis letters of the canonical tensors: T is the temporal window (the state's past frames).
CANONICAL_LAYOUTS = {"frame": "NCHW", "logits": "NCHW", "state": "NTCHW", "new_state": "NTCHW"}


class ArtifactError(ProjectError):
    """An artifact or manifest that cannot be trusted or run here; one line, naming the file."""


def bounds(**keywords: float) -> dict[str, Any]:
    """A number field's range (of each item, for a tuple) as JSON Schema keywords: minimum,
    exclusiveMinimum, maximum. Stated once: :func:`check_ranges` refuses a value outside it
    and ``runtimes.schema`` publishes it."""
    return {"bounds": keywords}


FRACTION = bounds(minimum=0, maximum=1)


@dataclass(frozen=True)
class Quantization:
    """real = scale * (stored - zero_point)."""

    scale: float = field(metadata=bounds(exclusiveMinimum=0))
    zero_point: int


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as the runtime sees it, and the canonical tensor it carries."""

    canonical: str  # frame | state | logits | new_state
    name: str  # the runtime's own name; "" where the format has none (ExecuTorch)
    # position among the inputs/outputs, or LiteRT's tensor index
    index: int = field(metadata=bounds(minimum=0))
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name: float32, float16, int8, uint8
    layout: str  # axis letters of the file's tensor, e.g. NHWC
    from_canonical: tuple[int, ...]  # file tensor = canonical.transpose(from_canonical)
    quantization: Quantization | None = None


@dataclass(frozen=True)
class ArtifactFile:
    file: str
    sha256: str
    bytes: int = field(metadata=bounds(minimum=0))


@dataclass(frozen=True)
class WeightsRef:
    source: str  # "shipped" or a path
    sha256: str


@dataclass(frozen=True)
class StateSpec:
    """The stream form's carried state: fed back from ``output`` to ``input`` every frame."""

    input: str
    output: str
    shape: tuple[int, ...] = field(metadata=bounds(minimum=0))
    initial: str = "zeros"
    meaning: str = "stem features of the previous temporal_window - 1 frames, oldest first"


@dataclass(frozen=True)
class GraphSummary:
    """What a phone's delegate would be handed: every float compute op splits an integer graph.

    Shape and data-movement ops (reshape, transpose, concat, slice, pad) are not compute ops.
    """

    ops: int  # every op in the file's graph
    float_compute_ops: int  # compute ops that read or write a float tensor
    quantize_ops: int
    dequantize_ops: int
    float_op_types: dict[str, int] = field(default_factory=dict)  # op type -> float count
    partitions: int | None = None  # delegate partitions, where a tool reports them
    partitions_source: str = ""  # the tool that reported them


@dataclass(frozen=True)
class Gate:
    """What an artifact must show against PyTorch on the parity set (converters.parity.GATES).

    Masks are gated as lesions are read: every finding in the same place (no lesion of
    ``MIN_FINDING`` of the frame or more on one side that the other side's mask does not
    touch), outlined alike (pooled Dice, every lesion pixel of the set counted once). The
    mean of per-frame Dice, the gate before 2026-12, is recorded beside them: on frames
    where PyTorch's mask is a few pixels at its threshold it scores threshold noise as a
    whole frame lost (README, "Parity").
    """

    max_abs_err: float | None = None  # on logits
    dice_vs_pytorch: float = 0.0  # pooled Dice of target masks against PyTorch masks
    max_unmatched_findings: int = 0  # lesions found by one side only, over the set
    max_gt_dice_drop: float | None = None  # Dice vs ground truth, at most this far below PyTorch
    max_drift_ratio: float = 2.0  # stream: late-frame error / early-frame error (plus a floor)


@dataclass(frozen=True)
class LogitErrors:
    """The artifact's logits against PyTorch's, over the parity set (None: not scored)."""

    max_abs_err: float | None = None
    mean_abs_err: float | None = None
    psnr_db: float | None = None  # None also where the logits are identical


# A frame whose masks differ: (video, frame, PyTorch's lesion pixels, the target's, Dice).
WorstFrame = tuple[int, int, int, int, float]


@dataclass(frozen=True)
class MaskAgreement:
    """The artifact's masks against PyTorch's (None: not scored)."""

    # every lesion pixel of the set counted once
    pooled_dice: float | None = field(default=None, metadata=FRACTION)
    missed_findings: int | None = None  # PyTorch's lesions the target's masks do not touch
    false_findings: int | None = None  # the target's lesions PyTorch's masks do not touch
    dice: float | None = field(default=None, metadata=FRACTION)  # mean of per-frame Dice
    iou: float | None = field(default=None, metadata=FRACTION)
    hd95_px: float | None = None
    dice_per_video: tuple[float | None, ...] = ()
    worst_frames: tuple[WorstFrame, ...] = ()  # the frames whose masks differ most


@dataclass(frozen=True)
class GroundTruthDice:
    """Mean Dice against the synthetic ground truth, of the artifact's masks and PyTorch's."""

    target: float | None = field(default=None, metadata=FRACTION)
    pytorch: float | None = field(default=None, metadata=FRACTION)


@dataclass(frozen=True)
class StreamDrift:
    """The stream form's logit error early and late in each clip: carried state must not drift."""

    mean_abs_err_first_third: float
    mean_abs_err_last_third: float


@dataclass(frozen=True)
class ParityRecord:
    """What ``converters.parity`` measured of an artifact against PyTorch, and its verdict.

    Every field has a default, so that a record of an artifact that returned NaN (nothing
    scored) and the short records of test fixtures read as well as a full one.
    """

    artifact: str = ""
    target: str = ""
    variant: str = ""
    form: str = ""
    precision: str = ""
    accumulation: str = "fp32"
    runtime: str = ""  # the runtime plug-in that ran it (parity_runtime)
    platform: dict[str, Any] = field(default_factory=dict)  # the runtime's own facts
    frames: int = 0
    frames_source: str = ""
    logits: LogitErrors = field(default_factory=LogitErrors)
    masks_vs_pytorch: MaskAgreement = field(default_factory=MaskAgreement)
    dice_vs_ground_truth: GroundTruthDice = field(default_factory=GroundTruthDice)
    stream_drift: StreamDrift | None = None  # frame form: None
    gate: Gate | None = None
    passed: bool = False
    failures: tuple[str, ...] = ()  # each missed figure as 'name value vs limit'
    arm64: ParityRecord | None = None  # the same file on ARM64 kernels (emulated), if run

    @property
    def label(self) -> str:
        return f"{self.target} BaS-{self.variant} {self.precision} {self.form}"


@dataclass(frozen=True)
class Manifest:
    target: str  # onnx | tflite | coreml | executorch | pytorch
    runtime: str  # the runtime plug-in that opens it by default (runtimes.registry)
    variant: str
    form: str  # frame | stream
    precision: str
    image_size: int = field(metadata=bounds(exclusiveMinimum=0))
    temporal_window: int = field(metadata=bounds(minimum=1))
    artifact: ArtifactFile
    weights: WeightsRef
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    state: StateSpec | None
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    postprocessing: str = "resize logits bilinearly to the frame's size; logit > 0 is lesion"
    export_transforms: tuple[str, ...] = ()
    tools: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    conversion_seconds: float = field(default=0.0, metadata=bounds(minimum=0))
    created: str = ""
    parity: ParityRecord | None = None
    graph: GraphSummary | None = None
    # The arithmetic the file asks its runtime for: "fp32", or "fp16" where the file allows
    # FP16 inference (TFLite's reduced-precision metadata, Core ML's compute precision), so
    # that a phone with FP16 arithmetic computes in it.
    accumulation: str = "fp32"
    schema: str = SCHEMA

    def tensor(self, canonical: str) -> TensorSpec:
        for spec in (*self.inputs, *self.outputs):
            if spec.canonical == canonical:
                return spec
        raise ArtifactError(f"manifest of {self.artifact.file} has no {canonical!r} tensor")

    def with_parity(self, record: ParityRecord) -> Manifest:
        return replace(self, parity=record)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, allow_nan=False) + "\n"


def manifest_path(artifact: Path) -> Path:
    return artifact.parent / f"{artifact.name}.json"


def artifact_sha256(path: Path) -> str:
    """sha256 of a file, or of a directory artifact (Core ML packages): paths and bytes, sorted.

    A folder's files stream through ``hashlib.file_digest`` into one running digest, so
    that the digests in existing manifests still verify.
    """
    if not path.is_dir():
        return sha256(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode())
        with open(file, "rb") as handle:
            hashlib.file_digest(handle, lambda: digest)  # updates ``digest`` itself
    return digest.hexdigest()


def artifact_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def write_json_atomic(path: Path, record: dict[str, Any] | list[Any]) -> None:
    text = json.dumps(record, indent=1, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_manifest(artifact: Path, manifest: Manifest) -> None:
    with atomic_path(manifest_path(artifact)) as tmp:
        tmp.write_text(manifest.to_json())


def read_manifest(artifact: Path) -> Manifest:
    """The manifest beside ``artifact``; ArtifactError if absent, unreadable, of another schema."""
    path = manifest_path(Path(artifact))
    if not path.is_file():
        raise ArtifactError(f"no manifest beside {artifact} (expected {path})")
    try:
        record = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArtifactError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(record, dict):
        raise ArtifactError(f"{path} is not a manifest (a JSON object was expected)")
    schema = record.get("schema", record.get("format"))
    if schema != SCHEMA:
        raise ArtifactError(
            f"{path} has manifest schema {schema!r}; this version reads {SCHEMA!r} "
            "(convert the artifact again)"
        )
    try:
        _refuse_nonfinite(record, "")
        manifest = from_data(Manifest, record)
        check_ranges(manifest)
    except _OutOfRange as err:
        raise ArtifactError(f"{path}: {err}") from err
    except FieldError as err:
        raise ArtifactError(f"{path} does not match schema {SCHEMA}: {err}") from err
    return manifest


def verify(artifact: Path, manifest: Manifest) -> None:
    """Refuse a file that is not the one the manifest describes (tampered, truncated, replaced)."""
    artifact = Path(artifact)
    if not artifact.exists():
        raise ArtifactError(f"artifact not found: {artifact}")
    if artifact.name != manifest.artifact.file:
        raise ArtifactError(
            f"{artifact} is not the file its manifest describes ({manifest.artifact.file}): "
            "renamed, or another artifact's manifest"
        )
    if artifact.is_file() and artifact.stat().st_size != manifest.artifact.bytes:
        raise ArtifactError(
            f"{artifact} has {artifact.stat().st_size} bytes, its manifest says "
            f"{manifest.artifact.bytes}: truncated or replaced"
        )
    if artifact_sha256(artifact) != manifest.artifact.sha256:
        raise ArtifactError(
            f"{artifact} does not match the sha256 in its manifest: modified since conversion"
        )


class _OutOfRange(ValueError):
    """A manifest field holding a value the runtimes cannot use: 'field: problem'."""


def _refuse_nonfinite(value: Any, where: str) -> None:
    """Refuse NaN and infinities anywhere: Python's json reads the NaN and Infinity tokens
    (and 1e999 as infinity), which no JSON writer of ours emits (``allow_nan=False``)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise _OutOfRange(f"{where or 'a value'} is {value}, not a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_nonfinite(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _refuse_nonfinite(item, f"{where}[{i}]")


def _require(ok: bool, field_name: str, value: Any, rule: str) -> None:
    if not ok:
        raise _OutOfRange(f"{field_name} is {value!r}, {rule}")


def _check_bounds(value: Any, where: str = "") -> None:
    """Every field of ``value`` (a dataclass), nested ones too, within its :func:`bounds`."""
    for spec in fields(value):
        item = getattr(value, spec.name)
        name = f"{where}.{spec.name}" if where else spec.name
        limits = spec.metadata.get("bounds")
        if limits and item is not None:
            numbers = item if isinstance(item, tuple) else (item,)
            _require(all(_within(n, limits) for n in numbers), name, item, _rule(limits, item))
        if is_dataclass(item):
            _check_bounds(item, name)
        elif isinstance(item, tuple):
            for i, element in enumerate(item):
                if is_dataclass(element):
                    _check_bounds(element, f"{name}[{i}]")


def _within(number: float, limits: dict[str, float]) -> bool:
    return (
        number >= limits.get("minimum", -math.inf)
        and number > limits.get("exclusiveMinimum", -math.inf)
        and number <= limits.get("maximum", math.inf)
    )


def _rule(limits: dict[str, float], value: Any) -> str:
    if limits == FRACTION["bounds"]:
        return "must be a fraction in [0, 1]"
    words = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<="}
    rule = " and ".join(f"{words[key]} {limit}" for key, limit in limits.items())
    return f"{'each item ' if isinstance(value, tuple) else ''}must be {rule}"


def _check_tensor(spec: TensorSpec, where: str) -> None:
    """Shape, dtype, permutation and quantisation of one tensor, as the session uses them."""
    smallest = 0 if spec.canonical in ("state", "new_state") else 1  # a window of 1: no history
    _require(
        all(d >= smallest for d in spec.shape),
        f"{where}.shape",
        spec.shape,
        f"each dimension must be >= {smallest}",
    )
    _require(
        sorted(spec.from_canonical) == list(range(len(spec.shape))),
        f"{where}.from_canonical",
        spec.from_canonical,
        f"must be a permutation of the {len(spec.shape)} axes",
    )
    try:
        dtype = np.dtype(spec.dtype)
    except TypeError:
        dtype = None
    _require(
        dtype is not None and dtype.kind in "fiub",
        f"{where}.dtype",
        spec.dtype,
        "must be a numeric NumPy dtype name",
    )
    q = spec.quantization
    if q is None:
        return
    _require(
        dtype is not None and dtype.kind in "iu",
        f"{where}.dtype",
        spec.dtype,
        "must be an integer dtype for a quantized tensor",
    )
    info = np.iinfo(dtype)
    _require(
        info.min <= q.zero_point <= info.max,
        f"{where}.quantization.zero_point",
        q.zero_point,
        f"outside {spec.dtype}'s range [{info.min}, {info.max}]",
    )


def check_ranges(manifest: Manifest) -> None:
    """Refuse numbers outside what the runtimes assume (a manifest edited, or damaged):
    each would run, and turn into a wrong mask or a crash far from its cause."""
    _check_bounds(manifest)
    for group in ("inputs", "outputs"):
        for i, spec in enumerate(getattr(manifest, group)):
            _check_tensor(spec, f"{group}[{i}]")
    low, high = manifest.preprocessing.range
    _require(
        low < high,
        "preprocessing.range",
        manifest.preprocessing.range,
        "must be (low, high) with low < high",
    )
    std = manifest.preprocessing.std
    _require(
        std is None or all(v > 0 for v in std),
        "preprocessing.std",
        std,
        "must be > 0 in every channel",
    )
