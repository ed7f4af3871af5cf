"""Write files and folders so that a failure never leaves a half-written one behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import ProjectError
from .signals import stop_if_signalled


def usual_permissions(path: Path, mode: int = 0o666) -> None:
    """mkstemp/mkdtemp create owner-only entries; give the result the usual permissions."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, mode & ~mask)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path``, renamed onto it only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        usual_permissions(Path(tmp), 0o666)
        stop_if_signalled()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


OUTPUT_MARKER = ".bas-deploy-output"  # in every folder staged_folder writes: ours to replace


def check_output_folder(
    out: Path,
    marker: str | None = OUTPUT_MARKER,
    what: str = "output folder",
    error: type[ProjectError] = ProjectError,
) -> None:
    """Refuse, before any work, an ``out`` that cannot be made or written here, or that holds
    files but not ``marker``, the file an earlier output of the project holds (what is
    written there replaces what is there). ``marker`` None: a folder the project only adds
    its own named entries to (converters' artifacts), whatever else it holds.

    ``what`` and ``error`` name the folder and the error as the command knows them.
    """
    out = Path(out)
    blocker = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    if not blocker.is_dir():
        raise error(f"{what} {out} cannot be made: {blocker} is a file")
    ours = marker is None or blocker != out or (out / marker).is_file()
    if not ours and any(out.iterdir()):
        raise error(
            f"{what} {out} is not empty and is not an earlier output of this project "
            f"(it holds no {marker}); choose another (nothing was changed)"
        )
    if not os.access(blocker, os.W_OK | os.X_OK):
        raise error(f"{what} {out} cannot be written ({blocker} is read-only)")


@contextmanager
def staging_folder(parent: Path, name: str) -> Iterator[Path]:
    """A hidden temporary folder in ``parent``, removed after the block whatever happens.

    ``parent`` and its missing parents are made; if the block fails, those made are removed
    again (where still empty), so that a failure leaves nothing behind.
    """
    parent = Path(parent)
    made = [p for p in (parent, *parent.parents) if not p.exists()]  # innermost first
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A temporary folder beside ``out``, moved to ``out`` only if the block succeeds.

    ``out`` may be absent, empty, or an earlier output of this project (it holds
    OUTPUT_MARKER), which is replaced; anything else is refused before the block runs, so
    no file the project did not write is ever deleted. An exception, Ctrl-C or SIGTERM
    (see model.options) inside the block removes the staging folder and leaves ``out`` as it was.
    """
    out = Path(out)
    check_output_folder(out)
    with staging_folder(out.parent, out.name) as staging:
        yield staging
        (staging / OUTPUT_MARKER).write_text("written by bas-deploy; replaced by its next run\n")
        usual_permissions(staging, 0o777)
        check_output_folder(out)  # again: the block may have taken long
        stop_if_signalled()
        if out.exists():
            shutil.rmtree(out) if (out / OUTPUT_MARKER).is_file() else out.rmdir()
        os.replace(staging, out)
