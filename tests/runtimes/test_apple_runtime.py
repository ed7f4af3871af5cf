"""Core ML parity with Apple's runtime, and the parts of that path any machine can check.

The ``apple_runtime`` tests run by themselves wherever coremltools can predict (macOS 14+,
see tests/conftest.py) and are skipped elsewhere: every artifact of the Core ML matrix is
built once per session, measured against PyTorch with the Linux gates, and compared with
``runtimes.mil_reference``, the evaluator that stands in for Apple's runtime on Linux.
The other tests run everywhere: the marker's skip, the runtime choice, and the reference
evaluator on one artifact.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import runtimes
from converters import coreml
from converters.build import convert
from converters.parity import GATES, record_parity
from converters.spec import ConvertRequest
from model.data.synth import HELD_OUT_SEED, render_video
from model.forms import EXPORT_FORMS
from model.hub import build_bas
from model.metrics import frame_scores
from runtimes import ArtifactError, Manifest, mil_reference, open_model, read_manifest
from runtimes.backends import coreml as coreml_runtime
from runtimes.manifest import ParityRecord, write_json_atomic
from runtimes.session import to_input, to_native

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]

MATRIX = [
    (v, p, f) for v in ("S", "L") for p in coreml.CoreMLTarget.precisions for f in EXPORT_FORMS
]
# as in tests/converters/test_parity.py (the reference evaluator: ~0.06 s a BaS-S frame)
FRAMES = 60
APPLE = coreml_runtime.apple_runtime_available()


@pytest.fixture(scope="session")
def coreml_artifact(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str, str], Path]:
    """Build each (variant, precision, form) once per session, on first use."""
    out = tmp_path_factory.mktemp("coreml")
    built: dict[tuple[str, str, str], Path] = {}

    def build(variant: str, precision: str, form: str) -> Path:
        key = (variant, precision, form)
        if key not in built:
            request = ConvertRequest(variant, "shipped", precision, form, out=out)
            built[key] = convert(coreml.CoreMLTarget(), request)
        return built[key]

    return build


def compare_runners(
    first: Runner, second: Runner, manifest: Manifest, frames: int
) -> dict[str, Any]:
    """Logit gap and mask Dice of two runners of one artifact on the same held-out frames.

    The stream form runs one continuous clip, each runner feeding back its own state, as a
    device would; so the figures include any drift between the two.
    """
    form, size = manifest.form, manifest.image_size
    runners = (first, second)
    states = [np.zeros(manifest.state.shape, np.float32)] * 2 if form == "stream" else []
    maxima, means, dice = [], [], []
    for image, _ in render_video(HELD_OUT_SEED, 0, frames):
        x = to_input(image, size)
        logits = []
        for i, run in enumerate(runners):
            result = run({"frame": x, "state": states[i]} if states else {"frame": x})
            logits.append(result["logits"])
            if states:
                states[i] = result["new_state"]
        gap = np.abs(logits[0].astype(np.float64) - logits[1])
        maxima.append(float(gap.max()))
        means.append(float(gap.mean()))
        masks = [to_native(lg, image.shape[:2]) > 0 for lg in logits]
        dice.append(frame_scores(*masks).dice)
    return {
        "frames": len(dice),
        "frames_source": f"synthetic ultrasound, seed {HELD_OUT_SEED} (held out)",
        "logits_max_abs_gap": max(maxima),
        "logits_mean_abs_gap": float(np.mean(means)),
        "mask_dice": float(np.mean(dice)),
    }


def judge(record: ParityRecord) -> None:
    """Every gate holds, as in tests/converters/test_parity.py."""
    if not record.passed:
        where = f"{record.label} on Apple's runtime"
        pytest.fail(f"parity failed for {where}: {'; '.join(record.failures)}")


@pytest.mark.slow
@pytest.mark.apple_runtime
@pytest.mark.parametrize(("variant", "precision", "form"), MATRIX)
def test_apple_runtime_meets_the_gates(coreml_artifact, variant, precision, form) -> None:
    artifact = coreml_artifact(variant, precision, form)
    # measure() runs the manifest's runtime, Apple's, wherever this holds.
    assert coreml_runtime.apple_runtime_available()
    judge(record_parity(artifact, FRAMES))


@pytest.mark.slow
@pytest.mark.apple_runtime
@pytest.mark.parametrize(("variant", "precision", "form"), MATRIX)
def test_apple_runtime_agrees_with_the_reference_evaluator(
    coreml_artifact, record_property, variant, precision, form
) -> None:
    artifact = coreml_artifact(variant, precision, form)
    manifest = read_manifest(artifact)
    apple = open_model(artifact, runtime="coreml")
    reference = open_model(artifact, runtime="mil_reference")
    record = {
        "artifact": artifact.name,
        "runtimes": [apple.runtime, reference.runtime],
        "platform": platform.platform(),
        "tools": manifest.tools,
        **compare_runners(apple, reference, manifest, FRAMES),
    }
    write_json_atomic(artifact.parent / f"{artifact.name}.apple_vs_reference.json", record)
    record_property("apple_vs_reference", record)
    gate = GATES[precision].dice_vs_pytorch
    assert record["mask_dice"] >= gate, (
        f"{artifact.name}: Apple's runtime vs mil_reference mask Dice "
        f"{record['mask_dice']:.4f} < {gate} (logits max abs gap "
        f"{record['logits_max_abs_gap']:.3g}, mean {record['logits_mean_abs_gap']:.3g})"
    )


def test_marker_is_registered(pytestconfig: pytest.Config) -> None:
    assert any(m.startswith("apple_runtime:") for m in pytestconfig.getini("markers"))


@pytest.mark.parametrize("available", [False, True])
def test_marker_skips_only_where_core_ml_cannot_predict(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, available: bool
) -> None:
    pytester.makeconftest(Path(__file__).parents[1].joinpath("conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    apple_runtime: needs Apple's runtime\n")
    pytester.makepyfile(
        "import pytest\n\n@pytest.mark.apple_runtime\ndef test_on_apple():\n    pass\n"
    )
    monkeypatch.setattr(coreml_runtime, "apple_runtime_available", lambda: available)
    result = pytester.runpytest_inprocess("-rs", "-p", "no:cacheprovider")
    if available:  # runs without -m
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(["*Apple's Core ML runtime predicts only on macOS*"])


@pytest.mark.skipif(APPLE, reason="checks a machine where Core ML cannot predict")
def test_macos_alone_does_not_make_apple_runtime_available(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("coremltools")  # imported before the platform is faked
    monkeypatch.setattr(sys, "platform", "darwin")
    assert not coreml_runtime.apple_runtime_available()  # no libcoremlpython in this wheel


@pytest.mark.slow
@pytest.mark.skipif(APPLE, reason="checks a machine where Core ML cannot predict")
def test_apple_runtime_is_refused_in_one_line(coreml_artifact) -> None:
    """Loading a Core ML artifact asks for Apple's runtime: refused here, naming the way out."""
    artifact = coreml_artifact("S", "fp32", "frame")
    with pytest.raises(ArtifactError, match="needs macOS 14.*use runtime 'mil_reference'") as info:
        runtimes.load(artifact)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_unknown_runtime_is_refused_by_name(coreml_artifact) -> None:
    with pytest.raises(ArtifactError, match="did you mean 'mil_reference'"):
        open_model(coreml_artifact("S", "fp32", "frame"), runtime="mil_referenc")


