"""Time an artifact on an Android phone over adb, with the runtimes' own standard tools.

``device_bench run --device android:SERIAL`` pushes the artifact to
``/data/local/tmp/bas-deploy/`` and runs the tool its format ships with, so the figures are
the ones Android developers would measure themselves:

- ``.tflite``: LiteRT's ``benchmark_model`` (``--graph --num_threads --warmup_runs --num_runs``,
  ``--use_xnnpack`` / ``--use_gpu`` / ``--use_nnapi``, ``--report_peak_memory_footprint``);
- ``.pte``: ExecuTorch's ``examples/portable/executor_runner`` (``--model_path
  --num_executions --cpu_threads``; ``--inputs`` and ``--output_file`` for the golden bundle).

Both binaries are built and pushed by the user (their READMEs say how); their paths on the
phone are options. Their printed output is parsed into the same BenchRecords as the host's,
with only the figures the tool reports: nothing is invented (``ToolTiming.missing``).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from model.errors import ProjectError
from runtimes.manifest import Manifest, TensorSpec
from runtimes.targets import get_target_spec
from runtimes.timing import summarise

from .bench import artifact_records
from .golden import Bundle, GoldenFrame, golden_dice, read_bundle
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
    summary_line,
)

REMOTE_DIR = "/data/local/tmp/bas-deploy"
TOOL_DIR = "/data/local/tmp"  # where a tool is looked for by default: TOOL_DIR/<its name>
DELEGATES = ("xnnpack", "gpu", "nnapi")
TOOL_TIMEOUT_S = 900
ADB_TIMEOUT_S = 300


# --- what the tools print ---------------------------------------------------------------------


_NUMBER = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_COUNT = re.compile(r"count=(\d+)((?: \w+=" + _NUMBER[1:-1] + r")+)")
_FIELD = re.compile(r"(\w+)=" + _NUMBER)
_TIMINGS = re.compile(
    r"Inference timings in us: Init: "
    + _NUMBER
    + r", First inference: "
    + _NUMBER
    + r", Warmup \(avg\): "
    + _NUMBER
    + r", Inference \(avg\): "
    + _NUMBER
)
_OLD_TIMINGS = re.compile(  # TensorFlow 1.x / early 2.x: "Average inference timings in us: ..."
    r"Average inference timings in us: Warmup: "
    + _NUMBER
    + r", Init: "
    + _NUMBER
    + r", (?:no stats: "
    + _NUMBER
    + r", )?Inference: "
    + _NUMBER
)
_MEMORY = re.compile(
    r"Memory footprint delta from the start of the tool \(MB\): init="
    + _NUMBER
    + r" overall="
    + _NUMBER
)
_PEAK = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring: " + _NUMBER)


def parse_benchmark_model(text: str) -> ToolTiming:
    """LiteRT ``benchmark_model``'s log: the last ``count=`` line (the timed runs, in us),
    ``Inference timings in us: ...``, and the memory lines where printed."""
    timings = _TIMINGS.search(text) or _OLD_TIMINGS.search(text)
    counts = [dict(_FIELD.findall(m.group(2)), count=m.group(1)) for m in _COUNT.finditer(text)]
    if timings is None or not counts:
        missing = "'Inference timings in us'" if timings is None else "'count=' statistics"
        raise ProjectError(
            f"benchmark_model output not recognised: no {missing} line "
            f"(last line: {last_line(text)})"
        )
    old = timings.re is _OLD_TIMINGS
    init_us, mean_us = (timings.group(2), timings.group(4)) if old else timings.group(1, 4)
    runs = counts[-1]  # benchmark_model prints the warm-up runs' line first, the timed last
    ms = {k: float(v) / 1000 for k, v in runs.items() if k != "count"}
    memory, peak = _MEMORY.search(text), _PEAK.search(text)
    optional = {"median": "median_latency", "min": "min_latency", "max": "max_latency"}
    return ToolTiming(
        tool="benchmark_model",
        iterations=int(runs["count"]),
        mean_ms=float(mean_us) / 1000,
        median_ms=ms.get("median"),
        min_ms=ms.get("min"),
        max_ms=ms.get("max"),
        std_ms=ms.get("std"),
        p95_ms=ms.get("p95"),
        init_s=float(init_us) / 1e6,
        memory_delta_mb=float(memory.group(2)) if memory else None,
        peak_memory_mb=float(peak.group(1)) if peak else None,
        missing=tuple(
            [metric for key, metric in optional.items() if key not in ms]
            + ["p90_latency", "p99_latency", "trimmed_mean_latency"]
            + ([] if peak else ["peak_memory_footprint"])
        ),
    )


_ITERATION = re.compile(r"Iteration (\d+) of (\d+): " + _NUMBER + r" ms")
_EXECUTED = re.compile(r"Model executed successfully (\d+) time\(s\) in " + _NUMBER + r" ms")
_LOADED = re.compile(r"Model loaded in " + _NUMBER + r" ms")


def parse_executor_runner(text: str, warmup: int) -> ToolTiming:
    """ExecuTorch ``executor_runner``'s log (``ET_LOG`` lines): per-call ``Iteration i of N: X
    ms`` where it prints them (the first ``warmup`` dropped), else only the total of ``Model
    executed successfully N time(s) in X ms``, whose mean includes the warm-up calls."""
    executed = _EXECUTED.search(text)
    if executed is None:
        if "Model executed successfully" in text:
            raise ProjectError(
                "executor_runner printed no timing ('Model executed successfully.' without "
                "'N time(s) in X ms'): build it from ExecuTorch 0.4 or later"
            )
        raise ProjectError(
            "executor_runner output not recognised: no 'Model executed successfully N time(s) "
            f"in X ms' line (last line: {last_line(text)})"
        )
    loaded = _LOADED.search(text)
    init_s = float(loaded.group(1)) / 1000 if loaded else None
    calls = [float(m.group(3)) for m in _ITERATION.finditer(text)]
    total = int(executed.group(1))
    no_memory = ("peak_memory_footprint",)
    if calls and len(calls) == total and len(calls) > warmup:
        return ToolTiming.of_calls(
            "executor_runner",
            summarise(calls[warmup:]),
            init_s,
            no_memory + (() if loaded else ("model_load_time",)),
        )
    per_call = ("median_latency", "min_latency", "max_latency", "p90_latency", "p99_latency")
    return ToolTiming(
        tool="executor_runner",
        iterations=total,
        mean_ms=float(executed.group(2)) / total,
        init_s=init_s,
        warmup_included=warmup > 0,
        missing=per_call
        + ("trimmed_mean_latency",)
        + no_memory
        + (() if loaded else ("model_load_time",)),
    )


# --- the tools' command lines ----------------------------------------------------------------


def remote_path(name: str) -> str:
    return f"{REMOTE_DIR}/{name}"


def benchmark_model_command(
    tool: str,
    graph: str,
    threads: int | None,
    warmup: int,
    iters: int,
    delegate: str = "xnnpack",
    extra: Sequence[str] = (),
) -> list[str]:
    """``benchmark_model`` with exactly ``warmup`` + ``iters`` runs (``--min_secs=0``: no
    extra runs to fill a second) and the peak-memory poller on."""
    flag = {"xnnpack": "--use_xnnpack=true", "gpu": "--use_gpu=true", "nnapi": "--use_nnapi=true"}
    command = [tool, f"--graph={graph}"]
    if threads is not None:
        command.append(f"--num_threads={threads}")
    return [
        *command,
        f"--warmup_runs={warmup}",
        f"--num_runs={iters}",
        "--warmup_min_secs=0",
        "--min_secs=0",
        flag[delegate],
        "--report_peak_memory_footprint=true",
        *extra,
    ]


def executor_runner_command(
    tool: str, model: str, threads: int | None, executions: int, extra: Sequence[str] = ()
) -> list[str]:
    """``executor_runner``: it has no warm-up flag, so warm-up calls are executions too."""
    command = [tool, f"--model_path={model}", f"--num_executions={executions}"]
    if threads is not None:
        command.append(f"--cpu_threads={threads}")
    return [*command, *extra]


# --- adb ---------------------------------------------------------------------------------------


def find_adb() -> str:
    """adb from $ADB, else from PATH."""
    named = os.environ.get("ADB")
    if named:
        if not (Path(named).is_file() and os.access(named, os.X_OK)):
            raise ProjectError(f"$ADB is {named}, which is not an executable file")
        return named
    found = shutil.which("adb")
    if found is None:
        raise ProjectError(
            "adb not found: install Android SDK platform-tools and put adb on PATH, or set $ADB"
        )
    return found


@dataclass(frozen=True)
class Adb:
    """One phone through adb; every call is ``adb -s SERIAL ...``, with a timeout."""

    executable: str
    serial: str

    def call(self, *args: str, timeout: float = ADB_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        what = f"adb {args[0]} on {self.serial}"
        return run_command([self.executable, "-s", self.serial, *args], what, timeout)

    def shell(
        self, command: Sequence[str], timeout: float = ADB_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` on the phone (quoted as one shell line); its exit status comes back
        (adb's shell protocol, Android 7 and later)."""
        return self.call("shell", shlex.join(command), timeout=timeout)

    def check_ready(self) -> None:
        done = self.call("get-state", timeout=30)
        state = done.stdout.strip()
        if done.returncode != 0 or state != "device":
            said = last_line(done.stderr + done.stdout) if done.returncode else state
            raise ProjectError(f"android device {self.serial} is not ready: {said}")

    def properties(self) -> dict[str, str]:
        """The phone's model, SoC, ABI and Android release (``getprop``); empty where silent."""
        done = self.shell(["getprop"], timeout=30)
        props = dict(re.findall(r"^\[([^\]]+)\]: \[([^\]]*)\]", done.stdout, re.MULTILINE))
        wanted = {
            "model": "ro.product.model",
            "manufacturer": "ro.product.manufacturer",
            "soc": "ro.soc.model",
            "abi": "ro.product.cpu.abi",
            "android": "ro.build.version.release",
        }
        return {key: props[prop] for key, prop in wanted.items() if props.get(prop)}

    def push(self, local: Path, remote: str) -> None:
        made = self.shell(["mkdir", "-p", remote.rsplit("/", 1)[0]], timeout=30)
        if made.returncode != 0:
            raise ProjectError(
                f"cannot create {remote.rsplit('/', 1)[0]} on {self.serial}: "
                f"{last_line(made.stderr + made.stdout)}"
            )
        done = self.call("push", str(local), remote)
        if done.returncode != 0:
            raise ProjectError(
                f"adb push {local} to {self.serial} failed: {last_line(done.stderr + done.stdout)}"
            )

    def pull(self, remote: str, local: Path) -> None:
        done = self.call("pull", remote, str(local))
        if done.returncode != 0 or not local.is_file():
            raise ProjectError(
                f"adb pull {remote} from {self.serial} failed: "
                f"{last_line(done.stderr + done.stdout)}"
            )

    def check_tool(self, tool: str) -> None:
        if self.shell(["test", "-x", tool], timeout=30).returncode != 0:
            name = tool.rsplit("/", 1)[-1]
            raise ProjectError(
                f"{name} not found (or not executable) at {tool} on {self.serial}: build it for "
                "the phone's ABI, adb push it there and chmod +x it, or pass --tool"
            )

    def run_tool(self, command: Sequence[str]) -> str:
        done = self.shell(command, timeout=TOOL_TIMEOUT_S)
        output = done.stdout + done.stderr
        if done.returncode != 0:
            name = command[0].rsplit("/", 1)[-1]
            raise ProjectError(
                f"{name} exited {done.returncode} on {self.serial}: {last_line(output)}"
            )
        return output


