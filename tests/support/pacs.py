"""A real Orthanc, with its DICOMweb plugin, for tests that talk to a PACS (no mocks).

Nothing is installed here: ``make pacs`` installs Debian's ``orthanc`` and
``orthanc-dicomweb`` where they are missing. Without them the ``orthanc`` fixture skips its
tests, naming ``make pacs``, and fails them under ``make test`` (``tests.support.external``);
an Orthanc that is installed but does not start always fails them. Each server gets a
temporary folder (configuration, storage, log) and free ports. Orthanc (1.10 to 1.12) has
no option binding it to one address: it listens on every interface, and
``RemoteAccessAllowed: false`` makes its HTTP server answer this machine only. The helpers
use Orthanc's native REST API, never DICOMweb, so that tests check the project's DICOMweb
client against code it shares nothing with.

A test module takes the ``orthanc`` fixture with ``orthanc = pacs.orthanc`` (``from
tests.support import pacs``; importing the name itself would trip ruff's F811), or runs its
own with ``with Orthanc(folder) as server:``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.external import REQUIRE_PACS, missing

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
INSTALL_HINT = "run make pacs (root once) to install Debian's orthanc and orthanc-dicomweb"


class OrthancUnavailable(RuntimeError):
    """Orthanc is not installed here, or did not start."""


def orthanc_missing() -> str | None:
    """What of Orthanc is not installed here, with how to install it; None if nothing."""
    absent = [str(path) for path in (ORTHANC, DICOMWEB_PLUGIN) if not path.exists()]
    return f"{', '.join(absent)} missing: {INSTALL_HINT}" if absent else None


def free_port() -> int:
    """A TCP port nothing listens on, on any interface (Orthanc listens on all of them)."""
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


class Orthanc:
    """One Orthanc server: ``with Orthanc(folder) as server:`` starts it and stops it."""

    def __init__(self, folder: Path, aet: str = "BASTEST", timeout: float = 30) -> None:
        self.folder = Path(folder)
        self.aet = aet
        self.timeout = timeout
        self.log = self.folder / "orthanc.log"
        self.http_port = self.dicom_port = 0
        self._process: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_root(self) -> str:
        return f"{self.http_url}/dicom-web"

    def _config(self) -> dict[str, Any]:
        storage = str(self.folder / "storage")
        return {
            "Name": f"bas-test-{self.http_port}",
            "StorageDirectory": storage,
            "IndexDirectory": storage,
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "StableAge": 1,
            "SaveJobs": False,
            "OrthancExplorerEnabled": False,
            "WebDavEnabled": False,
            "HttpThreadsCount": 4,
            "DicomThreadsCount": 2,
            "ConcurrentJobs": 1,
        }

    def _log_tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> Orthanc:
        """Start Orthanc and wait until ``/system`` answers (fresh ports if one was taken)."""
        absent = orthanc_missing()
        if absent is not None:
            raise OrthancUnavailable(absent)
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # another process may take a port between the check and its use
            self.http_port, self.dicom_port = free_port(), free_port()
            config = self.folder / "orthanc.json"
            config.write_text(json.dumps(self._config(), indent=2))
            with open(self.log, "wb") as log:
                self._process = subprocess.Popen(
                    [str(ORTHANC), str(config)], stdout=log, stderr=subprocess.STDOUT
                )
            try:
                if self._wait_until_up():
                    return self
            except BaseException:  # never leave a server running that nobody will stop
                self.stop()
                raise
        raise OrthancUnavailable(f"Orthanc exited at start; its log ends:\n{self._log_tail()}")

    def _wait_until_up(self) -> bool:
        """Whether Orthanc answers; False if it exited first. OrthancUnavailable if neither."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                if requests.get(f"{self.http_url}/system", timeout=2).ok:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise OrthancUnavailable(
            f"Orthanc did not answer {self.http_url}/system within {self.timeout:g} s; "
            f"its log ends:\n{self._log_tail()}"
        )

    def stop(self) -> None:
        """Stop Orthanc (SIGTERM, then SIGKILL if it has not exited within 10 s)."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def __enter__(self) -> Orthanc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Orthanc's native REST API.

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = requests.request(method, self.http_url + path, timeout=30, **kwargs)
        response.raise_for_status()
        return response

    def upload(self, path: Path) -> dict[str, Any]:
        """Store one DICOM file (``POST /instances``); Orthanc's answer (ID, Status...)."""
        return self._call("POST", "/instances", data=Path(path).read_bytes()).json()

    def _lookup(self, uid: str, kind: str) -> str:
        """The Orthanc ID of the Patient/Study/Series/Instance with this DICOM UID."""
        found = self._call("POST", "/tools/lookup", data=uid).json()
        ids = [item["ID"] for item in found if item["Type"] == kind]
        if not ids:
            raise LookupError(f"Orthanc holds no {kind} {uid}")
        return ids[0]

    def studies(self) -> list[str]:
        """The Study Instance UIDs Orthanc holds."""
        studies = self._call("GET", "/studies", params={"expand": ""}).json()
        return [study["MainDicomTags"]["StudyInstanceUID"] for study in studies]

    def series_of_study(self, study_uid: str) -> list[dict[str, Any]]:
        """Each series of a study: ID, Modality, SeriesInstanceUID, SeriesNumber, Instances
        (count), and its instances' SOPInstanceUIDs, SOPClassUIDs and TransferSyntaxUIDs
        (each distinct, sorted)."""
        result = []
        for series in self._call(
            "GET", f"/studies/{self._lookup(study_uid, 'Study')}/series"
        ).json():
            tags = series["MainDicomTags"]
            instances = self._call("GET", f"/series/{series['ID']}/instances").json()
            metadata = [
                self._call("GET", f"/instances/{item['ID']}/metadata", params={"expand": ""}).json()
                for item in instances
            ]
            result.append(
                {
                    "ID": series["ID"],
                    "Modality": tags.get("Modality"),
                    "SeriesInstanceUID": tags["SeriesInstanceUID"],
                    "SeriesNumber": tags.get("SeriesNumber"),
                    "Instances": len(instances),
                    "SOPInstanceUIDs": sorted(
                        i["MainDicomTags"]["SOPInstanceUID"] for i in instances
                    ),
                    "SOPClassUIDs": sorted({m.get("SopClassUid") for m in metadata}),
                    "TransferSyntaxUIDs": sorted({m.get("TransferSyntax") for m in metadata}),
                }
            )
        return result

    def instance_file(self, instance: str) -> bytes:
        """The file Orthanc stored, by Orthanc ID or SOP Instance UID (``/instances/{id}/file``)."""
        orthanc_id = instance if "-" in instance else self._lookup(instance, "Instance")
        return self._call("GET", f"/instances/{orthanc_id}/file").content

    def wipe(self) -> None:
        """Delete everything Orthanc holds, for tests that need it empty."""
        for patient in self._call("GET", "/patients").json():
            self._call("DELETE", f"/patients/{patient}")


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """A running Orthanc shared by a module's tests; skipped, with how to install it, if absent
    (failed under ``make test``)."""
    absent = orthanc_missing()
    if absent is not None:
        missing(absent, REQUIRE_PACS)
    server = Orthanc(tmp_path_factory.mktemp("orthanc"))
    try:
        server.start()
    except OrthancUnavailable as err:
        pytest.fail(str(err), pytrace=False)
    try:
        yield server
    finally:
        server.stop()
