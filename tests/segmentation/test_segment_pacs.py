"""The segmentation command against a real PACS: studies pulled from Orthanc over DICOMweb,
segmented, and their DICOM Segmentation and measurement report stored back into the same
study (STOW-RS); Orthanc's own REST API (not our client) says what it then holds, dciodvfy
(not our code) says whether each object is valid, and highdicom reads them back."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
import requests
from click.testing import CliRunner, Result
from pydicom import examples

from device_bench.cli import main as device_bench_main
from device_bench.records import read_records
from segmentation.cli import main
from tests.support import pacs
from tests.support.dciodvfy import ALLOWED_WARNINGS, assert_dciodvfy_clean
from tests.support.pacs import Orthanc, free_port
from tests.support.synthetic_dicom import MM_PER_PX, write_breast_loop

pytestmark = pytest.mark.slow  # a real Orthanc, and PyTorch BaS on every loop it holds
orthanc = pacs.orthanc  # the fixture: a real Orthanc shared by this module's tests

CINE = Path(examples.get_path("ybr_color"))  # pydicom's US cine loop: 30 frames, no calibration
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"


def _segment(*args: object, code: int = 0) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, f"{result.output}\n{result.exception!r}"
    return result


def _by_modality(server: Orthanc, study: str) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for series in server.series_of_study(study):
        found.setdefault(series["Modality"], []).append(series)
    return found


@pytest.fixture(scope="module")
def stored(orthanc: Orthanc, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """pydicom's cine loop and a calibrated synthetic breast loop (each its own study) in
    Orthanc, each study segmented with --input <study URL> --store."""
    folder = tmp_path_factory.mktemp("pacs_sources")
    synthetic, _ = write_breast_loop(folder / "breast.dcm", frames=8)
    studies = {}
    for name, path in (("cine", CINE), ("breast", synthetic)):
        assert orthanc.upload(path)["Status"] == "Success"
        studies[name] = str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)
    outs = {}
    for name, study in studies.items():
        outs[name] = tmp_path_factory.mktemp(name) / "out"
        url = f"{orthanc.dicomweb_root}/studies/{study}"
        _segment("--input", url, "--store", "--out", outs[name])
    return {"studies": studies, "outs": outs, "synthetic": synthetic}


@pytest.mark.parametrize("name", ["cine", "breast"])
def test_each_study_holds_one_segmentation_and_one_report_per_loop(
    orthanc: Orthanc, stored: dict, name: str, tmp_path: Path
) -> None:
    study = stored["studies"][name]
    held = _by_modality(orthanc, study)
    assert sorted(held) == ["SEG", "SR", "US"]
    assert [s["Instances"] for s in held["SEG"]] == [1]
    assert [s["Instances"] for s in held["SR"]] == [1]
    assert held["SEG"][0]["SOPClassUIDs"] == [SEGMENTATION]
    assert held["SR"][0]["SOPClassUIDs"] == [COMPREHENSIVE_SR]
    source_uid = held["US"][0]["SOPInstanceUIDs"][0]
    for modality in ("SEG", "SR"):
        path = tmp_path / f"{modality}.dcm"
        path.write_bytes(orthanc.instance_file(held[modality][0]["SOPInstanceUIDs"][0]))
        assert_dciodvfy_clean(path, ALLOWED_WARNINGS)
        ds = pydicom.dcmread(path)
        assert ds.StudyInstanceUID == study
        if modality == "SEG":
            seg = hd.seg.Segmentation.from_dataset(ds)
            referenced = {
                item.ReferencedSOPInstanceUID
                for series in seg.ReferencedSeriesSequence
                for item in series.ReferencedInstanceSequence
            }
            assert referenced == {source_uid}
        else:
            sr = hd.sr.ComprehensiveSR.from_dataset(ds)
            assert sr.content.get_planar_roi_measurement_groups()


def test_the_local_outputs_are_written_as_for_a_file(stored: dict) -> None:
    for name in ("cine", "breast"):
        out = stored["outs"][name]
        summary = json.loads((out / "summary.json").read_text())
        assert summary["failed"] == []
        (loop,) = summary["sources"]
        folder = out / loop["name"]
        for file in ("frames.csv", "area.png", "overlay.mp4", "still.png", "segmentation.dcm"):
            assert (folder / file).is_file(), file
        assert len(loop["stored"]) == 2
        report = loop["dicom_measurement_report"]
        assert report["units"] == ("mm" if name == "breast" else "pixels")


def test_the_calibrated_loop_is_measured_in_mm(stored: dict) -> None:
    summary = json.loads((stored["outs"]["breast"] / "summary.json").read_text())
    (loop,) = summary["sources"]
    assert loop["mm_per_px"] == pytest.approx([MM_PER_PX, MM_PER_PX])
    report = loop["dicom_measurement_report"]
    assert report["largest_area"] > 100  # mm²: the synthetic lesion is a few cm across
    assert report["mean_area"] <= report["largest_area"]


def test_a_search_segments_every_study_it_finds_without_storing(
    orthanc: Orthanc, stored: dict, tmp_path: Path
) -> None:
    before = {s: _by_modality(orthanc, s) for s in stored["studies"].values()}
    result = _segment(
        "--input",
        f"{orthanc.dicomweb_root}/studies?ModalitiesInStudy=US",
        "--out",
        tmp_path / "out",
        "--max-frames",
        2,
    )
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert sorted(summary["videos"]) == ["study1_series_1", "study2_series_1"]
    assert "stored" not in result.output
    after = {s: _by_modality(orthanc, s) for s in stored["studies"].values()}
    assert {s: sorted(h) for s, h in after.items()} == {s: sorted(h) for s, h in before.items()}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/studies/1.2.3.4.5", "not found"),
        ("/studies/{ct}", "no ultrasound"),
    ],
)
def test_a_study_that_cannot_be_segmented_is_one_line_and_no_output(
    orthanc: Orthanc, stored: dict, tmp_path: Path, path: str, expected: str
) -> None:
    ct = pydicom.dcmread(examples.get_path("ct"), stop_before_pixels=True)
    orthanc.upload(examples.get_path("ct"))
    url = orthanc.dicomweb_root + path.format(ct=ct.StudyInstanceUID)
    result = _segment("--input", url, "--store", "--out", tmp_path / "out", code=2)
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: ") and expected in line and orthanc.dicomweb_root in line
    assert not (tmp_path / "out").exists()


def test_a_server_that_does_not_answer_is_one_line_and_no_output(tmp_path: Path) -> None:
    root = f"http://127.0.0.1:{free_port()}/dicom-web"
    result = _segment("--input", f"{root}/studies/1.2.3", "--out", tmp_path / "out", code=2)
    (line,) = result.output.strip().splitlines()
    assert "connection refused" in line and root in line
    assert not (tmp_path / "out").exists()


def test_a_url_of_another_scheme_is_one_line(tmp_path: Path) -> None:
    result = _segment("--input", "ftp://host/studies/1.2", "--out", tmp_path / "out", code=2)
    assert "only http:// and https:// (DICOMweb) URLs are read" in result.output


def test_store_needs_an_archive_input(tmp_path: Path) -> None:
    result = _segment("--input", CINE, "--store", "--out", tmp_path / "out", code=2)
    assert "--store needs a DICOMweb --input" in result.output


class _CuttingProxy(http.server.ThreadingHTTPServer):
    """Forwards to Orthanc, and cuts the retrieval of one series off halfway."""

    def __init__(self, upstream: str, cut_series: str) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream, self.cut_series = upstream, cut_series

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/dicom-web"


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    server: _CuttingProxy

    def _forward(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host",)}
        answer = requests.request(
            method, self.server.upstream + self.path, data=body, headers=headers, timeout=30
        )
        content = answer.content
        cut = method == "GET" and self.path.rstrip("/").endswith(self.server.cut_series)
        self.send_response(answer.status_code)
        for key in ("Content-Type",):
            if key in answer.headers:
                self.send_header(key, answer.headers[key])
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content[: len(content) // 2] if cut else content)
        self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self._forward("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._forward("POST")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def cutting_proxy(orthanc: Orthanc, tmp_path: Path) -> Iterator[tuple[_CuttingProxy, str]]:
    """A study of two loops in Orthanc, behind a proxy that breaks one loop's retrieval."""
    study = pydicom.uid.generate_uid()
    first, _ = write_breast_loop(tmp_path / "a.dcm", frames=4, study_uid=study, series_number=1)
    second, _ = write_breast_loop(
        tmp_path / "b.dcm", index=1, frames=4, study_uid=study, series_number=2
    )
    for path in (first, second):
        orthanc.upload(path)
    cut = str(pydicom.dcmread(second, stop_before_pixels=True).SeriesInstanceUID)
    proxy = _CuttingProxy(orthanc.dicomweb_root.removesuffix("/dicom-web"), cut)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy, study
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_a_loop_whose_retrieval_breaks_off_fails_alone(
    orthanc: Orthanc, cutting_proxy: tuple[_CuttingProxy, str], tmp_path: Path
) -> None:
    proxy, study = cutting_proxy
    out = tmp_path / "out"
    result = _segment("--input", f"{proxy.root}/studies/{study}", "--store", "--out", out, code=1)
    failed = [line for line in result.output.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 1 and failed[0].startswith("failed: series_2: ")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["videos"] == ["series_1"] and not (out / "series_2").exists()
    held = _by_modality(orthanc, study)
    assert [s["Instances"] for s in held["SEG"]] == [1]  # series 1's alone
    assert [s["Instances"] for s in held["SR"]] == [1]


def test_device_bench_video_reads_a_study_from_the_archive(
    orthanc: Orthanc, stored: dict, tmp_path: Path
) -> None:
    """The same opener as the segmentation command: a DICOMweb study plays like a file."""
    study = stored["studies"]["breast"]
    results = tmp_path / "r.jsonl"
    args = ["video", "--input", f"{orthanc.dicomweb_root}/studies/{study}", "--threads", "1"]
    result = CliRunner().invoke(device_bench_main, [*args, "--results", str(results)])
    assert result.exit_code == 0, result.output
    assert f"300 frames of {study}: sustained" in result.stdout
    assert {r.metric: r.value for r in read_records(results)}["video_frames"] == 300
