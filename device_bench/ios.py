"""Time a Core ML artifact on an iPhone or iPad: Apple's compiler, an XCTest harness, xcodebuild.

``device_bench run --device ios:UDID --target coreml`` (macOS with Xcode 15 or later):

1. ``xcrun coremlcompiler compile ARTIFACT.mlpackage DIR`` compiles the package as Xcode
   would for an app (``.mlmodelc``);
2. the harness in ``device_bench/harness/ios`` (a Swift package, one XCTest) is copied to a
   temporary folder with the compiled model as its test resource ``BaS.mlmodelc``;
3. ``xcodebuild test -scheme BasBench -destination platform=iOS,id=UDID`` builds, installs
   and runs it on the device; settings reach the test as ``TEST_RUNNER_BASBENCH_*``
   environment variables (xcodebuild passes them on without the prefix);
4. the test loads the model once per compute-unit setting (cpuOnly, cpuAndGPU,
   cpuAndNeuralEngine, all), times ``warmup`` + ``iters`` predictions (the stream form
   carrying its state), and prints one ``BASBENCH {json}`` line per setting, which
   ``parse_harness_output`` turns into the host's records (one runtime per setting).

Elsewhere (Linux: no xcrun) the run is refused with one line before anything is done.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.errors import ProjectError
from runtimes.manifest import Manifest
from runtimes.timing import summarise

from .phone import (
    Device,
    DeviceRun,
    PhoneOptions,
    PhonePlatform,
    RunRequest,
    ToolTiming,
    last_line,
    phone_records,
    run_command,
)

HARNESS = Path(__file__).parent / "harness" / "ios"
SCHEME = "BasBench"
COMPUTE_UNITS = ("cpuOnly", "cpuAndGPU", "cpuAndNeuralEngine", "all")
MODEL_RESOURCE = "BaS.mlmodelc"
RESOURCES = Path("Tests/BasBenchTests/Resources")
MARK = "BASBENCH "
XCODEBUILD_TIMEOUT_S = 1800

Runner = Callable[..., subprocess.CompletedProcess]


def find_xcrun() -> str:
    """xcrun, which only macOS with Xcode (or its command-line tools) has."""
    found = shutil.which("xcrun")
    if found is None:
        raise ProjectError(
            "--device ios needs xcrun and xcodebuild (macOS with Xcode 15 or later); "
            "xcrun is not on PATH here"
        )
    return found


def compile_command(xcrun: str, mlpackage: Path, out_dir: Path) -> list[str]:
    """Apple's Core ML compiler: .mlpackage -> out_dir/<name>.mlmodelc."""
    return [xcrun, "coremlcompiler", "compile", str(mlpackage), str(out_dir)]


def test_command(xcrun: str, udid: str, derived_data: Path) -> list[str]:
    """Build, install and run the harness's XCTest on the device (run in the package folder)."""
    return [
        xcrun,
        "xcodebuild",
        "test",
        "-scheme",
        SCHEME,
        "-destination",
        f"platform=iOS,id={udid}",
        "-derivedDataPath",
        str(derived_data),
        "-allowProvisioningUpdates",
    ]


def harness_environment(
    manifest: Manifest, warmup: int, iters: int, units: Sequence[str] = COMPUTE_UNITS
) -> dict[str, str]:
    """The harness's settings, as xcodebuild hands them to the test process."""
    env = {
        "TEST_RUNNER_BASBENCH_WARMUP": str(warmup),
        "TEST_RUNNER_BASBENCH_ITERS": str(iters),
        "TEST_RUNNER_BASBENCH_UNITS": ",".join(units),
    }
    if manifest.state is not None:
        env["TEST_RUNNER_BASBENCH_STATE_IN"] = manifest.state.input
        env["TEST_RUNNER_BASBENCH_STATE_OUT"] = manifest.state.output
    return env


@dataclass(frozen=True)
class UnitTiming:
    """One compute-unit setting's figures, from one ``BASBENCH`` line."""

    compute_units: str
    timing: ToolTiming
    device: dict[str, str]


