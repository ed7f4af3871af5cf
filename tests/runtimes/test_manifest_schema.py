"""The published JSON Schema of the manifest: current, itself valid, met by every manifest we
write, and failed, with jsonschema's own message, by one that ``read_manifest`` refuses."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner
from jsonschema.exceptions import best_match

from model.typed import from_data
from runtimes.backends.pytorch import pytorch_manifest
from runtimes.manifest import (
    ArtifactError,
    Manifest,
    ParityRecord,
    manifest_path,
    read_manifest,
)
from runtimes.schema import SHIPPED, main
from runtimes.targets import matrix
from tests.support.records import set_field

CELLS = list(matrix(("S", "L")))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SHIPPED.read_text()))


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    return pytorch_manifest(form="stream")


@pytest.fixture(scope="module")
def record(manifest: Manifest) -> dict[str, Any]:
    """PyTorch's stream manifest, as written to a file."""
    return json.loads(manifest.to_json())


def test_the_shipped_schema_is_what_the_generator_writes_now(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--out", str(tmp_path / "schema.json")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "schema.json").read_text() == SHIPPED.read_text(), (
        "runtimes/manifest.schema.json is stale: run python -m runtimes.schema"
    )


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = json.loads(SHIPPED.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_schema_describes_the_fields_from_the_code() -> None:
    """A field's comment becomes its description; a range check becomes its bounds."""
    schema = json.loads(SHIPPED.read_text())
    tensor = schema["$defs"]["TensorSpec"]["properties"]
    assert tensor["from_canonical"]["description"] == (
        "file tensor = canonical.transpose(from_canonical)"
    )
    assert tensor["index"]["minimum"] == 0
    assert schema["properties"]["image_size"]["exclusiveMinimum"] == 0


@pytest.mark.parametrize("form", ["frame", "stream"])
def test_pytorch_s_manifest_meets_the_schema(
    validator: jsonschema.Draft202012Validator, form: str
) -> None:
    validator.validate(json.loads(pytorch_manifest(form=form).to_json()))


def test_a_manifest_with_every_parity_figure_meets_the_schema(
    validator: jsonschema.Draft202012Validator, manifest: Manifest, tmp_path: Path
) -> None:
    """Every optional part of a parity record filled, the ARM64 record nested in it."""
    figures = {
        "artifact": "a.onnx",
        "platform": {"machine": "x86_64", "threads": 2},
        "frames": 60,
        "logits": {"max_abs_err": 1e-4, "mean_abs_err": 1e-5, "psnr_db": 80.5},
        "masks_vs_pytorch": {
            "pooled_dice": 0.999,
            "missed_findings": 0,
            "false_findings": 0,
            "dice": 0.99,
            "iou": 0.98,
            "hd95_px": 1.0,
            "dice_per_video": [1.0, None],
            "worst_frames": [[1, 7, 120, 118, 0.98]],
        },
        "dice_vs_ground_truth": {"target": 0.9, "pytorch": 0.91},
        "stream_drift": {"mean_abs_err_first_third": 1e-3, "mean_abs_err_last_third": 1e-3},
        "gate": {"max_abs_err": 1e-3, "dice_vs_pytorch": 0.999},
        "passed": False,
        "failures": ["logits max abs err 0.002 vs 0.001"],
    }
    parity = from_data(ParityRecord, {**figures, "arm64": figures})
    text = manifest.with_parity(parity).to_json()
    validator.validate(json.loads(text))
    (tmp_path / "a.onnx.json").write_text(text)
    assert read_manifest(tmp_path / "a.onnx").parity == parity  # the reader takes it as well


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda r: r.pop(key)


BROKEN = [
    (_drop("image_size"), r"'image_size' is a required property"),
    (_drop("schema"), r"'schema' is a required property"),
    (set_field("image_size", "240"), r"'240' is not of type 'integer'"),
    (set_field("inputs.0.shape", [1, 3, 240.5, 240]), r"240\.5 is not of type 'integer'"),
    (lambda r: r["state"].pop("output"), r"'output' is a required property"),
    (set_field("tools", {"onnx": 1}), r"1 is not of type 'string'"),
    (set_field("preprocessing.range", [0.0]), r"\[0\.0\] is too short"),
    (set_field("preprocessing.color", "BGR"), r"'RGB' was expected"),
    (
        set_field("colour", "RGB"),
        r"Additional properties are not allowed \('colour' was unexpected\)",
    ),
    (set_field("schema", "bas-deploy-manifest/1"), r"'bas-deploy-manifest/2' was expected"),
    (set_field("image_size", 0), r"0 is less than or equal to the minimum of 0"),
    (set_field("inputs.0.index", -1), r"-1 is less than the minimum of 0"),
    (
        set_field("parity", {"masks_vs_pytorch": {"pooled_dice": 1.5}}),
        r"1\.5 is greater than the maximum of 1",
    ),
]


@pytest.mark.parametrize(("change", "message"), BROKEN)
def test_a_manifest_that_breaks_the_schema_fails_with_jsonschema_s_message(
    validator: jsonschema.Draft202012Validator,
    record: dict[str, Any],
    tmp_path: Path,
    change: Callable[[dict[str, Any]], None],
    message: str,
) -> None:
    broken = copy.deepcopy(record)
    change(broken)
    error = best_match(validator.iter_errors(broken))  # within anyOf, the branch that failed
    assert error is not None, "the schema let it through"
    assert re.search(message, error.message), error.message
    (tmp_path / "a.onnx.json").write_text(json.dumps(broken))
    with pytest.raises(ArtifactError):  # the reader refuses it too: the two agree
        read_manifest(tmp_path / "a.onnx")


@pytest.mark.slow
@pytest.mark.parametrize("cell", CELLS, ids=[cell.label for cell in CELLS])
def test_every_artifact_s_manifest_meets_the_schema(
    built_artifact, validator: jsonschema.Draft202012Validator, cell
) -> None:
    artifact = built_artifact(cell.target, cell.variant, cell.precision, cell.form)
    validator.validate(json.loads(manifest_path(artifact).read_text()))
