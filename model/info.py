"""Parameters and FLOPs of a BaS network, in total and per stage.

``python -m model.info [--variant S] [--image-size 240] [--temporal-window 3]
[--weights shipped|PATH|none]``

After the table, what the weights file says of how it was made: its recipe, the epoch
kept and its validation Dice, the weights it started from, the training time, the
hardware, and (for files trained since the project recorded them) the command, date,
machine and commit.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on the frame form with batch
1: two FLOPs per multiply-accumulate of convolutions and matrix products; normalisations,
activations and additions are not counted (the convention of published FLOP figures).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import click
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .bas import BaS
from .checkpoint import read_metadata, sha256
from .config import get_config
from .errors import ProjectError
from .hub import SHIPPED, WEIGHTS_DIR, resolve_weights
from .layers import BaSBlock
from .options import command, image_size_option, temporal_window_option, variant_option


@dataclass(frozen=True)
class StageSpec:
    """A named group of BaS's top-level submodules and parameters, in forward order."""

    name: str
    members: tuple[str, ...]


STAGES: tuple[StageSpec, ...] = (
    StageSpec("Stem", ("stem", "temporal")),
    StageSpec("Stage 2", ("down2", "stage2")),
    StageSpec("Stage 3", ("down3", "stage3", "position")),
    StageSpec("Decoder 1", ("up1", "decoder1")),
    StageSpec("Decoder 2", ("up2", "decoder2")),
    StageSpec("Head", ("head",)),
)


@dataclass(frozen=True)
class StageInfo:
    """One row of the per-stage table; ``stride`` is input size / output size."""

    name: str
    height: int
    width: int
    stride: int
    channels: int
    blocks: int
    params: int
    flops: int


@dataclass(frozen=True)
class ModelInfo:
    """Totals and per-stage rows of one BaS network at one input size."""

    variant: str
    image_size: int
    temporal_window: int
    params: int
    flops: int
    rows: tuple[StageInfo, ...]


def _check_stages(model: BaS) -> None:
    # Every top-level part must sit in exactly one stage, or the rows would not add up.
    parts = [name for name, _ in model.named_children()]
    parts += [name for name, _ in model.named_parameters(recurse=False)]
    members = [member for stage in STAGES for member in stage.members]
    if sorted(parts) != sorted(members):
        raise ProjectError(
            f"BaS parts {sorted(parts)} do not match the stage table {sorted(members)}"
        )


def _module_flops(counts: Mapping[str, Mapping[object, int]], fqn: str, module: nn.Module) -> int:
    """FLOPs of ``module``; a module run without its own __call__ (``temporal.single``) has
    no entry, so its FLOPs are those of its children."""
    if fqn in counts:
        return sum(counts[fqn].values())
    return sum(
        _module_flops(counts, f"{fqn}.{name}", child) for name, child in module.named_children()
    )


def _profile(model: BaS) -> tuple[int, dict[str, int], dict[str, torch.Size]]:
    """Total FLOPs, FLOPs per top-level part and output shape per top-level part called."""
    shapes: dict[str, torch.Size] = {}
    handles = [
        child.register_forward_hook(
            lambda _m, _i, out, name=name: shapes.__setitem__(name, out.shape)
        )
        for name, child in model.named_children()
    ]
    size, ref = model.config.image_size, model.position
    shape = (1, model.config.in_channels, size, size)
    frame = torch.zeros(shape, dtype=ref.dtype, device=ref.device)
    training = model.training
    model.eval()  # no BatchNorm statistics update; FLOPs are the same in both modes
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(frame)
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    counts = counter.get_flop_counts()
    root = type(model).__name__
    flops = {
        name: _module_flops(counts, f"{root}.{name}", child)
        for name, child in model.named_children()
    }
    return counter.get_total_flops(), flops, shapes


def describe(model: BaS) -> ModelInfo:
    """Parameter and FLOP counts of ``model``, in total and per stage (``STAGES``)."""
    _check_stages(model)
    total_flops, flops, shapes = _profile(model)
    modules = dict(model.named_children())
    size = model.config.image_size
    rows = []
    for stage in STAGES:
        shape = [shapes[m] for m in stage.members if m in shapes][-1]
        rows.append(
            StageInfo(
                name=stage.name,
                height=shape[-2],
                width=shape[-1],
                stride=size // shape[-1],
                channels=shape[1],
                blocks=sum(
                    isinstance(sub, BaSBlock)
                    for m in stage.members
                    if m in modules
                    for sub in modules[m].modules()
                ),
                params=sum(
                    p.numel()
                    for name, p in model.named_parameters()
                    if name.split(".")[0] in stage.members
                ),
                flops=sum(flops[m] for m in stage.members if m in flops),
            )
        )
    return ModelInfo(
        variant=model.config.variant,
        image_size=size,
        temporal_window=model.config.temporal_window,
        params=sum(p.numel() for p in model.parameters()),
        flops=total_flops,
        rows=tuple(rows),
    )


