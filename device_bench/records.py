"""One JSON line per figure, after ExecuTorch's benchmark records, appended to a results file.

Fields: name, target, variant, precision, form, metric, value, unit, device, timestamp;
plus the runtime, the artifact's sha256 and the machine, so a figure says what it measured,
and a status: a cell a sweep could not time is one ``status`` record saying why.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from model.errors import ProjectError

RESULTS = Path("reports/bench/results.jsonl")
STATUSES = ("passed", "reference", "failed parity", "failed to convert", "not run here")


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
    status: str = "passed"  # one of STATUSES; "reference" for PyTorch eager
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
    names = {f.name for f in fields(BenchRecord)}
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            unknown = set(data) - names
            if unknown:
                raise ValueError(f"unknown fields {sorted(unknown)}")
            record = BenchRecord(**data)
            if record.status not in STATUSES:
                raise ValueError(f"status {record.status!r} is not one of {STATUSES}")
            records.append(record)
        except (ValueError, TypeError) as err:
            raise ProjectError(f"{path}:{number} is not a benchmark record: {err}") from err
    return records
