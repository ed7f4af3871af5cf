"""What every command line shares (model.options): choices, usage errors, project errors, help."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from converters import all as convert_all
from converters import parity
from converters.command import target_command
from converters.registry import get_target
from model import demo, evaluate, info, train
from model.data import synth
from runtimes import evaluate as runtimes_evaluate
from runtimes.manifest import ParityRecord
from runtimes.targets import CONVERTED


def _commands() -> dict[str, click.Command]:
    commands = {
        "model.info": info.main,
        "model.data.synth": synth.main,
        "model.train": train.main,
        "model.evaluate": evaluate.main,
        "model.demo": demo.main,
        "runtimes.evaluate": runtimes_evaluate.main,
        "converters.parity": parity.main,
        "converters.all": convert_all.main,
    }
    return commands | {f"converters.{name}": target_command(get_target(name)) for name in CONVERTED}


COMMANDS = _commands()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help(name: str) -> None:
    command = COMMANDS[name]
    assert isinstance(command, click.Command)
    result = CliRunner().invoke(command, ["--help"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Usage: python -m {name} [OPTIONS]")
    assert command.help and command.help.strip().splitlines()[0] in " ".join(result.stdout.split())


def test_variant_is_case_insensitive_and_defaults_to_s() -> None:
    runner = CliRunner()
    lower = runner.invoke(info.main, ["--variant", "l", "--image-size", "64"])
    assert lower.exit_code == 0, lower.output
    assert lower.stdout.startswith("BaS-L, 64x64 input")
    default = runner.invoke(info.main, ["--image-size", "64"])
    assert default.exit_code == 0 and default.stdout.startswith("BaS-S, 64x64 input")


@pytest.mark.parametrize(
    ("command", "argv", "expected"),
    [
        (info.main, ["--variant", "SS"], "'SS' is not one of S, L (did you mean 'S'?)"),
        (evaluate.main, ["--data", ".", "--screen", "leterbox"], "(did you mean 'letterbox'?)"),
        (target_command(get_target("tflite")), ["--precision", "INT9"], "(did you mean 'int8'?)"),
        (convert_all.main, ["--variants", "S,M"], "'M' is not one of S, L"),
        (convert_all.main, ["--targets", "onnx", "--targets", "tflit"], "did you mean 'tflite'"),
    ],
)
def test_misspelled_choice_is_a_usage_error_with_a_suggestion(
    command: click.Command, argv: list[str], expected: str
) -> None:
    result = CliRunner().invoke(command, argv)
    assert result.exit_code == 2
    assert expected in result.stderr and "Usage:" in result.stderr
    assert not result.stdout


@pytest.mark.parametrize(
    "command",
    [demo.main, target_command(get_target("onnx")), evaluate.main],
    ids=["demo", "onnx", "evaluate"],
)
def test_project_error_is_one_line_and_exit_2(command: click.Command, tmp_path: Path) -> None:
    where = ["--data", str(tmp_path)] if command is evaluate.main else ["--out", tmp_path / "o"]
    argv = ["--weights", str(tmp_path / "missing.safetensors"), *map(str, where)]
    result = CliRunner().invoke(command, argv)
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "missing.safetensors" in lines[0] and "not found" in lines[0]
    assert not result.stdout and not (tmp_path / "o").exists()


def test_train_refuses_an_unknown_override_in_one_line() -> None:
    result = CliRunner().invoke(train.main, ["--set", "epoch=2"])
    assert result.exit_code == 2
    assert result.stderr == (
        "error: --set epoch=2: unknown config key epoch (did you mean 'epochs'?)\n"
    )


def test_all_takes_comma_separated_and_repeated_lists() -> None:
    params = {p.name: p for p in convert_all.main.params}
    ctx = click.Context(convert_all.main)

    def parse(name: str, *values: str) -> list[str]:
        return params[name].process_value(ctx, values)

    assert parse("variants", "s,L") == ["S", "L"]
    assert parse("variants", "S", "l", "S") == ["S", "L"]
    assert parse("forms", "stream") == ["stream"]
    assert parse("targets", "TFLite, onnx") == ["tflite", "onnx"]
    with pytest.raises(click.BadParameter, match="at least one value"):
        parse("precisions", ",")


def test_paths_that_must_exist_and_positive_integers(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(evaluate.main, ["--data", str(tmp_path / "none")])
    assert result.exit_code == 2 and "does not exist" in result.stderr
    result = runner.invoke(parity.main, ["--artifact", str(tmp_path / "a.onnx")])
    assert result.exit_code == 2 and "does not exist" in result.stderr
    result = runner.invoke(demo.main, ["--frames", "0", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "0 is not in the range x>=1" in result.stderr
    assert not (tmp_path / "o").exists()


def test_a_failed_gate_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    artifact = tmp_path / "bas_s_frame_240_fp32.onnx"
    artifact.write_bytes(b"")
    record = ParityRecord(target="onnx", variant="S", precision="fp32", form="frame")
    record = replace(record, passed=False, failures=("logits max abs err 1 > 1e-3",))
    monkeypatch.setattr(parity, "record_parity", lambda *args: record)
    result = CliRunner().invoke(parity.main, ["--artifact", str(artifact), "--frames", "5"])
    assert result.exit_code == 1
    assert result.stderr == "parity FAILED for onnx BaS-S fp32 frame: logits max abs err 1 > 1e-3\n"

    failed = convert_all.MatrixResult("onnx", "S", "fp32", "frame", "conversion failed", error="x")
    monkeypatch.setattr(convert_all, "build_matrix", lambda *args: [failed])
    matrix_out = tmp_path / "matrix"
    result = CliRunner().invoke(convert_all.main, ["--variants", "S", "--out", str(matrix_out)])
    assert result.exit_code == 1
    assert result.stderr == "FAILED onnx BaS-S fp32 frame: conversion failed: x\n"
    assert (matrix_out / "parity.md").read_text().startswith("| target |")


def test_model_evaluate_sends_an_artifact_to_runtimes_evaluate(tmp_path: Path) -> None:
    artifact = tmp_path / "a.onnx"
    artifact.write_bytes(b"")
    argv = ["--data", str(tmp_path), "--artifact", str(artifact)]
    result = CliRunner().invoke(evaluate.main, argv)
    assert result.exit_code == 2
    assert f"python -m runtimes.evaluate --artifact {artifact}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