# --- one run -----------------------------------------------------------------------------------


def tool_name(target: str) -> str:
    """The standard tool the target's files are timed with on Android (runtimes.targets)."""
    return str(get_target_spec(target).phone_tool)


def default_tool(target: str) -> str:
    return f"{TOOL_DIR}/{tool_name(target)}"


def phone_runtime(target: str, delegate: str) -> str:
    """What a phone's records name as their runtime: the target's, its tool and the delegate."""
    spec = get_target_spec(target)
    return f"{spec.runtime} {spec.phone_tool} ({delegate})"


def timed_on_phone(
    adb: Adb, tool: str, remote: str, manifest: Manifest, request: RunRequest, delegate: str
) -> tuple[ToolTiming, str]:
    """The tool's figures for ``warmup`` + ``iters`` calls, and the runtime to record."""
    if tool_name(manifest.target) == "benchmark_model":
        command = benchmark_model_command(
            tool, remote, request.threads, request.warmup, request.iters, delegate
        )
        timing = parse_benchmark_model(adb.run_tool(command))
        return timing, phone_runtime(manifest.target, delegate)
    command = executor_runner_command(tool, remote, request.threads, request.warmup + request.iters)
    timing = parse_executor_runner(adb.run_tool(command), request.warmup)
    return timing, phone_runtime(manifest.target, "xnnpack")  # the delegate the .pte holds


