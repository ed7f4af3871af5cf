"""One typed loader: parsed JSON or YAML into frozen dataclasses, every field checked.

The manifest, the training config and the benchmark records all read through
``from_data``: unknown keys are refused (with a suggestion), each value must have its
field's annotated type, and a field's own check (``__post_init__``) names the field.
"""

from __future__ import annotations

import types
import typing
from dataclasses import fields, is_dataclass
from enum import Enum
from typing import Any

from .config import closest
from .errors import ProjectError


class FieldError(ProjectError):
    """A value that does not have its field's type: 'field must be ..., got ...'."""


def from_data(kind: Any, value: Any, where: str = "", text_numbers: bool = False) -> Any:
    """``value`` as the annotated type ``kind``; a FieldError naming the field otherwise.

    ``text_numbers``: YAML 1.1 reads ``1e-4`` (no dot) as text, so a config file may give
    a number as text, and text fields may be given as numbers; JSON records may not.
    """
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(kind):
            return None
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        return from_data(options[0], value, where, text_numbers)
    if is_dataclass(kind):
        return _dataclass(kind, value, where, text_numbers)
    if origin is tuple:
        return _tuple(kind, value, where, text_numbers)
    if origin is dict:
        if not isinstance(value, dict):
            raise _wrong(where, "a mapping", value)
        _, item = typing.get_args(kind) or (Any, Any)
        return {str(k): from_data(item, v, f"{where}.{k}", text_numbers) for k, v in value.items()}
    if origin is typing.Literal:
        if value not in typing.get_args(kind):
            choices = ", ".join(repr(a) for a in typing.get_args(kind))
            raise _wrong(where, f"one of {choices}", value)
        return value
    if isinstance(kind, type) and issubclass(kind, Enum):
        try:
            return kind(value)
        except ValueError:
            raise _wrong(where, f"one of {', '.join(str(m.value) for m in kind)}", value) from None
    return _scalar(kind, value, where, text_numbers)


def _wrong(where: str, expected: str, value: Any) -> FieldError:
    return FieldError(f"{where or 'value'} must be {expected}, got {value!r}")


def _dataclass(kind: type, value: Any, where: str, text_numbers: bool) -> Any:
    if not isinstance(value, dict):
        raise _wrong(where or kind.__name__, f"a mapping of {kind.__name__} fields", value)
    known = [f.name for f in fields(kind) if f.init]
    unknown = sorted(str(k) for k in set(value) - set(known))
    if unknown:
        hint = closest(unknown[0], known) if len(unknown) == 1 else ""
        raise FieldError(f"unknown {kind.__name__} keys: {', '.join(unknown)}{hint}")
    hints = typing.get_type_hints(kind)
    prefix = f"{where}." if where else ""
    converted = {
        name: from_data(hints[name], item, f"{prefix}{name}", text_numbers)
        for name, item in value.items()
    }
    try:
        return kind(**converted)
    except FieldError:
        raise
    except (TypeError, ValueError) as err:  # a field's own check, or a required field missing
        raise FieldError(f"{where or kind.__name__}: {err}") from err


def _tuple(kind: Any, value: Any, where: str, text_numbers: bool) -> tuple:
    args = typing.get_args(kind)
    fixed = bool(args) and args[-1] is not Ellipsis
    numbers = " numbers" if fixed and all(a in (int, float) for a in args) else ""
    expected = f"a list of {len(args)}{numbers}" if fixed else "a list"
    if not isinstance(value, list | tuple) or (fixed and len(value) != len(args)):
        raise _wrong(where, expected, value)
    items = args if fixed else (args[0] if args else Any,) * len(value)
    return tuple(
        from_data(item, v, f"{where}[{i}]", text_numbers)
        for i, (item, v) in enumerate(zip(items, value, strict=True))
    )


def _scalar(kind: Any, value: Any, where: str, text_numbers: bool) -> Any:
    if kind is Any or kind is object:
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise _wrong(where, "true or false", value)
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _wrong(where, "an integer", value)
        if isinstance(value, float) and not value.is_integer():
            raise _wrong(where, "an integer", value)
        return int(value)
    if kind is float:
        if text_numbers and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise _wrong(where, "a number", value) from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _wrong(where, "a number", value)
        return float(value)
    if kind is str:
        if isinstance(value, bool):
            hint = " (YAML reads yes/no/on/off as true/false: quote the value)"
            raise FieldError(f"{where or 'value'} must be text, got {value!r}{hint}")
        if text_numbers and isinstance(value, int | float):
            return str(value)
        if not isinstance(value, str):
            raise _wrong(where, "text", value)
        return value
    if isinstance(kind, type) and not isinstance(value, kind):
        raise _wrong(where, kind.__name__, value)
    return value
