"""Parity in CI: converted artifacts against PyTorch on held-out synthetic frames, with the gates.

Each artifact is built once per session and shared. A failure names target, variant,
precision, form and the figure that missed (see ``converters.parity.check_gates``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from converters.all import matrix
from converters.parity import GATES, Gate, check_gates, describe, record_parity
from converters.registry import TARGET_NAMES, get_target
from converters.spec import FORMS, PRECISIONS
from converters.tflite import write_onnx2tf_sample
from runtimes.manifest import read_manifest

# The whole matrix Linux can run: every target, both variants, every precision a target
# supports, frame and stream forms (36 artifacts; ~12 min on two cores with `-n 2`).
CI_MATRIX = matrix(["S", "L"], list(TARGET_NAMES), list(PRECISIONS), list(FORMS))
FRAMES = 60
PORTABLE_DATA_MOVEMENT = {"select_copy", "squeeze_copy", "unsqueeze_copy"}

# Cells that miss a gate with the shipped weights of 2026-11-27, each with the gate it
# misses, measured (README, "Parity"). They are run and checked like every other cell:
# one that misses another gate, or starts passing, fails the suite.
_SMALL_FEATURES = (
    "held-out video 1: PyTorch finds no lesion but on two frames (masks of 192 and 8 pixels "
    "at the threshold), which int8 flips even with the whole decoder float; and decoder1's "
    "output spans +-60 there where calibration frames with a lesion reach +-4,000, so int8 "
    "keeps a few levels of it (logits -2 where PyTorch's are -13)"
)
KNOWN_FAILURES: dict[tuple[str, str, str, str], tuple[str | tuple[str, ...], str]] = {
    ("tflite", "S", "int8", "frame"): ("mask Dice vs PyTorch", _SMALL_FEATURES),
    ("tflite", "L", "int16x8", "frame"): (
        ("mask Dice vs PyTorch", "Dice vs ground truth"),
        "Dice vs PyTorch 0.962, vs ground truth 0.016 below PyTorch; S and both stream forms "
        "pass; clamping GELU's input did not move it; cause not established",
    ),
    ("executorch", "S", "int8", "frame"): ("mask Dice vs PyTorch", _SMALL_FEATURES),
    ("coreml", "S", "fp32", "frame"): (
        "logits max abs err",
        "1.7e-3 on held-out video 1 in the ML-program reference evaluator; masks identical",
    ),
    ("coreml", "L", "fp32", "frame"): (
        "logits max abs err",
        "5.6e-3 on held-out video 1 in the ML-program reference evaluator; masks identical",
    ),
}


def _refuse_download(url: str, *args, **kwargs):
    raise AssertionError(f"network download attempted: {url}")


@pytest.fixture(scope="session", autouse=True)
def offline() -> Iterator[None]:
    """Every conversion here runs with HTTP GETs refused: onnx2tf must never fetch its samples."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("requests.get", _refuse_download)
        yield


def test_onnx2tf_finds_the_project_s_sample_file(tmp_path: Path, monkeypatch) -> None:
    common = pytest.importorskip("onnx2tf.utils.common_functions")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AssertionError, match="network download attempted"):
        common.download_test_image_data()  # the guard above holds
    write_onnx2tf_sample(tmp_path)
    frames = common.download_test_image_data()
    assert frames.shape == (20, 128, 128, 3) and 0 <= frames.min() < frames.max() <= 1


def test_ci_matrix_is_the_whole_matrix() -> None:
    assert len(CI_MATRIX) == 40  # 36 plus LiteRT int16x8 (integer-only) in 4 cells
    assert {key[0] for key in CI_MATRIX} == set(TARGET_NAMES)
    for name in TARGET_NAMES:
        for precision in get_target(name).precisions:
            for variant in "SL":
                for form in FORMS:
                    assert (name, variant, precision, form) in CI_MATRIX


@pytest.mark.slow
@pytest.mark.parametrize(
    ("target", "variant", "precision", "form"), CI_MATRIX, ids=["-".join(k) for k in CI_MATRIX]
)
def test_artifact_matches_pytorch(built_artifact, target, variant, precision, form) -> None:
    artifact = built_artifact(target, variant, precision, form)
    record = record_parity(artifact, FRAMES)
    manifest = read_manifest(artifact)
    assert manifest.parity == record
    assert manifest.artifact.bytes > 100_000
    if target == "executorch":  # all compute inside XNNPACK; only TempLP's slicing outside
        assert set(manifest.options["portable_ops"]) <= PORTABLE_DATA_MOVEMENT, manifest
    known = KNOWN_FAILURES.get((target, variant, precision, form))
    if known is None:
        if not record["passed"]:
            pytest.fail(f"parity failed for {describe(record)}: {'; '.join(record['failures'])}")
        return
    gate, cause = known
    if record["passed"]:
        pytest.fail(f"{describe(record)} now passes: take it out of KNOWN_FAILURES")
    unexpected = [f for f in record["failures"] if not f.startswith(gate)]
    assert not unexpected, f"{describe(record)} misses more than {gate}: {unexpected}"
    pytest.xfail(f"known: {'; '.join(record['failures'])} ({cause})")


def _record(**changes) -> dict:
    record = {
        "logits": {"max_abs_err": 1e-4},
        "masks_vs_pytorch": {"dice": 1.0},
        "dice_vs_ground_truth": {"target": 0.9, "pytorch": 0.9},
        "stream_drift": {"mean_abs_err_first_third": 1e-3, "mean_abs_err_last_third": 1e-3},
    }
    for key, value in changes.items():
        record[key] = {**record[key], **value}
    return record


@pytest.mark.parametrize(
    ("precision", "changes", "expected"),
    [
        ("fp32", {}, None),
        ("fp32", {"logits": {"max_abs_err": 2e-3}}, "logits max abs err"),
        ("fp32", {"masks_vs_pytorch": {"dice": 0.998}}, "mask Dice vs PyTorch"),
        ("fp16", {"logits": {"max_abs_err": 0.5}, "masks_vs_pytorch": {"dice": 0.995}}, None),
        ("fp16", {"masks_vs_pytorch": {"dice": 0.98}}, "mask Dice vs PyTorch"),
        ("int8", {"dice_vs_ground_truth": {"target": 0.88}}, "Dice vs ground truth"),
        ("int8", {"dice_vs_ground_truth": {"target": 0.895}}, None),
        ("fp32", {"stream_drift": {"mean_abs_err_last_third": 0.01}}, "stream error grows"),
    ],
)
def test_gates_are_the_issue_s(precision: str, changes: dict, expected: str | None) -> None:
    failures = check_gates(_record(**changes), GATES[precision])
    if expected is None:
        assert failures == []
    else:
        assert len(failures) == 1 and failures[0].startswith(expected)


def test_gate_table() -> None:
    assert GATES["fp32"] == Gate(max_abs_err=1e-3, dice_vs_pytorch=0.999)
    assert GATES["fp16"].dice_vs_pytorch == 0.99
    assert (GATES["int8"].dice_vs_pytorch, GATES["int8"].max_gt_dice_drop) == (0.97, 0.01)
    assert np.isfinite(GATES["fp32"].max_drift_ratio)
