"""The runtime roles of the targets table hold what their names promise, and parity follows them.

Each role is checked against the plug-in it names (its class, the library it imports, the
worker it runs), not against the table itself.
"""

from __future__ import annotations

import importlib.util

import pytest

from converters.parity import arm64_runtime, parity_runtime
from device_bench.devices import PHONES
from runtimes.backends.arm64 import Arm64Backend
from runtimes.manifest import ArtifactFile, Manifest, WeightsRef
from runtimes.registry import BACKENDS, RUNTIME_NAMES, runtimes_for
from runtimes.targets import TARGETS


def _with(role: str) -> dict[str, str]:
    """{target: runtime} of every target that fills ``role``."""
    return {name: getattr(spec, role) for name, spec in TARGETS.items() if getattr(spec, role)}


def _importable(modules: tuple[str, ...]) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in modules)


def test_every_role_names_a_registered_backend_of_its_target() -> None:
    for name, spec in TARGETS.items():
        assert spec.runtimes[0] == spec.runtime
        assert runtimes_for(name) == spec.runtimes
        for runtime in spec.runtimes:
            assert BACKENDS[runtime].target == name, runtime
    assert len(set(RUNTIME_NAMES)) == len(RUNTIME_NAMES), "a runtime plays two roles"
    assert set(RUNTIME_NAMES) == set(BACKENDS)


def test_the_arm64_runtimes_are_exactly_the_backends_run_under_qemu() -> None:
    emulated = {name for name, backend in BACKENDS.items() if issubclass(backend, Arm64Backend)}
    assert emulated and set(_with("arm64_runtime").values()) == emulated
    for target, runtime in _with("arm64_runtime").items():  # the default's library, on ARM64
        assert BACKENDS[runtime].worker_runtime == TARGETS[target].runtime


def test_an_fp16_runtime_is_its_default_with_fp16_arithmetic_forced() -> None:
    assert _with("fp16_runtime")
    for target, runtime in _with("fp16_runtime").items():
        default = BACKENDS[TARGETS[target].runtime]
        assert BACKENDS[runtime] is not default and issubclass(BACKENDS[runtime], default)
        assert "fp16" in TARGETS[target].precisions


def test_a_reference_reads_the_file_with_the_default_s_library_on_any_host() -> None:
    assert _with("reference")
    for target, runtime in _with("reference").items():
        reference, default = BACKENDS[runtime], BACKENDS[TARGETS[target].runtime]
        assert reference.modules == default.modules
        assert reference.is_available() == _importable(reference.modules)


def test_phones_are_device_bench_platforms_each_with_its_tool() -> None:
    for spec in TARGETS.values():
        assert (spec.phone is None) == (spec.phone_tool is None), spec.name
        assert spec.phone is None or (spec.phone in PHONES and spec.converts), spec.name
    assert {spec.phone for spec in TARGETS.values() if spec.phone} == set(PHONES)


def _manifest(target: str, accumulation: str = "fp32") -> Manifest:
    return Manifest(
        target=target,
        runtime=TARGETS[target].runtime,
        variant="S",
        form="frame",
        precision="fp16" if accumulation == "fp16" else "fp32",
        image_size=64,
        temporal_window=3,
        artifact=ArtifactFile(f"a{TARGETS[target].suffix}", "0" * 64, 1),
        weights=WeightsRef("shipped", "0" * 64),
        inputs=(),
        outputs=(),
        state=None,
        accumulation=accumulation,
    )


@pytest.mark.parametrize("available", [True, False])
@pytest.mark.parametrize("accumulation", ["fp32", "fp16"])
def test_parity_runs_each_role_where_it_stands_in(
    monkeypatch: pytest.MonkeyPatch, available: bool, accumulation: str
) -> None:
    """The reference only where the default cannot run; the FP16 runtime only for a file that
    allows FP16 arithmetic; else the manifest's own runtime."""
    for backend in BACKENDS.values():
        monkeypatch.setattr(backend, "is_available", classmethod(lambda cls: available))
    for name, spec in TARGETS.items():
        manifest = _manifest(name, accumulation)
        if spec.reference and not available:
            expected = spec.reference
        elif spec.fp16_runtime and accumulation == "fp16":
            expected = spec.fp16_runtime
        else:
            expected = spec.runtime
        assert parity_runtime(manifest) == expected, name
        assert arm64_runtime(manifest) == spec.arm64_runtime
