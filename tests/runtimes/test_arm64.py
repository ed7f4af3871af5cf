"""The ARM64 runtimes: the worker's protocol (on the host's python), its errors, the
registry, and real runs under QEMU in the arm64 sysroot of ``make arm64``."""

from __future__ import annotations

import sys
from pathlib import Path

import flatbuffers
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from ai_edge_litert import schema_py_generated as tfl
from onnx import TensorProto, helper

from runtimes import arm64
from runtimes.backends.arm64 import (
    LiteRTArm64Backend,
    OnnxRuntimeArm64Backend,
    Worker,
    WorkerRunner,
)
from runtimes.manifest import ArtifactError, ArtifactFile, Manifest, TensorSpec, WeightsRef
from runtimes.registry import get_backend, runtimes_for
from runtimes.targets import TARGETS

SHAPE = (1, 2, 4, 4)
needs_sysroot = pytest.mark.usefixtures("arm64_sysroot")  # skipped without it, see conftest


@pytest.fixture(scope="module")
def conv_add(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny onnx file: y = conv3x3(x) + b (float32, NCHW)."""
    rng = np.random.default_rng(0)
    weight = helper.make_tensor(
        "w", TensorProto.FLOAT, (2, 2, 3, 3), rng.normal(size=(2, 2, 3, 3)).ravel()
    )
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Add", ["c", "b"], ["y"]),
        ],
        "conv_add",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, SHAPE),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, SHAPE)],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("arm64") / "conv_add.onnx"
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def add_tflite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny .tflite file: sum = a + b, (1, 4) float32, written with LiteRT's schema."""
    code = tfl.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = tfl.BuiltinOperator.ADD, 0, 1
    tensors = []
    for buffer, name in enumerate(("a", "b", "sum"), start=1):
        tensor = tfl.TensorT()
        tensor.name, tensor.shape, tensor.type, tensor.buffer = name, [1, 4], 0, buffer
        tensors.append(tensor)
    op = tfl.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1], [2]
    op.builtinOptionsType, op.builtinOptions = tfl.BuiltinOptions.AddOptions, tfl.AddOptionsT()
    graph = tfl.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = tensors, [0, 1], [2], [op]
    model = tfl.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [graph]
    model.buffers = [tfl.BufferT() for _ in range(4)]
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path = tmp_path_factory.mktemp("arm64") / "add.tflite"
    path.write_bytes(builder.Output())
    return path


def _manifest(path: Path, target: str, specs: list[tuple], accumulation: str = "fp32"):
    """A manifest whose tensors are ``specs``: (canonical, name, index, shape), inputs first."""
    tensors = [
        TensorSpec(canonical, name, index, shape, "float32", "NCHW"[: len(shape)], (0, 1, 2, 3))
        for canonical, name, index, shape in specs
    ]
    return Manifest(
        target=target,
        runtime=TARGETS[target].runtime,
        variant="S",
        form="frame",
        precision="fp32",
        image_size=4,
        temporal_window=3,
        artifact=ArtifactFile(path.name, "0" * 64, path.stat().st_size),
        weights=WeightsRef("shipped", "0" * 64),
        inputs=tuple(tensors[:-1]),
        outputs=tuple(tensors[-1:]),
        state=None,
        accumulation=accumulation,
    )


def _host_worker(*args: str) -> Worker:
    """The worker on the host's python: the same program and protocol, no QEMU."""
    return Worker("host worker", [sys.executable, str(arm64.WORKER), *args], None)


def _feed(seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=SHAPE).astype(np.float32) for name in ("x", "b")}


def _expected(path: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["y"], feed)[0]


def test_worker_round_trip_on_host(conv_add: Path) -> None:
    worker = _host_worker("onnxruntime", str(conv_add), "--threads", "1")
    try:
        assert worker.platform["machine"] and "numpy" in worker.platform["versions"]
        header, _ = worker.request({"op": "inspect"})
        assert [(t["name"], t["shape"], t["dtype"]) for t in header["inputs"]] == [
            ("x", list(SHAPE), "float32"),
            ("b", list(SHAPE), "float32"),
        ]
        runner = WorkerRunner(worker, ["b", "x"], ["y"])  # the order the caller names
        feed = _feed()
        for _ in range(2):  # one process, several calls
            (got,) = runner([feed["b"], feed["x"]])
            np.testing.assert_array_equal(got, _expected(conv_add, feed))
        assert runner.platform["platform"] == arm64.PLATFORM
    finally:
        worker.close()


