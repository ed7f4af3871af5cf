"""Write files and folders so that a failure never leaves a half-written one behind."""

from __future__ import annotations

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


def check_output_folder(out: Path) -> None:
    """Refuse, before any work, an ``out`` staged_folder could not write or must not replace."""
    out = Path(out)
    blocker = next((p for p in (out, *out.parents) if p.exists()), None)
    if blocker is not None and blocker != out and not blocker.is_dir():
        raise ProjectError(f"output folder {out} cannot be made: {blocker} is a file")
    if out.exists():
        if not out.is_dir():
            raise ProjectError(f"output folder {out} is a file")
        if any(out.iterdir()) and not (out / OUTPUT_MARKER).is_file():
            raise ProjectError(
                f"output folder {out} is not empty and is not an earlier output of this "
                "project; choose another (nothing was changed)"
            )
    if blocker is not None and not os.access(blocker, os.W_OK):
        raise ProjectError(f"output folder {out} cannot be written ({blocker} is read-only)")


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A temporary folder beside ``out``, moved to ``out`` only if the block succeeds.

    ``out`` may be absent, empty, or an earlier output of this project (it holds
    OUTPUT_MARKER), which is replaced; anything else is refused before the block runs, so
    no file the project did not write is ever deleted. An exception, Ctrl-C or SIGTERM
    (see model.cli) inside the block removes the staging folder and leaves ``out`` as it was.
    """
    out = Path(out)
    check_output_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield staging
        (staging / OUTPUT_MARKER).write_text("written by bas-deploy; replaced by its next run\n")
        usual_permissions(staging, 0o777)
        check_output_folder(out)  # again: the block may have taken long
        stop_if_signalled()
        if out.exists():
            shutil.rmtree(out) if (out / OUTPUT_MARKER).is_file() else out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
