"""device_bench on phones without a phone: the --device option, the device tools' command
lines and recorded outputs (tests/fixtures/device_bench, sources in SOURCES.md), a stand-in
adb on PATH, the iOS harness's command lines and output, and the golden bundle round trip."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from device_bench import android, ios
from device_bench.android import (
    benchmark_model_command,
    executor_runner_command,
    parse_benchmark_model,
    parse_executor_runner,
)
from device_bench.cli import main
from device_bench.devices import DeviceType
from device_bench.golden import frame_inputs, golden_dice, read_bundle
from device_bench.phone import Device, PhoneOptions, RunRequest
from device_bench.records import read_records
from model.errors import ProjectError
from runtimes.manifest import (
    ArtifactFile,
    Manifest,
    MaskAgreement,
    ParityRecord,
    StateSpec,
    TensorSpec,
    WeightsRef,
    artifact_sha256,
    manifest_path,
    read_manifest,
    write_manifest,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "device_bench"
SERIAL = "SER123"
REMOTE = "/data/local/tmp/bas-deploy"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def fake_artifact(
    folder: Path,
    target: str = "tflite",
    form: str = "frame",
    parity: ParityRecord | None = None,
) -> Path:
    """A file with a real manifest beside it (the phone never runs it here)."""
    suffix = {"tflite": ".tflite", "executorch": ".pte", "coreml": ".mlpackage"}[target]
    path = folder / f"bas_s_{form}_240_fp32{suffix}"
    if target == "coreml":
        (path / "Data").mkdir(parents=True)
        (path / "Manifest.json").write_text("{}")
    else:
        path.write_bytes(b"not a real model, only its manifest matters here")
    nhwc = target == "tflite"
    frame = TensorSpec(
        "frame",
        "frame" if nhwc else "",
        0,
        (1, 240, 240, 3) if nhwc else (1, 3, 240, 240),
        "float32",
        "NHWC" if nhwc else "NCHW",
        (0, 2, 3, 1) if nhwc else (0, 1, 2, 3),
    )
    logits = TensorSpec(
        "logits",
        "Identity" if nhwc else "",
        399 if nhwc else 0,
        (1, 240, 240, 1) if nhwc else (1, 1, 240, 240),
        "float32",
        "NHWC" if nhwc else "NCHW",
        (0, 2, 3, 1) if nhwc else (0, 1, 2, 3),
    )
    inputs, outputs, state = (frame,), (logits,), None
    if form == "stream":
        shape = (1, 2, 48, 60, 60)
        inputs += (TensorSpec("state", "state", 1, shape, "float32", "NTCHW", (0, 1, 2, 3, 4)),)
        outputs += (
            TensorSpec("new_state", "new_state", 1, shape, "float32", "NTCHW", (0, 1, 2, 3, 4)),
        )
        state = StateSpec("state", "new_state", shape)
    manifest = Manifest(
        target=target,
        runtime={"tflite": "litert", "executorch": "executorch", "coreml": "coreml"}[target],
        variant="S",
        form=form,
        precision="fp32",
        image_size=240,
        temporal_window=3,
        artifact=ArtifactFile(
            path.name, artifact_sha256(path), os.path.getsize(path) if path.is_file() else 3
        ),
        weights=WeightsRef("shipped", "0" * 64),
        inputs=inputs,
        outputs=outputs,
        state=state,
        parity=ParityRecord(passed=True, masks_vs_pytorch=MaskAgreement(dice=1.0))
        if parity is None
        else parity,
    )
    write_manifest(path, manifest)
    return path


@pytest.fixture
def adb_env(tmp_path: Path) -> dict[str, str | None]:
    """The stand-in adb first on PATH; its log and the phone's file system in tmp_path."""
    (tmp_path / "phone").mkdir()
    return {
        "PATH": f"{FIXTURES}{os.pathsep}{os.environ['PATH']}",
        "ADB": None,
        "FAKE_ADB_LOG": str(tmp_path / "adb.log"),
        "FAKE_ADB_ROOT": str(tmp_path / "phone"),
        "FAKE_ADB_TOOL_OUTPUT": str(FIXTURES / "benchmark_model_median.txt"),
    }