def parse_harness_output(text: str, warmup: int) -> list[UnitTiming]:
    """Every ``BASBENCH {json}`` line of xcodebuild's output; none, or a bad one, is an error."""
    found = []
    for line in text.splitlines():
        at = line.find(MARK)
        if at < 0:
            continue
        try:
            data = json.loads(line[at + len(MARK) :])
            units = str(data["compute_units"])
            if units not in COMPUTE_UNITS:
                raise ValueError(f"unknown compute units {units!r}")
            if "error" in data:
                raise ProjectError(f"the iOS harness failed for {units}: {data['error']}")
            latencies = [float(v) for v in data["latencies_ms"]]
            load_ms = float(data["load_ms"])
            device = {str(k): str(v) for k, v in dict(data.get("device", {})).items()}
        except (ValueError, KeyError, TypeError) as err:
            raise ProjectError(f"iOS harness line not recognised ({err}): {line[:200]}") from err
        timing = ToolTiming.of_calls(
            "BasBench harness", summarise(latencies), load_ms / 1000, ("peak_memory_footprint",)
        )
        found.append(UnitTiming(units, timing, device))
    if not found:
        raise ProjectError(
            f"the iOS harness printed no '{MARK.strip()}' line (last line: {last_line(text)})"
        )
    return found


def _run(
    runner: Runner, command: list[str], what: str, timeout: float, **kwargs: Any
) -> subprocess.CompletedProcess:
    done = run_command(command, what, timeout, runner, **kwargs)
    if done.returncode != 0:
        output = done.stdout + done.stderr
        errors = [line for line in output.splitlines() if "error:" in line]
        raise ProjectError(
            f"{what} exited {done.returncode}: {(errors[-1] if errors else last_line(output))}"
        )
    return done


def run_ios(
    device: Device,
    artifact: Path,
    manifest: Manifest,
    request: RunRequest,
    options: PhoneOptions,
    runner: Runner = subprocess.run,
) -> DeviceRun:
    """Compile, stage the harness with the model, run it on the device, parse its lines.

    ``options``: none applies to iOS (``devices`` refuses them before this is called).
    """
    warmup, iters = request.warmup, request.iters
    xcrun = find_xcrun()
    with tempfile.TemporaryDirectory(prefix="bas-ios-") as scratch:
        work = Path(scratch)
        compiled = work / "compiled"
        compiled.mkdir()
        _run(runner, compile_command(xcrun, artifact, compiled), "coremlcompiler", 600)
        built = compiled / f"{artifact.stem}.mlmodelc"
        if not built.is_dir():
            raise ProjectError(f"coremlcompiler wrote no {built.name} for {artifact}")
        package = work / "harness"
        shutil.copytree(HARNESS, package)
        shutil.copytree(built, package / RESOURCES / MODEL_RESOURCE)
        env = {**os.environ, **harness_environment(manifest, warmup, iters)}
        done = _run(
            runner,
            test_command(xcrun, device.id, work / "derived"),
            f"xcodebuild test on {device.id}",
            XCODEBUILD_TIMEOUT_S,
            cwd=package,
            env=env,
        )
    timings = parse_harness_output(done.stdout + done.stderr, warmup)
    records, lines = [], []
    for unit in timings:
        machine = {**unit.device, "udid": device.id}
        name = f"{unit.device.get('model', 'iOS device')} ({device.id})"
        runtime = f"{manifest.runtime} ({unit.compute_units})"
        records += phone_records(unit.timing, manifest, f"ios: {name}", runtime, None, machine)
        lines.append(f"{unit.compute_units} median {unit.timing.median_ms:.2f} ms")
    head = f"{manifest.target} BaS-{manifest.variant} {manifest.precision} {manifest.form} on ios "
    return DeviceRun(tuple(records), head + f"{device.id}: " + ", ".join(lines))


PLATFORM = PhonePlatform(
    name="ios",
    usage="ios:UDID",
    id_name="device UDID",
    id_source="`xcrun devicectl list devices`",
    find_tool=find_xcrun,
    run=run_ios,
)