def test_worker_runs_litert_by_tensor_index_on_host(add_tflite: Path) -> None:
    worker = _host_worker("litert", str(add_tflite))
    try:
        header, _ = worker.request({"op": "inspect"})
        assert [(t["name"], t["index"]) for t in header["outputs"]] == [("sum", 2)]
        a, b = np.array([[1.5, 2, 3, 4]], np.float32), np.full((1, 4), 10, np.float32)
        (got,) = WorkerRunner(worker, [1, 0], [2])([b, a])
        np.testing.assert_array_equal(got, a + b)
    finally:
        worker.close()


def test_a_failed_call_is_one_line_and_the_worker_goes_on(conv_add: Path) -> None:
    worker = _host_worker("onnxruntime", str(conv_add))
    try:
        runner = WorkerRunner(worker, ["x", "b"], ["y"])
        with pytest.raises(ArtifactError, match=r"host worker: .*") as err:
            runner([np.zeros((1, 2, 5, 5), np.float32), np.zeros(SHAPE, np.float32)])
        assert "\n" not in str(err.value)
        feed = _feed()
        np.testing.assert_array_equal(runner([feed["x"], feed["b"]])[0], _expected(conv_add, feed))
    finally:
        worker.close()


def test_a_file_that_cannot_load_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ArtifactError, match="cannot load"):
        _host_worker("onnxruntime", str(bad))


def test_a_dead_worker_is_an_error_with_its_last_words(conv_add: Path) -> None:
    dying = [sys.executable, "-c", "import sys; sys.stderr.write('boom\\n'); sys.exit(3)"]
    with pytest.raises(ArtifactError, match="exited with status 3: boom"):
        Worker("dying", dying, None)
    worker = _host_worker("onnxruntime", str(conv_add))
    worker.process.kill()
    feed = _feed()
    with pytest.raises(ArtifactError, match="the ARM64 worker exited with status -9"):
        WorkerRunner(worker, ["x", "b"], ["y"])([feed["x"], feed["b"]])
    worker.close()
    with pytest.raises(ArtifactError, match="was closed"):
        worker.request({"op": "inspect"})


def test_a_collected_runner_ends_its_worker(conv_add: Path) -> None:
    worker = _host_worker("onnxruntime", str(conv_add))
    process = worker.process
    runner = WorkerRunner(worker, ["x", "b"], ["y"])
    del worker, runner
    assert process.wait(30) == 0


def test_registered_after_each_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    emulated = {name: spec.arm64_runtime for name, spec in TARGETS.items() if spec.arm64_runtime}
    assert emulated, "no target has an ARM64 runtime"
    monkeypatch.setenv(arm64.SYSROOT_ENV, str(tmp_path))
    for target, runtime in emulated.items():
        names = runtimes_for(target)
        assert names[0] == TARGETS[target].runtime and runtime in names[1:]
        backend = get_backend(runtime)
        assert not backend.is_available()
        assert "make arm64" in backend.unavailable_reason()


@needs_sysroot
@pytest.mark.slow
def test_onnx_under_qemu_equals_the_host(conv_add: Path) -> None:
    backend = OnnxRuntimeArm64Backend()
    inputs, outputs = backend.inspect(conv_add)
    assert [t.name for t in inputs] == ["x", "b"] and outputs[0].shape == SHAPE
    manifest = _manifest(
        conv_add,
        "onnx",
        [("frame", "x", 0, SHAPE), ("state", "b", 1, SHAPE), ("logits", "y", 0, SHAPE)],
    )
    runner = backend.open(conv_add, manifest, threads=1)
    feed = _feed()
    (got,) = runner([feed["x"], feed["b"]])
    np.testing.assert_allclose(got, _expected(conv_add, feed), rtol=1e-5, atol=1e-5)
    facts = runner.platform
    assert facts["machine"] == "aarch64"
    assert facts["cpu"]["CPU part"] == "0x051"  # the sysroot's cpuinfo, not the host's
    assert facts["qemu"].startswith("qemu-aarch64 version")
    assert facts["versions"]["onnxruntime"] == ort.__version__


@needs_sysroot
@pytest.mark.slow
def test_litert_under_qemu_forces_fp16_where_the_file_allows_it(add_tflite: Path) -> None:
    specs = [("frame", "a", 0, (1, 4)), ("state", "b", 1, (1, 4)), ("logits", "sum", 2, (1, 4))]
    a, b = np.array([[1.0001, 2, 3, 4]], np.float32), np.ones((1, 4), np.float32)
    backend = LiteRTArm64Backend()
    exact = backend.open(add_tflite, _manifest(add_tflite, "tflite", specs), threads=1)
    np.testing.assert_array_equal(exact([a, b])[0], a + b)
    fp16 = backend.open(add_tflite, _manifest(add_tflite, "tflite", specs, "fp16"), threads=1)
    # 2.0001 is not an FP16 number: XNNPACK computed in FP16 (ARMv8.2 arithmetic).
    np.testing.assert_array_equal(fp16([a, b])[0], (a + b).astype(np.float16))