def adb_calls(env: dict) -> list[list[str]]:
    log = Path(env["FAKE_ADB_LOG"])
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def invoke(args: list[str], env: dict | None = None):
    return CliRunner().invoke(main, args, env=env)


def one_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") or "Error:" in lines[-1], result.output
    return lines[-1]


# --- the --device option ----------------------------------------------------------------------


def test_device_option_parses_every_kind_and_refuses_in_one_line(tmp_path: Path) -> None:
    kind = DeviceType()
    assert kind.convert("host", None, None) == Device("host")
    assert kind.convert("CUDA", None, None) == Device("cuda")
    assert kind.convert("android:emulator-5554", None, None) == Device("android", "emulator-5554")
    assert kind.convert("ios:00008120-001A2B3C4D5E601E", None, None).id.startswith("00008120")
    assert str(Device("android", "R5CT")) == "android:R5CT"
    results = tmp_path / "r.jsonl"
    for value, said in (
        ("android:", "names no device: write android:<adb serial"),
        ("ios:", "names no device: write ios:<device UDID>"),
        ("phone", "is not a device: use host, cuda, android:SERIAL or ios:UDID"),
        ("host:1", "host takes no id"),
        ("android:a b", "is not a usable adb serial"),
    ):
        result = invoke(["run", "--target", "tflite", "--device", value, "--results", str(results)])
        line = one_error(result)
        assert said in line, line
    assert not results.exists()


def test_phone_options_are_refused_where_they_mean_nothing(tmp_path: Path) -> None:
    results = tmp_path / "r.jsonl"
    base = ["run", "--target", "tflite", "--results", str(results)]
    line = one_error(invoke([*base, "--delegate", "gpu"]))
    assert "--delegate is for --device android:SERIAL, not host" in line
    line = one_error(invoke([*base, "--tool", "/x", "--device", "cuda"]))
    assert "--tool is for --device android:SERIAL, not cuda" in line
    assert not results.exists()


def test_cuda_is_handed_to_device_bench_gpu_and_its_records_appended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpu = pytest.importorskip("device_bench.gpu")
    asked = {}

    def run_cuda(**kwargs):
        asked.update(kwargs)
        artifact = fake_artifact(tmp_path)
        done = android.phone_records(
            android.ToolTiming("t", 3, 2.0, median_ms=2.0),
            read_manifest(artifact),
            "cuda: fake",
            "onnxruntime (cuda)",
            None,
            {},
        )
        return done[:1], "onnx on fake: median 2.00 ms"

    monkeypatch.setattr(gpu, "run_cuda", run_cuda)
    results = tmp_path / "r.jsonl"
    args = ["run", "--target", "onnx", "--device", "cuda", "--iters", "3", "--warmup", "1"]
    result = invoke([*args, "--results", str(results)])
    assert result.exit_code == 0, result.output
    assert asked == dict(
        target="onnx",
        variant="S",
        precision="fp32",
        form="frame",
        warmup=1,
        iters=3,
        weights="shipped",
    )
    assert [r.device for r in read_records(results)] == ["cuda: fake"]
    assert result.stdout.strip() == f"onnx on fake: median 2.00 ms; appended to {results}"
    line = one_error(
        invoke(
            [
                *args,
                "--artifact",
                str(tmp_path / "r.jsonl"),
                "--results",
                str(tmp_path / "other.jsonl"),
            ]
        )
    )
    assert "--device cuda converts its own artifact" in line


# --- what the tools print -----------------------------------------------------------------------