def format_info(info: ModelInfo) -> str:
    """A plain-text report: totals, then one aligned row per stage and a total row."""
    header = ("stage", "output", "channels", "blocks", "params", "MFLOPs", "share")
    body = [
        (
            row.name,
            f"{row.height}x{row.width} (/{row.stride})",
            str(row.channels),
            str(row.blocks),
            f"{row.params:,}",
            f"{row.flops / 1e6:,.1f}",
            f"{100 * row.flops / info.flops:.1f}%",
        )
        for row in info.rows
    ]
    body.append(
        (
            "Total",
            "",
            "",
            str(sum(row.blocks for row in info.rows)),
            f"{info.params:,}",
            f"{info.flops / 1e6:,.1f}",
            "100.0%",
        )
    )
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]

    def render(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join((first, *rest)).rstrip()

    rule = "-" * len(render(header))
    return "\n".join(
        [
            f"BaS-{info.variant}, {info.image_size}x{info.image_size} input, "
            f"temporal window {info.temporal_window}",
            f"parameters: {info.params:,}",
            f"FLOPs (frame form, batch 1): {info.flops / 1e9:.3f} G ({info.flops:,})",
            "",
            render(header),
            rule,
            *(render(line) for line in body[:-1]),
            rule,
            render(body[-1]),
        ]
    )


def weights_provenance(variant: str, weights: str) -> str:
    """What the weights file says of how it was made, a line a fact; the shipped registry's
    recipe file beside it. Facts a file does not hold (older files hold fewer) are left out."""
    path = resolve_weights(variant, weights)
    meta = read_metadata(path)
    if meta.get("variant", variant) != variant:
        raise ProjectError(f"{path} holds BaS-{meta['variant']} weights, not BaS-{variant}")
    lines = [f"weights: {path} (sha256 {sha256(path)})"]
    shipped = SHIPPED.get(variant)
    if weights == "shipped" and shipped is not None:
        lines.append(f"  recipe file: {shipped.recipe}")
    try:
        lines += _made(meta)
    except (ValueError, TypeError, AttributeError) as err:  # JSON or numbers that are not
        raise ProjectError(f"{path}: its metadata is damaged ({err})") from err
    return "\n".join(lines)


def _weights_named(digest: str) -> str:
    """The file of ours with that sha256 (a stage-2 candidate, say), with its training time."""
    for path in sorted(WEIGHTS_DIR.rglob("*.safetensors")):
        if sha256(path) == digest:
            seconds = read_metadata(path).get("training_seconds")
            spent = f", trained {int(seconds) / 60:.1f} min" if seconds else ""
            return f"{path.relative_to(WEIGHTS_DIR.parents[1])} (sha256 {digest}{spent})"
    return f"weights with sha256 {digest}"


def _made(meta: Mapping[str, str]) -> list[str]:
    """The lines of how the weights were made, from their metadata."""
    lines = []
    recipe = json.loads(meta.get("recipe", "{}"))
    if recipe:
        autocast = recipe.get("mixed_precision", "no")
        precision = "fp32" if autocast == "no" else f"{autocast} autocast"
        lines.append(
            f"  recipe: {recipe.get('epochs')} epochs at lr {recipe.get('lr')}, batch "
            f"{recipe.get('batch_size')}, {precision}, on {recipe.get('data')} "
            f"(split seed {recipe.get('seed')})"
        )
    if "data_generator" in meta:
        drawn = json.loads(meta["data_generator"])
        widen = ", ".join(drawn.get("widen", [])) or "none"
        if drawn.get("widen", []) and drawn.get("widen_share", 1.0) < 1.0:
            widen += f" in {drawn['widen_share']:.0%} of the videos"
        lines.append(
            f"  data drawn by: {drawn.get('generator')}, seed {drawn.get('seed')}, "
            f"{drawn.get('videos')} videos x {drawn.get('frames')} frames, widened: {widen}"
        )
    if "epoch" in meta:
        lines.append(f"  kept: epoch {meta['epoch']}, validation Dice {meta.get('val_dice', '?')}")
    if "init_weights_sha256" in meta:
        lines.append(f"  started from: {_weights_named(meta['init_weights_sha256'])}")
    if "training_seconds" in meta:
        lines.append(f"  training time: {int(meta['training_seconds']) / 60:.1f} min")
    if "trained_on" in meta:
        lines.append(f"  trained on: {meta['trained_on']}")
    if "provenance" in meta:
        made = json.loads(meta["provenance"])
        machine = made.get("machine", {})
        lines.append(f"  command: {made.get('command')}")
        kernels = {True: "bf16 kernels, ", False: "no bf16 kernels, "}
        bf16 = kernels.get(machine.get("bf16_kernels"), "")  # older files do not say
        lines.append(
            f"  date: {made.get('date')}; machine: {machine.get('cpu')} "
            f"({machine.get('cores')} cores, {bf16}{machine.get('os')})"
        )
        commit = made.get("versions", {}).get("git_commit")
        if commit:
            lines.append(f"  commit: {commit}")
    return lines


@command("python -m model.info")
@variant_option()
@image_size_option
@temporal_window_option
@click.option(
    "--weights",
    default="shipped",
    show_default=True,
    help="Also say how these weights were made: 'shipped', a .safetensors file, or 'none'.",
)
def main(variant: str, image_size: int, temporal_window: int, weights: str) -> None:
    """Parameters and FLOPs of a BaS network, in total and per stage; how its weights were
    made."""
    config = get_config(variant, image_size=image_size, temporal_window=temporal_window)
    provenance = None if weights == "none" else weights_provenance(variant, weights)
    print(format_info(describe(BaS(config))))
    if provenance is not None:
        print(f"\n{provenance}")


if __name__ == "__main__":
    main()
