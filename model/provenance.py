"""Where a published figure came from: the command, date, machine and versions that made it.

Every results file the docs are rendered from (``results/``, ``bas_deploy.results``) carries
this block, written by the command that measured the figures, so a table in the docs can
always name the command line that makes it again and what it ran on.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import click

from .atomic import atomic_path
from .errors import ProjectError
from .host import cores_available, cpu_model, native_bf16

PROVENANCE_KEYS = ("command", "date", "machine", "versions")
REPOSITORY = Path(__file__).resolve().parents[1]


class ResultsError(ProjectError):
    """A results file that cannot be used: missing, unreadable, or without its provenance."""


def command_line() -> str:
    """The command line this process runs, as its user typed it (``python -m model.evaluate
    --variant S``): click's program name for the interpreter and module part."""
    context = click.get_current_context(silent=True)
    program = context.find_root().info_name if context else Path(sys.argv[0]).name
    return " ".join([str(program), *map(shlex.quote, sys.argv[1:])])


def library_versions(distributions: Iterable[str]) -> dict[str, str]:
    """The installed version of each distribution named; those not installed are left out."""
    found = {}
    for name in distributions:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


@functools.cache
def git_commit() -> str | None:
    """The commit of the checkout this code was loaded from, ``-dirty`` when tracked files
    differ from it; None for an installed copy (not a checkout's top) or without git.

    Read once, when this module is first imported: a long run names the commit of the code
    it loaded, not one made while it ran."""
    try:
        top, head = subprocess.run(
            ["git", "-C", str(REPOSITORY), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        changed = subprocess.run(
            ["git", "-C", str(REPOSITORY), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, ValueError, subprocess.CalledProcessError):
        return None
    if Path(top).resolve() != REPOSITORY:
        return None  # a copy inside another project's checkout (its site-packages)
    return f"{head}-dirty" if changed else head


git_commit()


def machine() -> dict[str, str | int | bool]:
    """The CPU model, the cores this process may use, whether PyTorch has fast bf16 kernels for
    it (training's speed turns on them), and the OS."""
    return {
        "cpu": cpu_model(),
        "cores": cores_available(),
        "bf16_kernels": native_bf16(),
        "os": platform.platform(),
    }


def provenance(libraries: Iterable[str] = ()) -> dict[str, Any]:
    """The block a results file carries; ``libraries``: the runtime libraries the command used
    (distribution names), beside Python, torch and the project's commit."""
    versions = {"python": platform.python_version(), **library_versions(("torch", *libraries))}
    commit = git_commit()
    if commit is not None:
        versions["git_commit"] = commit
    return {
        "command": command_line(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions,
    }


def check_provenance(block: object, where: str) -> dict[str, Any]:
    """``block`` if it is a provenance block; a ResultsError naming ``where`` otherwise."""
    if not isinstance(block, Mapping):
        raise ResultsError(
            f"{where} has no provenance block (command, date, machine, versions): re-run the "
            "command that makes it"
        )
    missing = [key for key in PROVENANCE_KEYS if not block.get(key)]
    if missing:
        raise ResultsError(f"{where}: its provenance block lacks {', '.join(missing)}")
    return dict(block)


def write_results(path: Path, document: Mapping[str, Any], libraries: Iterable[str] = ()) -> None:
    """``document`` with this run's provenance block first, as JSON, written atomically."""
    text = json.dumps({"provenance": provenance(libraries), **document}, indent=1, allow_nan=False)
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(text + "\n")


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """This process alone in ``folder`` for the block (runs added to one file at once)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def add_run(
    path: Path, run: Mapping[str, Any], key: Sequence[str], libraries: Iterable[str] = ()
) -> None:
    """Add ``run``, with this run's provenance block, to the results file of several runs at
    ``path`` (``{"runs": [...]}``), replacing an earlier run that agrees on every ``key``
    field, so that re-running one command updates its own run only."""
    path = Path(path)
    stamped = {"provenance": provenance(libraries), **run}
    with _locked(path.parent):
        runs = read_results(path)["runs"] if path.exists() else []
        runs = [r for r in runs if any(r.get(k) != run.get(k) for k in key)] + [stamped]
        text = json.dumps({"runs": runs}, indent=1, allow_nan=False)
        with atomic_path(path) as tmp:
            tmp.write_text(text + "\n")


def read_results(path: Path) -> dict[str, Any]:
    """A results file written by ``write_results`` or ``add_run``; refused in one line if it
    is missing, not JSON, or without a provenance block (of any of its runs)."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"results file missing: {path} (its producer has not run)")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ResultsError(f"{path} is not a results file: {err}") from err
    if not isinstance(document, dict):
        raise ResultsError(f"{path} is not a results file: not a JSON object")
    if "provenance" not in document and isinstance(document.get("runs"), list):
        for number, run in enumerate(document["runs"], 1):
            check_provenance(
                run.get("provenance") if isinstance(run, dict) else None, f"{path} (run {number})"
            )
        return document
    check_provenance(document.get("provenance"), str(path))
    return document
