"""Train/val/test splits by video, so frames of one video never land in two splits."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from ..atomic import atomic_path
from .layouts import DatasetError

DEFAULT_FRACTIONS: Mapping[str, float] = MappingProxyType({"train": 0.7, "val": 0.15, "test": 0.15})


def _counts(n: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Videos per split: largest remainders, then at least one for every positive fraction."""
    exact = {k: n * f for k, f in fractions.items()}
    counts = {k: math.floor(x) for k, x in exact.items()}
    positive = [k for k, f in fractions.items() if f > 0]
    by_remainder = sorted(positive, key=lambda k: counts[k] - exact[k])
    for k in by_remainder[: n - sum(counts.values())]:
        counts[k] += 1
    for k, f in fractions.items():
        if f > 0 and counts[k] == 0:
            counts[k] = 1
            counts[max(counts, key=counts.__getitem__)] -= 1
    return counts


def split_videos(
    names: Iterable[str], fractions: Mapping[str, float] = DEFAULT_FRACTIONS, seed: int = 0
) -> dict[str, list[str]]:
    """Assign whole videos to splits, reproducibly from ``seed`` and independent of input order.

    Every split with a positive fraction gets at least one video; a DatasetError if there are
    too few videos for that. Each split's names are returned sorted.
    """
    names = sorted(names)
    if len(set(names)) != len(names):
        raise DatasetError(f"duplicate video names in split input: {names}")
    if any(f < 0 for f in fractions.values()) or not math.isclose(sum(fractions.values()), 1.0):
        raise DatasetError(f"split fractions must be >= 0 and sum to 1, got {dict(fractions)}")
    needed = sum(f > 0 for f in fractions.values())
    if len(names) < needed:
        raise DatasetError(
            f"cannot split {len(names)} video(s) into {needed} non-empty splits {dict(fractions)}"
        )
    random.Random(seed).shuffle(names)
    out, start = {}, 0
    for k, count in _counts(len(names), fractions).items():
        out[k] = sorted(names[start : start + count])
        start += count
    return out


def _check_disjoint(split: Mapping[str, Sequence[str]], where: str) -> None:
    seen: dict[str, str] = {}
    for k, names in split.items():
        for name in names:
            if name in seen:
                raise DatasetError(f"{where}: video {name!r} is in both {seen[name]!r} and {k!r}")
            seen[name] = k


def write_split(
    path: Path, split: Mapping[str, Sequence[str]], *, seed: int, fractions: Mapping[str, float]
) -> None:
    """Save ``split`` with the seed and fractions that made it; atomic, so never half-written."""
    path = Path(path)
    _check_disjoint(split, str(path))
    record = {
        "seed": seed,
        "fractions": dict(fractions),
        "splits": {k: list(v) for k, v in split.items()},
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")


def read_split(path: Path) -> dict[str, list[str]]:
    """The splits saved by :func:`write_split`, checked to be disjoint."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
        split = {str(k): [str(n) for n in v] for k, v in record["splits"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DatasetError(f"{path}: not a readable split file ({exc!r})") from None
    _check_disjoint(split, str(path))
    return split