def test_benchmark_model_outputs_parse_to_what_they_report() -> None:
    recent = parse_benchmark_model(fixture("benchmark_model_median.txt"))
    assert recent.iterations == 50  # the timed runs' line, not the warm-up's (count=5)
    assert recent.mean_ms == pytest.approx(105.784) and recent.median_ms == pytest.approx(105.718)
    assert (recent.min_ms, recent.max_ms) == (pytest.approx(105.416), pytest.approx(106.528))
    assert recent.std_ms == pytest.approx(0.260) and recent.p95_ms == pytest.approx(106.281)
    assert recent.init_s == pytest.approx(0.087639)
    assert recent.memory_delta_mb == pytest.approx(14.8164) and recent.peak_memory_mb is None
    assert "p90_latency" in recent.missing and "peak_memory_footprint" in recent.missing
    nnapi = parse_benchmark_model(fixture("benchmark_model_nnapi.txt"))
    assert nnapi.iterations == 520 and nnapi.median_ms is None  # TF 2.15 prints no median
    assert nnapi.mean_ms == pytest.approx(1.88574) and nnapi.min_ms == pytest.approx(1.171)
    assert "median_latency" in nnapi.missing
    peak = parse_benchmark_model(fixture("benchmark_model_peak.txt"))
    assert peak.peak_memory_mb == pytest.approx(93.2383) and peak.iterations == 1061
    logcat = parse_benchmark_model(fixture("benchmark_model_logcat.txt"))
    assert logcat.mean_ms == pytest.approx(2719.85) and logcat.median_ms == pytest.approx(2709.263)
    assert logcat.memory_delta_mb == 337
    old = parse_benchmark_model(fixture("benchmark_model_tf1.txt"))
    assert old.mean_ms == pytest.approx(79.7609) and old.init_s == pytest.approx(0.038467)
    assert old.iterations == 50 and old.max_ms == pytest.approx(88.213)
    for bad in ("benchmark_model_garbled.txt", "benchmark_model_failed.txt"):
        with pytest.raises(ProjectError, match="benchmark_model output not recognised"):
            parse_benchmark_model(fixture(bad))


def test_executor_runner_outputs_parse_to_what_they_report() -> None:
    per_call = parse_executor_runner(fixture("executor_runner_iterations.txt"), warmup=1)
    assert per_call.iterations == 5  # the first of 6 executions was the warm-up
    assert per_call.median_ms == pytest.approx(20.291016)
    assert per_call.min_ms == pytest.approx(19.950928)
    assert per_call.max_ms == pytest.approx(22.150879)
    assert per_call.init_s == pytest.approx(0.042118652) and not per_call.warmup_included
    total = parse_executor_runner(fixture("executor_runner_total.txt"), warmup=0)
    assert total.mean_ms == pytest.approx(0.691078) and total.median_ms is None
    assert "median_latency" in total.missing and "model_load_time" in total.missing
    assert parse_executor_runner(fixture("executor_runner_total.txt"), warmup=1).warmup_included
    with pytest.raises(ProjectError, match="printed no timing"):
        parse_executor_runner(fixture("executor_runner_old.txt"), warmup=0)
    with pytest.raises(ProjectError, match="executor_runner output not recognised"):
        parse_executor_runner(fixture("benchmark_model_median.txt"), warmup=0)


def test_tool_command_lines() -> None:
    graph = f"{REMOTE}/bas_s_frame_240_fp32.tflite"
    assert benchmark_model_command("/data/local/tmp/benchmark_model", graph, 4, 10, 100) == [
        "/data/local/tmp/benchmark_model",
        f"--graph={graph}",
        "--num_threads=4",
        "--warmup_runs=10",
        "--num_runs=100",
        "--warmup_min_secs=0",
        "--min_secs=0",
        "--use_xnnpack=true",
        "--report_peak_memory_footprint=true",
    ]
    gpu = benchmark_model_command("bm", graph, None, 1, 2, "gpu")
    assert "--use_gpu=true" in gpu and not any(f.startswith("--num_threads") for f in gpu)
    assert "--use_nnapi=true" in benchmark_model_command("bm", graph, None, 1, 2, "nnapi")
    assert executor_runner_command("/data/local/tmp/executor_runner", "m.pte", 2, 110) == [
        "/data/local/tmp/executor_runner",
        "--model_path=m.pte",
        "--num_executions=110",
        "--cpu_threads=2",
    ]


# --- android through the stand-in adb --------------------------------------------------------