def run_android(
    device: Device,
    artifact: Path,
    manifest: Manifest,
    request: RunRequest,
    options: PhoneOptions,
) -> DeviceRun:
    """Push, time with the format's standard tool, parse; with ``golden``, also run the bundle's
    frames and score the phone's masks against PyTorch's. Raises before returning anything on
    any failure, so nothing is recorded from a half-run."""
    if tool_name(manifest.target) != "benchmark_model" and options.delegate != "xnnpack":
        raise ProjectError(
            f"--delegate {options.delegate}: the .pte runs the XNNPACK delegate it holds"
        )
    bundle = None if options.golden is None else read_bundle(options.golden, manifest)
    adb = Adb(find_adb(), device.id)  # the bundle above was refused before the phone is touched
    adb.check_ready()
    props = {**adb.properties(), "serial": device.id}
    tool = options.tool or default_tool(manifest.target)
    remote = remote_path(artifact.name)
    adb.push(artifact, remote)
    adb.check_tool(tool)
    timing, runtime = timed_on_phone(adb, tool, remote, manifest, request, options.delegate)
    dice = None
    if bundle is not None:
        dice = golden_on_android(adb, tool, remote, manifest, bundle, request.threads, options)
    name = f"{props.get('model', 'android')} ({device.id})"
    where = f"android: {name}"
    records = phone_records(timing, manifest, where, runtime, request.threads, props)
    if dice is not None:
        figure = [("mask_dice_vs_pytorch_on_device", dice, "dice")]
        file = manifest.artifact.file
        records += artifact_records(
            manifest, runtime, file, request.threads, figure, where, where=props
        )
    return DeviceRun(tuple(records), summary_line(manifest, runtime, name, timing, dice))


