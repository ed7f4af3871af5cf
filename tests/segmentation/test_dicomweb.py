"""segmentation.dicomweb against a real Orthanc (tests/support/pacs.py) and, for answers
Orthanc never gives (a response cut off mid-instance, a server ignoring a filter), a loopback
HTTP server of the test's own that sends exactly the bytes each test asks for."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom import examples
from pydicom.uid import generate_uid

from segmentation.dicomweb import (
    DicomWebClient,
    DicomWebError,
    DicomWebResource,
    SeriesInfo,
    is_dicomweb_url,
    parse_resource,
)
from tests.support import pacs
from tests.support.pacs import Orthanc, free_port

orthanc = pacs.orthanc  # the fixture: a real Orthanc shared by this module's tests

# pydicom's own ultrasound examples: two single-frame images of one series (JPEG 2000 and
# uncompressed RGB), a 30-frame JPEG cine loop of another study; and a CT study besides.
US_PAIR = ("jpeg2k", "rgb_color")
US_CINE = "ybr_color"
STUDY = "1.2.840.113619.2.1.1.1"
SERIES = "1.2.840.113619.2.1.1.1.2"


def _dataset(name: str) -> pydicom.Dataset:
    return pydicom.dcmread(examples.get_path(name))


def _assert_one_line(excinfo: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, message


# parse_resource ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            f"http://pacs:8042/dicom-web/studies/{STUDY}",
            DicomWebResource("http://pacs:8042/dicom-web", STUDY),
        ),
        (
            f"https://pacs.example.org/a/b/rs/studies/{STUDY}/series/{SERIES}/",
            DicomWebResource("https://pacs.example.org/a/b/rs", STUDY, SERIES),
        ),
        (
            f"http://127.0.0.1:8080/studies/{STUDY}/series/{SERIES}",
            DicomWebResource("http://127.0.0.1:8080", STUDY, SERIES),
        ),
        (
            "http://pacs/dicom-web/studies?ModalitiesInStudy=US&StudyDate=20240101-20241231",
            DicomWebResource(
                "http://pacs/dicom-web",
                query={"ModalitiesInStudy": "US", "StudyDate": "20240101-20241231"},
            ),
        ),
        ("http://pacs/dicom-web/studies", DicomWebResource("http://pacs/dicom-web")),
    ],
)
def test_parse_resource(url: str, expected: DicomWebResource) -> None:
    assert parse_resource(url) == expected
    assert is_dicomweb_url(url)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"ftp://pacs/dicom-web/studies/{STUDY}", "not an http:// or https:// URL"),
        (f"pacs/dicom-web/studies/{STUDY}", "not an http:// or https:// URL"),
        ("http:///dicom-web/studies", "not an http:// or https:// URL"),
        ("http://pacs/dicom-web/", "not a DICOMweb study, series or search URL"),
        (f"http://pacs/dicom-web/studies/{STUDY}/instances/1.2", "not a DICOMweb study"),
        (f"http://pacs/studies/{STUDY}/series/{SERIES}/instances", "not a DICOMweb study"),
        ("http://pacs/dicom-web/studies/1.2.abc", "study '1.2.abc' is not a DICOM UID"),
        (f"http://pacs/studies/{STUDY}/series/1..2", "series '1..2' is not a DICOM UID"),
        (f"http://pacs/studies/1.{'2' * 63}", "is not a DICOM UID"),
        (f"http://pacs/studies/{STUDY}?Modality=US", "search keys go only with a search"),
        ("http://pacs/studies?Modality=US&Modality=CT", "repeated search key 'Modality'"),
    ],
)
def test_parse_resource_refuses(url: str, problem: str) -> None:
    with pytest.raises(DicomWebError) as excinfo:
        parse_resource(url)
    _assert_one_line(excinfo, url, problem)


def test_is_dicomweb_url() -> None:
    assert not is_dicomweb_url("/data/clip.dcm")
    assert not is_dicomweb_url("httpdata/clip")
    assert is_dicomweb_url("https://pacs/dicom-web/studies/1.2")


# Against Orthanc ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pacs(orthanc: Orthanc) -> Orthanc:
    """The Orthanc of this module, holding pydicom's US examples and a CT study."""
    for name in (*US_PAIR, US_CINE, "ct"):
        assert orthanc.upload(examples.get_path(name))["Status"] == "Success"
    return orthanc


