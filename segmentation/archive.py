"""Segment an archive on Ray: each loop one unit of work, a pool of workers each keeping
one session loaded.

    python -m segmentation --input ARCHIVE --out DIR --workers N [--ray-address ADDR]
        [--threads-per-worker T]

The pool is Ray actors driven from here, not Ray Data's ``map_batches``: a loop is what
fails, is retried and is reported, and with actors it is exactly that. Each worker is
handed one loop at a time; when one dies (its process, or its node), the loop it held goes
back in the queue for the others and a replacement worker is asked for where the cluster
has room. Ray Data would retry whole blocks, stop the dataset at the first failing one
unless told otherwise, report back only when a block ends, and need pyarrow besides.

What crosses to a worker is a description of the loop, never its frames: a local source
(a frozen dataclass naming files that every node reads at the same path) or a PACS series
(the client and the series' identifiers), retrieved and decoded where it runs.

``DIR`` is written loop by loop, never as a whole: a worker segments a loop into
``DIR/.<loop>.partial-<run>-<attempt>`` and, once every output is written, adds
``.bas-loop.json`` (its summary row: the marker that it is complete) and renames the folder
to ``DIR/<loop>``. The rename either happens once or not at all, so a loop is never written
twice, even where a worker thought lost finishes after all. A re-run with the same ``DIR``
(same input, model and options, recorded in ``.bas-archive.json``) skips complete loops;
partial folders are removed at the end of the run that made them (and by the next run, of
one that was killed). ``summary.json`` and ``summary.csv`` (a row per loop) are written
last. In a cluster, ``DIR``, the input and the artifact must be on storage every node
sees at the same path.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import shutil
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from model.atomic import OUTPUT_MARKER, atomic_path, check_output_folder
from model.cluster import ray_cluster
from model.errors import ProjectError, one_line
from model.metrics import SegmentationMeter
from runtimes.manifest import write_json_atomic
from runtimes.session import Session

from .dicomweb import is_dicomweb_url
from .report import FrameRecord
from .run import RunOptions, RunTotals, segment_source, summary_entry
from .sources import Batch, Input, Opened, open_input
from .video import FrameSource

ARCHIVE_FILE = ".bas-archive.json"  # the input, model and options a re-run must match
LOCK_FILE = ".bas-archive.lock"  # held by the one run writing the folder
LOOP_MARKER = ".bas-loop.json"  # in a loop's folder: it is complete; its row
PARTIAL = ".partial-"
SUMMARY_COLUMNS = (
    *("loop", "source", "frames", "skipped", "mean_area", "largest_area", "units", "fps"),
    *("status", "reason"),
)
OK, FAILED, DONE_BEFORE = "ok", "failed", "skipped-already-done"
MAX_ATTEMPTS = 3  # a loop whose worker died this often fails: it may be what kills them
WORKER_WAIT_S = 300.0  # how long a run with loops to do and no live worker waits for one


@dataclass(frozen=True)
class LoopRow:
    """One loop in the summary table; areas in ``units`` (mm2 where calibrated, else px),
    ``fps`` end to end; ``reason`` why it failed, or which of its outputs were not written."""

    loop: str
    source: str
    frames: int = 0
    skipped: int = 0
    mean_area: float | None = None
    largest_area: float | None = None
    units: str = ""
    fps: float | None = None
    status: str = OK
    reason: str = ""


@dataclass(frozen=True)
class Unit:
    """One piece of work, named by its output folder: a loop found here (``source``, read
    where it runs) or a PACS series (``batch``, retrieved where it runs)."""

    name: str
    origin: str  # the summary's source column
    source: FrameSource | None = None
    batch: Batch | None = None

    @contextmanager
    def open(self) -> Iterator[Opened]:
        if self.batch is not None:
            with self.batch.open() as found:
                yield found
        else:
            assert self.source is not None
            yield Opened([self.source], [])


@dataclass
class UnitResult:
    """What a worker hands back for a unit: a row and a summary.json entry per loop."""

    rows: list[LoopRow] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, record: dict[str, Any], run_id: str) -> None:
        """A complete loop's marker; from another run, its row says it was skipped."""
        row = LoopRow(**record["row"])
        self.rows.append(row if record["run"] == run_id else replace(row, status=DONE_BEFORE))
        self.entries.append(record["summary"])
        self.warnings += record["warnings"]


