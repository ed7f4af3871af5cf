"""Every target x precision x variant x form available here, timed in interleaved rounds.

All sessions are opened first; then each round gives every cell ``iters / rounds`` calls
in turn, so a shared machine's drift (another job, thermal throttling) hits all cells alike
and the ratios between them hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from converters.registry import get_target
from converters.spec import ConversionError
from model.errors import ProjectError
from model.preprocessing import Preprocessing
from runtimes.registry import get_backend
from runtimes.session import Session
from runtimes.targets import Cell, Status, get_target_spec, matrix

from .bench import (
    HOST_PYTORCH_PRECISIONS,
    FailedParity,
    Measurement,
    machine,
    measurement,
    open_session,
    progress,
    time_session,
    timing_frames,
)
from .records import BenchRecord


@dataclass(frozen=True)
class NotTimed:
    """A cell the sweep could not time, what became of it, and why (one line)."""

    cell: Cell
    status: Status
    reason: str


def runs_here(cell: Cell) -> bool:
    """PyTorch eager in the precisions a CPU times; a converted target where both its
    converter and its runtime are installed (not Core ML on Linux)."""
    if not get_target_spec(cell.target).converts:
        return cell.precision in HOST_PYTORCH_PRECISIONS
    converter = get_target(cell.target)
    return converter.is_available() and get_backend(converter.runtime).is_available()


def sweep_cells(
    targets: list[str], variants: list[str], precisions: list[str], forms: list[str]
) -> list[Cell]:
    """The cells to time: every cell of the targets table among those asked for that runs here."""
    cells = [
        cell
        for cell in matrix(tuple(variants), tuple(targets), tuple(precisions), tuple(forms))
        if runs_here(cell)
    ]
    if not cells:
        raise ProjectError("no cell to time: no target builds those precisions here")
    return cells


def _status(err: ProjectError) -> Status:
    if isinstance(err, FailedParity):
        return Status.FAILED_PARITY
    return Status.FAILED_TO_CONVERT if isinstance(err, ConversionError) else Status.NOT_RUN_HERE


def status_record(refused: NotTimed, threads: int | None) -> BenchRecord:
    """The one record of a cell that was not timed, so the report shows it and why."""
    cell = refused.cell
    host = machine()
    return BenchRecord(
        name=f"bas_{cell.variant.lower()}_{cell.form}_{cell.precision}.{cell.target}",
        target=cell.target,
        variant=cell.variant,
        precision=cell.precision,
        form=cell.form,
        metric="status",
        value=0.0,
        unit="",
        device=f"host: {host['cpu']}",
        timestamp=datetime.now(UTC).isoformat(timespec="seconds"),
        threads=threads,
        machine=host,
        status=refused.status,
        note=refused.reason,
    )


def open_sessions(
    cells: list[Cell], threads: int | None, weights: str, cache: Path
) -> tuple[list[tuple[Cell, Session, float]], list[NotTimed]]:
    """(cell, session, load time) of each cell that opened, and each that did not."""
    sessions: list[tuple[Cell, Session, float]] = []
    refused: list[NotTimed] = []
    for cell in cells:
        try:
            session, load_s = open_session(
                cell.target, cell.variant, cell.form, None, threads, weights, cell.precision, cache
            )
        except ProjectError as err:  # failed parity or conversion, or cannot run here
            refused.append(NotTimed(cell, _status(err), str(err)))
            continue
        sessions.append((cell, session, load_s))
    return sessions, refused


def _inputs_of(session: Session) -> tuple[int, Preprocessing]:
    """What a session's timing frames depend on: sessions that agree share one set."""
    return session.manifest.image_size, session.manifest.preprocessing


def run_sweep(
    cells: list[Cell],
    threads: int | None,
    warmup: int,
    iters: int,
    rounds: int,
    weights: str,
    cache: Path,
) -> tuple[list[tuple[str, Measurement]], list[NotTimed]]:
    """(artifact name, figures) of each timed cell, and each cell that was not timed."""
    sessions, refused = open_sessions(cells, threads, weights, cache)
    frames = {_inputs_of(s): timing_frames(s.manifest) for _, s, _ in sessions}
    latencies: dict[Cell, list[float]] = {cell: [] for cell, _, _ in sessions}
    per_round = max(1, iters // rounds)
    with progress(len(sessions) * (warmup + rounds * per_round), "sweep") as bar:
        for _, session, _ in sessions:
            session.reset()
            time_session(session, frames[_inputs_of(session)], 0, warmup, bar=bar)
        for round_index in range(rounds):
            for cell, session, _ in sessions:
                start = warmup + round_index * per_round
                latencies[cell] += time_session(
                    session, frames[_inputs_of(session)], per_round, start=start, bar=bar
                )
    timed = [
        (
            Path(session.manifest.artifact.file).name,
            measurement(session, load_s, latencies[cell], peak_rss=False),
        )
        for cell, session, load_s in sessions
    ]
    return timed, refused