@pytest.mark.slow
def test_search_finds_the_ultrasound_series(pacs: Orthanc) -> None:
    client = DicomWebClient(pacs.dicomweb_root)
    pair, cine, ct = (_dataset(name) for name in (US_PAIR[0], US_CINE, "ct"))
    found = client.search_studies({"ModalitiesInStudy": "US"})
    assert {pair.StudyInstanceUID, cine.StudyInstanceUID} <= set(found)
    assert ct.StudyInstanceUID not in found
    assert client.search_studies({"PatientID": "no such patient"}) == []

    series = client.search_series(pair.StudyInstanceUID, modality="US")
    assert series == [SeriesInfo(pair.StudyInstanceUID, pair.SeriesInstanceUID, "US", 1, 2)]
    native = pacs.series_of_study(pair.StudyInstanceUID)
    assert [(s["SeriesInstanceUID"], s["Modality"], s["Instances"]) for s in native] == [
        (pair.SeriesInstanceUID, "US", 2)
    ]
    assert client.search_series(pair.StudyInstanceUID, modality="CT") == []
    assert client.search_series(ct.StudyInstanceUID)[0].modality == "CT"


@pytest.mark.slow
@pytest.mark.parametrize("names", [US_PAIR, (US_CINE,)], ids=["two-images", "cine"])
def test_retrieve_series_writes_each_instance_as_stored(
    pacs: Orthanc, tmp_path: Path, names: tuple[str, ...]
) -> None:
    first = _dataset(names[0])
    (tmp_path / "000001.dcm").write_bytes(b"not ours")  # a name already taken is skipped
    client = DicomWebClient(pacs.dicomweb_root)
    paths = client.retrieve_series(first.StudyInstanceUID, first.SeriesInstanceUID, tmp_path)

    assert [path.name for path in paths] == [f"{n:06d}.dcm" for n in range(2, len(names) + 2)]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["000001.dcm"] + [
        path.name for path in paths
    ]  # and no temporary file left behind
    assert (tmp_path / "000001.dcm").read_bytes() == b"not ours"
    stored = {pydicom.dcmread(path).SOPInstanceUID: path.read_bytes() for path in paths}
    originals = {_dataset(name).SOPInstanceUID: examples.get_path(name) for name in names}
    assert set(stored) == set(originals)
    for uid, data in stored.items():
        assert data == pacs.instance_file(uid)
        assert data == Path(originals[uid]).read_bytes()  # Orthanc keeps the file as sent


@pytest.mark.slow
def test_retrieve_of_a_missing_study_names_the_server(pacs: Orthanc, tmp_path: Path) -> None:
    client = DicomWebClient(pacs.dicomweb_root)
    with pytest.raises(DicomWebError) as excinfo:
        client.retrieve_series("1.2.3.4", "1.2.3.4.5", tmp_path / "out")
    _assert_one_line(excinfo, pacs.dicomweb_root, "1.2.3.4.5", "not found (HTTP 404")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_store_lands_in_orthanc(pacs: Orthanc, tmp_path: Path) -> None:
    copies = []
    for n in range(2):
        copy = _dataset("ct")
        copy.SOPInstanceUID = copy.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        copy.save_as(tmp_path / f"copy{n}.dcm")
        copies.append((tmp_path / f"copy{n}.dcm", copy.SOPInstanceUID))
    client = DicomWebClient(pacs.dicomweb_root)

    stored = client.store(copy.StudyInstanceUID, [path for path, _ in copies])
    assert stored == [uid for _, uid in copies]
    (series,) = pacs.series_of_study(copy.StudyInstanceUID)
    assert set(stored) < set(series["SOPInstanceUIDs"])
    assert series["Instances"] == 3
    assert series["SOPClassUIDs"] == [copy.SOPClassUID]
    for path, uid in copies:
        assert pacs.instance_file(uid) == path.read_bytes()

    with pytest.raises(DicomWebError) as excinfo:  # Orthanc refuses it in another study
        client.store(_dataset(US_CINE).StudyInstanceUID, [copies[0][0]])
    _assert_one_line(excinfo, pacs.dicomweb_root, "1 instance(s) refused", copies[0][1])


def test_a_server_that_does_not_listen_is_named(tmp_path: Path) -> None:
    root = f"http://127.0.0.1:{free_port()}/dicom-web"
    client = DicomWebClient(root, timeout=5)
    with pytest.raises(DicomWebError) as excinfo:
        client.search_series(STUDY)
    _assert_one_line(excinfo, root, "connection refused")
    with pytest.raises(DicomWebError) as excinfo:
        client.retrieve_series(STUDY, SERIES, tmp_path)
    _assert_one_line(excinfo, root, SERIES, "connection refused")


# Against a canned loopback server ----------------------------------------------------------


