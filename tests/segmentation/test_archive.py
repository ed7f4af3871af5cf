"""An archive segmented on an embedded Ray (``--workers``): every loop complete exactly once,
a failing loop listed and the others kept, a re-run that skips what is done, a worker
killed mid-run whose loop is done by another, a PACS search spread over workers, and a run
without ``--workers`` that never imports Ray.

One embedded Ray (2 CPUs, loopback) serves the module; loops are a few frames of held-out
synthetic video through PyTorch BaS-S, one thread a worker.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import psutil
import pydicom
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from device_bench.cli import main as device_bench_main
from model.atomic import OUTPUT_MARKER
from model.cluster import ray_cluster
from model.data.synth import write_dataset
from model.data.video_writer import write_video
from runtimes import load_pytorch
from segmentation import archive as archive_module
from segmentation.archive import (
    ARCHIVE_FILE,
    DONE_BEFORE,
    FAILED,
    LOCK_FILE,
    LOOP_MARKER,
    OK,
    SUMMARY_COLUMNS,
    ArchiveTotals,
    Unit,
    run_archive,
    segment_unit,
)
from segmentation.cli import PARTIAL_EXIT, main
from segmentation.run import RunOptions, run_segment
from segmentation.video import open_sources
from tests.support import pacs
from tests.support.pacs import Orthanc
from tests.support.synthetic_dicom import write_breast_loop

pytestmark = pytest.mark.slow  # every test shares the embedded Ray the module starts
orthanc = pacs.orthanc  # the fixture, started only by the PACS test
OPEN_SESSION = partial(load_pytorch, "S", "shipped", "stream")
OURS = {ARCHIVE_FILE, LOCK_FILE, OUTPUT_MARKER, "summary.json", "summary.csv"}


@pytest.fixture(scope="module", autouse=True)
def embedded_ray():
    with ray_cluster(2) as ray:
        yield ray


def _videos(folder: Path, count: int, frames: int) -> Path:
    """``count`` held-out synthetic clips as a folder of MP4 files."""
    write_dataset(folder / "ds", videos=count, frames=frames, seed=1, mp4=True)
    return folder / "ds" / "videos"


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three clips of 4 frames, a clip of constant frames (nothing in it can be segmented)
    and a file that is no video at all."""
    videos = _videos(tmp_path_factory.mktemp("archive"), 3, 4)
    write_video(videos / "blank.mp4", [np.full((64, 64, 3), 40, np.uint8)] * 3, 25.0)
    (videos / "broken.mp4").write_text("not a video\n")
    return videos


