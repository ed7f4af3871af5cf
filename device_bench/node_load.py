"""A DICOM node under load: copies of one loop pushed by C-STORE over concurrent
associations, each followed until its SEG and SR are at the destination.

Every copy is its own study and series (new UIDs, pixels untouched), written before the
clock starts. The push is bounded (``loops`` copies, a deadline) and goes only where it
is pointed (a node on this machine, in the tests and the README). Results are looked for
at the destination over DICOMweb (QIDO-RS): a study is done when it holds exactly one
SEG and one SR; more than one of either is counted and reported, never hidden.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import generate_uid
from pynetdicom import AE

from model.errors import ProjectError
from runtimes.session import Session
from segmentation.destinations import DicomNodeDestination, parse_destination
from segmentation.dicomweb import DicomWebClient
from segmentation.run import run_segment

POLL_S = 0.25


@dataclass
class Series:
    """One pushed copy: its study, when its last instance was acknowledged, and when its
    results were first seen complete at the destination."""

    study_uid: str
    path: Path
    acknowledged: float = 0.0
    done: float | None = None
    seg: int = 0
    sr: int = 0

    def count_results(self, client: DicomWebClient) -> None:
        """Count the SEG and SR series the destination holds in this copy's study."""
        found = client.search_series(self.study_uid)
        self.seg = sum(s.modality == "SEG" for s in found)
        self.sr = sum(s.modality == "SR" for s in found)

    @property
    def latency_s(self) -> float | None:
        return None if self.done is None else self.done - self.acknowledged


@dataclass
class LoadRun:
    """What a load run measured."""

    loops: int
    associations: int
    instances: int
    push_s: float
    series: list[Series] = field(default_factory=list)

    @property
    def instances_per_s(self) -> float:
        return self.instances / self.push_s if self.push_s else 0.0

    @property
    def complete(self) -> list[Series]:
        return [s for s in self.series if s.done is not None and s.seg == 1 and s.sr == 1]

    def latencies(self) -> list[float]:
        return sorted(s.latency_s for s in self.series if s.latency_s is not None)

    def summary(self) -> str:
        lat = self.latencies()
        line = (
            f"{self.loops} loops over {self.associations} associations: {self.instances} "
            f"instances pushed in {self.push_s:.2f} s ({self.instances_per_s:.1f} instances/s "
            f"received); {len(self.complete)} of {self.loops} with exactly one SEG and one SR"
        )
        if lat:
            line += (
                f"; last instance to results stored: median {statistics.median(lat):.2f} s, "
                f"max {lat[-1]:.2f} s"
            )
        return line


def make_copies(template: Path, count: int, folder: Path) -> list[Series]:
    """``count`` copies of ``template``, each a study and series of its own."""
    ds = dcmread(template)
    copies = []
    for n in range(count):
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = folder / f"copy_{n:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        copies.append(Series(str(ds.StudyInstanceUID), path))
    return copies


def push(node: DicomNodeDestination, series: list[Series], associations: int) -> float:
    """C-STORE every copy, ``associations`` at a time (each its own association, sending
    its share in turn); the seconds it took. A refusal raises, naming the copy."""
    shares = [series[i::associations] for i in range(associations)]
    lock = threading.Lock()

    def send(share: list[Series]) -> None:
        ae = AE(ae_title=node.calling_ae_title)
        ds = dcmread(share[0].path, stop_before_pixels=True)
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assoc = ae.associate(node.host, node.port, ae_title=node.ae_title)
        if not assoc.is_established:
            raise ProjectError(f"{node}: association refused or not answered")
        try:
            for item in share:
                status = assoc.send_c_store(item.path)
                if getattr(status, "Status", None) != 0:
                    raise ProjectError(f"{node}: refused {item.path.name}: {status}")
                with lock:
                    item.acknowledged = time.monotonic()
        finally:
            assoc.release()

    started = time.monotonic()
    with ThreadPoolExecutor(associations) as pool:
        for future in [pool.submit(send, share) for share in shares if share]:
            future.result()
    return time.monotonic() - started


def wait_for_results(root: str, series: list[Series], timeout_s: float) -> None:
    """Poll the destination until every copy's study holds its results, or time is up."""
    client = DicomWebClient(root)
    deadline = time.monotonic() + timeout_s
    pending = list(series)
    while pending and time.monotonic() < deadline:
        for item in list(pending):
            item.count_results(client)
            if item.seg and item.sr:
                item.done = time.monotonic()
                pending.remove(item)
        time.sleep(POLL_S)


def run_load(
    node: str,
    results_root: str,
    template: Path,
    loops: int = 20,
    associations: int = 8,
    timeout_s: float = 600.0,
    calling_ae_title: str = "LOADGEN",
    settle_s: float = 2.0,
) -> LoadRun:
    """Push ``loops`` copies of ``template`` to ``node`` (AE@HOST:PORT) and wait for each
    one's SEG and SR at ``results_root`` (a DICOMweb root)."""
    target = parse_destination(node, "--node")
    if not isinstance(target, DicomNodeDestination):
        raise ProjectError(f"--node {node!r}: a DICOM node (AE@HOST:PORT)")
    target = replace(target, calling_ae_title=calling_ae_title)
    with tempfile.TemporaryDirectory(prefix="bas-load-") as folder:
        series = make_copies(template, loops, Path(folder))
        push_s = push(target, series, associations)
    wait_for_results(results_root, series, timeout_s)
    time.sleep(settle_s)  # then count again: a result sent twice would show now
    client = DicomWebClient(results_root)
    for item in series:
        item.count_results(client)
    return LoadRun(loops, associations, len(series), push_s, series)


def file_path_seconds(session: Session, template: Path) -> float:
    """The segmentation command's own work on ``template`` (the file path), in this
    process: the baseline the node's latency is held against."""
    with tempfile.TemporaryDirectory(prefix="bas-load-") as folder:
        started = time.monotonic()
        run_segment(session, template, Path(folder) / "out")
        return time.monotonic() - started
