"""The DICOM node (``python -m segmentation.node``) as a PACS routes studies to it: a real
process on a loopback port, pushed to by pynetdicom and by dcmtk's storescu, sending to a
real Orthanc; Orthanc's own REST API says what arrived, dciodvfy whether it is valid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from device_bench.node_load import run_load
from segmentation.node import main as node_main
from segmentation.spool import Job, Spool
from tests.support import pacs
from tests.support.dciodvfy import ALLOWED_WARNINGS, assert_dciodvfy_clean
from tests.support.external import require_program
from tests.support.pacs import Orthanc, free_port
from tests.support.synthetic_dicom import write_breast_loop

orthanc = pacs.orthanc  # the fixture: a real Orthanc shared by this module's tests

ROOT = Path(__file__).resolve().parents[2]
NODE_AE = "BASNODE"
CUT_AFTER_PDUS = 20  # of a C-STORE's P-DATA PDUs: the data set is cut well before its end
SCANNER = "SCANNER"


class NodeProcess:
    """``python -m segmentation.node`` in a process of its own, as an administrator runs it."""

    def __init__(self, spool: Path, store_to: str, *options: object) -> None:
        self.port = free_port()
        self.spool, self.log = spool, spool.parent / f"{spool.name}.log"
        self.args = [
            sys.executable, "-m", "segmentation.node", "--port", str(self.port),
            "--host", "127.0.0.1", "--ae-title", NODE_AE, "--spool", str(spool),
            "--store-to", store_to, "--threads", "1", *map(str, options),
        ]  # fmt: skip
        self.process: subprocess.Popen | None = None

    def start(self) -> NodeProcess:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the node exited:\n{self.log.read_text()[-2000:]}")
            if echo(self.port):
                return self
            time.sleep(0.3)
        raise AssertionError(f"the node did not answer C-ECHO:\n{self.log.read_text()[-2000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout=30)

    def status(self) -> str:
        args = [sys.executable, "-m", "segmentation.node", "--spool", str(self.spool), "--status"]
        return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True).stdout

    def wait_for(self, state: str, count: int, timeout: float = 90) -> str:
        """Until ``count`` series are in ``state`` (read from the spool, as --status does)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(job.state == state for job in Spool(self.spool).all_jobs()) >= count:
                return self.status()
            time.sleep(0.3)
        raise AssertionError(f"not {count} {state} in time:\n{self.status()}\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log.read_text()[-3000:]


def echo(port: int, calling: str = SCANNER) -> bool:
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE)
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return getattr(status, "Status", None) == 0


def c_store(port: int, *paths: Path, calling: str = SCANNER) -> list[int | None]:
    """pynetdicom as the scanner: each file's C-STORE status (None: not associated)."""
    ae = AE(ae_title=calling)
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE)
    if not assoc.is_established:
        return [None] * len(paths)
    try:
        return [getattr(assoc.send_c_store(path), "Status", None) for path in paths]
    finally:
        assoc.release()


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator:
    started: list[NodeProcess] = []

    def make(store_to: str, *options: object, spool: str = "spool") -> NodeProcess:
        node = NodeProcess(tmp_path / spool, store_to, *options)
        started.append(node)
        return node

    yield make
    for node in started:
        if node.process is not None and node.process.poll() is None:
            node.stop(signal.SIGKILL)


def _results(server: Orthanc, study: str) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for series in server.series_of_study(study):
        found.setdefault(series["Modality"], []).append(series)
    return found


def _loop(folder: Path, name: str, frames: int = 4, index: int = 0) -> tuple[Path, str]:
    path, _ = write_breast_loop(folder / f"{name}.dcm", index=index, frames=frames)
    return path, str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


