"""runtimes.fastest names every artifact it leaves out, and why, and times each runtime at the
thread count the segmentation command runs with by default."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from model.hub import build_bas
from model.options import default_threads
from runtimes import fastest
from runtimes.backends.pytorch import pytorch_manifest
from runtimes.manifest import (
    ArtifactError,
    Manifest,
    ParityRecord,
    read_manifest,
    verify,
    write_manifest,
)

NOTHING_PASSED = "no BaS-S frame artifact that passed parity and can run here"


def _run(*args: str) -> Result:
    return CliRunner().invoke(fastest.main, [*args, "--frames", "2"])


def _left_out(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("left out:")]


def _onnx_manifest(**changes: object) -> Manifest:
    """A BaS-S frame manifest as the ONNX converter writes one, with ``changes``."""
    manifest = pytorch_manifest(model=build_bas("S"), form="frame")
    return replace(manifest, target="onnx", runtime="onnxruntime", **changes)


def _stand_in(folder: Path, name: str, manifest: Manifest) -> Path:
    """A file ``name`` (not a real network) with ``manifest`` beside it."""
    artifact = folder / name
    artifact.write_text("bytes\n")
    write_manifest(artifact, replace(manifest, artifact=replace(manifest.artifact, file=name)))
    return artifact


def test_a_damaged_manifest_is_named_with_the_reader_s_reason(tmp_path: Path) -> None:
    (tmp_path / "a.onnx").write_text("bytes\n")
    (tmp_path / "a.onnx.json").write_text('{"schema": "bas-deploy-manifest/2", ')
    with pytest.raises(ArtifactError) as refused:
        read_manifest(tmp_path / "a.onnx")
    result = _run(str(tmp_path), "--form", "frame")
    assert _left_out(result) == [f"left out: a.onnx: {refused.value}"]
    assert result.exit_code == 2 and result.stderr.splitlines()[-1].endswith(NOTHING_PASSED)


def test_failed_and_missing_parity_are_named_and_other_files_stay_silent(tmp_path: Path) -> None:
    failed = ParityRecord(passed=False, failures=("mask Dice vs PyTorch 0.98 vs 0.99",))
    _stand_in(tmp_path, "failed.onnx", _onnx_manifest(parity=failed))
    _stand_in(tmp_path, "unscored.onnx", _onnx_manifest())
    _stand_in(tmp_path, "stream.onnx", _onnx_manifest(form="stream"))  # not asked for
    (tmp_path / "parity.json").write_text(json.dumps([{"passed": True}]))
    (tmp_path / "table.md").write_text("| a |\n")
    result = _run(str(tmp_path), "--form", "frame")
    assert _left_out(result) == [
        "left out: failed.onnx: parity failed: mask Dice vs PyTorch 0.98 vs 0.99",
        "left out: unscored.onnx: no parity record (python -m converters.parity)",
    ]
    assert result.exit_code == 2 and result.stderr.splitlines()[-1].endswith(NOTHING_PASSED)


def _passed_copy(built: Path, folder: Path) -> Path:
    """A copy of a built artifact whose manifest records a passed parity check."""
    folder.mkdir()
    artifact = Path(shutil.copy(built, folder / built.name))
    write_manifest(artifact, read_manifest(built).with_parity(ParityRecord(passed=True)))
    return artifact


@pytest.mark.slow
def test_each_runtime_runs_at_the_segmentation_default_threads(
    built_artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four cores (three inference threads) pretended, so that neither the runtime's own
    choice nor one thread passes by chance; the count is onnxruntime's own setting."""
    ort = pytest.importorskip("onnxruntime")
    artifact = _passed_copy(built_artifact("onnx", "S", "fp32", "frame"), tmp_path / "a")
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    opened = []
    session = ort.InferenceSession

    def recording(path: str, sess_options=None, **kwargs) -> object:
        opened.append(sess_options.intra_op_num_threads)
        return session(path, sess_options=sess_options, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", recording)
    result = _run(str(artifact.parent), "--form", "frame")
    assert result.exit_code == 0, result.stderr
    assert opened == [default_threads()] and default_threads() == 3
    assert result.stdout.strip() == str(artifact)
    heading = next(line for line in result.stderr.splitlines() if line.startswith("| artifact"))
    assert "median inference, 3 threads (ms)" in heading

    opened.clear()
    assert _run(str(artifact.parent), "--form", "frame", "--threads", "2").exit_code == 0
    assert opened == [2]


@pytest.mark.slow
def test_a_modified_artifact_is_named_and_the_others_still_timed(
    built_artifact, tmp_path: Path
) -> None:
    good = _passed_copy(built_artifact("onnx", "S", "fp32", "frame"), tmp_path / "good")
    folder = good.parent
    tampered = folder / f"tampered{good.suffix}"
    data = bytearray(good.read_bytes())
    data[-1] ^= 0xFF
    tampered.write_bytes(bytes(data))
    manifest = read_manifest(good)
    manifest = replace(manifest, artifact=replace(manifest.artifact, file=tampered.name))
    write_manifest(tampered, manifest)
    with pytest.raises(ArtifactError) as refused:
        verify(tampered, manifest)
    result = _run(str(folder), "--form", "frame")
    assert result.exit_code == 0, result.stderr
    assert _left_out(result) == [f"left out: {tampered.name}: {refused.value}"]
    assert result.stdout.strip() == str(good)