def golden_command(
    tool: str,
    remote_model: str,
    manifest: Manifest,
    inputs: list[tuple[TensorSpec, str]],
    out_base: str,
    threads: int | None,
    delegate: str,
) -> tuple[list[str], str]:
    """One golden frame's command line, and the file it writes the logits (or every output) to.

    ``benchmark_model --output_filepath`` writes every output tensor's bytes, in output order,
    after its last run; ``executor_runner --output_file=BASE`` writes ``BASE-<i>.bin`` per
    output. Both are fed the bundle's raw input files.
    """
    if tool_name(manifest.target) == "benchmark_model":
        names = ",".join(spec.name for spec, _ in inputs)
        shapes = ":".join(",".join(map(str, spec.shape)) for spec, _ in inputs)
        files = ",".join(f"{spec.name.replace(':', '::')}:{path}" for spec, path in inputs)
        out_remote = f"{out_base}.bin"
        extra = [
            f"--input_layer={names}",
            f"--input_layer_shape={shapes}",
            f"--input_layer_value_files={files}",
            f"--output_filepath={out_remote}",
        ]
        return (
            benchmark_model_command(tool, remote_model, threads, 0, 1, delegate, extra=extra),
            out_remote,
        )
    extra = [f"--inputs={','.join(path for _, path in inputs)}", f"--output_file={out_base}"]
    out_remote = f"{out_base}-{manifest.tensor('logits').index}.bin"
    return executor_runner_command(tool, remote_model, threads, 1, extra=extra), out_remote


def _pushed_inputs(
    adb: Adb, bundle: Bundle, frame: GoldenFrame, remote_dir: str
) -> list[tuple[TensorSpec, str]]:
    """Push one golden frame's raw input files; (spec, path on the phone) of each."""
    pushed = []
    for spec, file in zip(bundle.inputs, frame.inputs, strict=True):
        remote_file = f"{remote_dir}/{file}"
        adb.push(bundle.root / file, remote_file)
        pushed.append((spec, remote_file))
    return pushed


def golden_on_android(
    adb: Adb,
    tool: str,
    remote_model: str,
    manifest: Manifest,
    bundle: Bundle,
    threads: int | None,
    options: PhoneOptions,
) -> float:
    """Each golden frame through the phone's tool, its outputs pulled back and scored.

    Each output file is removed before its run, so a file left by an earlier run is never
    scored.
    """
    remote_dir = remote_path("golden")
    outputs = []
    with tempfile.TemporaryDirectory(prefix="bas-golden-") as pulled:
        for frame in bundle.frames:
            inputs = _pushed_inputs(adb, bundle, frame, remote_dir)
            out_base = f"{remote_dir}/out_{frame.index:03d}"
            command, out_remote = golden_command(
                tool, remote_model, manifest, inputs, out_base, threads, options.delegate
            )
            adb.shell(["rm", "-f", out_remote], timeout=30)
            adb.run_tool(command)
            local = Path(pulled) / Path(out_remote).name
            adb.pull(out_remote, local)
            outputs.append(local.read_bytes())
        return golden_dice(bundle, outputs)


PLATFORM = PhonePlatform(
    name="android",
    usage="android:SERIAL",
    id_name="adb serial",
    id_source="`adb devices`",
    find_tool=find_adb,
    run=run_android,
    options=("--delegate", "--tool", "--golden"),
)