def _segment(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def _rows(out: Path) -> list[dict]:
    return json.loads((out / "summary.json").read_text())["loops"]


def _check_complete(out: Path, loops: list[str]) -> None:
    """Each loop once, complete (its marker, a mask a frame), nothing partial beside them."""
    assert sorted(p.name for p in out.iterdir() if p.name not in OURS) == sorted(loops)
    for loop in loops:
        record = json.loads((out / loop / LOOP_MARKER).read_text())
        assert len(list((out / loop / "masks").iterdir())) == record["row"]["frames"] > 0
        assert (out / loop / "overlay.mp4").is_file()


def test_archive_run_keeps_every_loop_once_and_lists_the_failure(
    archive: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = _segment("--input", archive, "--out", out, "--workers", 2)
    assert result.exit_code == PARTIAL_EXIT, result.output
    assert "left out" in result.output and "broken.mp4" in result.output
    assert "failed: blank: " in result.output and "no frame could be segmented" in result.output
    good = ["synth_0001_0000", "synth_0001_0001", "synth_0001_0002"]
    _check_complete(out, good)
    rows = {row["loop"]: row for row in _rows(out)}
    assert [rows[name]["status"] for name in good] == [OK] * 3
    assert rows["blank"]["status"] == FAILED
    assert all(rows[n]["frames"] == 4 and rows[n]["units"] == "px" for n in good)
    assert all(rows[n]["largest_area"] >= rows[n]["mean_area"] >= 0 for n in good)
    header = (out / "summary.csv").read_text().splitlines()[0]
    assert header == ",".join(SUMMARY_COLUMNS)

    # The same loop through the command without --workers: the same masks and areas.
    plain = tmp_path / "plain"
    run_segment(OPEN_SESSION(threads=1), archive / "synth_0001_0001.mp4", plain)
    for mask in (plain / "masks").iterdir():
        spread = out / "synth_0001_0001" / "masks" / mask.name
        assert np.array_equal(np.asarray(Image.open(mask)), np.asarray(Image.open(spread)))
    assert _areas(plain) == _areas(out / "synth_0001_0001")

    # A re-run skips what is done (not written again) and tries the failed loop again.
    written = {n: (out / n / LOOP_MARKER).stat().st_mtime_ns for n in good}
    again = _segment("--input", archive, "--out", out, "--workers", 2)
    assert again.exit_code == PARTIAL_EXIT, again.output
    rerun = {row["loop"]: row for row in _rows(out)}
    assert [rerun[n]["status"] for n in good] == [DONE_BEFORE] * 3
    assert all({**rerun[n], "status": OK} == rows[n] for n in good)
    assert rerun["blank"]["status"] == FAILED
    assert {n: (out / n / LOOP_MARKER).stat().st_mtime_ns for n in good} == written
    _check_complete(out, good)


def _areas(loop: Path) -> list[dict[str, str]]:
    """frames.csv but its inference times (which differ run to run)."""
    with open(loop / "frames.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "inference_ms"} for row in csv.DictReader(f)]


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--store"], "--store runs without --workers"),
        (["--threads", "2"], "use --threads-per-worker"),
    ],
)
def test_options_that_do_not_go_with_workers_are_refused(
    archive: Path, tmp_path: Path, extra: list[str], words: str
) -> None:
    result = _segment("--input", archive, "--out", tmp_path / "out", "--workers", 2, *extra)
    assert result.exit_code == 2 and words in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_ray_address_needs_workers(archive: Path, tmp_path: Path) -> None:
    result = _segment("--input", archive, "--out", tmp_path / "out", "--ray-address", "h:1")
    assert result.exit_code == 2 and "--ray-address needs --workers" in result.output


def test_an_output_of_another_kind_or_run_is_refused_and_left_alone(
    archive: Path, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    run_segment(OPEN_SESSION(threads=1), archive / "synth_0001_0000.mp4", plain)
    before = sorted(p.name for p in plain.rglob("*"))
    result = _segment("--input", archive, "--out", plain, "--workers", 2)
    assert result.exit_code == 2 and "output of the command without --workers" in result.output
    assert sorted(p.name for p in plain.rglob("*")) == before

    out = tmp_path / "out"
    out.mkdir()
    (out / ARCHIVE_FILE).write_text(json.dumps({"input": "elsewhere"}))
    (out / OUTPUT_MARKER).write_text("x")
    result = _segment("--input", archive, "--out", out, "--workers", 2)
    assert result.exit_code == 2 and "archive run of another input" in result.output


def _worker_pids() -> list[int]:
    """This test's Ray workers busy with a loop (by their process title, among this
    process's own descendants)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.cmdline()[:1] == ["ray::LoopWorker.segment"]:
                found.append(child.pid)
        except psutil.Error:
            continue
    return found


def test_a_worker_killed_mid_run_has_its_loop_done_by_another(tmp_path: Path) -> None:
    videos = _videos(tmp_path, 6, 12)
    out = tmp_path / "out"
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(run_archive, OPEN_SESSION, videos, out, 2)
        deadline = time.monotonic() + 120
        while not (pids := _worker_pids()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pids, "no worker ever segmented a loop"
        psutil.Process(pids[0]).kill()
        totals: ArchiveTotals = running.result(timeout=180)
    assert totals.workers_lost == 1 and len(totals.retried) == 1
    assert [row.status for row in totals.rows] == [OK] * 6
    _check_complete(out, [f"synth_0001_{i:04d}" for i in range(6)])


def test_a_pacs_search_is_spread_series_by_series(orthanc: Orthanc, tmp_path: Path) -> None:
    """Each series retrieved where it runs; a re-run retrieves nothing (done before)."""
    orthanc.wipe()
    studies = []
    for index in range(2):
        path, _ = write_breast_loop(tmp_path / f"loop{index}.dcm", index=index, frames=4)
        assert orthanc.upload(path)["Status"] == "Success"
        studies.append(str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID))
    url = f"{orthanc.dicomweb_root}/studies?ModalitiesInStudy=US"
    out = tmp_path / "out"
    totals = run_archive(OPEN_SESSION, url, out, workers=2)
    names = ["study1_series_1", "study2_series_1"]
    assert [(r.loop, r.status, r.units) for r in totals.rows] == [(n, OK, "mm2") for n in names]
    _check_complete(out, names)
    assert all((out / n / "segmentation.dcm").is_file() for n in names)
    again = run_archive(OPEN_SESSION, url, out, workers=2)
    assert [r.status for r in again.rows] == [DONE_BEFORE] * 2


def test_without_workers_ray_is_never_imported(archive: Path, tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from segmentation.cli import main\n"
        f"main(['--input', {str(archive / 'synth_0001_0000.mp4')!r}, '--out', "
        f"{str(tmp_path / 'out')!r}, '--threads', '1'], standalone_mode=False)\n"
        "print('ray imported:', 'ray' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "ray imported: False" in done.stdout, done.stdout + done.stderr


def test_the_scaling_benchmark_runs_and_prints_its_rows() -> None:
    """A tiny archive through ``device_bench archive``: its rows and the projection are
    printed (figures are never asserted)."""
    args = ["archive", "--loops", "2", "--frames", "3", "--nodes", "1", "--nodes", "4"]
    result = CliRunner().invoke(device_bench_main, args)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    for words in ("| without Ray |", "| Ray, 1 worker |", "| Ray, 2 workers |", "projection:"):
        assert words in result.output, result.output
    assert "| 4 | 16 | 64 | 10000 |" in result.output


def test_two_attempts_at_one_loop_leave_it_written_once(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker thought lost that finishes after all: the attempt that renames first
    stands, the other's folder goes, and both report the one result (no Ray needed)."""
    session, out = OPEN_SESSION(threads=1), tmp_path / "out"
    (source,) = open_sources(archive / "synth_0001_0002.mp4")
    unit = Unit(source.name, str(source.path), source)
    real = archive_module.segment_source

    def overtaken(*args, **kwargs):  # the retry finishes while the first attempt segments
        loop = real(*args, **kwargs)
        monkeypatch.setattr(archive_module, "segment_source", real)
        assert segment_unit(session, unit, out, RunOptions(), "run", 2).rows[0].status == OK
        return loop

    out.mkdir()
    monkeypatch.setattr(archive_module, "segment_source", overtaken)
    first = segment_unit(session, unit, out, RunOptions(), "run", 1)
    assert [(r.loop, r.status) for r in first.rows] == [(source.name, OK)]
    assert [p.name for p in out.iterdir()] == [source.name]
    assert json.loads((out / source.name / LOOP_MARKER).read_text())["run"] == "run"
