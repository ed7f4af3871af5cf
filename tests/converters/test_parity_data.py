"""Parity on one's own videos: a folder of any layout, a split's held-out subset, masks or not."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from converters.parity import ParityData, main, record_parity
from model.data.synth import render_video
from runtimes.manifest import read_manifest


@pytest.fixture(scope="module")
def own_videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three videos in the plain layout, of another seed; video b's later frames unlabelled."""
    root = tmp_path_factory.mktemp("own") / "videos"
    for name, index in (("a", 0), ("b", 1), ("c", 2)):
        (root / name / "frames").mkdir(parents=True)
        (root / name / "masks").mkdir()
        for t, (image, mask) in enumerate(render_video(21, index, 8)):
            Image.fromarray(image).save(root / name / "frames" / f"{t:03d}.png")
            if name != "b" or t < 3:
                Image.fromarray(mask.astype(np.uint8) * 255).save(
                    root / name / "masks" / f"{t:03d}.png"
                )
    return root


@pytest.fixture
def onnx_stream(built_artifact, tmp_path: Path) -> Path:
    """A copy of the ONNX fp32 stream artifact (its manifest takes this test's record)."""
    source = built_artifact("onnx", "S", "fp32", "stream")
    for path in (source, source.with_name(f"{source.name}.json")):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path / source.name


def test_parity_runs_on_the_held_out_videos_of_a_split(onnx_stream: Path, own_videos: Path):
    split = own_videos.parent / "split.json"
    split.write_text(json.dumps({"splits": {"train": ["a"], "val": ["b", "c"]}}))
    result = CliRunner().invoke(
        main,
        ["--artifact", str(onnx_stream), "--data", str(own_videos), "--split", str(split)],
    )
    assert result.exit_code == 0, result.output
    record = read_manifest(onnx_stream).parity
    assert record.passed and record.frames == 16  # every frame of b and c
    assert record.frames_source.startswith(f"{own_videos} (plain layout): videos b, c")
    assert len(record.masks_vs_pytorch.dice_per_video) == 2
    assert record.dice_vs_ground_truth.pytorch is not None


def test_unlabelled_frames_are_compared_but_not_scored(onnx_stream: Path, own_videos: Path):
    record = record_parity(onnx_stream, frames=5, data=ParityData(own_videos, ("b",)))
    assert record.frames == 5 and record.passed
    # frames 3 and 4 of b have no mask: only 0..2 are scored against ground truth
    assert record.dice_vs_ground_truth.target is not None
    unlabelled = ParityData(own_videos, ("b",)).load(None)[0][0][3:]
    assert all(mask is None for _, mask in unlabelled)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split", "{split}"], "--split and --subset choose videos of --data: give --data"),
        (["--data", "{data}", "--subset", "val"], "--subset val needs --split"),
        (["--data", "{data}", "--split", "{split}", "--subset", "test"], "has no subset 'test'"),
        (["--data", "{empty}"], "no videos|no known layout|empty"),
    ],
)
def test_bad_parity_data_is_refused_in_one_line(
    tmp_path: Path, own_videos: Path, args: list[str], message: str
) -> None:
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"splits": {"train": ["a"], "val": ["b"]}}))
    (tmp_path / "empty").mkdir()
    artifact = tmp_path / "x.onnx"
    artifact.write_bytes(b"not read")
    values = {"split": split, "data": own_videos, "empty": tmp_path / "empty"}
    argv = ["--artifact", str(artifact), *(a.format(**values) for a in args)]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert line.startswith("error:") and "\n" not in line
    assert re.search(message, line), line
