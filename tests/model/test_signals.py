"""Ctrl-C and SIGTERM: one line, exit 130 / 143, and no staging folder or temporary file left.

Each command runs in its own process (signals go to a process), and the signal is sent
once the command's staging folder exists, that is, in the middle of its work.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from model import signals
from model.atomic import atomic_path, staged_folder

ROOT = Path(__file__).resolve().parents[2]


def _start(args: list[str], tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(condition, process: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"finished before the signal: {process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the command never reached the point to interrupt")
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("signum", "code", "word"),
    [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")],
)
def test_a_signal_mid_run_cleans_up_and_exits_with_its_code(
    tmp_path: Path, signum: int, code: int, word: str
) -> None:
    out = tmp_path / "data"
    process = _start(
        ["model.data.synth", "--videos", "40", "--frames", "60", "--out", str(out)], tmp_path
    )
    _wait_for(lambda: any(tmp_path.glob(".data.*/images/*/3.jpg")), process, 120)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and word in errors[0], stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]  # no staging, no output
    assert not any((tmp_path / "tmp").iterdir())


@pytest.mark.slow
def test_sigterm_inside_onnx2tf_cleans_up_its_temporary_folder_too(tmp_path: Path) -> None:
    out = tmp_path / "artifacts"
    process = _start(["converters.tflite", "--variant", "S", "--out", str(out)], tmp_path)
    _wait_for(lambda: any((tmp_path / "tmp").glob("onnx2tf.*/*.onnx")), process, 300)
    time.sleep(1.0)  # inside onnx2tf's conversion now
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-2000:]
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("error: terminated"), stderr[-2000:]
    assert not any((tmp_path / "tmp").glob("onnx2tf.*"))  # library caches may stay
    assert not out.exists(), sorted(str(p) for p in out.rglob("*"))


@pytest.mark.parametrize(
    ("signum", "raised"), [(signal.SIGTERM, signals.Terminated), (signal.SIGINT, KeyboardInterrupt)]
)
def test_a_swallowed_signal_still_stops_every_commit(
    tmp_path: Path, signum: int, raised: type
) -> None:
    """A library that catches the signal's exception runs on to the end: nothing is moved into
    place all the same (the onnx2tf case: it once left a finished artifact behind)."""
    signals.record(signum)
    try:
        with pytest.raises(raised), atomic_path(tmp_path / "file.txt") as tmp:
            tmp.write_text("done")
        with pytest.raises(raised), staged_folder(tmp_path / "out") as staging:
            (staging / "result.txt").write_text("done")
    finally:
        signals.clear()
    assert list(tmp_path.iterdir()) == []