def test_android_tflite_run_sends_these_commands_and_records_the_figures(
    tmp_path: Path, adb_env: dict
) -> None:
    artifact = fake_artifact(tmp_path)
    results = tmp_path / "r.jsonl"
    args = ["run", "--target", "tflite", "--artifact", str(artifact), "--threads", "4"]
    args += ["--warmup", "5", "--iters", "50", "--device", f"android:{SERIAL}"]
    result = invoke([*args, "--results", str(results)], adb_env)
    assert result.exit_code == 0, result.output
    remote = f"{REMOTE}/{artifact.name}"
    tool = "/data/local/tmp/benchmark_model"
    assert adb_calls(adb_env) == [
        ["-s", SERIAL, "get-state"],
        ["-s", SERIAL, "shell", "getprop"],
        ["-s", SERIAL, "shell", f"mkdir -p {REMOTE}"],
        ["-s", SERIAL, "push", str(artifact), remote],
        ["-s", SERIAL, "shell", f"test -x {tool}"],
        [
            "-s",
            SERIAL,
            "shell",
            f"{tool} --graph={remote} --num_threads=4 --warmup_runs=5 "
            "--num_runs=50 --warmup_min_secs=0 --min_secs=0 --use_xnnpack=true "
            "--report_peak_memory_footprint=true",
        ],
    ]
    assert (Path(adb_env["FAKE_ADB_ROOT"]) / remote.lstrip("/")).read_bytes() == (
        artifact.read_bytes()
    )
    records = {r.metric: r for r in read_records(results)}
    assert records["median_latency"].value == pytest.approx(105.718)
    assert records["mean_latency"].value == pytest.approx(105.784)
    assert records["fps"].value == pytest.approx(1000 / 105.718)
    assert records["model_load_time"].value == pytest.approx(0.087639)
    assert records["iterations"].value == 50
    assert "p90_latency" not in records and "peak_memory_footprint" not in records
    first = records["median_latency"]
    assert first.device == f"android: Pixel 8 ({SERIAL})"
    assert first.runtime == "litert benchmark_model (xnnpack)" and first.threads == 4
    assert first.machine["soc"] == "Tensor G3" and first.machine["serial"] == SERIAL
    assert first.target == "tflite" and first.artifact_sha256 == artifact_sha256(artifact)
    assert "median 105.72 ms" in result.stdout
    assert "not reported by benchmark_model: p90_latency" in result.stdout


def test_android_pte_run_uses_executor_runner_with_warmup_as_executions(
    tmp_path: Path, adb_env: dict
) -> None:
    artifact = fake_artifact(tmp_path, "executorch", "stream")
    results = tmp_path / "r.jsonl"
    env = {**adb_env, "FAKE_ADB_TOOL_OUTPUT": str(FIXTURES / "executor_runner_iterations.txt")}
    args = ["run", "--target", "executorch", "--form", "stream", "--artifact", str(artifact)]
    args += ["--warmup", "1", "--iters", "5", "--device", f"android:{SERIAL}"]
    args += ["--tool", "/data/local/tmp/et/executor_runner", "--results", str(results)]
    result = invoke(args, env)
    assert result.exit_code == 0, result.output
    assert adb_calls(env)[-1] == [
        "-s",
        SERIAL,
        "shell",
        f"/data/local/tmp/et/executor_runner --model_path={REMOTE}/{artifact.name} "
        "--num_executions=6",
    ]
    records = {r.metric: r for r in read_records(results)}
    assert records["median_latency"].value == pytest.approx(20.291016)
    assert records["p90_latency"].value > records["median_latency"].value
    assert records["iterations"].value == 5
    assert records["median_latency"].runtime == "executorch executor_runner (xnnpack)"
    gpu = invoke([*args, "--delegate", "gpu"], env)
    assert "the .pte runs the XNNPACK delegate it holds" in one_error(gpu)


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"FAKE_ADB_STATE": "offline"}, f"android device {SERIAL} is not ready: offline"),
        (
            {"FAKE_ADB_STATE": "missing"},
            f"android device {SERIAL} is not ready: error: device '{SERIAL}' not found",
        ),
        ({"FAKE_ADB_PUSH_FAIL": "1"}, "failed: adb: error: failed to copy"),
        ({"FAKE_ADB_NO_TOOL": "1"}, "benchmark_model not found (or not executable) at"),
        (
            {
                "FAKE_ADB_TOOL_EXIT": "1",
                "FAKE_ADB_TOOL_OUTPUT": str(FIXTURES / "benchmark_model_failed.txt"),
            },
            f"benchmark_model exited 1 on {SERIAL}: ERROR: Benchmarking failed.",
        ),
        (
            {"FAKE_ADB_TOOL_OUTPUT": str(FIXTURES / "benchmark_model_garbled.txt")},
            "benchmark_model output not recognised: no 'Inference timings in us' line "
            "(last line: Segmentation fault)",
        ),
    ],
)
def test_android_failures_are_one_line_and_record_nothing(
    tmp_path: Path, adb_env: dict, changes: dict, said: str
) -> None:
    artifact = fake_artifact(tmp_path)
    results = tmp_path / "r.jsonl"
    results.write_text("")  # an existing results file stays as it was
    args = ["run", "--target", "tflite", "--artifact", str(artifact), "--device"]
    result = invoke([*args, f"android:{SERIAL}", "--results", str(results)], {**adb_env, **changes})
    line = one_error(result)
    assert said in line, line
    assert results.read_text() == ""


