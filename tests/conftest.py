"""Markers and fixtures that decide by themselves where their tests run.

``apple_runtime``: the test needs Apple's Core ML runtime. It runs wherever coremltools can
predict (no ``-m`` needed) and is skipped, with the reason, everywhere else.

``arm64_sysroot``: the test runs under QEMU in the sysroot of ``make arm64``; skipped, with
the reason, where it is missing, and failed under ``make test`` (``tests.support.external``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.external import require_arm64

# tests/runtimes/test_apple_runtime.py runs this hook in a scratch session
pytest_plugins = ("pytester",)

APPLE_RUNTIME_REASON = "Apple's Core ML runtime predicts only on macOS"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``apple_runtime`` tests where Core ML cannot predict, so CI on Linux stays green."""
    marked = [item for item in items if item.get_closest_marker("apple_runtime")]
    if not marked:
        return  # no need to import the runtimes (and torch) for the rest of the suite
    from runtimes.backends import coreml

    if not coreml.apple_runtime_available():
        for item in marked:
            item.add_marker(pytest.mark.skip(reason=APPLE_RUNTIME_REASON))


@pytest.fixture
def arm64_sysroot() -> None:
    """Only for its skip, or its failure under ``make test``, where ARM64 cannot run here."""
    require_arm64()


@pytest.fixture(scope="session")
def built_artifact(tmp_path_factory: pytest.TempPathFactory):
    """``built_artifact(target, variant, precision, form)``: each converted once per test run.

    Shared by every xdist worker (one folder beside their temporary folders, one lock per
    artifact), so the parity matrix and the runtime tests convert nothing twice.
    """
    from filelock import FileLock

    from converters.build import convert
    from converters.registry import get_target
    from converters.spec import ConvertRequest

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "built_artifacts"
    root.mkdir(exist_ok=True)

    def build(target: str, variant: str, precision: str, form: str) -> Path:
        request = ConvertRequest(variant, "shipped", precision, form, out=root)
        path = root / f"{request.stem}{get_target(target).suffix}"
        with FileLock(str(root / f"{path.name}.lock")):
            if not (path.exists() and (root / f"{path.name}.json").exists()):
                path = convert(get_target(target), request)
        return path

    return build
