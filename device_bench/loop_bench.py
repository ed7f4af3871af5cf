"""A loop at the speed of its model: the segmentation command's own run of one input, its
stages in line against overlapped (decode ahead, write behind), in alternating rounds on
one session, with where each run's time went."""

from __future__ import annotations

import json
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from runtimes.session import Session
from segmentation.run import RunOptions, run_segment

MODES = {"in line": False, "overlapped": True}


@dataclass
class ModeFigures:
    """The rounds of one mode: end-to-end and inference-only FPS, and seconds per stage."""

    end_to_end: list[float] = field(default_factory=list)
    inference: list[float] = field(default_factory=list)
    seconds: list[dict[str, float]] = field(default_factory=list)

    def row(self, mode: str) -> str:
        e2e, inf = statistics.median(self.end_to_end), statistics.median(self.inference)
        stages = {
            key: statistics.median(s.get(key, 0.0) for s in self.seconds) for key in self.seconds[0]
        }
        spent = ", ".join(f"{k} {v:.2f}" for k, v in sorted(stages.items(), key=lambda kv: -kv[1]))
        return f"| {mode} | {e2e:.1f} | {inf:.1f} | {e2e / inf:.2f} | {spent} |"


def bench_loop(session: Session, source: Path | str, rounds: int) -> dict[str, ModeFigures]:
    """Each mode ``rounds`` times, in turn (in line, overlapped, in line, ...)."""
    figures = {mode: ModeFigures() for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="bas-loop-") as folder:
        for n in range(rounds):
            for mode, overlap in MODES.items():
                out = Path(folder) / f"{n}_{overlap}"
                totals = run_segment(session, source, out, RunOptions(overlap=overlap))
                summary = (out / "summary.json").read_text()
                figures[mode].end_to_end.append(totals.end_to_end_fps)
                figures[mode].inference.append(totals.inference_fps)
                figures[mode].seconds.append(_loop_seconds(summary))
    return figures


def _loop_seconds(summary_text: str) -> dict[str, float]:
    """The stages' seconds of a run, summed over its loops."""
    total: dict[str, float] = {}
    for source in json.loads(summary_text)["sources"]:
        for key, value in source["seconds"].items():
            total[key] = total.get(key, 0.0) + value
    return total


def table(figures: dict[str, ModeFigures]) -> str:
    head = [
        "| stages | end-to-end FPS | inference FPS | end-to-end / inference | seconds per stage |",
        "|---|---:|---:|---:|---|",
    ]
    return "\n".join([*head, *(f.row(mode) for mode, f in figures.items())])