def test_android_refusals_before_any_adb_call(tmp_path: Path, adb_env: dict) -> None:
    results = tmp_path / "r.jsonl"
    base = ["--device", f"android:{SERIAL}", "--results", str(results)]
    failed = fake_artifact(tmp_path, parity=ParityRecord(failures=("dice 0.5 < 0.98",)))
    line = one_error(
        invoke(["run", "--target", "tflite", "--artifact", str(failed), *base], adb_env)
    )
    assert "failed parity (dice 0.5 < 0.98): not timed" in line
    line = one_error(invoke(["run", "--target", "onnx", *base], adb_env))
    assert "--device android runs --target tflite or executorch, not onnx" in line
    line = one_error(
        invoke(
            ["run", "--target", "tflite", "--form", "stream", "--artifact", str(failed), *base],
            adb_env,
        )
    )
    assert "is BaS-S frame form, not BaS-S stream as asked" in line
    assert adb_calls(adb_env) == [] and not results.exists()
    no_adb = {**adb_env, "PATH": str(tmp_path / "empty")}
    line = one_error(invoke(["run", "--target", "tflite", *base], no_adb))
    assert "adb not found: install Android SDK platform-tools" in line
    line = one_error(
        invoke(["run", "--target", "tflite", *base], {**adb_env, "ADB": str(tmp_path / "nope")})
    )
    assert "is not an executable file" in line


def test_a_modified_artifact_is_not_shipped(tmp_path: Path, adb_env: dict) -> None:
    artifact = fake_artifact(tmp_path)
    artifact.write_bytes(artifact.read_bytes()[::-1])  # same size, other bytes
    args = ["run", "--target", "tflite", "--artifact", str(artifact)]
    result = invoke(
        [*args, "--device", f"android:{SERIAL}", "--results", str(tmp_path / "r")], adb_env
    )
    assert "does not match the sha256 in its manifest" in one_error(result)
    assert adb_calls(adb_env) == []


# --- iOS ----------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("xcrun") is not None, reason="xcrun exists here (macOS)")
def test_ios_without_xcrun_is_one_line(tmp_path: Path) -> None:
    results = tmp_path / "r.jsonl"
    args = ["run", "--target", "coreml", "--device", "ios:00008120-001A2B3C4D5E601E"]
    line = one_error(invoke([*args, "--results", str(results)]))
    assert "--device ios needs xcrun and xcodebuild (macOS with Xcode 15 or later)" in line
    assert not results.exists()


