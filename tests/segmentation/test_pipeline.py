"""segmentation.pipeline: frames read ahead and items written behind, in order, with every
error raised in the caller's thread and no thread left running."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from model.data.synth import render_video
from model.data.video_writer import write_video
from runtimes import load_pytorch
from segmentation.cli import main
from segmentation.pipeline import Pipeline
from segmentation.run import RunOptions, run_segment


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("pipeline-")}


@pytest.mark.parametrize("overlap", [True, False])
def test_every_item_is_written_in_order(overlap: bool) -> None:
    written: list[int] = []
    with Pipeline(iter(range(50)), written.append, overlap=overlap) as frames:
        for frame in frames:
            frames.put(frame * 2)
    assert written == [n * 2 for n in range(50)] and frames.decode_s >= 0
    assert not _threads()


def test_a_reading_error_is_raised_in_the_caller_and_stops_the_writer() -> None:
    def frames() -> Iterator[int]:
        yield 1
        raise ValueError("frame 2 cannot be read")

    with (
        pytest.raises(ValueError, match="frame 2"),
        Pipeline(frames(), lambda item: None) as pipeline,
    ):
        for frame in pipeline:
            pipeline.put(frame)
    assert not _threads()


def test_a_writing_error_is_raised_in_the_caller() -> None:
    def write(item: int) -> None:
        if item == 3:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), Pipeline(iter(range(100)), write) as p:
        for frame in p:
            p.put(frame)
    assert not _threads()


def test_the_caller_stopping_stops_both_threads_and_closes_the_frames() -> None:
    closed = []

    def frames() -> Iterator[int]:
        try:
            yield from range(1000)
        finally:
            closed.append(True)

    with pytest.raises(KeyboardInterrupt), Pipeline(frames(), lambda item: None) as p:
        for frame in p:
            if frame == 5:
                raise KeyboardInterrupt
            p.put(frame)
    assert not _threads() and closed == [True]


def test_overlapped_and_in_line_runs_write_the_same_results(tmp_path: Path) -> None:
    clip = write_video(
        tmp_path / "clip.mp4", [image for image, _ in render_video(2, 0, 12)], fps=25.0
    )
    outs = {}
    session = load_pytorch("S", "shipped", "stream", threads=1)
    for name, overlap in (("overlapped", True), ("in_line", False)):
        outs[name] = tmp_path / name
        run_segment(session, clip, outs[name], RunOptions(overlap=overlap))
    masks = [sorted((outs[n] / "masks").iterdir()) for n in outs]
    assert [p.name for p in masks[0]] == [p.name for p in masks[1]] and len(masks[0]) == 12
    for a, b in zip(*masks, strict=True):
        assert a.read_bytes() == b.read_bytes()
    rows = [(outs[n] / "frames.csv").read_text().splitlines() for n in outs]
    strip = [[",".join(r.split(",")[:4]) for r in table] for table in rows]  # not the timings
    assert strip[0] == strip[1]


def test_the_summary_says_where_each_loop_s_time_went(tmp_path: Path) -> None:
    clip = write_video(
        tmp_path / "clip.mp4", [image for image, _ in render_video(2, 1, 6)], fps=25.0
    )
    result = CliRunner().invoke(main, ["--input", str(clip), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    (source,) = json.loads((tmp_path / "o" / "summary.json").read_text())["sources"]
    assert set(source["seconds"]) == {
        "decode", "inference", "draw", "masks", "overlay", "table",
    }  # fmt: skip
    assert all(value >= 0 for value in source["seconds"].values())