@dataclass
class ArchiveTotals:
    """What an archive run did and where its time went."""

    model: dict[str, Any]  # target, runtime, variant, form, precision, digests
    rows: list[LoopRow]
    warnings: list[str]
    wall_s: float  # the whole run, from the model's loading to the summary
    ray_start_s: float  # starting or joining Ray
    workers_ready_s: float  # from Ray up to the first worker holding its session
    loops_s: float  # from then to the last loop done
    workers_lost: int = 0
    retried: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        """A line per loop that failed, or whose outputs were not all written."""
        return [f"{row.loop}: {row.reason}" for row in self.rows if row.reason]

    @property
    def done(self) -> list[LoopRow]:
        """The loops segmented by this run."""
        return [row for row in self.rows if row.status == OK]

    @property
    def frames(self) -> int:
        return sum(row.frames for row in self.done)


def run_archive(
    open_session: Callable[..., Session],
    input_spec: str | Path,
    out: Path,
    workers: int,
    options: RunOptions | None = None,
    fps: float = 30.0,
    threads: int = 1,
    address: str | None = None,
) -> ArchiveTotals:
    """Every loop of ``input_spec`` through ``workers`` Ray workers of ``threads`` CPUs
    each, into ``out`` loop by loop (see the module docstring); ``open_session(threads=T)``
    loads the model, here first (a bad artifact fails before Ray starts) and in each worker.
    ``address``: a Ray cluster (None: an embedded Ray, unless this process runs one)."""
    started = time.perf_counter()
    options = options or RunOptions()
    out = Path(out)
    check_output_folder(out)
    spec = str(input_spec)
    recipe = {  # what .bas-archive.json records (plain JSON values, compared as read back)
        "input": spec if is_dicomweb_url(spec) else str(Path(spec).resolve()),
        "model": _model_of(open_session(threads=threads)),
        "options": {**asdict(options), "fps": fps},
    }
    opened = open_input(input_spec, fps)
    units, warnings = _units(opened)
    run_id = uuid.uuid4().hex[:12]
    with _claimed(out, recipe):
        results = {u.name: _earlier(out / u.name) for u in units}
        todo = [u for u in units if results[u.name] is None]
        with tqdm(
            total=len(units),
            initial=len(units) - len(todo),
            unit="loop",
            desc=opened.name,
            disable=None,
            mininterval=0.5,
        ) as bar:
            pool = _Pool(todo, bar)
            if todo:
                pool.run_on_ray(open_session, workers, threads, options, out, run_id, address)
        results.update(pool.results)
        totals = ArchiveTotals(
            recipe["model"],
            [row for u in units for row in results[u.name].rows],
            warnings + [w for u in units for w in results[u.name].warnings],
            0.0,
            *pool.times(),
            pool.lost,
            pool.retried,
        )
        totals.wall_s = time.perf_counter() - started
        _write_summary(out, recipe, totals, [e for u in units for e in results[u.name].entries])
    return totals


class LoopWorker:
    """One worker of the pool (a Ray actor): its session loaded once, then loop after loop."""

    def __init__(
        self,
        open_session: Callable[..., Session],
        threads: int,
        options: RunOptions,
        out: str,
        run_id: str,
    ) -> None:
        self.session = open_session(threads=threads)
        self.options, self.out, self.run_id = options, Path(out), run_id

    def ready(self) -> None:
        """Answers once the session is loaded."""

    def segment(self, unit: Unit, attempt: int) -> UnitResult:
        return segment_unit(self.session, unit, self.out, self.options, self.run_id, attempt)


