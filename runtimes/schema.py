"""The manifest as a JSON Schema (draft 2020-12), for tools that read manifests without us.

    python -m runtimes.schema [--out runtimes/manifest.schema.json]

Generated from :class:`runtimes.manifest.Manifest` and the dataclasses it holds, read as
``model.typed.from_data`` reads a manifest: each field's annotated type, the fields
without a default required, unknown keys refused; the simple ranges ``check_ranges``
enforces (``runtimes.manifest.bounds``) and the ``schema`` name ``read_manifest`` demands.
Each field's comment in the code becomes its ``description``. The schema does not hold the
reader's checks that tie fields together (a quantized tensor's zero point within its
dtype's range, ``from_canonical`` a permutation of the shape's axes, and the like).
"""

from __future__ import annotations

import ast
import inspect
import io
import json
import sys
import textwrap
import tokenize
import types
import typing
from dataclasses import MISSING, Field, asdict, fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import click

from model.options import command

from .manifest import SCHEMA, Manifest, write_json_atomic

SHIPPED = Path(__file__).with_name("manifest.schema.json")
DRAFT = "https://json-schema.org/draft/2020-12/schema"
_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}


def manifest_schema() -> dict[str, Any]:
    """The JSON Schema every manifest ``read_manifest`` accepts satisfies."""
    defs: dict[str, dict[str, Any]] = {}
    root = _object(Manifest, defs)
    root["properties"]["schema"] = {"const": SCHEMA, "description": "the manifest's format"}
    root["required"].append("schema")  # read_manifest refuses a manifest without it
    return {
        "$schema": DRAFT,
        "$id": f"urn:{SCHEMA.replace('/', ':')}",
        "title": SCHEMA,
        "description": inspect.getdoc(sys.modules[Manifest.__module__]).split("\n\n")[0],
        **root,
        "$defs": dict(sorted(defs.items())),
    }


def _object(kind: type, defs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    hints = typing.get_type_hints(kind)
    comments = _field_comments(kind)
    properties = {}
    for spec in fields(kind):
        if not spec.init:
            continue
        schema = _schema(hints[spec.name], defs, spec.metadata.get("bounds", {}))
        if spec.name in comments:
            schema["description"] = comments[spec.name]
        if _has_default(spec):
            schema["default"] = _default(spec)
        properties[spec.name] = schema
    written = kind.__doc__ and not kind.__doc__.startswith(f"{kind.__name__}(")
    return {
        **({"description": inspect.cleandoc(kind.__doc__)} if written else {}),
        "type": "object",
        "properties": properties,
        "required": [s.name for s in fields(kind) if s.init and not _has_default(s)],
        "additionalProperties": False,  # from_data refuses unknown keys
    }


def _schema(kind: Any, defs: dict[str, dict[str, Any]], limits: dict[str, float]) -> dict:
    """The schema of one annotated type, ``limits`` applied to its numbers."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        inner = _schema(options[0], defs, limits)  # the one type from_data tries
        return {"anyOf": [inner, {"type": "null"}]} if type(None) in args else inner
    if is_dataclass(kind):
        if kind.__name__ not in defs:
            defs[kind.__name__] = {}  # a placeholder: ParityRecord holds itself
            defs[kind.__name__] = _object(kind, defs)
        return {"$ref": f"#/$defs/{kind.__name__}"}
    if origin is tuple:
        if not args:
            return {"type": "array"}
        if args[-1] is Ellipsis:
            return {"type": "array", "items": _schema(args[0], defs, limits)}
        items = [_schema(a, defs, limits) for a in args]
        return {"type": "array", "prefixItems": items, "items": False, "minItems": len(items)}
    if origin is dict:
        item = _schema(args[1], defs, {}) if args else {}
        return {"type": "object", **({"additionalProperties": item} if item else {})}
    if origin is typing.Literal:
        return {"const": args[0]} if len(args) == 1 else {"enum": list(args)}
    if isinstance(kind, type) and issubclass(kind, Enum):
        return {"enum": [member.value for member in kind]}
    if kind is Any:
        return {}
    if kind in _SCALARS:
        return {"type": _SCALARS[kind], **(limits if kind in (int, float) else {})}
    raise TypeError(f"no JSON Schema for {kind!r}: model.typed.from_data does not check it")


def _has_default(spec: Field) -> bool:
    return spec.default is not MISSING or spec.default_factory is not MISSING


def _default(spec: Field) -> Any:
    value = spec.default if spec.default is not MISSING else spec.default_factory()
    return json.loads(json.dumps(asdict(value) if is_dataclass(value) else value))


def _field_comments(kind: type) -> dict[str, str]:
    """Each field's comment in the class's source: the one after it on its line, or else the
    lines of comment just above it."""
    source = textwrap.dedent(inspect.getsource(kind))
    trailing, alone = {}, {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            lines = alone if token.line.lstrip().startswith("#") else trailing
            lines[token.start[0]] = token.string.lstrip("#").strip()
    found = {}
    for node in ast.parse(source).body[0].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above, line = [], node.lineno - 1
        while line in alone:
            above.insert(0, alone[line])
            line -= 1
        text = trailing.get(node.end_lineno) or " ".join(above)
        if text:
            found[node.target.id] = text
    return found


@command("python -m runtimes.schema")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=SHIPPED,
    show_default="runtimes/manifest.schema.json, shipped with the package",
    help="Where to write the schema.",
)
def main(out: Path) -> None:
    """Write the manifest's JSON Schema, generated from the code that reads manifests."""
    write_json_atomic(out, manifest_schema())
    click.echo(out)


if __name__ == "__main__":
    main()
