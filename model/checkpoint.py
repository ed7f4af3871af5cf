"""Reading and writing weights: our own safetensors files and the public code's checkpoints."""

from __future__ import annotations

import hashlib
import math
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .atomic import atomic_path
from .errors import ProjectError
from .layers import resize_position

FORMAT = "bas-deploy/1"


class CheckpointError(ProjectError):
    """A weights file that cannot be loaded into the requested network."""


def sha256(path: Path) -> str:
    """The file's sha256, read in chunks (the one digest of every file in this project)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format is a zip archive
_SAFETENSORS_HEADER_MAX = 100_000_000
_PICKLE_PROTO = 0x80  # the PROTO opcode that starts every pickle of protocol >= 2
_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip archive",
}


def _not_checkpoint(path: Path, reason: str) -> CheckpointError:
    """The one message for a file that holds no tensors we can read, on one line."""
    reason = " ".join(reason.split()) or "it could not be read"
    return CheckpointError(f"{path} is not a safetensors or PyTorch checkpoint: {reason}")


def _describe(head: bytes) -> str:
    """What a file that is neither safetensors nor torch.save output looks like instead."""
    for magic, name in _SIGNATURES.items():
        if head.startswith(magic):
            return f"it is {name}"
    try:
        head.decode("utf-8")
        text = True
    except UnicodeDecodeError as err:
        text = err.start >= len(head) - 3  # only a character cut off at the end of the sample
    if text and not any(byte < 32 and byte not in b"\t\n\r" for byte in head):
        return f"it is text, starting {head[:24].decode('utf-8', 'replace')!r}"
    return f"its first bytes {head[:8]!r} begin neither a safetensors header nor a torch.save file"


def _sniff(path: Path) -> str:
    """'safetensors' or 'torch', from the file's first bytes (not its suffix).

    Anything else (a directory, an empty, text or image file) is refused here, before any
    library parses it, with a message that says what the file is instead.
    """
    if not path.exists():
        raise CheckpointError(f"weights file not found: {path}")
    if path.is_dir():
        raise _not_checkpoint(path, "it is a directory")
    if not path.is_file():
        raise _not_checkpoint(path, "it is not a regular file")
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError as err:
        raise CheckpointError(f"cannot read weights file {path}: {err.strerror or err}") from err
    if not head:
        raise _not_checkpoint(path, "it is empty")
    # safetensors: an 8-byte little-endian header length (the library caps it at 100 MB;
    # eight bytes of text read as one are far larger), then the JSON header
    if head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= _SAFETENSORS_HEADER_MAX:
        return "safetensors"
    if head.startswith(_ZIP_MAGIC) or head[0] == _PICKLE_PROTO:
        return "torch"
    raise _not_checkpoint(path, _describe(head))


def _reason(err: Exception) -> str:
    """The informative line of a library's error (torch's run to a paragraph of advice)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if isinstance(err, pickle.UnpicklingError):
        found = next((line for line in lines if "nsupported" in line), "not tensors only")
        return f"the weights-only unpickler refused it ({found}); only tensors are ever loaded"
    detail = lines[0] if lines else ""
    if isinstance(err, SafetensorError):
        return f"a damaged safetensors file ({detail})"
    return f"a damaged torch.save file ({type(err).__name__}: {detail})"


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A flat state dict from a safetensors or torch.save file, never unpickling code."""
    path = Path(path)
    kind = _sniff(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns on stderr about pickle protocols
            if kind == "safetensors":
                state = load_file(path)
            else:  # a handle, not the path: torch would pick safetensors by the suffix
                with open(path, "rb") as handle:
                    state = torch.load(handle, map_location="cpu", weights_only=True)
    # The library edge: on malformed bytes the weights-only unpickler raises whatever the
    # bytes trigger (KeyError, IndexError, struct.error, EOFError, ...), safetensors its own
    # error; none of those is a bug of ours, so every one becomes the one CheckpointError.
    except Exception as err:
        raise _not_checkpoint(path, _reason(err)) from err
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"{path} does not hold a flat state dict of tensors")
    check_values(state, str(path))
    return {key.removeprefix("module."): value for key, value in state.items()}


def check_values(state: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse values no trained network holds: NaN or infinity, a negative BatchNorm variance.

    Both load and run without complaint, and the network then outputs NaN, which thresholds
    to an empty or a full mask: an artifact that converts, and is wrong on every frame.
    """
    for key, tensor in state.items():
        if not (tensor.is_floating_point() or tensor.is_complex()):
            continue  # integer counters (num_batches_tracked) cannot be NaN
        if not bool(torch.isfinite(tensor).all()):
            bad = tensor.numel() - int(torch.isfinite(tensor).sum())
            raise CheckpointError(
                f"{source}: tensor {key} has {bad} of {tensor.numel()} values NaN or infinite "
                "(damaged weights, or a training that diverged)"
            )
        if key.endswith("running_var") and bool((tensor < 0).any()):
            negative = int((tensor < 0).sum())
            raise CheckpointError(
                f"{source}: tensor {key} has {negative} of {tensor.numel()} values negative "
                "(a BatchNorm running variance is never negative; its square root is NaN)"
            )


def read_metadata(path: Path) -> dict[str, str]:
    """The safetensors metadata of ``path``; {} for a torch.save file, which has none."""
    from safetensors import safe_open

    path = Path(path)
    if _sniff(path) != "safetensors":
        return {}
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as err:  # the library edge, as in read_state_dict
        raise _not_checkpoint(path, _reason(err)) from err


def resample_position(position: torch.Tensor, side: int) -> torch.Tensor:
    """A (1, N, C) position embedding on a square token grid, resampled to ``side`` x ``side``.

    Lets weights trained at one image size run at another (``layers.resize_position``).
    Only meaningful where tokens are row-major over the grid (not the public code's layout).
    """
    tokens = position.shape[1]
    if math.isqrt(tokens) ** 2 != tokens:
        raise CheckpointError(f"position embedding of {tokens} tokens is not a square grid")
    return resize_position(position.detach(), side)


def save_weights(model: nn.Module, path: Path, metadata: Mapping[str, str]) -> Path:
    """Write the model's state dict as safetensors, atomically."""
    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, tmp, metadata={"format": FORMAT, **metadata})
    return path


def _summarise(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def check_keys(
    expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], source: str
) -> None:
    """Raise one error naming every missing, unexpected or misshapen key of ``state``."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_summarise(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_summarise(unexpected)}")
    if misshapen:
        problems.append(f"shape mismatch: {_summarise(misshapen)}")
    if problems:
        raise CheckpointError(f"{source} does not fit the network: " + "; ".join(problems))


def load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` only if every key and shape fits."""
    check_keys(model.state_dict(), state, source)
    model.load_state_dict(dict(state), strict=True)


def count_blocks(keys: list[str], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    indices = {int(m.group(1)) for k in keys if (m := pattern.match(k))}
    return max(indices) + 1 if indices else 0
