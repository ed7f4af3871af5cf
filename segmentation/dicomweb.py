"""A DICOMweb client: find ultrasound series (QIDO-RS), fetch them (WADO-RS), send results
back (STOW-RS).

A cine loop can be hundreds of megabytes, so a series is fetched as one streamed
``multipart/related`` response that is split on the fly, each instance going straight to its
own file (a temporary name, renamed when complete), with only a small tail of the stream
held in memory. A response that stops early leaves nothing behind. Uploads are streamed
from disk the same way. Every failure is a :class:`DicomWebError` of one line naming the
server and what failed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qsl, quote, urlsplit

import requests
import urllib3

from model.atomic import atomic_path
from model.errors import ProjectError

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_DICOM = "application/dicom"
# Any transfer syntax: the instances as stored, never transcoded by the server (which may
# not be able to, and a lossy one would change the pixels).
_RETRIEVE_ACCEPT = f'multipart/related; type="{_DICOM}"; transfer-syntax=*'
_CHUNK = 1 << 16
_HEADER_LIMIT = 1 << 16  # a part's headers, or the transport padding after a boundary


class DicomWebError(ProjectError):
    """A DICOMweb URL that cannot be used, or a server that failed to do what was asked."""


@dataclass(frozen=True)
class DicomWebResource:
    """What a DICOMweb URL names: a study, a series, or a study search (``query``)."""

    root: str
    study_uid: str | None = None
    series_uid: str | None = None
    query: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SeriesInfo:
    """One series as a QIDO-RS search describes it (``instances``: None if not given)."""

    study_uid: str
    series_uid: str
    modality: str | None
    series_number: int | None
    instances: int | None


def is_dicomweb_url(text: str) -> bool:
    """Whether an input names a DICOMweb server rather than a file or folder."""
    return text.startswith(("http://", "https://"))


def _uid(text: str, what: str, url: str) -> str:
    if len(text) > 64 or not _UID.fullmatch(text):
        raise DicomWebError(f"{url}: {what} {text!r} is not a DICOM UID (digits and dots, <= 64)")
    return text


def parse_resource(url: str) -> DicomWebResource:
    """The root and UIDs of ``ROOT/studies/UID[/series/UID]``, or ``ROOT/studies?KEY=VALUE``."""
    expected = "expected ROOT/studies/UID[/series/UID] or ROOT/studies?KEY=VALUE"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DicomWebError(f"{url}: not an http:// or https:// URL ({expected})")
    segments = parts.path.strip("/").split("/")
    ends = (len(segments) - n for n in (1, 2, 4) if n <= len(segments))
    tail = next((end for end in ends if segments[end] == "studies"), None)
    if tail is None or (len(segments) - tail == 4 and segments[tail + 2] != "series"):
        raise DicomWebError(f"{url}: not a DICOMweb study, series or search URL ({expected})")
    names = segments[tail + 1 :: 2]
    uids = [_uid(text, what, url) for text, what in zip(names, ("study", "series"), strict=False)]
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if not key or key in query:
            raise DicomWebError(f"{url}: empty or repeated search key {key!r}")
        query[key] = value
    if uids and query:
        raise DicomWebError(f"{url}: search keys go only with a search (ROOT/studies?KEY=VALUE)")
    root = f"{parts.scheme}://{parts.netloc}/{'/'.join(segments[:tail])}".rstrip("/")
    return DicomWebResource(root, *uids, query=query)


def _values(item: Any, tag: str) -> list:
    """The values of ``tag`` in one DICOM JSON dataset (none where it is not one)."""
    entry = item.get(tag) if isinstance(item, dict) else None
    values = entry.get("Value") if isinstance(entry, dict) else None
    return values if isinstance(values, list) else []


def _first(item: Any, tag: str) -> Any:
    return next(iter(_values(item, tag)), None)


def _integer(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class _Truncated(Exception):
    """The multipart stream ended before its closing boundary."""


class _Stream:
    """A response body read on demand, holding only what has not been consumed yet."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self.buffer = bytearray(b"\r\n")  # so the first boundary looks like every other one

    def _fill(self) -> None:
        for chunk in self._chunks:
            if chunk:
                self.buffer += chunk
                return
        raise _Truncated

    def peek(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        return bytes(self.buffer[:size])

    def read_until(self, marker: bytes, limit: int) -> bytes:
        """The bytes before ``marker``; ``marker`` is consumed too."""
        while (end := self.buffer.find(marker)) < 0:
            if len(self.buffer) > limit:
                raise DicomWebError(
                    f"malformed multipart answer: a part's headers pass {limit} bytes"
                )
            self._fill()
        data = bytes(self.buffer[:end])
        del self.buffer[: end + len(marker)]
        return data

    def copy_until(self, marker: bytes, out: BinaryIO | None) -> int:
        """Write the bytes before ``marker`` to ``out`` (None: drop them); how many there were."""
        copied = 0
        while (end := self.buffer.find(marker)) < 0:
            keep = len(marker) - 1  # a marker may straddle two chunks
            if len(self.buffer) > keep:
                copied += len(self.buffer) - keep
                if out is not None:
                    out.write(self.buffer[:-keep])
                del self.buffer[:-keep]
            self._fill()
        if out is not None:
            out.write(self.buffer[:end])
        del self.buffer[: end + len(marker)]
        return copied + end


def _boundary(content_type: str) -> bytes | None:
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/related":
        return None
    found = re.search(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', params, re.IGNORECASE)
    return (found.group(1) or found.group(2)).encode() if found else None


def _free_name(folder: Path, number: int) -> tuple[Path, int]:
    while (path := folder / f"{number:06d}.dcm").exists():
        number += 1
    return path, number


def _write_parts(stream: _Stream, boundary: bytes, folder: Path, written: list[Path]) -> None:
    """Each part of a multipart body into its own file in ``folder``, listed in ``written``."""
    delimiter = b"\r\n--" + boundary
    stream.copy_until(delimiter, None)  # the preamble
    number = 1
    while stream.peek(2) != b"--":
        _, *lines = stream.read_until(b"\r\n\r\n", _HEADER_LIMIT).split(b"\r\n")  # padding, headers
        headers = {}
        for line in lines:
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        kind = headers.get("content-type", _DICOM).split(";")[0].strip().lower()
        if kind != _DICOM:
            raise DicomWebError(f"a part is {kind!r}, not {_DICOM}")
        path, number = _free_name(folder, number)
        with atomic_path(path) as tmp, open(tmp, "wb") as out:
            size = stream.copy_until(delimiter, out)
            declared = headers.get("content-length", str(size))
            if _integer(declared) != size:
                raise DicomWebError(f"a part has {size} bytes, its Content-Length says {declared}")
        written.append(path)


class _MultipartFiles:
    """A ``multipart/related`` body of DICOM files, read from disk as it is sent."""

    def __init__(self, files: list[Path]) -> None:
        self.boundary = uuid.uuid4().hex
        self._files = files
        self._head = f"--{self.boundary}\r\nContent-Type: {_DICOM}\r\n\r\n".encode()
        self._end = f"--{self.boundary}--\r\n".encode()

    def __len__(self) -> int:  # requests sends Content-Length, not chunks, when it knows this
        each = len(self._head) + len(b"\r\n")
        return sum(path.stat().st_size + each for path in self._files) + len(self._end)

    def __iter__(self) -> Iterator[bytes]:
        for path in self._files:
            yield self._head
            with open(path, "rb") as file:
                yield from iter(lambda file=file: file.read(_CHUNK), b"")
            yield b"\r\n"
        yield self._end


def _cause(err: BaseException, timeout: float) -> str:
    """Why a connection failed, in a few words."""
    chain = [err]
    while (seen := getattr(chain[-1], "reason", None) or chain[-1].__context__) is not None:
        chain.append(seen)
    if any(isinstance(seen, ConnectionRefusedError) for seen in chain):
        return "connection refused (is the server running?)"
    if any(isinstance(seen, urllib3.exceptions.NameResolutionError) for seen in chain):
        return "host name not found"
    # Not urllib3's ConnectTimeoutError: a refused connection's NewConnectionError is one too.
    timeouts = (TimeoutError, requests.Timeout, urllib3.exceptions.ReadTimeoutError)
    if any(isinstance(seen, timeouts) for seen in chain):
        return f"no answer within {timeout:g} s"
    return f"connection failed ({type(chain[-1]).__name__})"


def _status(response: requests.Response) -> str:
    status = f"HTTP {response.status_code} {response.reason or ''}".strip()
    if response.status_code == 404:
        return f"not found ({status})"
    return f"the server answered {status}"


class DicomWebClient:
    """QIDO-RS, WADO-RS and STOW-RS against one DICOMweb root (e.g. ``http://pacs/dicom-web``)."""

    def __init__(self, root: str, timeout: float = 30) -> None:
        self.root = root.rstrip("/")
        self.timeout = timeout

    def _fail(self, what: str, problem: str) -> DicomWebError:
        return DicomWebError(f"DICOMweb server {self.root}: {what}: {problem}")

    def _request(
        self, method: str, path: str, what: str, check: bool = True, **kwargs: Any
    ) -> requests.Response:
        """The server's answer; DicomWebError if it does not answer or (``check``) answers
        an HTTP error."""
        try:
            response = requests.request(method, self.root + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as err:
            raise self._fail(what, _cause(err, self.timeout)) from None
        if check and response.status_code >= 400:
            response.close()
            raise self._fail(what, _status(response))
        return response

    def _json(self, response: requests.Response, what: str) -> Any:
        if response.status_code == 204:  # some servers' answer to a search with no match
            return []
        try:
            return response.json()
        except ValueError:
            raise self._fail(what, f"not DICOM JSON (HTTP {response.status_code})") from None

    def _search(self, path: str, params: Mapping[str, str], what: str) -> list[dict]:
        headers = {"Accept": "application/dicom+json"}
        found = self._json(self._request("GET", path, what, params=params, headers=headers), what)
        if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
            raise self._fail(what, "not DICOM JSON (expected a list of datasets)")
        return found

    def search_studies(self, query: Mapping[str, str]) -> list[str]:
        """The Study Instance UIDs a QIDO-RS search (``query``: its keys, as given) matches."""
        what = f"searching studies ({'&'.join(f'{k}={v}' for k, v in query.items())})"
        found = self._search("/studies", query, what)
        uids = [_first(item, "0020000D") for item in found]
        if not all(isinstance(uid, str) for uid in uids):
            raise self._fail(what, "a matched study has no StudyInstanceUID")
        return uids

    def search_series(self, study_uid: str, modality: str | None = None) -> list[SeriesInfo]:
        """The series of a study, of ``modality`` only if given, in series-number order.

        Filtered here as well: some servers ignore a Modality key they do not index.
        """
        what = f"searching the series of study {study_uid}"
        params = {"includefield": "00201209"}  # NumberOfSeriesRelatedInstances
        if modality:
            params["Modality"] = modality
        series = []
        for item in self._search(f"/studies/{quote(study_uid, safe='')}/series", params, what):
            uid, kind = _first(item, "0020000E"), _first(item, "00080060")
            if not isinstance(uid, str):
                raise self._fail(what, "a series has no SeriesInstanceUID")
            if modality and str(kind).upper() != modality.upper():
                continue
            number = _integer(_first(item, "00200011"))
            count = _integer(_first(item, "00201209"))
            series.append(SeriesInfo(study_uid, uid, kind, number, count))
        return sorted(series, key=lambda s: (s.series_number is None, s.series_number or 0))

    def retrieve_series(self, study_uid: str, series_uid: str, folder: Path) -> list[Path]:
        """Every instance of a series, as stored, each in its own file in ``folder``.

        Files are named ``000001.dcm`` onwards (skipping names already taken). If anything
        fails, the files this call wrote are removed again and ``folder`` is as it was.
        """
        what = f"retrieving series {series_uid} of study {study_uid}"
        path = f"/studies/{quote(study_uid, safe='')}/series/{quote(series_uid, safe='')}"
        headers = {"Accept": _RETRIEVE_ACCEPT, "Accept-Encoding": "identity"}
        folder = Path(folder)
        with self._request("GET", path, what, headers=headers, stream=True) as response:
            content_type = response.headers.get("Content-Type", "")
            boundary = _boundary(content_type)
            if response.status_code != 200 or boundary is None:
                status = f"HTTP {response.status_code}, {content_type or 'no Content-Type'}"
                raise self._fail(what, f"not a multipart DICOM answer ({status})")
            folder.mkdir(parents=True, exist_ok=True)
            written: list[Path] = []
            try:
                try:
                    _write_parts(_Stream(response.iter_content(_CHUNK)), boundary, folder, written)
                except BaseException:
                    for done in written:
                        done.unlink(missing_ok=True)
                    raise
            except _Truncated:
                raise self._fail(what, "the answer ended before the series did") from None
            except requests.RequestException as err:
                problem = f"the answer broke off: {_cause(err, self.timeout)}"
                raise self._fail(what, problem) from None
            except DicomWebError as err:
                raise self._fail(what, str(err)) from None
        return written

    def store(self, study_uid: str, files: list[Path]) -> list[str]:
        """STOW-RS ``files`` into a study; the SOP Instance UIDs the server says it stored.

        Fails unless the server stored every file (HTTP 200 or 202, no failed instance).
        """
        files = [Path(path) for path in files]
        what = f"storing {len(files)} file(s) into study {study_uid}"
        body = _MultipartFiles(files)
        headers = {
            "Content-Type": f'multipart/related; type="{_DICOM}"; boundary={body.boundary}',
            "Accept": "application/dicom+json",
        }
        path = f"/studies/{quote(study_uid, safe='')}"
        response = self._request("POST", path, what, check=False, data=body, headers=headers)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        failed = _values(answer, "00081198")  # FailedSOPSequence
        stored = [_first(item, "00081155") for item in _values(answer, "00081199")]
        if failed:
            first = failed[0]
            reason = _integer(_first(first, "00081197"))
            because = f" (failure reason 0x{reason:04X})" if reason is not None else ""
            problem = f"{len(failed)} instance(s) refused, e.g. {_first(first, '00081155')}"
            raise self._fail(what, f"{problem}{because} (HTTP {response.status_code})")
        if response.status_code not in (200, 202):
            raise self._fail(what, _status(response))
        if not isinstance(answer, dict):
            raise self._fail(what, f"not DICOM JSON (HTTP {response.status_code})")
        if len(stored) != len(files):
            raise self._fail(what, f"the server confirmed {len(stored)} of {len(files)}")
        return stored