@pytest.mark.slow
def test_a_push_by_storescu_and_by_pynetdicom_comes_back_in_orthanc(
    orthanc: Orthanc, node_factory, tmp_path: Path
) -> None:
    node = node_factory(f"BASTEST@127.0.0.1:{orthanc.dicom_port}", "--quiet", "1").start()
    first, first_study = _loop(tmp_path, "first")
    second, second_study = _loop(tmp_path, "second", index=1)
    storescu = require_program("storescu", "dcmtk")
    pushed = subprocess.run(
        [storescu, "-aet", SCANNER, "-aec", NODE_AE, "127.0.0.1", str(node.port), str(first)],
        capture_output=True,
        text=True,
    )
    assert pushed.returncode == 0, pushed.stderr
    assert c_store(node.port, second) == [0]
    status = node.wait_for("sent", 2)
    assert "2 series: 0 received, 0 working, 0 segmented, 2 sent, 0 failed" in status
    for study in (first_study, second_study):
        held = _results(orthanc, study)
        assert [s["Instances"] for s in held["SEG"]] == [1]
        assert [s["Instances"] for s in held["SR"]] == [1]
        for modality in ("SEG", "SR"):
            path = tmp_path / f"{study[-6:]}_{modality}.dcm"
            path.write_bytes(orthanc.instance_file(held[modality][0]["SOPInstanceUIDs"][0]))
            assert_dciodvfy_clean(path, ALLOWED_WARNINGS)
    assert node.log_tail().count(": sent 2 objects to BASTEST@127.0.0.1") == 2


@pytest.mark.slow
def test_results_go_by_stow_to_a_dicomweb_root(
    orthanc: Orthanc, node_factory, tmp_path: Path
) -> None:
    node = node_factory(orthanc.dicomweb_root, "--quiet", "0.5").start()
    path, study = _loop(tmp_path, "stow")
    assert c_store(node.port, path) == [0]
    node.wait_for("sent", 1)
    assert sorted(_results(orthanc, study)) == ["SEG", "SR"]  # the node sends results only


def _secondary_capture_ct(folder: Path) -> Path:
    ds = pydicom.dcmread(write_breast_loop(folder / "sc_src.dcm", frames=1)[0])
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    del ds.NumberOfFrames, ds.FrameTime, ds.FrameIncrementPointer
    ds.Modality = "CT"
    path = folder / "sc_ct.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def _fewer_bytes_than_a_frame(folder: Path) -> Path:
    ds = pydicom.dcmread(write_breast_loop(folder / "bad_src.dcm", frames=2)[0])
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 4]  # half of one frame
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = folder / "bad.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.slow
def test_what_the_node_refuses_gets_a_failure_status_and_stays_out(
    orthanc: Orthanc, node_factory, tmp_path: Path
) -> None:
    node = node_factory(
        f"BASTEST@127.0.0.1:{orthanc.dicom_port}",
        *("--quiet", "0.5", "--allow-caller", SCANNER, "--max-spool-mb", "1"),
    ).start()
    assert c_store(node.port, _secondary_capture_ct(tmp_path)) == [0xA900]
    assert c_store(node.port, _fewer_bytes_than_a_frame(tmp_path)) == [0xA900]
    big, _ = _loop(tmp_path, "big", frames=12)  # 1.4 MB: past the 1 MB spool
    assert c_store(node.port, big) == [0xA700]
    assert c_store(node.port, _loop(tmp_path, "small")[0], calling="INTRUDER") == [None]
    assert not echo(node.port, calling="INTRUDER")
    spool = tmp_path / "spool"
    assert not [*(spool / "instances").iterdir(), *(spool / "incoming").iterdir()]
    assert "0 series" in node.status()
    fits, _ = _loop(tmp_path, "fits", frames=2)
    assert c_store(node.port, fits) == [0]  # the node goes on
    node.wait_for("sent", 1)


@pytest.mark.slow
def test_a_destination_that_is_down_is_retried_then_failed_with_the_reason(
    node_factory, tmp_path: Path
) -> None:
    down = f"ARCHIVE@127.0.0.1:{free_port()}"
    node = node_factory(down, "--quiet", "0.3", "--retries", "2", "--backoff", "0.2").start()
    assert c_store(node.port, _loop(tmp_path, "loop", frames=2)[0]) == [0]
    status = node.wait_for("failed", 1)
    assert f"{down}: cannot connect" in status and "1 failed" in status
    log = node.log_tail()
    assert "try 2 of 3 in 0.2s" in log and "try 3 of 3 in 0.4s" in log
    assert "(after 3 tries)" in log


