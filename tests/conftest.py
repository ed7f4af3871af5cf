"""Markers that decide by themselves where their tests run.

``apple_runtime``: the test needs Apple's Core ML runtime. It runs wherever coremltools can
predict (no ``-m`` needed) and is skipped, with the reason, everywhere else.
"""

from __future__ import annotations

import pytest

pytest_plugins = ("pytester",)  # tests/test_apple_runtime.py runs this hook in a scratch session

APPLE_RUNTIME_REASON = "Apple's Core ML runtime predicts only on macOS"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``apple_runtime`` tests where Core ML cannot predict, so CI on Linux stays green."""
    marked = [item for item in items if item.get_closest_marker("apple_runtime")]
    if not marked:
        return  # no need to import the converters (and torch) for the rest of the suite
    from converters import coreml

    if not coreml.apple_runtime_available():
        for item in marked:
            item.add_marker(pytest.mark.skip(reason=APPLE_RUNTIME_REASON))