def test_ios_command_lines_and_harness_settings(tmp_path: Path) -> None:
    package = tmp_path / "bas_s_stream_240_fp32.mlpackage"
    assert ios.compile_command("xcrun", package, tmp_path / "out") == [
        "xcrun",
        "coremlcompiler",
        "compile",
        str(package),
        str(tmp_path / "out"),
    ]
    assert ios.test_command("xcrun", "UDID1", tmp_path / "dd") == [
        "xcrun",
        "xcodebuild",
        "test",
        "-scheme",
        "BasBench",
        "-destination",
        "platform=iOS,id=UDID1",
        "-derivedDataPath",
        str(tmp_path / "dd"),
        "-allowProvisioningUpdates",
    ]
    manifest = read_manifest(fake_artifact(tmp_path, "coreml", "stream"))
    manifest = replace(manifest, state=replace(manifest.state, input="state_workaround"))
    assert ios.harness_environment(manifest, 10, 100) == {
        "TEST_RUNNER_BASBENCH_WARMUP": "10",
        "TEST_RUNNER_BASBENCH_ITERS": "100",
        "TEST_RUNNER_BASBENCH_UNITS": "cpuOnly,cpuAndGPU,cpuAndNeuralEngine,all",
        "TEST_RUNNER_BASBENCH_STATE_IN": "state_workaround",
        "TEST_RUNNER_BASBENCH_STATE_OUT": "new_state",
    }
    for name in (
        "Package.swift",
        "Sources/BasBench/BasBench.swift",
        "Tests/BasBenchTests/BasBenchTests.swift",
    ):
        assert (ios.HARNESS / name).is_file()
    swift = (ios.HARNESS / "Sources/BasBench/BasBench.swift").read_text()
    assert all(f'case "{units}"' in swift for units in ios.COMPUTE_UNITS)
    assert 'marker = "BASBENCH "' in swift


def test_ios_harness_output_parses_one_timing_per_compute_unit_setting() -> None:
    units = ios.parse_harness_output(fixture("xcodebuild_test_output.txt"), warmup=10)
    assert [u.compute_units for u in units] == list(ios.COMPUTE_UNITS)
    cpu = units[0].timing
    assert cpu.median_ms == pytest.approx(9.1) and cpu.iterations == 5
    assert cpu.init_s == pytest.approx(0.2125) and units[0].device["machine"] == "iPhone15,2"
    assert units[2].timing.median_ms == pytest.approx(2.1)
    with pytest.raises(ProjectError, match="printed no 'BASBENCH' line"):
        ios.parse_harness_output("** TEST FAILED **", 0)
    with pytest.raises(ProjectError, match="iOS harness line not recognised"):
        ios.parse_harness_output('BASBENCH {"compute_units": "cpuOnly"}', 0)
    with pytest.raises(ProjectError, match="the iOS harness failed for all: no model"):
        ios.parse_harness_output(
            'BASBENCH {"compute_units": "all", "error": "no model", "device": {}}', 0
        )


def test_ios_run_compiles_stages_the_harness_and_records_each_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifact = fake_artifact(tmp_path, "coreml")
    manifest = read_manifest(artifact)
    monkeypatch.setattr(ios, "find_xcrun", lambda: "/usr/bin/xcrun")
    seen = []

    def runner(command, **kwargs):
        seen.append((command, kwargs))
        if command[1] == "coremlcompiler":
            (Path(command[-1]) / f"{artifact.stem}.mlmodelc").mkdir()
            return subprocess.CompletedProcess(command, 0, "", "")
        staged = Path(kwargs["cwd"]) / ios.RESOURCES / ios.MODEL_RESOURCE
        assert staged.is_dir() and (Path(kwargs["cwd"]) / "Package.swift").is_file()
        assert kwargs["env"]["TEST_RUNNER_BASBENCH_ITERS"] == "5"
        return subprocess.CompletedProcess(command, 0, fixture("xcodebuild_test_output.txt"), "")

    request = RunRequest("coreml", warmup=2, iters=5)
    done = ios.run_ios(Device("ios", "UDID1"), artifact, manifest, request, PhoneOptions(), runner)
    assert [c[0][1] for c in seen] == ["coremlcompiler", "xcodebuild"]
    medians = {r.runtime: r.value for r in done.records if r.metric == "median_latency"}
    assert medians == {
        "coreml (cpuOnly)": pytest.approx(9.1),
        "coreml (cpuAndGPU)": pytest.approx(6.2),
        "coreml (cpuAndNeuralEngine)": pytest.approx(2.1),
        "coreml (all)": pytest.approx(2.1),
    }
    assert all(r.device == "ios: iPhone (UDID1)" for r in done.records)

    def failing(command, **kwargs):
        return subprocess.CompletedProcess(
            command, 65, "xcodebuild: error: Unable to find a destination matching", ""
        )

    with pytest.raises(ProjectError, match="coremlcompiler exited 65: xcodebuild: error: Unable"):
        ios.run_ios(Device("ios", "UDID1"), artifact, manifest, request, PhoneOptions(), failing)


