"""Where results go: a DICOMweb root (STOW-RS) or a DICOM node (C-STORE), behind one
``send``. ``AE@HOST:PORT`` names a node as PACS administrators write it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import ComprehensiveSRStorage, SegmentationStorage

from model.errors import ProjectError

from .dicomweb import DicomWebClient, is_dicomweb_url

_NODE = re.compile(r"^(?P<ae>[^@]{1,16})@(?P<host>[^:@]+):(?P<port>\d{1,5})$")
# C-STORE statuses a sender may take as stored (PS3.4 B.2.3: success and warnings).
_STORED = {0x0000, 0xB000, 0xB006, 0xB007}


class Destination(Protocol):
    def send(self, study_uid: str, files: list[Path]) -> list[str]:
        """Store ``files`` (results of one study); the SOP Instance UIDs stored, or a
        one-line ProjectError naming the destination and what failed."""
        ...


@dataclass(frozen=True)
class DicomWebDestination:
    root: str

    def send(self, study_uid: str, files: list[Path]) -> list[str]:
        return DicomWebClient(self.root).store(study_uid, files)

    def __str__(self) -> str:
        return self.root


@dataclass(frozen=True)
class DicomNodeDestination:
    ae_title: str
    host: str
    port: int
    calling_ae_title: str = "BAS"
    timeout: float = 30.0

    def send(self, study_uid: str, files: list[Path]) -> list[str]:
        ae = AE(ae_title=self.calling_ae_title)
        for sop_class in (SegmentationStorage, ComprehensiveSRStorage):
            ae.add_requested_context(sop_class)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        assoc = ae.associate(self.host, self.port, ae_title=self.ae_title)
        if not assoc.is_established:
            why = (
                "rejected the association"
                if assoc.is_rejected
                else "cannot connect (refused, or no answer)"
            )
            raise ProjectError(f"{self}: {why}")
        stored = []
        try:
            for file in files:
                ds = dcmread(file)
                status = assoc.send_c_store(ds)
                code = getattr(status, "Status", None)
                if code not in _STORED:
                    what = "no answer" if code is None else f"status 0x{code:04X}"
                    raise ProjectError(f"{self}: refused {file.name} ({what})")
                stored.append(str(ds.SOPInstanceUID))
        finally:
            assoc.release()
        return stored

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def parse_destination(
    text: str, option: str = "--store-to"
) -> DicomWebDestination | DicomNodeDestination:
    """``http(s)://...`` (a DICOMweb root) or ``AE@HOST:PORT``; else one line saying so,
    naming ``option``."""
    if is_dicomweb_url(text):
        return DicomWebDestination(text.rstrip("/"))
    match = _NODE.match(text)
    if match is None or not 0 < int(match["port"]) < 65536:
        raise ProjectError(
            f"{option} {text!r}: neither a DICOMweb root (http://HOST:PORT/ROOT) nor a "
            "DICOM node (AE@HOST:PORT)"
        )
    return DicomNodeDestination(match["ae"], match["host"], int(match["port"]))
