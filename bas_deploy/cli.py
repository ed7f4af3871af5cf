"""``bas-deploy``: every command of the toolkit under one name, ``bas-deploy MODE [OPTIONS]``.

Each mode is the click command its ``python -m`` form runs (the same object, so its options,
usage errors and exit codes are that command's); only the program name in its usage lines
reads ``bas-deploy MODE``. A mode's module is imported when the mode runs: listing them reads
:data:`COMMANDS`, so ``bas-deploy --help`` imports no toolchain, not even torch.

    bas-deploy synth --videos 2 --out data/demo
    bas-deploy convert tflite --variant S --form stream
    bas-deploy segment --artifact artifacts/bas_s_stream_240_fp32.tflite --input V.mp4 --out D
    bas-deploy bench run --target tflite
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click

PACKAGE = "bas-deploy"


@dataclass(frozen=True)
class Entry:
    """A mode: where its click command lives (``module:attribute``) and its line in
    ``bas-deploy --help``, written here so listing it imports nothing."""

    command: str
    help: str

    def load(self) -> click.Command:
        module, _, attribute = self.command.partition(":")
        found = getattr(importlib.import_module(module), attribute)
        if not isinstance(found, click.Command):
            raise TypeError(f"{self.command} is {type(found).__name__}, not a click command")
        return found


# In the order of the work: data, training, conversion, scoring, segmentation, timing.
COMMANDS: dict[str, Entry] = {
    "synth": Entry("model.data.synth:main", "Write synthetic ultrasound videos with lesion masks."),
    "info": Entry("model.info:main", "Parameters and FLOPs of a BaS network."),
    "demo": Entry("model.demo:main", "Segment a synthetic clip with shipped BaS; write a report."),
    "train": Entry("model.train:main", "Train BaS from a YAML config."),
    "finetune": Entry(
        "model.finetune:main", "Fine-tune BaS on your labelled videos; before/after table."
    ),
    "look": Entry("model.data.looks:main", "Give a dataset's frames another scanner's look."),
    "kept-back": Entry(
        "model.data.kept_back:main", "Write video formed another way, never trained on."
    ),
    "realism": Entry(
        "model.realism:main", "Which scanner changes in training hold on kept-back video."
    ),
    "train-bench": Entry("model.train_bench:main", "Time the training step's fast paths."),
    "convert": Entry("bas_deploy.convert:main", "Convert BaS to one target (convert TARGET)."),
    "convert-all": Entry(
        "converters.all:main", "Convert the whole matrix and check each artifact's parity."
    ),
    "parity": Entry("converters.parity:main", "Compare an artifact with PyTorch BaS."),
    "sensitivity": Entry(
        "converters.sensitivity:main", "Mask agreement each part of BaS loses to int8."
    ),
    "manifest-schema": Entry(
        "runtimes.schema:main", "Write the JSON Schema of an artifact's manifest."
    ),
    "fastest": Entry("runtimes.fastest:main", "The fastest parity-passing artifact in a folder."),
    "evaluate": Entry(
        "runtimes.evaluate:main", "Score BaS, or an artifact, on a labelled dataset."
    ),
    "segment": Entry(
        "segmentation.cli:main", "Segment recordings, DICOM or archived studies with BaS."
    ),
    "node": Entry("segmentation.node:main", "A DICOM node: C-STORE in, SEG and SR out."),
    "bench": Entry("device_bench.cli:main", "Latency, FPS and memory per target (device_bench)."),
    "arm64-sysroot": Entry(
        "runtimes.arm64.sysroot:main", "Build the sysroot the arm64 runtimes run in."
    ),
    "results": Entry("bas_deploy.results:main", "Render docs/generated from results/."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are loaded from a table of :class:`Entry` when one runs."""

    def __init__(self, *args: Any, entries: Mapping[str, Entry], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.entries = entries

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.entries)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = self.entries.get(cmd_name)
        return None if entry is None else entry.load()

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as missing:  # near misses from the table
            raise click.exceptions.NoSuchCommand(
                missing.command_name, possibilities=self.entries, ctx=ctx
            ) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, entry.help) for name, entry in self.entries.items()])


@click.group(name=PACKAGE, cls=LazyGroup, entries=COMMANDS)
@click.version_option(package_name=PACKAGE, prog_name=PACKAGE)
def main() -> None:
    """BaS breast-lesion segmentation: every job of the toolkit, one MODE at a time.

    Each mode is the command of its python -m form (bas-deploy segment is
    python -m segmentation); bas-deploy MODE --help shows its options.
    """
