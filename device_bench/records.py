"""One JSON line per figure, after ExecuTorch's benchmark records, appended to a results file.

Fields: name, target, variant, precision, form, metric, value, unit, device, timestamp;
plus the runtime, the artifact's sha256 and the machine, so a figure says what it measured,
and a status: a cell a sweep could not time is one ``status`` record saying why.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from model.errors import ProjectError
from model.typed import FieldError, from_data
from runtimes.targets import Status

RESULTS = Path("reports/bench/results.jsonl")
# device_bench's names for targets before the targets table named them: still read in old
# records and still accepted on the command line (``--target torch``)
TARGET_ALIASES = {"torch": "pytorch"}


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


def append_records(path: Path, records: list[BenchRecord]) -> None:
    """Append whole lines in one write, so a crash never leaves half a record."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise ProjectError(f"results file {path} is not a file")
    path.parent.mkdir(parents=True, exist_ok=True)
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
