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

Also here, shared with ``ios``: the ``--device`` option's type and the artifact checks.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from model.errors import ProjectError
from runtimes.manifest import Manifest

from .bench import artifact_records, network_gflop
from .bench import checked_artifact as checked_on_host
from .records import BenchRecord, append_records
from .stats import LatencyStats, summarise

if TYPE_CHECKING:
    from .golden import Bundle

REMOTE_DIR = "/data/local/tmp/bas-deploy"
BENCHMARK_MODEL = "/data/local/tmp/benchmark_model"
EXECUTOR_RUNNER = "/data/local/tmp/executor_runner"
DELEGATES = ("xnnpack", "gpu", "nnapi")
PHONE_TARGETS = {"android": ("tflite", "executorch"), "ios": ("coreml",)}
TOOL_TIMEOUT_S = 900
ADB_TIMEOUT_S = 300


# --- the --device option --------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    """Where to time: this host, its CUDA GPU, or a phone named by serial / UDID."""

    kind: str  # host | cuda | android | ios
    id: str = ""  # adb serial or iOS UDID

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}" if self.id else self.kind


class DeviceType(click.ParamType):
    """``host``, ``cuda``, ``android:SERIAL`` or ``ios:UDID``; anything else one line."""

    name = "device"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[host|cuda|android:SERIAL|ios:UDID]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, Device):
            return value
        text = str(value).strip()
        kind, sep, ident = text.partition(":")
        kind = kind.lower()
        if kind in ("host", "cuda"):
            if sep:
                self.fail(f"{text!r}: {kind} takes no id (write just '{kind}')", param, ctx)
            return Device(kind)
        if kind in ("android", "ios"):
            what = "adb serial" if kind == "android" else "device UDID"
            where = "`adb devices`" if kind == "android" else "`xcrun devicectl list devices`"
            if not ident.strip():
                self.fail(f"{text!r} names no device: write {kind}:<{what}> ({where})", param, ctx)
            if any(c.isspace() for c in ident) or ident.startswith("-"):
                self.fail(f"{text!r}: {ident!r} is not a usable {what} ({where})", param, ctx)
            return Device(kind, ident)
        self.fail(
            f"{text!r} is not a device: use host, cuda, android:SERIAL or ios:UDID", param, ctx
        )


# --- which artifact ---------------------------------------------------------------------------


def checked_artifact(
    device: Device,
    target: str,
    variant: str,
    precision: str,
    form: str,
    artifact: Path | None,
    weights: str,
    cache: Path,
) -> tuple[Path, Manifest]:
    """The artifact to ship to the phone: given or cached, what was asked, and parity passed.

    The host's refusals (``bench.checked_artifact``), and the targets a phone runs.
    """
    allowed = PHONE_TARGETS[device.kind]
    if target not in allowed:
        raise ProjectError(
            f"--device {device.kind} runs --target {' or '.join(allowed)}, not {target}"
        )
    return checked_on_host(target, variant, precision, form, artifact, weights, cache)


# --- what the tools print ---------------------------------------------------------------------


@dataclass(frozen=True)
class ToolTiming:
    """Latency figures as a device tool reported them, in ms; None where it reports none."""

    tool: str
    iterations: int
    mean_ms: float
    median_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    std_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    trimmed_mean_ms: float | None = None
    init_s: float | None = None
    memory_delta_mb: float | None = None  # benchmark_model: max RSS growth since the start
    peak_memory_mb: float | None = None  # benchmark_model --report_peak_memory_footprint
    warmup_included: bool = False  # the mean counts the warm-up calls (no per-call lines)
    missing: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def of_calls(
        cls, tool: str, stats: LatencyStats, init_s: float | None, missing: tuple[str, ...]
    ) -> ToolTiming:
        """From per-call latencies the tool printed, summarised as the host's are."""
        return cls(
            tool=tool,
            iterations=stats.iterations,
            mean_ms=stats.mean_ms,
            median_ms=stats.median_ms,
            min_ms=stats.min_ms,
            max_ms=stats.max_ms,
            p90_ms=stats.p90_ms,
            p99_ms=stats.p99_ms,
            trimmed_mean_ms=stats.trimmed_mean_ms,
            init_s=init_s,
            missing=missing,
        )


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


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "(no output)"


