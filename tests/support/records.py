"""Edits of a JSON record (a manifest, as tests break it) by dotted path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def set_field(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    """A change of one field, by dotted path (list items by number)."""

    def change(record: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for part in parents:
            record = record[int(part)] if part.isdigit() else record[part]
        record[int(last) if last.isdigit() else last] = value

    return change
