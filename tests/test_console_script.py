"""``bas-deploy``: one console script whose modes are the ``python -m`` commands themselves."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bas_deploy.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]
BAS_DEPLOY = Path(sysconfig.get_path("scripts")) / "bas-deploy"
BELOW = ("model", "runtimes", "segmentation", "converters", "device_bench")  # bas_deploy's floors
# Entry points that are no mode of bas-deploy, and why.
LEFT_OUT = {
    "runtimes.arm64.worker": "the protocol runtimes.arm64 speaks to its worker process under "
    "QEMU: started by the runtime, never by hand",
    "model.evaluate": "the same command as runtimes.evaluate less --artifact; bas-deploy "
    "evaluate is runtimes.evaluate, which scores PyTorch BaS and artifacts alike",
}


def _is_main_guard(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
        and any(
            isinstance(c, ast.Constant) and c.value == "__main__" for c in node.test.comparators
        )
    )


def _entry_points() -> list[str]:
    """Every module ``python -m`` runs: those with a ``__main__`` guard, and each package with
    a ``__main__.py`` (by its package name)."""
    found = []
    for package in (*BELOW, "bas_deploy"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__main__":
                found.append(".".join(parts[:-1]))
            elif any(map(_is_main_guard, ast.parse(path.read_text()).body)):
                found.append(".".join(parts))
    return found


def _walk(
    command: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command under ``command`` (itself included), with the words that reach it."""
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, f"{' '.join(path)} lists {name} but has no such command"
            yield from _walk(sub, (*path, name))


def _mode(*path: str) -> click.Command:
    """The command ``bas-deploy PATH...`` runs, loading only the modules on the way."""
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        found = command.get_command(click.Context(command), name)
        assert found is not None, f"no {name} under {command.name}"
        command = found
    return command


def _run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in argv], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_the_scan_finds_the_entry_points_it_must() -> None:
    found = _entry_points()
    assert {"segmentation", "model.info", "converters.onnx", "runtimes.arm64.worker"} <= set(found)
    assert "model.options" not in found


def test_every_python_m_entry_point_is_a_mode_or_left_out_for_a_reason() -> None:
    tree = [command for _, command in _walk(main)]
    names = {command.name for command in tree}
    found = _entry_points()
    assert set(LEFT_OUT) <= set(found), "LEFT_OUT names a module python -m no longer runs"
    missing = []
    for module in found:
        if module in LEFT_OUT or f"python -m {module}" in names:
            continue
        command = getattr(importlib.import_module(module), "main", None)  # forwarders too
        if not any(command is mode for mode in tree):
            missing.append(module)
    assert not missing, f"python -m entry points that bas-deploy lacks: {missing}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_mode_is_its_module_command_itself(name: str) -> None:
    module, _, attribute = COMMANDS[name].command.partition(":")
    assert _mode(name) is getattr(importlib.import_module(module), attribute)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_mode_and_its_subcommands_show_help(name: str) -> None:
    for path, command in _walk(_mode(name), (name,)):
        result = CliRunner().invoke(main, [*path, "--help"], prog_name="bas-deploy")
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"Usage: bas-deploy {' '.join(path)} [OPTIONS]")
        assert command.help and command.help.strip().splitlines()[0] in " ".join(
            result.stdout.split()
        )


def test_help_lists_every_mode_without_importing_torch() -> None:
    result = _run(sys.executable, "-X", "importtime", BAS_DEPLOY, "--help")
    assert result.returncode == 0, result.stderr
    listed = result.stdout.split("\nCommands:\n")[1].splitlines()
    names = [line.split()[0] for line in listed if not line.startswith("   ")]  # not wrapped
    assert names == list(COMMANDS)
    imported = {
        line.rpartition("|")[2].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "bas_deploy" in imported and "click" in imported  # the reader sees imports
    assert not imported & {"torch", "numpy", *BELOW}


def test_version_is_the_installed_package_version() -> None:
    result = _run(BAS_DEPLOY, "--version")
    assert (result.returncode, result.stdout) == (
        0,
        f"bas-deploy, version {version('bas-deploy')}\n",
    )


@pytest.mark.slow
def test_a_mode_help_through_the_console_script_is_the_python_m_help() -> None:
    ours = _run(BAS_DEPLOY, "segment", "--help")
    theirs = _run(sys.executable, "-m", "segmentation", "--help")
    assert ours.returncode == theirs.returncode == 0, ours.stderr + theirs.stderr
    assert ours.stdout.startswith("Usage: bas-deploy segment [OPTIONS]")
    assert ours.stdout == theirs.stdout.replace("python -m segmentation", "bas-deploy segment")


@pytest.mark.slow
def test_a_usage_error_through_the_console_script_is_the_python_m_error() -> None:
    ours = _run(BAS_DEPLOY, "info", "--variant", "SS")
    theirs = _run(sys.executable, "-m", "model.info", "--variant", "SS")
    assert ours.returncode == theirs.returncode == 2
    assert "Error: Invalid value for '--variant'" in theirs.stderr
    assert ours.stderr == theirs.stderr.replace("python -m model.info", "bas-deploy info")
    assert ours.stdout == theirs.stdout == ""


@pytest.mark.parametrize(
    ("path", "argv"),
    [
        (("bench",), ["run", "--target", "tflit"]),
        (("convert", "tflite"), ["--precision", "INT9"]),
        (("fastest",), ["{empty}"]),
        (("train-bench",), ["--config", "{root}/configs/bas_s.yml", "--low-res", "17"]),
    ],
)
def test_errors_and_exit_codes_are_those_of_the_command(
    path: tuple[str, ...], argv: list[str], tmp_path: Path
) -> None:
    argv = [arg.format(empty=tmp_path, root=ROOT) for arg in argv]
    command = _mode(*path)
    alone = CliRunner().invoke(command, argv)
    within = CliRunner().invoke(main, [*path, *argv], prog_name="bas-deploy")
    assert alone.exit_code == within.exit_code == 2, alone.output + within.output
    assert alone.stderr.strip()
    assert within.stderr == alone.stderr.replace(command.name, f"bas-deploy {' '.join(path)}")


def test_a_misspelled_mode_is_a_usage_error_naming_the_nearest() -> None:
    result = CliRunner().invoke(main, ["segmnt"], prog_name="bas-deploy")
    assert result.exit_code == 2
    assert "No such command 'segmnt'. Did you mean 'segment'?" in result.stderr
