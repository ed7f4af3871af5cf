"""The matrix's cells as Ray tasks: ``python -m converters.all --workers N [--ray-address]``.

Each cell is one task running what the local run runs for it (:func:`converters.cell.
build_cell`): the artifact and its manifest written into ``--out`` (on a cluster, storage
every node sees at the same path), its parity checked there. At most ``workers`` cells run
at once; the rows come back in the local run's order, so the table is the same. A task
whose worker or node dies is run again elsewhere by Ray (a cell writes its artifact
atomically, so a second run replaces it, never doubles it).
"""

from __future__ import annotations

from pathlib import Path

from model.cluster import ray_cluster
from runtimes.targets import Cell

from .cell import MatrixOptions, MatrixResult, build_cell
from .command import quiet_toolchains

RETRIES = 3  # runs of a cell after its worker or node died


def build_matrix_on_ray(
    cells: list[Cell],
    out: Path,
    options: MatrixOptions,
    workers: int,
    address: str | None = None,
) -> list[MatrixResult]:
    """Each cell as a Ray task of one CPU, ``workers`` at a time; an embedded Ray of that
    many CPUs unless ``address`` names a cluster (or this process runs one)."""
    with ray_cluster(workers, address) as ray:
        task = ray.remote(_build_quietly).options(num_cpus=1, max_retries=RETRIES)
        pending = list(enumerate(cells))
        running: dict[object, int] = {}
        results: dict[int, MatrixResult] = {}
        while pending or running:
            while pending and len(running) < workers:
                index, cell = pending.pop(0)
                running[task.remote(cell, out, options)] = index
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                results[running.pop(ref)] = ray.get(ref)
    return [results[index] for index in range(len(cells))]


def _build_quietly(cell: Cell, out: Path, options: MatrixOptions) -> MatrixResult:
    """One cell, with the toolchains' chatter hidden as the local run hides it."""
    with quiet_toolchains():
        return build_cell(cell, out, options)
