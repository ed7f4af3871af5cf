"""device_bench: statistics on known samples, the record schema, the report, bad input."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from device_bench import bench
from device_bench.bench import host_latency_figures, peak_rss_mb
from device_bench.cli import main
from device_bench.gpu import run_cuda
from device_bench.peak import Peak, cores_used
from device_bench.records import BenchRecord, append_records, read_records
from device_bench.report import chart, markdown
from model import host
from model.data.synth import render_video
from model.data.video_writer import write_video
from model.errors import ProjectError
from runtimes.manifest import manifest_path
from runtimes.targets import Status
from runtimes.timing import summarise, time_calls


def test_statistics_of_a_known_sample() -> None:
    stats = summarise([float(v) for v in range(1, 11)][::-1])  # 1..10 ms, any order
    assert (stats.iterations, stats.min_ms, stats.max_ms) == (10, 1.0, 10.0)
    assert stats.mean_ms == 5.5 and stats.median_ms == 5.5
    assert stats.trimmed_mean_ms == 5.5  # 2..9: the lowest and highest 10 % left out
    assert stats.p90_ms == pytest.approx(9.1) and stats.p99_ms == pytest.approx(9.91)
    assert stats.fps == pytest.approx(1000 / 5.5)
    skewed = summarise([10.0] * 9 + [1000.0])  # one hiccup moves the mean, not the rest
    assert skewed.median_ms == 10.0 and skewed.trimmed_mean_ms == 10.0 and skewed.mean_ms == 109
    assert summarise(np.array([4.0])).p99_ms == 4.0
    for bad in ([], [1.0, float("nan")], [-1.0]):
        with pytest.raises(ProjectError):
            summarise(bad)


def _record(**changes) -> BenchRecord:
    fields = dict(
        name="bas_s_frame_240_fp32.onnx",
        target="onnx",
        variant="S",
        precision="fp32",
        form="frame",
        metric="median_latency",
        value=10.0,
        unit="ms",
        device="host: cpu",
        timestamp="2026-11-27T09:00:00+00:00",
        runtime="onnxruntime",
        threads=2,
    )
    return BenchRecord(**{**fields, **changes})


def test_records_append_as_json_lines_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "bench" / "results.jsonl"
    append_records(path, [_record(), _record(metric="fps", value=100.0, unit="fps")])
    append_records(path, [_record(value=9.0, timestamp="2026-11-27T10:00:00+00:00")])
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    for key in ("name", "target", "variant", "precision", "form", "metric", "value", "unit"):
        assert key in first
    assert {"device", "timestamp"} <= set(first)
    assert read_records(path)[2].value == 9.0
    path.write_text(lines[0] + "\n{not json\n")
    with pytest.raises(ProjectError, match=r"results\.jsonl:2 is not a benchmark record"):
        read_records(path)
    path.write_text(json.dumps({**first, "colour": 1}) + "\n")
    with pytest.raises(ProjectError, match="unknown BenchRecord keys: colour"):
        read_records(path)
    path.write_text(json.dumps({**first, "status": "fine"}) + "\n")
    with pytest.raises(ProjectError, match="status must be one of passed, reference, failed"):
        read_records(path)


def test_records_written_with_the_old_torch_target_read_as_pytorch(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    old = {**asdict(_record()), "target": "torch", "status": "reference"}
    path.write_text(json.dumps(old) + "\n")
    (record,) = read_records(path)
    assert record.target == "pytorch" and record.status is Status.REFERENCE
    assert record.status == "reference"  # the JSON field stays the word


def test_report_takes_the_latest_figures_and_the_speed_up_at_the_same_threads() -> None:
    torch = dict(name="bas_s.safetensors", target="pytorch", runtime="pytorch")
    records = [
        _record(**torch, value=30.0),
        _record(value=12.0),
        _record(value=10.0, timestamp="2026-11-27T10:00:00+00:00"),  # later: wins
        _record(metric="fps", value=100.0, unit="fps"),
        _record(value=5.0, threads=1),  # no PyTorch at 1 thread: no speed-up
    ]
    table = markdown(records).splitlines()
    assert table[0].startswith("| target | runtime | precision")
    onnx_2 = next(line for line in table if "| onnx |" in line and "| 2 |" in line)
    assert "| 10.00 |" in onnx_2 and "| 3.00 x |" in onnx_2 and "| 100.0 |" in onnx_2
    onnx_1 = next(line for line in table if "| onnx |" in line and "| 1 |" in line)
    cells = [cell.strip() for cell in onnx_1.split("|")]
    assert cells[11] == "5.00" and cells[14] == "-"  # median; speed-up


def test_report_shows_the_cells_not_timed_apart_and_the_latest_outcome_wins() -> None:
    timed = _record(target="tflite", precision="int8", name="bas_s_frame_240_int8.tflite")
    failed = _record(
        target="tflite",
        precision="int8",
        name="bas_s_frame_int8.tflite",
        metric="status",
        value=0.0,
        unit="",
        runtime="",
        status="failed parity",
        note="mask Dice vs PyTorch 0.91 < 0.97",
        timestamp="2026-11-27T10:00:00+00:00",
    )
    table = markdown([timed, failed])
    row = "| tflite | int8 | S | frame | failed parity | mask Dice vs PyTorch 0.91 < 0.97 |"
    assert row in table
    assert "| tflite | litert" not in table  # failed after it was timed: not shown as timed
    again = _record(target="tflite", precision="int8", timestamp="2026-11-27T11:00:00+00:00")
    table = markdown([timed, failed, again])
    assert "Not timed" not in table and "| tflite | onnxruntime | int8 |" in table


def test_fraction_of_the_fp32_peak_and_its_formula() -> None:
    host = {"cores": 4, "isa": "avx2", "fp32_lanes": 16, "reported_ghz": 2.0, "sgemm_ghz": 2.5}
    peak = Peak.of(host)
    assert peak is not None and peak.clock_ghz == 2.5  # sgemm proves more than the kernel says
    assert peak.gflops(2) == 2 * 16 * 2 * 2.5
    assert peak.formula(2) == "2 cores x 16 fp32 FMA lanes (avx2) x 2 x 2.50 GHz = 160 GFLOP/s"
    assert Peak.of({"cores": 4}) is None
    assert cores_used(None, 4) == 4 and cores_used(2, 4) == 2 and cores_used(8, 4) == 4
    records = [
        _record(machine=host),
        _record(metric="fp32_peak_fraction", value=0.25, unit="ratio", machine=host),
    ]
    table = markdown(records)
    assert "| 25% |" in table
    assert "- host: cpu, 2 cores: 2 cores x 16 fp32 FMA lanes (avx2) x 2 x 2.50 GHz" in table


def test_chart_is_a_png_of_fps_with_s_beside_l(tmp_path: Path) -> None:
    records = [
        _record(metric="fps", value=80.0, unit="fps"),
        _record(metric="fps", value=100.0, unit="fps", variant="L", name="bas_l.onnx"),
        _record(metric="fps", value=60.0, unit="fps", form="stream"),
        _record(metric="status", precision="int8", status="failed parity", note="Dice 0.6"),
    ]
    chart(records, tmp_path / "fps.png")  # the failed cell is written where its bar would be
    with Image.open(tmp_path / "fps.png") as image:
        assert image.format == "PNG" and image.height > image.width / 2  # two panels


def test_run_times_pytorch_and_appends_records(tmp_path: Path) -> None:
    results = tmp_path / "r.jsonl"
    args = ["run", "--target", "torch", "--warmup", "1", "--iters", "3", "--results", str(results)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "pytorch BaS-S fp32 frame via pytorch: median" in result.stdout  # torch: an alias
    metrics = {r.metric: r for r in read_records(results)}
    assert metrics["median_latency"].value > 0 and metrics["fps"].unit == "fps"
    assert metrics["peak_rss"].value > 100  # MB: PyTorch alone takes more
    assert metrics["median_latency"].machine["cores"] >= 1
    assert metrics["fp32_peak_fraction"].unit == "ratio"
    assert 0 < metrics["fp32_peak_fraction"].value < 1
    assert metrics["median_latency"].status == "reference"
    report = CliRunner().invoke(main, ["report", str(results)])
    assert report.exit_code == 0 and "| pytorch | pytorch | fp32 | S | frame |" in report.stdout
    assert (tmp_path / "fps.png").is_file() and "of fp32 peak" in report.stdout


@pytest.mark.slow
def test_an_artifact_is_timed_only_as_what_it_is_and_after_passing_parity(
    built_artifact, tmp_path: Path
) -> None:
    artifact = built_artifact("onnx", "S", "fp32", "frame")
    copy = tmp_path / artifact.name
    shutil.copyfile(artifact, copy)
    record = json.loads(manifest_path(artifact).read_text())
    results = tmp_path / "r.jsonl"
    base = ["run", "--iters", "2", "--warmup", "0", "--results", str(results)]

    def run(*args: str) -> str:
        result = CliRunner().invoke(main, [*base, *args, "--artifact", str(copy)])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        return result.stderr.strip().splitlines()[-1]

    manifest_path(copy).write_text(json.dumps({**record, "parity": None}))
    assert "no parity record" in run("--target", "onnx")
    failed = {"passed": False, "failures": ["logits max abs err 1 > 1e-3"]}
    manifest_path(copy).write_text(json.dumps({**record, "parity": failed}))
    assert "failed parity (logits max abs err 1 > 1e-3): not timed" in run("--target", "onnx")
    manifest_path(copy).write_text(json.dumps({**record, "parity": {"passed": True}}))
    assert "is an artifact for onnx, not tflite" in run("--target", "tflite")
    assert "is BaS-S frame form, not BaS-L frame" in run("--target", "onnx", "--variant", "L")
    assert "'int4' is not one of" in run("--target", "onnx", "--precision", "int4")
    assert not results.exists()  # nothing recorded for any of them
    ok = CliRunner().invoke(main, [*base, "--target", "onnx", "--artifact", str(copy)])
    assert ok.exit_code == 0, ok.output
    assert {r.runtime for r in read_records(results)} == {"onnxruntime"}


def test_sweep_interleaves_cells_and_records_each(tmp_path: Path) -> None:
    results = tmp_path / "r.jsonl"
    args = ["sweep", "--targets", "torch", "--variants", "s", "--forms", "frame,stream"]
    args += ["--iters", "4", "--rounds", "2", "--warmup", "0", "--results", str(results)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    records = read_records(results)
    medians = [r for r in records if r.metric == "median_latency"]
    assert sorted(r.form for r in medians) == ["frame", "stream"]
    assert not any(r.metric == "peak_rss" for r in records)  # one process for all: not per cell
    assert result.stdout.count("| pytorch | pytorch | fp32 | S |") == 2
    bad = CliRunner().invoke(main, ["sweep", "--targets", "tpu", "--results", str(results)])
    assert bad.exit_code == 2 and "'tpu' is not one of" in bad.output


@pytest.mark.slow
def test_video_loops_a_short_clip_to_300_frames_and_plots_latency(tmp_path: Path) -> None:
    clip = write_video(
        tmp_path / "clip.mp4", [image for image, _ in render_video(3, 0, 40)], fps=20.0
    )
    results = tmp_path / "r.jsonl"
    args = ["video", "--input", str(clip), "--threads", "1", "--results", str(results)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "300 frames of clip.mp4: sustained" in result.stdout
    metrics = {r.metric: r for r in read_records(results)}
    assert metrics["video_frames"].value == 300 and metrics["sustained_fps"].value > 0
    frame, inference = (
        metrics["video_frame_median_latency"],
        metrics["video_inference_median_latency"],
    )
    assert frame.value > inference.value > 0  # decode and resizing come on top
    assert 0.2 < metrics["video_drift"].value < 5 and frame.form == "stream"
    with Image.open(tmp_path / "bas_s_video.png") as plot:
        assert plot.format == "PNG"


def test_video_refuses_bad_input_before_any_work(tmp_path: Path) -> None:
    results = tmp_path / "r.jsonl"
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video")
    base = ["video", "--results", str(results)]
    for args, message in (
        (["--input", str(not_video)], "notes.mp4"),
        (["--input", str(not_video), "--frames", "299"], "299 is not in the range x>=300"),
        (["--input", str(tmp_path / "none.mp4")], "does not exist"),
    ):
        result = CliRunner().invoke(main, [*base, *args])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
    assert not results.exists()


def test_cuda_timing_counts_every_frame_of_a_batch_and_syncs_each_call() -> None:
    calls, syncs = [], []
    latencies = time_calls(
        lambda i: calls.append(i), iters=5, warmup=2, sync=lambda: syncs.append(1)
    )
    assert len(latencies) == 5 and len(calls) == 7 and len(syncs) == 6  # one after warm-up
    assert calls == list(range(7))  # warm-up and timed calls count on: the frame to feed
    stats = summarise([4.0, 4.0, 4.0])
    figures = dict((metric, value) for metric, value, _ in host_latency_figures(stats, 32))
    assert figures["median_latency"] == 4.0 and figures["fps"] == 32 * 250


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where no GPU is")
def test_cuda_without_a_gpu_is_one_clear_line() -> None:
    with pytest.raises(ProjectError, match="sees no CUDA GPU"):
        run_cuda("pytorch", "S", "fp32", "frame", 1, 1)
    with pytest.raises(ProjectError, match="times --target pytorch or onnx, not tflite"):
        run_cuda("tflite", "S", "fp32", "frame", 1, 1)
    with pytest.raises(ProjectError, match="for fp16 use --target pytorch"):
        run_cuda("onnx", "S", "fp16", "frame", 1, 1)


def test_report_shows_what_a_delegate_sees_and_a_short_form() -> None:
    int8 = dict(target="tflite", precision="int8", name="bas_s_frame_240_int8.tflite")
    records = [
        _record(**int8),
        _record(**int8, metric="float_compute_ops", value=0.0, unit="ops"),
        _record(**int8, metric="quantize_ops", value=1.0, unit="ops"),
        _record(**int8, metric="dequantize_ops", value=1.0, unit="ops"),
        _record(**int8, metric="delegate_partitions", value=1.0, unit="partitions"),
    ]
    table = markdown(records)
    assert "| float ops | Q / DQ | partitions |" in table
    assert "| 0 | 1 / 1 | 1 |" in table
    short = markdown(records, short=True).splitlines()
    assert short[0] == (
        "| target | runtime | precision | variant | form | median (ms) | FPS "
        "| speed-up vs PyTorch | mask Dice vs PyTorch |"
    )
    assert short[2] == "| tflite | onnxruntime | int8 | S | frame | 10.00 | - | - | - |"


class _Usage:
    def __init__(self, maxrss: int) -> None:
        self.ru_maxrss = maxrss


def test_peak_memory_is_read_in_the_unit_each_os_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    """ru_maxrss is KiB on Linux and bytes on macOS: 300 MiB either way."""
    monkeypatch.setattr(bench.sys, "platform", "darwin")
    monkeypatch.setattr(bench.resource, "getrusage", lambda who: _Usage(300 * 2**20))
    assert peak_rss_mb() == pytest.approx(300)
    monkeypatch.setattr(bench.sys, "platform", "linux")
    monkeypatch.setattr(bench.resource, "getrusage", lambda who: _Usage(300 * 1024))
    assert peak_rss_mb() == pytest.approx(300)


def test_cores_are_counted_where_the_os_has_no_affinity(monkeypatch: pytest.MonkeyPatch) -> None:
    """macOS has no sched_getaffinity: the machine's cores, not 0 (a one-core peak)."""
    monkeypatch.delattr(host.os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(host.os, "process_cpu_count", lambda: 8, raising=False)
    monkeypatch.setattr(bench, "measure_peak", lambda: Peak("avx2", 16, 2.0, 2.5))
    bench.machine.cache_clear()
    try:
        cores = bench.machine()["cores"]
    finally:
        bench.machine.cache_clear()
    assert cores == 8
    assert cores_used(None, int(cores)) == 8 and cores_used(2, int(cores)) == 2