@pytest.mark.slow
# The aborting sender's own pynetdicom thread complains of the events after its abort.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_association_dropped_mid_transfer_leaves_no_instance(
    node_factory, tmp_path: Path
) -> None:
    """The sender passes on the first P-DATA PDUs of a C-STORE, then aborts: the node has
    part of a data set, as when a scanner's cable is pulled mid-send."""
    node = node_factory("ARCHIVE@127.0.0.1:9", "--quiet", "60").start()
    path, _ = _loop(tmp_path, "long", frames=12)  # 1.4 MB: about 90 PDUs of 16 KB
    ae = AE(ae_title=SCANNER)
    ae.dimse_timeout = 2  # the answer that never comes after the abort
    ds = pydicom.dcmread(path)
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", node.port, ae_title=NODE_AE)
    assert assoc.is_established
    send_pdu, sent = assoc.dul.send_pdu, []

    def cut_off(primitive: object) -> None:
        if type(primitive).__name__ == "P_DATA":
            sent.append(primitive)
            if len(sent) == CUT_AFTER_PDUS:
                assoc.abort()
            if len(sent) >= CUT_AFTER_PDUS:
                return
        send_pdu(primitive)

    assoc.dul.send_pdu = cut_off
    status = assoc.send_c_store(ds)
    assert getattr(status, "Status", None) != 0 and len(sent) >= CUT_AFTER_PDUS
    time.sleep(1)
    spool = tmp_path / "spool"
    assert not [*(spool / "instances").iterdir(), *(spool / "incoming").iterdir()]
    assert echo(node.port)  # and the node is still up


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "killed"])
def test_a_node_stopped_and_started_again_loses_nothing_and_sends_nothing_twice(
    orthanc: Orthanc, node_factory, tmp_path: Path, stop: signal.Signals
) -> None:
    destination = f"BASTEST@127.0.0.1:{orthanc.dicom_port}"
    waiting = node_factory(destination, "--quiet", "600").start()
    loops = [_loop(tmp_path, f"l{n}", frames=2, index=n) for n in range(3)]
    assert c_store(waiting.port, *(path for path, _ in loops)) == [0, 0, 0]
    waiting.stop(stop)
    assert "3 series: 3 received" in waiting.status()
    again = node_factory(destination, "--quiet", "0.2").start()
    again.wait_for("sent", 3)
    again.stop()
    third = node_factory(destination, "--quiet", "0.2").start()
    time.sleep(2)
    assert "3 series: 0 received, 0 working, 0 segmented, 3 sent, 0 failed" in third.status()
    for _, study in loops:
        held = _results(orthanc, study)
        assert [s["Instances"] for s in held["SEG"]] == [1], held
        assert [s["Instances"] for s in held["SR"]] == [1], held


def test_the_spool_recovers_what_a_stop_left(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.update(Job("1.2.3", "1.2"), state="working")
    spool.update(Job("1.2.4", "1.2"), state="segmented")
    spool.update(Job("1.2.5", "1.2"), state="sent")
    (spool.incoming / ".1.2.3.9.dcm.part").write_bytes(b"half")
    done = Spool(tmp_path).recover()
    assert {j.series_uid: j.state for j in spool.all_jobs()} == {
        "1.2.3": "received",
        "1.2.4": "segmented",
        "1.2.5": "sent",
    }
    assert len(done) == 2 and not list(spool.incoming.iterdir())


@pytest.mark.slow
def test_twenty_loops_over_eight_associations_each_get_one_seg_and_one_sr(
    orthanc: Orthanc, node_factory, tmp_path: Path
) -> None:
    node = node_factory(f"BASTEST@127.0.0.1:{orthanc.dicom_port}", "--quiet", "1").start()
    template, _ = _loop(tmp_path, "template", frames=3)
    node_address = f"{NODE_AE}@127.0.0.1:{node.port}"
    run = run_load(node_address, orthanc.dicomweb_root, template, 20, 8, timeout_s=240)
    assert run.instances == 20 and len(run.series) == 20
    assert [(s.seg, s.sr) for s in run.series] == [(1, 1)] * 20, run.summary()
    assert "20 series: 0 received, 0 working, 0 segmented, 20 sent, 0 failed" in node.status()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "11112"], "--port and --store-to are needed to run the node"),
        (["--port", "11112", "--store-to", "nonsense"], "--store-to 'nonsense': neither"),
        (["--status"], "no such folder"),
    ],
)
def test_bad_options_are_one_line_and_leave_no_spool(
    tmp_path: Path, args: list[str], message: str
) -> None:
    spool = tmp_path / "spool"
    result = CliRunner().invoke(node_main, ["--spool", str(spool), *args])
    assert result.exit_code == 2 and not spool.exists()
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: ") and message in line