# --- the golden bundle --------------------------------------------------------------------------


@pytest.mark.slow
def test_golden_bundle_round_trips_through_the_host_runtime_and_an_android_run(
    built_artifact, tmp_path: Path, adb_env: dict
) -> None:
    from runtimes import open_model

    artifact = built_artifact("onnx", "S", "fp32", "frame")
    out = tmp_path / "golden"
    made = invoke(["golden", "--artifact", str(artifact), "--out", str(out), "--frames", "3"])
    assert made.exit_code == 0, made.output
    bundle = read_bundle(out, read_manifest(artifact))
    assert len(bundle.frames) == 3 and (out / "bundle.json").is_file()
    record = json.loads((out / "bundle.json").read_text())
    assert record["byte_order"] == "little" and record["inputs"][0]["layout"] == "NCHW"
    first = np.fromfile(out / bundle.frames[0].inputs[0], dtype="<f4")
    assert first.size == 3 * 240 * 240 and first.min() >= 0.0 and first.max() <= 1.0

    runner = open_model(artifact).runner  # the raw files, as a device tool is fed them
    device_outputs = [
        b"".join(np.asarray(o).astype("<f4").tobytes() for o in runner(frame_inputs(bundle, f)))
        for f in bundle.frames
    ]
    assert golden_dice(bundle, device_outputs) >= 0.99
    negated = [(-np.frombuffer(o, "<f4")).tobytes() for o in device_outputs]
    assert golden_dice(bundle, negated) < 0.5
    with pytest.raises(ProjectError, match="has 12 bytes; expected the logits"):
        golden_dice(bundle, [b"\0" * 12] * 3)
    with pytest.raises(ProjectError, match="2 device outputs for 3 golden frames"):
        golden_dice(bundle, device_outputs[:2])

    # The same bytes as a .tflite on a phone: benchmark_model fed the bundle's files and its
    # --output_filepath pulled back (the stand-in "writes" the host's outputs there).
    phone = tmp_path / "phone_artifact"
    phone.mkdir()
    tflite = phone / artifact.name.replace(".onnx", ".tflite")
    shutil.copyfile(artifact, tflite)
    manifest = read_manifest(artifact)
    manifest = replace(
        manifest,
        target="tflite",
        artifact=replace(manifest.artifact, file=tflite.name),
        parity=ParityRecord(passed=True),
    )
    write_manifest(tflite, manifest)
    assert manifest_path(tflite).is_file()
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    for frame, data in zip(bundle.frames, device_outputs, strict=True):
        (outputs / f"out_{frame.index:03d}.bin").write_bytes(data)
    results = tmp_path / "r.jsonl"
    args = ["run", "--target", "tflite", "--artifact", str(tflite), "--device", f"android:{SERIAL}"]
    args += ["--golden", str(out), "--results", str(results), "--iters", "50"]
    result = invoke(args, {**adb_env, "FAKE_ADB_OUTPUTS": str(outputs)})
    assert result.exit_code == 0, result.output
    dice = [r for r in read_records(results) if r.metric == "mask_dice_vs_pytorch_on_device"]
    assert len(dice) == 1 and dice[0].value >= 0.99
    golden_runs = [c for c in adb_calls(adb_env) if "--output_filepath" in " ".join(c)]
    assert len(golden_runs) == 3
    spec = manifest.inputs[0]
    assert f"--input_layer={spec.name}" in golden_runs[0][-1]
    assert (
        f"--input_layer_value_files={spec.name}:{REMOTE}/golden/000_frame.bin"
        in (golden_runs[0][-1])
    )
    assert f"--output_filepath={REMOTE}/golden/out_000.bin" in golden_runs[0][-1]
    # ... and as a .pte: executor_runner --inputs, --output_file=BASE writes BASE-<i>.bin
    pte = phone / artifact.name.replace(".onnx", ".pte")
    shutil.copyfile(artifact, pte)
    write_manifest(
        pte,
        replace(
            manifest,
            target="executorch",
            runtime="executorch",
            artifact=replace(manifest.artifact, file=pte.name),
        ),
    )
    logits = manifest.tensor("logits")
    for frame, data in zip(bundle.frames, device_outputs, strict=True):
        (outputs / f"out_{frame.index:03d}-{logits.index}.bin").write_bytes(data)  # logits only
    et_env = {
        **adb_env,
        "FAKE_ADB_OUTPUTS": str(outputs),
        "FAKE_ADB_TOOL_OUTPUT": str(FIXTURES / "executor_runner_iterations.txt"),
    }
    et_args = ["run", "--target", "executorch", "--artifact", str(pte), "--warmup", "1"]
    et_args += ["--iters", "5", "--device", f"android:{SERIAL}", "--golden", str(out)]
    result = invoke([*et_args, "--results", str(results)], et_env)
    assert result.exit_code == 0, result.output
    dice = [r for r in read_records(results) if r.metric == "mask_dice_vs_pytorch_on_device"]
    assert dice[-1].value >= 0.99 and dice[-1].target == "executorch"
    runs = [c[-1] for c in adb_calls(adb_env) if "--output_file=" in c[-1]]
    assert runs[0] == (
        f"/data/local/tmp/executor_runner --model_path={REMOTE}/{pte.name} --num_executions=1 "
        f"--inputs={REMOTE}/golden/000_frame.bin --output_file={REMOTE}/golden/out_000"
    )

    # outputs missing on the phone: one line, nothing recorded
    results.unlink()
    shutil.rmtree(Path(adb_env["FAKE_ADB_ROOT"]) / "data")
    missing = invoke(args, {**adb_env, "FAKE_ADB_OUTPUTS": str(tmp_path / "none")})
    assert "adb pull" in one_error(missing) and not results.exists()