def segment_unit(
    session: Session, unit: Unit, out: Path, options: RunOptions, run_id: str, attempt: int
) -> UnitResult:
    """Each loop of ``unit`` into ``out/<loop>``, complete or not at all; a loop (or a
    series) that fails for its own reason is a row saying why."""
    result = UnitResult()
    try:
        with unit.open() as found:
            result.warnings += found.left_out
            for source in found.sources:
                _segment_loop(session, source, unit.origin, out, options, run_id, attempt, result)
    except ProjectError as err:  # the series could not be retrieved or read
        result.rows.append(LoopRow(unit.name, unit.origin, status=FAILED, reason=one_line(err)))
    return result


def _segment_loop(
    session: Session,
    source: FrameSource,
    origin: str,
    out: Path,
    options: RunOptions,
    run_id: str,
    attempt: int,
    result: UnitResult,
) -> None:
    final = out / source.name
    earlier = _record(final)
    if earlier is not None:  # an earlier run's, or this one's by a worker thought lost
        result.add(earlier, run_id)
        return
    if final.exists():
        why = f"{final} exists and is not a loop this command completed (left as it is)"
        result.rows.append(LoopRow(source.name, origin, status=FAILED, reason=why))
        return
    partial = out / f".{source.name}{PARTIAL}{run_id}-{attempt}"
    totals = RunTotals()
    try:
        loop = segment_source(session, source, partial, options, SegmentationMeter(), totals)
    except ProjectError as err:
        shutil.rmtree(partial, ignore_errors=True)
        result.rows.append(LoopRow(source.name, origin, status=FAILED, reason=one_line(err)))
        return
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    record = {
        "run": run_id,
        "row": asdict(_row(source.name, origin, loop.records, totals)),
        "summary": summary_entry(loop),
        "warnings": totals.warnings,
    }
    (partial / LOOP_MARKER).write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")
    try:
        os.rename(partial, final)  # fails where another attempt of this loop came first
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        record = _record(final)
        if record is None:
            raise
    result.add(record, run_id)


def _row(name: str, origin: str, records: list[FrameRecord], totals: RunTotals) -> LoopRow:
    """The loop's line of the table: its lesion in mm² where every segmented frame was
    measured in a calibrated region, else in pixels (the rule of its measurement report)."""
    segmented = [r for r in records if r.ok]
    in_mm = all(r.physical is not None for r in segmented)
    areas = [r.physical.area_mm2 if in_mm else float(r.lesion_area_px) for r in segmented]
    return LoopRow(
        name,
        origin,
        totals.segmented,
        totals.skipped,
        round(sum(areas) / len(areas), 2),
        round(max(areas), 2),
        "mm2" if in_mm else "px",
        round(totals.end_to_end_fps, 2),
        reason="; ".join(totals.failed),
    )


def _record(folder: Path) -> dict[str, Any] | None:
    """The marker of the loop complete in ``folder``, or None."""
    marker = folder / LOOP_MARKER
    return json.loads(marker.read_text()) if marker.is_file() else None


def _earlier(folder: Path) -> UnitResult | None:
    """The loop an earlier run completed in ``folder`` (its row says skipped), or None."""
    record = _record(folder)
    if record is None:
        return None
    result = UnitResult()
    result.add(record, run_id="")
    return result


def _units(opened: Input) -> tuple[list[Unit], list[str]]:
    """One unit per loop of a local input (each checked here, as the command does), or per
    series of a PACS input; and the files left out, a line each."""
    if opened.from_archive:
        units = [
            Unit(b.name, f"{b.name} of study {b.study.study_uid}" if b.study else b.name, None, b)
            for b in opened.batches
        ]
        return units, []
    units, left_out = [], []
    for batch in opened.batches:
        with batch.open() as found:
            units += [Unit(s.name, str(s.path), s) for s in found.sources]
            left_out += found.left_out
    return units, left_out


