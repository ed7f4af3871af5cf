"""One JSON line per figure, after ExecuTorch's benchmark records, appended to a results file.

Fields: name, target, variant, precision, form, metric, value, unit, device, timestamp;
plus the runtime, the artifact's sha256 and the machine, so a figure says what it measured,
and a status: a cell a sweep could not time is one ``status`` record saying why. Each record
carries the provenance of the command that appended it (``model.provenance``: command line,
date, machine, versions), so a results file can be rendered into the docs as it stands.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from model.errors import ProjectError
from model.provenance import provenance
from model.typed import FieldError, from_data
from runtimes.targets import Status

RESULTS = Path("reports/bench/results.jsonl")
# device_bench's names for targets before the targets table named them: still read in old
# records and still accepted on the command line (``--target torch``)
TARGET_ALIASES = {"torch": "pytorch"}
# The libraries a figure may have run on, whose versions every record names.
RUNTIME_LIBRARIES = ("torch", "onnxruntime", "ai-edge-litert", "executorch", "coremltools")


@dataclass(frozen=True)
class BenchRecord:
    name: str  # e.g. "bas_s_frame_240_fp32.tflite"
    target: str
    variant: str
    precision: str
    form: str
    metric: str  # median_latency, p90_latency, fps, peak_rss, model_load_time, ...
    value: float
    unit: str  # ms, fps, MB, s
    device: str  # "host: <cpu model>" or a device id
    timestamp: str
    runtime: str = ""
    threads: int | None = None
    artifact_sha256: str = ""
    parity_passed: bool | None = None
    machine: dict[str, Any] = field(default_factory=dict)
    status: Status = Status.PASSED  # written as its word; REFERENCE for PyTorch eager
    batch: int = 1  # frames per call; fps counts all of them
    note: str = ""  # why a cell was not timed
    provenance: dict[str, Any] = field(default_factory=dict)  # set when appended


def append_records(path: Path, records: list[BenchRecord]) -> None:
    """Append whole lines in one write, so a crash never leaves half a record; each record
    without a provenance block gets this command's."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise ProjectError(f"results file {path} is not a file")
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = provenance(RUNTIME_LIBRARIES)
    records = [r if r.provenance else replace(r, provenance=stamp) for r in records]
    text = "".join(json.dumps(asdict(r), allow_nan=False) + "\n" for r in records)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def read_records(path: Path) -> list[BenchRecord]:
    """Every record of a results file; a line that is not one is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise ProjectError(f"results file not found: {path}")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if isinstance(data, dict) and data.get("target") in TARGET_ALIASES:
                data = {**data, "target": TARGET_ALIASES[data["target"]]}
            records.append(from_data(BenchRecord, data))
        except (ValueError, FieldError) as err:
            raise ProjectError(f"{path}:{number} is not a benchmark record: {err}") from err
    return records