@pytest.mark.slow
def test_reference_evaluator_runs_the_program_as_pytorch_does(coreml_artifact) -> None:
    artifact = coreml_artifact("S", "fp32", "frame")
    manifest = read_manifest(artifact)
    reference = open_model(artifact, runtime="mil_reference")
    assert reference.runtime == "mil_reference"
    assert manifest.runtime == "coreml"  # only asked for by name does the evaluator stand in
    model = build_bas("S", manifest.image_size, manifest.temporal_window, weights="shipped")

    def pytorch(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            return {"logits": model.forward_frame(torch.from_numpy(inputs["frame"])).numpy()}

    record = compare_runners(reference, pytorch, manifest, frames=4)
    assert record["frames"] == 4
    assert record["mask_dice"] >= GATES["fp32"].dice_vs_pytorch, record
    assert record["logits_max_abs_gap"] <= GATES["fp32"].max_abs_err, record


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["S", "L"])
def test_fp32_program_computes_bas_to_rounding(coreml_artifact, variant: str) -> None:
    """Both sides in float64: what is left is the program's own error, not float32 rounding.

    coremltools' fold of ``x * gamma + beta`` into batch_norm kept its epsilon and moved
    BaS-S's logits by 1.7e-3 (BaS-L 5.6e-3) on these frames; fp32 rounding is ~5e-5.
    """
    artifact = coreml_artifact(variant, "fp32", "frame")
    manifest = read_manifest(artifact)
    program = mil_reference.load_program(artifact, wide=True)
    model = build_bas(variant, manifest.image_size, manifest.temporal_window, weights="shipped")
    model = model.double().eval()
    name = manifest.options["model_input_names"]["frame"]
    worst = 0.0
    for image, _ in render_video(HELD_OUT_SEED, 1, 4):  # held-out video 1: the highest logits
        x = to_input(image, manifest.image_size).astype(np.float64)
        with torch.no_grad():
            expected = model.forward_frame(torch.from_numpy(x)).numpy()
        worst = max(worst, float(np.abs(program({name: x})["logits"] - expected).max()))
    assert worst < 1e-5, f"BaS-{variant} Core ML program vs PyTorch, both float64: {worst:.2e}"


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "include_pad", "ceil"),
    [(4, 4, 0, True, False), (3, 2, 1, False, True), (3, 2, 1, True, False)],
)
def test_reference_evaluator_average_pools_as_pytorch(
    tmp_path: Path, kernel: int, stride: int, padding: int, include_pad: bool, ceil: bool
) -> None:
    """avg_pool (TempLP's gate pools the previous prediction over each stem cell), converted
    by coremltools from PyTorch's and run by the evaluator, against PyTorch itself."""
    import coremltools as ct

    class Pool(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.avg_pool2d(
                x, kernel, stride, padding, ceil_mode=ceil, count_include_pad=include_pad
            )

    x = torch.rand(1, 2, 13, 12, generator=torch.Generator().manual_seed(3))
    exported = torch.export.export(Pool(), (x,), strict=True)
    model = ct.convert(
        exported.run_decompositions({}),
        inputs=[ct.TensorType(name="x", shape=tuple(x.shape), dtype=np.float32)],
        convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT32,
        minimum_deployment_target=getattr(ct.target, coreml.DEPLOYMENT_TARGET),
    )
    path = tmp_path / "pool.mlpackage"
    model.save(str(path))
    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    block = next(iter(spec.mlProgram.functions["main"].block_specializations.values()))
    assert "avg_pool" in {op.type for op in block.operations}
    (got,) = mil_reference.load_program(path)({"x": x.numpy()}).values()
    np.testing.assert_allclose(got, Pool()(x).numpy(), atol=1e-6, rtol=0)
