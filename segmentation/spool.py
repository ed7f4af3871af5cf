"""The node's spool: every instance it acknowledged, and what became of each series, on disk.

Layout under the spool folder (all of it written by the node, nothing else):

- ``instances/<series UID>/<SOP instance UID>.dcm``: each received instance, written to
  ``incoming/.<SOP instance UID>.dcm.part``, flushed to disk (fsync), checked, and renamed
  into its series' folder, the folder synced after, before the C-STORE is acknowledged. A
  ``.part`` file is an instance being checked, or one whose node was killed mid-write:
  never acknowledged, never read as an instance, removed at the next start.
- ``jobs/<series UID>.json``: the series' job (:class:`Job`), rewritten whole by rename at
  every change, so a killed node leaves each job as it last was.
- ``results/<series UID>/``: the segmentation command's output for the series, which
  appears only complete (the command stages it).

A job goes ``received`` (instances arriving; due once quiet for the node's quiet time) ->
``working`` (being segmented) -> ``segmented`` (results on disk, to send) -> ``sent``; or
to ``failed`` with the reason (the series could not be segmented, or the destination
refused it past the retries). A node that starts again finds ``working`` jobs and
segments them again from their instances (their results never appeared), and
``segmented`` ones and sends them: nothing received is lost, no series is segmented twice
after its results exist, and none is sent again once ``sent`` is on disk.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

from model.atomic import atomic_path

State = Literal["received", "working", "segmented", "sent", "failed"]
STATES: tuple[State, ...] = ("received", "working", "segmented", "sent", "failed")
PART = ".part"


@dataclass(frozen=True)
class Job:
    """One series: where it stands, and what a status line says of it."""

    series_uid: str
    study_uid: str
    state: State = "received"
    instances: int = 0
    last_received: float = 0.0  # time.time() of the last instance
    attempts: int = 0  # sends tried and refused
    next_try: float = 0.0  # when a refused send is tried again
    reason: str = ""  # why it failed, or why the last send was refused
    stored: tuple[str, ...] = ()  # SOP Instance UIDs the destination took
    finished: float = 0.0  # time.time() of sent or failed


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """The spool folder; its methods are safe to call from the node's threads at once."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.instances = self.root / "instances"
        self.incoming = self.root / "incoming"
        self.jobs = self.root / "jobs"
        self.results = self.root / "results"
        for folder in (self.instances, self.incoming, self.jobs, self.results):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def series_folder(self, series_uid: str) -> Path:
        return self.instances / series_uid

    def result_folder(self, series_uid: str) -> Path:
        return self.results / series_uid

    def write_instance(
        self, series_uid: str, sop_uid: str, data: bytes, check: Callable[[Path], str | None]
    ) -> str | None:
        """Durably store one instance's bytes, if ``check`` of the written file finds no
        problem (else remove it and return the problem). Only after None may the C-STORE
        be acknowledged."""
        part = self.incoming / f".{sop_uid}.dcm{PART}"
        with open(part, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        problem = check(part)
        if problem is not None:
            part.unlink()
            return problem
        folder = self.series_folder(series_uid)
        folder.mkdir(exist_ok=True)
        os.replace(part, folder / f"{sop_uid}.dcm")
        _fsync_folder(folder)
        return None

    def received(self, series_uid: str, study_uid: str) -> Job:
        """Count an instance into its series' job (a series sent or failed opens again:
        an instance that came late is segmented with the others)."""
        with self._lock:
            job = self.job(series_uid) or Job(series_uid, study_uid)
            count = sum(1 for _ in self.series_folder(series_uid).glob("*.dcm"))
            job = replace(
                job,
                state="received",
                instances=count,
                last_received=time.time(),
                attempts=0,
                next_try=0.0,
                reason="",
            )
            self._write(job)
            return job

    def update(self, job: Job, **changes: object) -> Job:
        with self._lock:
            job = replace(job, **changes)
            self._write(job)
            return job

    def job(self, series_uid: str) -> Job | None:
        path = self.jobs / f"{series_uid}.json"
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        data["stored"] = tuple(data.get("stored", ()))
        return Job(**data)

    def all_jobs(self) -> list[Job]:
        found = (self.job(p.stem) for p in sorted(self.jobs.glob("*.json")))
        return [job for job in found if job is not None]

    def _write(self, job: Job) -> None:
        with atomic_path(self.jobs / f"{job.series_uid}.json") as tmp:
            tmp.write_text(json.dumps(asdict(job), indent=1) + "\n")

    def recover(self) -> list[str]:
        """At start: drop the partial writes a stop left, put back to work what was in work.
        Returns a line per thing done, for the log."""
        done = []
        for part in sorted(self.incoming.glob(f".*{PART}")):
            part.unlink()
            done.append(f"removed {part.name}: an instance never acknowledged (cut off)")
        for job in self.all_jobs():
            if job.state == "working":
                self.update(job, state="received")
                done.append(f"series {job.series_uid}: was being segmented; segmenting again")
        return done

    def counts(self) -> dict[State, int]:
        jobs = self.all_jobs()
        return {state: sum(job.state == state for job in jobs) for state in STATES}

    def due(self, quiet_s: float, now: float) -> Iterator[Job]:
        """Jobs to act on now: quiet series to segment, results to (re)send."""
        for job in self.all_jobs():
            quiet = job.state == "received" and now - job.last_received >= quiet_s
            if quiet or (job.state == "segmented" and now >= job.next_try):
                yield job
