"""A DICOM node a scanner or an archive routes ultrasound to: C-ECHO and C-STORE in, each
series segmented once it has been quiet a while, its SEG and SR sent on.

    python -m segmentation.node --artifact A --port P --ae-title T --spool DIR --store-to DEST
        [--quiet 10] [--allow-caller AE ...] [--min-free-mb 500] [--max-spool-mb N]
        [--retries 5] [--backoff 2] [--host 0.0.0.0] [--threads N]
    python -m segmentation.node --spool DIR --status

(``python -m runtimes.node`` is the same command.) DEST is a DICOMweb root URL (STOW-RS)
or ``AE@HOST:PORT`` (C-STORE).

What it accepts, and the status it answers (PS3.4 Annex B and C):

- A C-STORE of every ultrasound storage class the application reads (Ultrasound (Multi-
  frame) Image Storage, Secondary Capture), in every transfer syntax its decoders read.
  The instance is written to the spool and synced to disk before 0x0000 (Success) is
  sent; a C-STORE is never acknowledged before that (:mod:`segmentation.spool`).
- An instance the application would refuse (another modality, no pixels, a header that
  disagrees with its data, pixels no decoder reads): 0xA900 (Data Set does not match SOP
  Class), kept out of every job, nothing written. An instance that cannot be decoded at
  all: 0xC000 (Cannot understand).
- A spool whose disk has less than ``--min-free-mb`` left after the instance, or that
  would grow past ``--max-spool-mb``: 0xA700 (Out of Resources), nothing written; the
  sender keeps the instance and tries again later.
- An association from a calling AE title not in ``--allow-caller`` (when given): rejected.
- An association dropped mid-transfer leaves nothing: an instance is written only once it
  has arrived whole.

A series is complete once no instance of it has come for ``--quiet`` seconds; it is then
segmented through the same path as every other input (``segmentation.run``: the spool's
series folder is a study folder) and its results sent to DEST. A destination that is down
or refuses leaves the job to send with retries (``--backoff`` seconds, doubled each time),
then ``failed`` with the reason after ``--retries``. Each change of a series' state is one
log line on stderr; ``--status`` prints every series' state from the spool. A node stopped
(SIGTERM, Ctrl-C or killed) and started again on the same spool finishes what it had.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

import click
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
    MPEGTransferSyntaxes,
    RLETransferSyntaxes,
    UncompressedTransferSyntaxes,
)
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from model.errors import ProjectError, one_line
from model.options import (
    PIPELINE_THREADS,
    command,
    default_threads,
    existing_path,
    threads_option_saying,
    variant_option,
)
from runtimes import load, load_pytorch
from runtimes.session import Session

from .destinations import Destination, parse_destination
from .dicom import SECONDARY_CAPTURE, ULTRASOUND_STORAGE, scan_dicom
from .run import RunOptions, run_segment
from .spool import Job, Spool

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000

# What the application's decoders read (Big Endian and deflate: pydicom cannot decode
# them from a file a frame at a time).
TRANSFER_SYNTAXES = [
    *(s for s in UncompressedTransferSyntaxes if s.is_little_endian and not s.is_deflated),
    *JPEGTransferSyntaxes,
    *JPEGLSTransferSyntaxes,
    *(s for s in JPEG2000TransferSyntaxes if "Part 2" not in s.name),
    *RLETransferSyntaxes,
    *MPEGTransferSyntaxes,
]
STORAGE_CLASSES = sorted(ULTRASOUND_STORAGE | SECONDARY_CAPTURE)
POLL_S = 0.2

_log = logging.getLogger("segmentation.node")


class Node:
    """The listening side (pynetdicom's server threads) and one worker thread that
    segments and sends, both on one spool."""

    def __init__(
        self,
        session: Session,
        spool: Spool,
        destination: Destination,
        quiet_s: float = 10.0,
        min_free_bytes: int = 500 << 20,
        max_spool_bytes: int | None = None,
        retries: int = 5,
        backoff_s: float = 2.0,
    ) -> None:
        self.session, self.spool, self.destination = session, spool, destination
        self.quiet_s, self.retries, self.backoff_s = quiet_s, retries, backoff_s
        self.min_free_bytes, self.max_spool_bytes = min_free_bytes, max_spool_bytes
        self._spool_bytes = _size_of(spool.root)
        self._bytes_lock = threading.Lock()
        self._stop = threading.Event()

    # The listening side: runs in pynetdicom's association threads.

    def on_echo(self, event: evt.Event) -> int:
        return SUCCESS

    def on_store(self, event: evt.Event) -> int | Dataset:
        calling = event.assoc.requestor.ae_title
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            data = event.encoded_dataset()
            series, study, sop = ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.SOPInstanceUID
        except Exception as err:  # whatever pydicom raises on bytes it cannot parse
            _log.warning("refused an instance from %s: cannot be read (%s)", calling, one_line(err))
            return _status(CANNOT_UNDERSTAND, f"cannot be read: {one_line(err)}")
        if not self._room_for(len(data)):
            _log.warning("refused %s from %s: out of room in %s", sop, calling, self.spool.root)
            return _status(OUT_OF_RESOURCES, "the node's spool is full; send again later")
        problem = self.spool.write_instance(str(series), str(sop), data, _refusal)
        if problem is not None:
            _log.warning("refused %s from %s: %s", sop, calling, problem)
            return _status(DOES_NOT_MATCH, problem)
        with self._bytes_lock:
            self._spool_bytes += len(data)
        job = self.spool.received(str(series), str(study))
        if job.instances == 1:
            _log.info("series %s: receiving from %s", series, calling)
        return SUCCESS

    def _room_for(self, size: int) -> bool:
        free = shutil.disk_usage(self.spool.root).free
        with self._bytes_lock:
            over = self.max_spool_bytes is not None and (
                self._spool_bytes + size > self.max_spool_bytes
            )
        return not over and free - size >= self.min_free_bytes

    # The worker side: one thread, one series at a time.

    def work(self) -> None:
        """Segment quiet series and send results until stopped."""
        while not self._stop.is_set():
            for job in self.spool.due(self.quiet_s, time.time()):
                if self._stop.is_set():
                    return
                if job.state == "received":
                    job = self._segment(job)
                if job is not None and job.state == "segmented":
                    self._send(job)
            self._stop.wait(POLL_S)

    def stop(self) -> None:
        self._stop.set()

    def _segment(self, job: Job) -> Job | None:
        started = time.time()
        job = self.spool.update(job, state="working")
        _log.info(
            "series %s: %d instance(s), quiet for %gs: segmenting",
            job.series_uid,
            job.instances,
            self.quiet_s,
        )
        out = self.spool.result_folder(job.series_uid)
        try:
            totals = run_segment(
                self.session, self.spool.series_folder(job.series_uid), out, RunOptions()
            )
        except ProjectError as err:
            job = self.spool.update(job, state="failed", reason=str(err), finished=time.time())
            _log.error("series %s: failed: %s", job.series_uid, err)
            return None
        latest = self.spool.job(job.series_uid)
        if latest is not None and latest.last_received > started:  # more came meanwhile
            _log.info(
                "series %s: more instances came while segmenting; again when quiet", job.series_uid
            )
            return None
        reason = "; ".join(totals.failed)
        job = self.spool.update(job, state="segmented", reason=reason)
        _log.info(
            "series %s: %d frames segmented in %.1fs",
            job.series_uid,
            totals.segmented,
            time.time() - started,
        )
        return job

    def _send(self, job: Job) -> None:
        files = _results(self.spool.result_folder(job.series_uid))
        try:
            stored = self.destination.send(job.study_uid, files)
        except ProjectError as err:
            attempts = job.attempts + 1
            if attempts > self.retries:
                self.spool.update(
                    job, state="failed", attempts=attempts, reason=str(err), finished=time.time()
                )
                _log.error("series %s: failed: %s (after %d tries)", job.series_uid, err, attempts)
                return
            wait = self.backoff_s * 2 ** (attempts - 1)
            self.spool.update(job, attempts=attempts, next_try=time.time() + wait, reason=str(err))
            _log.warning(
                "series %s: not sent (%s); try %d of %d in %gs",
                job.series_uid,
                err,
                attempts + 1,
                self.retries + 1,
                wait,
            )
            return
        self.spool.update(job, state="sent", stored=tuple(stored), finished=time.time())
        _log.info("series %s: sent %d objects to %s", job.series_uid, len(stored), self.destination)


def _refusal(path: Path) -> str | None:
    """Why the application would refuse the instance at ``path`` (None: it reads it)."""
    try:
        scan_dicom(path)
    except ProjectError as err:
        return str(err).replace(f"{path}: ", "")
    return None


def _results(folder: Path) -> list[Path]:
    """The DICOM results the segmentation command wrote for a series (every loop's)."""
    return sorted([*folder.rglob("segmentation.dcm"), *folder.rglob("measurements.dcm")])


def _size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _status(code: int, comment: str) -> Dataset:
    status = Dataset()
    status.Status = code
    status.ErrorComment = comment[:64]
    return status


def _application_entity(ae_title: str, allowed: tuple[str, ...]) -> AE:
    ae = AE(ae_title=ae_title)
    ae.add_supported_context(Verification)
    for sop_class in STORAGE_CLASSES:
        ae.add_supported_context(sop_class, TRANSFER_SYNTAXES)
    ae.maximum_associations = 16
    if allowed:
        ae.require_calling_aet = list(allowed)
    return ae


def status_table(spool: Spool) -> str:
    """One line per series, then the count in each state."""
    rows = [
        f"{job.series_uid}  {job.state:<9}  {job.instances:>4} instance(s)"
        + (f"  {len(job.stored)} sent" if job.stored else "")
        + (f"  ({job.reason})" if job.reason else "")
        for job in spool.all_jobs()
    ]
    counts = ", ".join(f"{n} {state}" for state, n in spool.counts().items())
    return "\n".join([*rows, f"{len(rows)} series: {counts}"])


@command("python -m segmentation.node")
@click.option("--artifact", type=existing_path, help="Converted artifact. Without it: PyTorch BaS.")
@variant_option()
@click.option("--weights", default="shipped", show_default=True, help="PyTorch weights.")
@click.option("--port", type=click.IntRange(1, 65535), help="DICOM port to listen on.")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--ae-title", default="BAS", show_default=True, help="The node's AE title.")
@click.option(
    "--spool",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Folder of received instances, jobs and results (kept across restarts).",
)
@click.option("--store-to", "store_to", help="DICOMweb root URL, or AE@HOST:PORT.")
@click.option(
    "--quiet",
    "quiet_s",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds without a new instance after which a series is complete.",
)
@click.option("--allow-caller", multiple=True, help="Calling AE titles accepted (default: any).")
@click.option("--min-free-mb", type=click.IntRange(min=0), default=500, show_default=True)
@click.option("--max-spool-mb", type=click.IntRange(min=1), help="Refuse past this spool size.")
@click.option("--retries", type=click.IntRange(min=0), default=5, show_default=True)
@click.option(
    "--backoff",
    "backoff_s",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Seconds before the first retry; doubled each time.",
)
@click.option("--status", is_flag=True, help="Print every series' state in --spool and exit.")
@threads_option_saying(PIPELINE_THREADS)
def main(
    artifact: Path | None,
    variant: str,
    weights: str,
    port: int | None,
    host: str,
    ae_title: str,
    spool: Path,
    store_to: str | None,
    quiet_s: float,
    allow_caller: tuple[str, ...],
    min_free_mb: int,
    max_spool_mb: int | None,
    retries: int,
    backoff_s: float,
    status: bool,
    threads: int | None,
) -> None:
    """A DICOM node: C-STORE ultrasound in, each series segmented, its SEG and SR sent on."""
    if status:
        if not spool.is_dir():
            raise ProjectError(f"--spool {spool}: no such folder")
        click.echo(status_table(Spool(spool)))
        return
    if port is None or store_to is None:
        raise ProjectError("--port and --store-to are needed to run the node")
    destination = parse_destination(store_to)
    session = (
        load(artifact, threads=threads or default_threads())
        if artifact is not None
        else load_pytorch(variant, weights, "stream", threads=threads or default_threads())
    )
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    _log.setLevel(logging.INFO)  # a line per series; the libraries only for warnings
    node_spool = Spool(spool)
    for line in node_spool.recover():
        _log.info("%s", line)
    node = Node(
        session,
        node_spool,
        destination,
        quiet_s,
        min_free_mb << 20,
        None if max_spool_mb is None else max_spool_mb << 20,
        retries,
        backoff_s,
    )
    ae = _application_entity(ae_title, allow_caller)
    handlers = [(evt.EVT_C_ECHO, node.on_echo), (evt.EVT_C_STORE, node.on_store)]
    try:
        server = ae.start_server((host, port), block=False, evt_handlers=handlers)
    except OSError as err:
        raise ProjectError(
            f"--port {port}: cannot listen on {host}:{port} ({one_line(err)})"
        ) from None
    _log.info(
        "%s listening on %s:%d, spool %s, sending to %s", ae_title, host, port, spool, destination
    )
    try:
        node.work()
    finally:
        node.stop()
        server.shutdown()


if __name__ == "__main__":
    main()