def parse_benchmark_model(text: str) -> ToolTiming:
    """LiteRT ``benchmark_model``'s log: the last ``count=`` line (the timed runs, in us),
    ``Inference timings in us: ...``, and the memory lines where printed."""
    timings = _TIMINGS.search(text) or _OLD_TIMINGS.search(text)
    counts = [dict(_FIELD.findall(m.group(2)), count=m.group(1)) for m in _COUNT.finditer(text)]
    if timings is None or not counts:
        missing = "'Inference timings in us'" if timings is None else "'count=' statistics"
        raise ProjectError(
            f"benchmark_model output not recognised: no {missing} line "
            f"(last line: {_last_line(text)})"
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
            f"in X ms' line (last line: {_last_line(text)})"
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
        try:
            return subprocess.run(
                [self.executable, "-s", self.serial, *args],
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise ProjectError(
                f"adb {args[0]} on {self.serial} did not finish in {timeout:.0f} s"
            ) from err

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
            said = _last_line(done.stderr + done.stdout) if done.returncode else state
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
                f"{_last_line(made.stderr + made.stdout)}"
            )
        done = self.call("push", str(local), remote)
        if done.returncode != 0:
            raise ProjectError(
                f"adb push {local} to {self.serial} failed: {_last_line(done.stderr + done.stdout)}"
            )

    def pull(self, remote: str, local: Path) -> None:
        done = self.call("pull", remote, str(local))
        if done.returncode != 0 or not local.is_file():
            raise ProjectError(
                f"adb pull {remote} from {self.serial} failed: "
                f"{_last_line(done.stderr + done.stdout)}"
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
                f"{name} exited {done.returncode} on {self.serial}: {_last_line(output)}"
            )
        return output


# --- one run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceRun:
    """What a device run produced: its records (appended by the caller) and a summary line."""

    records: tuple[BenchRecord, ...]
    summary: str


def default_tool(target: str) -> str:
    return BENCHMARK_MODEL if target == "tflite" else EXECUTOR_RUNNER


def run_android(
    device: Device,
    artifact: Path,
    manifest: Manifest,
    threads: int | None,
    warmup: int,
    iters: int,
    delegate: str = "xnnpack",
    tool: str | None = None,
    golden: Path | None = None,
) -> DeviceRun:
    """Push, time with the format's standard tool, parse; with ``golden``, also run the bundle's
    frames and score the phone's masks against PyTorch's. Raises before returning anything on
    any failure, so nothing is recorded from a half-run."""
    if manifest.target == "executorch" and delegate != "xnnpack":
        raise ProjectError(f"--delegate {delegate}: the .pte runs the XNNPACK delegate it holds")
    bundle = None
    if golden is not None:
        from .golden import read_bundle

        bundle = read_bundle(golden, manifest)  # refused before the phone is touched
    adb = Adb(find_adb(), device.id)
    adb.check_ready()
    props = adb.properties()
    tool = tool or default_tool(manifest.target)
    remote = remote_path(artifact.name)
    adb.push(artifact, remote)
    adb.check_tool(tool)
    if manifest.target == "tflite":
        command = benchmark_model_command(tool, remote, threads, warmup, iters, delegate)
        timing = parse_benchmark_model(adb.run_tool(command))
        runtime = f"litert benchmark_model ({delegate})"
    else:
        command = executor_runner_command(tool, remote, threads, warmup + iters)
        timing = parse_executor_runner(adb.run_tool(command), warmup)
        runtime = "executorch executor_runner (xnnpack)"
    dice = None
    if bundle is not None:
        dice = golden_on_android(adb, tool, remote, manifest, bundle, threads, delegate)
    name = f"{props.get('model', 'android')} ({device.id})"
    records = phone_records(
        timing, manifest, f"android: {name}", runtime, threads, {**props, "serial": device.id}
    )
    if dice is not None:
        records += artifact_records(
            manifest,
            runtime,
            manifest.artifact.file,
            threads,
            [("mask_dice_vs_pytorch_on_device", dice, "dice")],
            f"android: {name}",
            where={**props, "serial": device.id},
        )
    return DeviceRun(tuple(records), summary_line(manifest, runtime, name, timing, dice))


def golden_on_android(
    adb: Adb,
    tool: str,
    remote_model: str,
    manifest: Manifest,
    bundle: Bundle,
    threads: int | None,
    delegate: str,
) -> float:
    """Each golden frame through the phone's tool, its outputs pulled back and scored.

    ``benchmark_model --output_filepath`` writes every output tensor's bytes, in output order,
    after its last run; ``executor_runner --output_file=BASE`` writes ``BASE-<i>.bin`` per
    output. Both are fed the bundle's raw input files. Each output file is removed before its
    run, so a file left by an earlier run is never scored.
    """
    from .golden import golden_dice

    remote_dir = remote_path("golden")
    outputs = []
    with tempfile.TemporaryDirectory(prefix="bas-golden-") as pulled:
        for frame in bundle.frames:
            remote_inputs = []
            for spec, file in zip(bundle.inputs, frame.inputs, strict=True):
                remote_file = f"{remote_dir}/{file}"
                adb.push(bundle.root / file, remote_file)
                remote_inputs.append((spec, remote_file))
            stem = f"out_{frame.index:03d}"
            if manifest.target == "tflite":
                names = ",".join(spec.name for spec, _ in remote_inputs)
                shapes = ":".join(",".join(map(str, spec.shape)) for spec, _ in remote_inputs)
                files = ",".join(
                    f"{spec.name.replace(':', '::')}:{path}" for spec, path in remote_inputs
                )
                out_remote = f"{remote_dir}/{stem}.bin"
                command = benchmark_model_command(
                    tool,
                    remote_model,
                    threads,
                    0,
                    1,
                    delegate,
                    extra=[
                        f"--input_layer={names}",
                        f"--input_layer_shape={shapes}",
                        f"--input_layer_value_files={files}",
                        f"--output_filepath={out_remote}",
                    ],
                )
            else:
                inputs = ",".join(path for _, path in remote_inputs)
                command = executor_runner_command(
                    tool,
                    remote_model,
                    threads,
                    1,
                    extra=[f"--inputs={inputs}", f"--output_file={remote_dir}/{stem}"],
                )
                logits = manifest.tensor("logits")
                out_remote = f"{remote_dir}/{stem}-{logits.index}.bin"
            adb.shell(["rm", "-f", out_remote], timeout=30)
            adb.run_tool(command)
            local = Path(pulled) / Path(out_remote).name
            adb.pull(out_remote, local)
            outputs.append(local.read_bytes())
        return golden_dice(bundle, outputs)


def phone_records(
    timing: ToolTiming,
    manifest: Manifest,
    device: str,
    runtime: str,
    threads: int | None,
    machine: dict[str, Any],
) -> list[BenchRecord]:
    """One record per figure the tool reported, named as the host's are (``bench.to_records``);
    FPS and GFLOP/s at the median only where the tool reports a median."""
    figures: list[tuple[str, float | None, str]] = [
        ("median_latency", timing.median_ms, "ms"),
        ("mean_latency", None if timing.warmup_included else timing.mean_ms, "ms"),
        ("mean_latency_with_warmup", timing.mean_ms if timing.warmup_included else None, "ms"),
        ("trimmed_mean_latency", timing.trimmed_mean_ms, "ms"),
        ("p90_latency", timing.p90_ms, "ms"),
        ("p95_latency", timing.p95_ms, "ms"),
        ("p99_latency", timing.p99_ms, "ms"),
        ("min_latency", timing.min_ms, "ms"),
        ("max_latency", timing.max_ms, "ms"),
        ("std_latency", timing.std_ms, "ms"),
    ]
    if timing.median_ms:
        fps = 1000.0 / timing.median_ms
        gflops = network_gflop(manifest) * fps
        figures += [("fps", fps, "fps"), ("achieved_gflops", gflops, "GFLOP/s")]
    figures += [
        ("model_load_time", timing.init_s, "s"),
        ("peak_memory_footprint", timing.peak_memory_mb, "MB"),
        ("memory_footprint_delta", timing.memory_delta_mb, "MB"),
        ("artifact_size", manifest.artifact.bytes / 1e6, "MB"),
        ("iterations", float(timing.iterations), "count"),
    ]
    known = [(metric, value, unit) for metric, value, unit in figures if value is not None]
    return artifact_records(
        manifest, runtime, manifest.artifact.file, threads, known, device, where=machine
    )


def summary_line(
    manifest: Manifest, runtime: str, where: str, timing: ToolTiming, dice: float | None
) -> str:
    """One line: the headline figures, and which figures the tool did not report."""
    head = f"{manifest.target} BaS-{manifest.variant} {manifest.precision} {manifest.form} "
    head += f"on {where} via {runtime}: "
    if timing.median_ms is not None:
        head += f"median {timing.median_ms:.2f} ms, "
    head += f"mean {timing.mean_ms:.2f} ms"
    head += " (warm-up calls included)" if timing.warmup_included else ""
    head += f" over {timing.iterations} calls"
    if timing.peak_memory_mb is not None:
        head += f", peak memory {timing.peak_memory_mb:.1f} MB"
    if dice is not None:
        head += f", mask Dice vs PyTorch on device {dice:.5f}"
    if timing.missing:
        head += f"; not reported by {timing.tool}: {', '.join(timing.missing)}"
    return head


# --- the dispatch behind `device_bench run --device` ------------------------------------------


def run_on_device(
    device: Device,
    target: str,
    variant: str,
    precision: str,
    form: str,
    threads: int | None,
    warmup: int,
    iters: int,
    artifact: Path | None,
    weights: str,
    cache: Path,
    results: Path,
    delegate: str = "xnnpack",
    tool: str | None = None,
    golden: Path | None = None,
) -> str:
    """Time on ``device`` (not the host); append its records to ``results`` only once the
    whole run has succeeded; return the line to print."""
    if device.kind != "android":
        for flag, value, default in (
            ("--delegate", delegate, "xnnpack"),
            ("--tool", tool, None),
            ("--golden", golden, None),
        ):
            if value != default:
                raise ProjectError(f"{flag} is for --device android:SERIAL, not {device}")
    if device.kind == "cuda":
        from .gpu import run_cuda

        if artifact is not None:
            raise ProjectError("--device cuda converts its own artifact; --artifact is host-only")
        cuda_records, summary = run_cuda(
            target=target,
            variant=variant,
            precision=precision,
            form=form,
            warmup=warmup,
            iters=iters,
            weights=weights,
        )
        done = DeviceRun(tuple(cuda_records), summary)
    elif device.kind == "ios":
        from .ios import find_xcrun, run_ios

        find_xcrun()  # refused here before any conversion
        path, manifest = checked_artifact(
            device, target, variant, precision, form, artifact, weights, cache
        )
        done = run_ios(device, path, manifest, warmup, iters)
    else:
        find_adb()  # refused here before any conversion
        path, manifest = checked_artifact(
            device, target, variant, precision, form, artifact, weights, cache
        )
        done = run_android(device, path, manifest, threads, warmup, iters, delegate, tool, golden)
    append_records(results, list(done.records))
    return f"{done.summary}; appended to {results}"