@pytest.mark.slow
def test_golden_stream_bundle_feeds_pytorchs_state_frame_by_frame(
    built_artifact, tmp_path: Path
) -> None:
    from runtimes import open_model

    artifact = built_artifact("onnx", "S", "fp32", "stream")
    out = tmp_path / "golden"
    made = invoke(["golden", "--artifact", str(artifact), "--out", str(out), "--frames", "3"])
    assert made.exit_code == 0, made.output
    bundle = read_bundle(out)
    assert [s.canonical for s in bundle.inputs] == ["frame", "state"]
    states = [frame_inputs(bundle, f)[1] for f in bundle.frames]
    assert not states[0].any() and states[1].any()  # zeros first, then PyTorch's state
    runner = open_model(artifact).runner
    logits_only = [
        np.asarray(runner(frame_inputs(bundle, f))[0]).astype("<f4").tobytes()
        for f in bundle.frames
    ]
    assert golden_dice(bundle, logits_only) >= 0.99
    other = invoke(
        ["golden", "--artifact", str(artifact), "--out", str(tmp_path / "o")]
        + ["--weights", str(tmp_path / "missing.safetensors")]
    )
    assert "weights not found" in one_error(other)


def test_golden_refuses_another_artifacts_bundle(tmp_path: Path) -> None:
    artifact = fake_artifact(tmp_path)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    with pytest.raises(ProjectError, match="is not a golden bundle"):
        read_bundle(bundle)
    record = {
        "schema": "bas-deploy-golden/1",
        "artifact": {"file": "other.tflite", "sha256": "f" * 64, "image_size": 240},
        "inputs": [],
        "outputs": [],
        "frames": [],
    }
    (bundle / "bundle.json").write_text(json.dumps(record))
    with pytest.raises(ProjectError, match="was made for other.tflite, not bas_s_frame"):
        read_bundle(bundle, read_manifest(artifact))
    assert android.remote_path("x") == f"{REMOTE}/x"
