"""Every target x precision x variant x form available here, timed in interleaved rounds.

All sessions are opened first; then each round gives every cell ``iters / rounds`` calls
in turn, so a shared machine's drift (another job, thermal throttling) hits all cells alike
and the ratios between them hold.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from model.errors import ProjectError
from runtimes.session import Session

from .bench import (
    FailedParity,
    Measurement,
    machine,
    measurement,
    open_session,
    progress,
    timed_calls,
    timing_frames,
)
from .records import BenchRecord

Cell = tuple[str, str, str, str]  # target, variant, precision, form


def sweep_cells(
    targets: list[str], variants: list[str], precisions: list[str], forms: list[str]
) -> list[Cell]:
    """The cells to time: PyTorch in fp32, each converter target in the precisions it builds."""
    from converters.registry import get_target
    from runtimes.registry import get_backend

    cells = []
    for target in targets:
        built = ("fp32",) if target == "torch" else get_target(target).precisions
        if target != "torch" and not (
            get_target(target).is_available()
            and get_backend(get_target(target).runtime).is_available()
        ):
            continue  # neither converted nor timed where its runtime cannot run (Core ML on Linux)
        cells += [
            (target, v, p, f) for v in variants for p in precisions if p in built for f in forms
        ]
    if not cells:
        raise ProjectError("no cell to time: no target builds those precisions here")
    return cells


def _status(err: ProjectError) -> str:
    from converters.spec import ConversionError

    if isinstance(err, FailedParity):
        return "failed parity"
    return "failed to convert" if isinstance(err, ConversionError) else "not run here"


def status_record(cell: Cell, status: str, note: str, threads: int | None) -> BenchRecord:
    """The one record of a cell that was not timed, so the report shows it and why."""
    target, variant, precision, form = cell
    host = machine()
    return BenchRecord(
        name=f"bas_{variant.lower()}_{form}_{precision}.{target}",
        target=target,
        variant=variant,
        precision=precision,
        form=form,
        metric="status",
        value=0.0,
        unit="",
        device=f"host: {host['cpu']}",
        timestamp=datetime.now(UTC).isoformat(timespec="seconds"),
        threads=threads,
        machine=host,
        status=status,
        note=note,
    )


def run_sweep(
    cells: list[Cell],
    threads: int | None,
    warmup: int,
    iters: int,
    rounds: int,
    weights: str,
    cache: Path,
) -> tuple[list[tuple[str, Measurement]], list[tuple[Cell, str, str]]]:
    """(artifact name, figures) of each timed cell, and (cell, status, why) of each that was not."""
    sessions: list[tuple[Cell, Session, float]] = []
    refused: list[tuple[Cell, str, str]] = []
    for cell in cells:
        target, variant, precision, form = cell
        try:
            session, load_s = open_session(
                target, variant, form, None, threads, weights, precision, cache
            )
        except ProjectError as err:  # failed parity or conversion, or cannot run here
            refused.append((cell, _status(err), str(err)))
            continue
        sessions.append((cell, session, load_s))
    frames = {s.manifest.image_size: timing_frames(s.manifest.image_size) for _, s, _ in sessions}
    latencies: dict[Cell, list[float]] = {cell: [] for cell, _, _ in sessions}
    per_round = max(1, iters // rounds)
    with progress(len(sessions) * (warmup + rounds * per_round), "sweep") as bar:
        for _, session, _ in sessions:
            session.reset()
            timed_calls(session, frames[session.manifest.image_size], warmup, bar=bar)
        for round_index in range(rounds):
            for cell, session, _ in sessions:
                start = warmup + round_index * per_round
                latencies[cell] += timed_calls(
                    session, frames[session.manifest.image_size], per_round, start, bar
                )
    timed = [
        (
            Path(session.manifest.artifact.file).name,
            measurement(session, load_s, latencies[cell], peak_rss=False),
        )
        for cell, session, load_s in sessions
    ]
    return timed, refused
