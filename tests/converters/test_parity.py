"""Parity in CI: converted artifacts against PyTorch on held-out synthetic frames, with the gates.

Each artifact is built once per session and shared. A failure names target, variant,
precision, form and the figure that missed (see ``converters.parity.check_gates``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from converters.parity import (
    GATES,
    Gate,
    check_gates,
    parity_videos,
    record_parity,
    unmatched_findings,
)
from converters.registry import get_target
from converters.tflite import write_onnx2tf_sample
from model.forms import EXPORT_FORMS
from model.typed import FieldError, from_data
from runtimes.manifest import ParityRecord, read_manifest
from runtimes.targets import CONVERTED, TARGETS
from tests.support.external import arm64_available, arm64_missing
from tests.support.matrix import CI_MATRIX, CI_MATRIX_IDS

FRAMES = 60
# alias_copy: TempLP's gate detaches the prediction it hands on (a view; where it is
# traced away, XNNPACK's int8 stream program failed to propagate its input shapes)
PORTABLE_DATA_MOVEMENT = {"select_copy", "squeeze_copy", "unsqueeze_copy", "alias_copy"}
FP16_EDGE_CASTS = {"_to_dim_order_copy"}  # fp32 input to fp16 and back


def _refuse_download(url: str, *args, **kwargs):
    raise AssertionError(f"network download attempted: {url}")


@pytest.fixture(scope="module", autouse=True)
def offline() -> Iterator[None]:
    """Every conversion here runs with HTTP GETs refused: onnx2tf must never fetch its samples.
    Module-scoped: the refusal ends with this module's tests (the PACS tests talk HTTP to a
    real Orthanc on loopback)."""
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
    assert len(CI_MATRIX) == 44  # 36, LiteRT int16x8 (integer-only) and ExecuTorch fp16: 4 each
    assert {key[0] for key in CI_MATRIX} == set(CONVERTED)
    for name in CONVERTED:
        for precision in get_target(name).precisions:
            for variant in "SL":
                for form in EXPORT_FORMS:
                    assert (name, variant, precision, form) in CI_MATRIX


@pytest.mark.slow
@pytest.mark.parametrize(("target", "variant", "precision", "form"), CI_MATRIX, ids=CI_MATRIX_IDS)
def test_artifact_matches_pytorch(built_artifact, target, variant, precision, form) -> None:
    """On the host's kernels and, for LiteRT and onnxruntime files, on ARM64's (emulated; the
    cross-section of ``ARM64_FRAMES_PER_VIDEO``; integer-only 16x8, on LiteRT's reference
    kernels, only in ``make parity-arm64``). Without ``make arm64`` the host's half runs,
    then the test is skipped naming what is missing (failed at once under ``make test``)."""
    arm64_cell = TARGETS[target].arm64_runtime is not None and precision != "int16x8"
    on_arm64 = arm64_cell and arm64_available()
    artifact = built_artifact(target, variant, precision, form)
    record = record_parity(artifact, FRAMES, arm64=on_arm64)
    assert (record.arm64 is not None) == on_arm64
    manifest = read_manifest(artifact)
    assert manifest.parity == record
    assert manifest.artifact.bytes > 100_000
    if target == "executorch":  # all compute inside XNNPACK; only TempLP's slicing outside
        outside = PORTABLE_DATA_MOVEMENT | (FP16_EDGE_CASTS if precision == "fp16" else set())
        assert set(manifest.options["portable_ops"]) <= outside, manifest
    if not record.passed:
        pytest.fail(f"parity failed for {record.label}: {'; '.join(record.failures)}")
    if arm64_cell and not on_arm64:
        pytest.skip(f"the host's parity passed; ARM64's not run: {arm64_missing()}")


def _record(**changes) -> ParityRecord:
    record = {
        "logits": {"max_abs_err": 1e-4},
        "masks_vs_pytorch": {"pooled_dice": 1.0, "missed_findings": 0, "false_findings": 0},
        "dice_vs_ground_truth": {"target": 0.9, "pytorch": 0.9},
        "stream_drift": {"mean_abs_err_first_third": 1e-3, "mean_abs_err_last_third": 1e-3},
    }
    for key, value in changes.items():
        record[key] = {**record[key], **value}
    return from_data(ParityRecord, record)


@pytest.mark.parametrize(
    ("precision", "changes", "expected"),
    [
        ("fp32", {}, None),
        ("fp32", {"logits": {"max_abs_err": 2e-3}}, "logits max abs err"),
        ("fp32", {"masks_vs_pytorch": {"pooled_dice": 0.998}}, "mask Dice vs PyTorch"),
        (
            "fp16",
            {"logits": {"max_abs_err": 0.5}, "masks_vs_pytorch": {"pooled_dice": 0.995}},
            None,
        ),
        ("fp16", {"masks_vs_pytorch": {"pooled_dice": 0.98}}, "mask Dice vs PyTorch"),
        ("int8", {"masks_vs_pytorch": {"missed_findings": 1}}, "lesions found by one side"),
        ("fp32", {"masks_vs_pytorch": {"false_findings": 1}}, "lesions found by one side"),
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


def test_parity_set_holds_the_hard_video_in_both_forms() -> None:
    videos = parity_videos(60)
    assert [len(v) for v in videos] == [20, 20, 20]
    assert [len(v) for v in parity_videos(5)] == [20, 20]  # never without video 1
    assert [len(v) for v in parity_videos(60, per_video=2)] == [2, 2, 2]
    # video 1 is the sector scan whose lesion PyTorch barely finds: its ground truth is small
    truth = [int(t.sum()) for _, t in videos[1]]
    assert max(truth) < min(int(t.sum()) for _, t in videos[0])


def test_a_lesion_counts_where_the_other_side_does_not_touch_it() -> None:
    frame = np.zeros((100, 100), bool)
    lesion = frame.copy()
    lesion[10:20, 10:20] = True  # 100 px: 1 % of the frame
    speck = frame.copy()
    speck[50:53, 50:53] = True  # 9 px: under MIN_FINDING (0.1 %), threshold noise
    assert unmatched_findings(lesion, frame) == 1
    assert unmatched_findings(lesion, speck) == 1
    assert unmatched_findings(speck, frame) == 0
    touching = frame.copy()
    touching[19, 19] = True  # one pixel of overlap: the same lesion, outlined differently
    assert unmatched_findings(lesion, touching) == 0


# A record as converters.parity wrote it before it was typed (with ARM64's beside it).
OLD_RECORD = {
    "artifact": "bas_s_frame_240_int8.tflite",
    "target": "tflite",
    "variant": "S",
    "form": "frame",
    "precision": "int8",
    "accumulation": "fp32",
    "runtime": "litert",
    "platform": {"platform": "linux-x86_64", "cpu": "x", "libraries": {"ai-edge-litert": "1"}},
    "frames": 60,
    "frames_source": "synthetic ultrasound, seed 1 (held out): videos 0, 1, 2",
    "logits": {"max_abs_err": 0.5, "mean_abs_err": 0.01, "psnr_db": None},
    "masks_vs_pytorch": {
        "pooled_dice": 0.98,
        "missed_findings": 0,
        "false_findings": 0,
        "dice": 0.97,
        "iou": 0.95,
        "hd95_px": 1.5,
        "dice_per_video": [0.99, None, 0.97],
        "worst_frames": [[1, 3, 40, 38, 0.5]],
    },
    "dice_vs_ground_truth": {"target": 0.9, "pytorch": 0.9},
    "stream_drift": None,
    "gate": {
        "max_abs_err": None,
        "dice_vs_pytorch": 0.97,
        "max_unmatched_findings": 0,
        "max_gt_dice_drop": 0.01,
        "max_drift_ratio": 2.0,
    },
    "passed": False,
    "failures": ["ARM64: x"],
}


def test_a_parity_record_reads_typed_and_writes_the_same_keys() -> None:
    old = {**OLD_RECORD, "arm64": {**OLD_RECORD, "runtime": "litert-arm64", "failures": ["x"]}}
    record = from_data(ParityRecord, old)
    assert record.masks_vs_pytorch.worst_frames == ((1, 3, 40, 38, 0.5),)
    assert record.gate == GATES["int8"] and record.arm64.runtime == "litert-arm64"
    assert (record.passed, record.failures) == (False, ("ARM64: x",))
    written = json.loads(json.dumps(asdict(record)))
    assert written == {**old, "arm64": {**old["arm64"], "arm64": None}}
    with pytest.raises(FieldError, match=r"unknown ParityRecord keys: dice"):
        from_data(ParityRecord, {"dice": 1.0})