class _CannedHandler(http.server.BaseHTTPRequestHandler):
    """Answers every GET with ``server.answer``: its status, headers and body, which it sends
    whole or cut off at ``cut`` bytes, framed by closing the connection, by a Content-Length
    (of the whole body, so a cut is seen as one) or in chunks of ``piece`` bytes."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        answer = self.server.answer
        body: bytes = answer["body"]
        sent = body[: answer.get("cut", len(body))]
        self.send_response(answer.get("status", 200))
        self.send_header("Content-Type", answer["content_type"])
        self.send_header("Connection", "close")
        framing = answer.get("framing", "close")
        if framing == "length":
            self.send_header("Content-Length", str(len(body)))
        if framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if framing != "chunked":
            self.wfile.write(sent)
        else:
            piece = answer.get("piece", 7)
            for start in range(0, len(sent), piece):
                chunk = sent[start : start + piece]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            if sent == body:
                self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CannedHandler)
    server.root = f"http://127.0.0.1:{server.server_address[1]}/rs"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


BOUNDARY = "b0undary-7"


def _multipart(*parts: bytes) -> bytes:
    head = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    body = b"preamble, ignored\r\n" + b"".join(head + part + b"\r\n" for part in parts)
    return body + f"--{BOUNDARY}--\r\n".encode()


MULTIPART = f'multipart/related; type="application/dicom"; boundary="{BOUNDARY}"'


def _files(*names: str) -> list[bytes]:
    return [Path(examples.get_path(name)).read_bytes() for name in names]


def test_retrieve_splits_parts_that_straddle_small_chunks(canned, tmp_path: Path) -> None:
    files = _files("mr", "ct", "mr")
    canned.answer = {
        "content_type": MULTIPART,
        "body": _multipart(*files),
        "framing": "chunked",
        "piece": 7,
    }
    paths = DicomWebClient(canned.root).retrieve_series(STUDY, SERIES, tmp_path)
    assert [path.read_bytes() for path in paths] == files
    assert sorted(tmp_path.iterdir()) == paths


@pytest.mark.parametrize("framing", ["close", "length", "chunked"])
@pytest.mark.parametrize("where", ["first part", "second part"])
def test_a_cut_off_retrieval_leaves_no_file(
    canned, tmp_path: Path, framing: str, where: str
) -> None:
    files = _files("ct", "mr")
    body = _multipart(*files)
    middle = body.index(files[0]) + len(files[0]) // 2
    if where == "second part":
        middle = body.index(files[1]) + len(files[1]) // 2
    canned.answer = {"content_type": MULTIPART, "body": body, "cut": middle, "framing": framing}
    (tmp_path / "keep.txt").write_text("not ours")
    with pytest.raises(DicomWebError) as excinfo:
        DicomWebClient(canned.root).retrieve_series(STUDY, SERIES, tmp_path)
    problem = "ended before the series did" if framing == "close" else "the answer broke off"
    _assert_one_line(excinfo, canned.root, SERIES, problem)
    assert [path.name for path in tmp_path.iterdir()] == ["keep.txt"]


def test_series_are_filtered_where_the_server_ignores_modality(canned) -> None:
    def series(uid: str, modality: str, number: int) -> dict:
        return {
            "0020000E": {"vr": "UI", "Value": [uid]},
            "00080060": {"vr": "CS", "Value": [modality]},
            "00200011": {"vr": "IS", "Value": [number]},
        }

    listing = [series("1.2.3", "US", 3), series("1.2.4", "SR", 4), series("1.2.5", "US", 2)]
    canned.answer = {"content_type": "application/dicom+json", "body": json.dumps(listing).encode()}
    found = DicomWebClient(canned.root).search_series(STUDY, modality="US")
    assert found == [
        SeriesInfo(STUDY, "1.2.5", "US", 2, None),
        SeriesInfo(STUDY, "1.2.3", "US", 3, None),
    ]


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ({"content_type": "text/html", "body": b"<html>login</html>"}, "not DICOM JSON"),
        ({"content_type": "application/json", "body": b'{"a": 1}'}, "not DICOM JSON"),
        (
            {"status": 500, "content_type": "text/plain", "body": b"boom\nline"},
            "HTTP 500 Internal Server Error",
        ),
    ],
)
def test_bad_answers_are_one_line(canned, answer: dict, problem: str) -> None:
    canned.answer = answer
    with pytest.raises(DicomWebError) as excinfo:
        DicomWebClient(canned.root).search_series(STUDY)
    _assert_one_line(excinfo, canned.root, problem)


def test_a_retrieval_that_is_not_multipart_is_refused(canned, tmp_path: Path) -> None:
    canned.answer = {"content_type": "application/dicom", "body": _files("mr")[0]}
    with pytest.raises(DicomWebError) as excinfo:
        DicomWebClient(canned.root).retrieve_series(STUDY, SERIES, tmp_path)
    _assert_one_line(excinfo, canned.root, "not a multipart DICOM answer")
    assert list(tmp_path.iterdir()) == []
