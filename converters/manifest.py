"""The JSON record beside each artifact: what a runtime needs and what makes it trustworthy."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from model.atomic import atomic_path

MANIFEST_FORMAT = "bas-deploy-manifest/1"


def manifest_path(artifact: Path) -> Path:
    return artifact.parent / f"{artifact.name}.json"


def artifact_sha256(path: Path) -> str:
    """sha256 of a file, or of a directory artifact (Core ML packages): paths and bytes, sorted."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode())
        with open(file, "rb") as handle:
            for chunk in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def artifact_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def write_json_atomic(path: Path, record: dict[str, Any]) -> None:
    text = json.dumps(record, indent=1, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_manifest(artifact: Path) -> dict[str, Any]:
    path = manifest_path(artifact)
    if not path.is_file():
        raise FileNotFoundError(f"no manifest beside {artifact} (expected {path})")
    record = json.loads(path.read_text())
    if record.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path} is not a {MANIFEST_FORMAT} manifest")
    return record
