"""``bas-deploy convert TARGET``: one subcommand per converted target, each the command
``python -m converters.TARGET`` builds, with that target's precisions."""

from __future__ import annotations

import click

from converters.command import target_command
from converters.registry import get_target
from runtimes.targets import CONVERTED


@click.group(name="convert")
def main() -> None:
    """Convert BaS to one target: writes the artifact and its JSON manifest."""


for _name in CONVERTED:
    main.add_command(target_command(get_target(_name)), _name)