def _model_of(session: Session) -> dict[str, Any]:
    manifest = session.manifest
    return {
        "target": manifest.target,
        "runtime": session.runtime,
        "variant": manifest.variant,
        "form": manifest.form,
        "precision": manifest.precision,
        "artifact_sha256": manifest.artifact.sha256,
        "weights_sha256": manifest.weights.sha256,
    }


@contextmanager
def _claimed(out: Path, recipe: dict[str, Any]) -> Iterator[None]:
    """``out`` held by this run: new, or an earlier archive run of the same recipe (anything
    else refused, nothing changed); locked against a second run at once; what partial
    folders a killed run left behind, removed."""
    _check_recipe(out, recipe)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_FILE, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ProjectError(f"another archive run is writing {out}; wait for it") from None
        _check_recipe(out, recipe)  # again, now that no other run can write it
        (out / OUTPUT_MARKER).write_text("written by bas-deploy; replaced by its next run\n")
        write_json_atomic(out / ARCHIVE_FILE, recipe)
        _remove_partials(out, "")
        yield


def _check_recipe(out: Path, recipe: dict[str, Any]) -> None:
    """Refuse an ``out`` that holds anything but an archive run of ``recipe``."""
    if not out.is_dir() or all(p.name in (OUTPUT_MARKER, LOCK_FILE) for p in out.iterdir()):
        return
    recorded = out / ARCHIVE_FILE
    if not recorded.is_file():
        raise ProjectError(
            f"--out {out} holds an output of the command without --workers; choose another "
            "(nothing was changed)"
        )
    earlier = json.loads(recorded.read_text())
    differ = [key for key in recipe if earlier.get(key) != recipe[key]]
    if differ:
        raise ProjectError(
            f"--out {out} holds an archive run of another {' and '.join(differ)} "
            f"({ARCHIVE_FILE}); choose another --out (nothing was changed)"
        )


def _remove_partials(out: Path, run_id: str) -> None:
    """The partial folders of run ``run_id`` ('' : of any run) in ``out``."""
    for folder in out.glob(f".*{PARTIAL}{run_id}*"):
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)


