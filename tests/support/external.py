"""What some tests need from outside .venv: the ARM64 sysroot and QEMU (``make arm64``), and
Orthanc, dciodvfy and dcmtk (``make pacs``). Both need root once, so a plain ``pytest``
skips the tests of a missing one, with the target that installs it. ``make test`` builds
both first and sets ``BAS_REQUIRE_ARM64=1`` and ``BAS_REQUIRE_PACS=1``: there a missing one
fails its tests instead, so the whole suite cannot pass with parts of it skipped.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

REQUIRE_ARM64 = "BAS_REQUIRE_ARM64"
REQUIRE_PACS = "BAS_REQUIRE_PACS"


def missing(reason: str, required_by: str) -> NoReturn:
    """Skip the test with ``reason``; fail it instead where ``required_by`` is set to 1."""
    __tracebackhide__ = True  # the skip names the test (or its helper), not this line
    if os.environ.get(required_by) == "1":
        pytest.fail(f"{reason} ({required_by}=1: make test needs it)", pytrace=False)
    pytest.skip(reason)


def arm64_missing() -> str | None:
    """Why the ARM64 runtimes cannot run here, or None where they can."""
    from runtimes import arm64  # imports torch: only for the tests that ask

    if arm64.is_ready() and arm64.qemu():
        return None
    return f"no arm64 sysroot at {arm64.sysroot()} or no {arm64.QEMU}: run make arm64 (root once)"


def arm64_available() -> bool:
    """Whether the ARM64 runtimes can run here; where they cannot, fails the test under
    ``make test`` and returns False elsewhere (for a test with a part that runs anyway)."""
    __tracebackhide__ = True
    reason = arm64_missing()
    if reason is not None and os.environ.get(REQUIRE_ARM64) == "1":
        missing(reason, REQUIRE_ARM64)
    return reason is None


def require_arm64() -> None:
    """Skip the test where the ARM64 runtimes cannot run (fail it under ``make test``)."""
    __tracebackhide__ = True
    reason = arm64_missing()
    if reason is not None:
        missing(reason, REQUIRE_ARM64)


def require_program(name: str, package: str) -> str:
    """The path of program ``name`` (Debian ``package``, which ``make pacs`` installs); skips
    the test where it is missing (fails it under ``make test``)."""
    __tracebackhide__ = True
    program = shutil.which(name)
    if program is None:
        missing(f"{name} ({package}) is not installed: run make pacs (root once)", REQUIRE_PACS)
    return program
