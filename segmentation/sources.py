"""One way to open any input the segmentation command reads.

An input is a list of :class:`Batch` es, each a group of loops opened when its turn comes:

- a path (video file, folder of frames, dataset folder, folder of video files, DICOM file
  or study folder): one batch, every source checked when the input is opened, so a bad
  input fails in a second (a file of a folder of videos or of a study folder that cannot
  be read is left out, with why);
- a DICOMweb resource (``http://HOST:PORT/ROOT/studies/UID``, ``.../series/UID``) or search
  (``.../studies?ModalitiesInStudy=US&StudyDate=...``): one batch per ultrasound series.
  The server is asked what it holds when the input is opened (a server that does not
  answer, a 404 or a study without ultrasound fails then, before any output exists); each
  series is retrieved when its turn comes, streamed to a temporary folder, read there as a
  study folder is, and removed after it is segmented, so disk and memory hold one series.
  A series whose retrieval breaks off fails alone (:attr:`Batch.open` raises); the
  others go on. ``Batch.study`` is where ``--store`` sends the results.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from model.data.layouts import natural_key

from .dicom import is_dicom, scan_dicom, unique_name
from .dicomweb import DicomWebClient, SeriesInfo, is_dicomweb_url, parse_resource
from .video import VIDEO_SUFFIXES, FrameSource, InputError, image_files, open_sources

ULTRASOUND = "US"


@dataclass(frozen=True)
class Opened:
    """What a batch holds once opened: its sources and a line per file left out."""

    sources: list[FrameSource]
    left_out: list[str]


@dataclass(frozen=True)
class StudyDestination:
    """A study on a DICOMweb server, where results of its loops are stored (STOW-RS)."""

    client: DicomWebClient
    study_uid: str

    def store(self, files: list[Path]) -> list[str]:
        return self.client.store(self.study_uid, files)


@dataclass(frozen=True)
class Batch:
    """A group of loops (``name`` '' for a local input); ``open`` yields them, checked."""

    name: str
    open: Callable[[], AbstractContextManager[Opened]]
    study: StudyDestination | None = None


@dataclass(frozen=True)
class Input:
    """An opened input: its batches, and whether loops go to subfolders of the output
    (always for a PACS, where a series may turn out to hold several loops)."""

    description: str
    batches: list[Batch]
    subfolders: bool
    from_archive: bool

    @property
    def name(self) -> str:
        """A short name for titles: the file or folder name, or the URL's last part."""
        return self.description.rstrip("/").rpartition("/")[2] or self.description


@contextmanager
def opened_sources(opened: Input) -> Iterator[list[FrameSource]]:
    """Every source of every batch at once (an archive's series all retrieved), for a
    reader that loops over them all, as ``device_bench video`` does."""
    with ExitStack() as stack:
        yield [s for batch in opened.batches for s in stack.enter_context(batch.open()).sources]


def open_input(spec: str | Path, fps: float = 30.0) -> Input:
    """The batches of ``spec``: a path, or a DICOMweb URL (see the module docstring)."""
    if isinstance(spec, str) and is_dicomweb_url(spec):
        return _open_dicomweb(spec, fps)
    if isinstance(spec, str) and "://" in spec:
        raise InputError(f"{spec}: only http:// and https:// (DICOMweb) URLs are read")
    path = Path(spec)
    opened = open_path(path, fps)
    batch = Batch("", lambda: _already(opened))
    return Input(str(path), [batch], len(opened.sources) > 1, False)


def open_path(path: Path, fps: float = 30.0) -> Opened:
    """The sources of a DICOM file or folder (a folder of DICOM files and no frame images),
    or of anything ``segmentation.video`` reads, and a line per file left out."""
    path = Path(path)
    dicom = (path.is_file() and is_dicom(path)) or (
        path.is_dir()
        and not image_files(path)
        and any(p.is_file() and is_dicom(p) for p in path.rglob("*"))
    )
    if not dicom:
        videos = video_files(path) if path.is_dir() and not image_files(path) else []
        return _open_videos(path, videos, fps) if videos else Opened(open_sources(path, fps), [])
    found = scan_dicom(path, fps)
    return Opened(list(found.sources), [f"left out {p}: {why}" for p, why in found.skipped])


def video_files(folder: Path) -> list[Path]:
    """The video files at the top of ``folder`` (not hidden), in natural order."""
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in VIDEO_SUFFIXES
    ]
    return sorted(files, key=lambda p: natural_key(p.name))


def _open_videos(folder: Path, videos: list[Path], fps: float) -> Opened:
    """A folder of recordings, one source each (names kept apart); one that cannot be read
    is left out with why, as a study folder's unreadable files are."""
    sources, left_out, taken = [], [], set()
    for video in videos:
        try:
            (source,) = open_sources(video, fps)
        except InputError as err:
            left_out.append(f"left out {err}")
            continue
        sources.append(dataclasses.replace(source, name=unique_name(source.name, taken)))
    if not sources:
        raise InputError(f"{folder}: none of its {len(videos)} video files can be read")
    return Opened(sources, left_out)


@contextmanager
def _already(opened: Opened) -> Iterator[Opened]:
    yield opened


def _open_dicomweb(url: str, fps: float) -> Input:
    resource = parse_resource(url)
    client = DicomWebClient(resource.root)
    if resource.study_uid is None:
        studies = client.search_studies(resource.query)
        if not studies:
            raise InputError(f"{url}: the search found no study")
    else:
        studies = [resource.study_uid]
    found: list[SeriesInfo] = []
    for study in studies:
        series = client.search_series(study, ULTRASOUND)
        if resource.series_uid is not None:
            series = [s for s in series if s.series_uid == resource.series_uid]
        found += series
    no_study = (  # some servers answer [] for the series of a study they do not hold
        resource.study_uid is not None
        and not found
        and not client.search_studies({"StudyInstanceUID": resource.study_uid})
    )
    if no_study:
        raise InputError(f"{url}: not found: {client.root} holds no such study")
    if not found:
        what = (
            "series"
            if resource.series_uid
            else f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'}"
        )
        raise InputError(f"{url}: no ultrasound (modality US) in the {what} on {client.root}")
    several_studies = len(studies) > 1
    batches, taken = [], set()
    for info in found:
        name = unique_name(
            _series_name(info, studies.index(info.study_uid), several_studies), taken
        )
        batches.append(
            Batch(
                name,
                _retriever(client, info, name, fps),
                StudyDestination(client, info.study_uid),
            )
        )
    return Input(url, batches, True, True)


def _series_name(info: SeriesInfo, study_index: int, several_studies: bool) -> str:
    number = info.series_number if info.series_number is not None else info.series_uid[-8:]
    name = f"series_{number}"
    return f"study{study_index + 1}_{name}" if several_studies else name


def _retriever(
    client: DicomWebClient, info: SeriesInfo, name: str, fps: float
) -> Callable[[], AbstractContextManager[Opened]]:
    @contextmanager
    def retrieve() -> Iterator[Opened]:
        with tempfile.TemporaryDirectory(prefix="bas-dicomweb-") as folder:
            client.retrieve_series(info.study_uid, info.series_uid, Path(folder))
            found = scan_dicom(Path(folder), fps)
            sources = list(found.sources)
            named = [
                dataclasses.replace(s, name=name if len(sources) == 1 else f"{name}_{s.name}")
                for s in sources
            ]
            left_out = [f"left out {name}/{p.name}: {why}" for p, why in found.skipped]
            yield Opened(named, left_out)

    return retrieve