def _write_summary(
    out: Path, recipe: dict[str, Any], totals: ArchiveTotals, entries: list[dict[str, Any]]
) -> None:
    loops_s = totals.loops_s
    write_json_atomic(
        out / "summary.json",
        {
            **recipe,
            "loops": [asdict(row) for row in totals.rows],
            "frames_segmented": totals.frames,
            "wall_s": round(totals.wall_s, 2),
            "ray_start_s": round(totals.ray_start_s, 2),
            "workers_ready_s": round(totals.workers_ready_s, 2),
            "loops_per_minute": round(len(totals.done) * 60 / loops_s, 2) if loops_s else None,
            "frames_per_second": round(totals.frames / loops_s, 2) if loops_s else None,
            "workers_lost": totals.workers_lost,
            "retried": totals.retried,
            "sources": entries,
            "warnings": totals.warnings,
            "failed": totals.failed,
        },
    )
    with atomic_path(out / "summary.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(asdict(row) for row in totals.rows)


class _Pool:
    """The driver's side of the pool: each idle worker gets the next loop; a loop whose
    worker died goes back in the queue (at most MAX_ATTEMPTS tries) and a replacement
    worker is asked for, which joins once the cluster has room for it."""

    def __init__(self, units: list[Unit], bar: tqdm) -> None:
        self.queue, self.bar = deque(units), bar
        self.attempts: Counter[str] = Counter()
        self.starting: dict[Any, Any] = {}  # ready() call -> worker
        self.running: dict[Any, tuple[Any, Unit]] = {}  # segment() call -> (worker, unit)
        self.idle: list[Any] = []
        self.results: dict[str, UnitResult] = {}
        self.lost = 0
        self.retried: list[str] = []
        self.not_started: list[str] = []
        self.ray: Any = None  # Ray, and how to start a worker, once it runs (run_on_ray)
        self.start: Callable[[], Any] = lambda: None
        self.frames = 0
        # When Ray was asked for, was up, had a first worker ready, finished the last loop.
        self.asked = self.up = self.ready = self.last = 0.0

    def times(self) -> tuple[float, float, float]:
        """Seconds starting Ray, then until a worker was ready, then until the last loop."""
        return self.up - self.asked, self.ready - self.up, self.last - self.ready

    def run_on_ray(
        self,
        open_session: Callable[..., Session],
        workers: int,
        threads: int,
        options: RunOptions,
        out: Path,
        run_id: str,
        address: str | None,
    ) -> None:
        self.asked = time.perf_counter()
        with ray_cluster(workers * threads, address) as ray:
            self.ray = ray
            self.up = self.ready = self.last = time.perf_counter()
            worker = ray.remote(LoopWorker).options(
                num_cpus=threads, max_restarts=0, max_task_retries=0
            )
            self.start = lambda: worker.remote(open_session, threads, options, str(out), run_id)
            try:
                self._run(workers)
            finally:
                self._stop()
                _remove_partials(out, run_id)

    def _run(self, workers: int) -> None:
        for _ in range(min(workers, len(self.queue))):
            self._start()
        last_event = time.monotonic()
        while self.queue or self.running:
            self._assign()
            if not self.running and not self.starting:
                why = self.not_started[-1] if self.not_started else "every worker died"
                raise ProjectError(f"no worker could start: {why}")
            done, _ = self.ray.wait([*self.running, *self.starting], num_returns=1, timeout=1.0)
            if done:
                last_event = time.monotonic()
            elif not self.running and time.monotonic() - last_event > WORKER_WAIT_S:
                raise ProjectError(
                    f"no worker started within {WORKER_WAIT_S:.0f} s (does the cluster have "
                    "a free CPU for one?)"
                )
            for ref in done:
                self._settle(ref)

    def _stop(self) -> None:
        """Every worker ended, and what they were doing settled (their partial folders are
        then removed)."""
        actors = [*self.idle, *self.starting.values(), *(a for a, _ in self.running.values())]
        for actor in actors:
            self.ray.kill(actor)
        if self.running:
            self.ray.wait(list(self.running), num_returns=len(self.running), timeout=10.0)

    def _start(self) -> None:
        actor = self.start()
        self.starting[actor.ready.remote()] = actor

    def _assign(self) -> None:
        while self.idle and self.queue:
            actor, unit = self.idle.pop(), self.queue.popleft()
            self.attempts[unit.name] += 1
            self.running[actor.segment.remote(unit, self.attempts[unit.name])] = (actor, unit)

    def _settle(self, ref: Any) -> None:
        if ref in self.starting:
            actor = self.starting.pop(ref)
            try:
                self.ray.get(ref)
            except self.ray.exceptions.RayActorError as err:
                self.not_started.append(_last_line(err))
                return
            if self.ready == self.up:  # the first worker ready
                self.ready = self.last = time.perf_counter()
            self.idle.append(actor)
            return
        actor, unit = self.running.pop(ref)
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as err:
            self.lost += 1
            tries = self.attempts[unit.name]
            if tries < MAX_ATTEMPTS:
                self.queue.appendleft(unit)
                self.retried.append(unit.name)
            else:
                why = f"its worker died {tries} times (last: {_last_line(err)})"
                row = LoopRow(unit.name, unit.origin, status=FAILED, reason=why)
                self._done(unit, UnitResult([row]))
            self._start()
            return
        self.idle.append(actor)
        self._done(unit, result)

    def _done(self, unit: Unit, result: UnitResult) -> None:
        self.results[unit.name] = result
        self.last = time.perf_counter()
        self.frames += sum(row.frames for row in result.rows if row.status == OK)
        self.bar.update()
        fps = self.frames / max(self.last - self.ready, 1e-9)
        self.bar.set_postfix(frames=self.frames, fps=f"{fps:.1f}")


def _last_line(err: BaseException) -> str:
    """Ray's error as one line: its last, where the cause is."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__
