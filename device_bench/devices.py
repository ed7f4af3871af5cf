"""Where ``device_bench run --device`` times: the option's type and the dispatch.

This host is timed by ``bench``; a CUDA GPU by ``gpu``; a phone by its platform's module,
found in ``PHONES`` (one row per platform: a new phone platform is one module beside
``android`` and ``ios``, and one row here). What the platforms share is in ``phone``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from model.errors import ProjectError

from . import android, gpu, ios
from .phone import Device, DeviceRun, PhoneOptions, PhonePlatform, RunRequest, artifact_for_phone
from .records import append_records

PHONES: dict[str, PhonePlatform] = {row.name: row for row in (android.PLATFORM, ios.PLATFORM)}
HOST_KINDS = ("host", "cuda")  # devices named without an id


def device_kinds() -> list[str]:
    """Every --device form: host, cuda, then each phone platform's (android:SERIAL...)."""
    return [*HOST_KINDS, *(row.usage for row in PHONES.values())]


class DeviceType(click.ParamType):
    """``host``, ``cuda`` or ``PLATFORM:ID`` for a phone; anything else one line."""

    name = "device"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return f"[{'|'.join(device_kinds())}]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, Device):
            return value
        text = str(value).strip()
        kind, sep, ident = text.partition(":")
        kind = kind.lower()
        if kind in HOST_KINDS:
            if sep:
                self.fail(f"{text!r}: {kind} takes no id (write just '{kind}')", param, ctx)
            return Device(kind)
        if kind in PHONES:
            what, where = PHONES[kind].id_name, PHONES[kind].id_source
            if not ident.strip():
                self.fail(f"{text!r} names no device: write {kind}:<{what}> ({where})", param, ctx)
            if any(c.isspace() for c in ident) or ident.startswith("-"):
                self.fail(f"{text!r}: {ident!r} is not a usable {what} ({where})", param, ctx)
            return Device(kind, ident)
        kinds = device_kinds()
        use = f"{', '.join(kinds[:-1])} or {kinds[-1]}"
        self.fail(f"{text!r} is not a device: use {use}", param, ctx)


def _run_cuda(request: RunRequest) -> DeviceRun:
    if request.artifact is not None:
        raise ProjectError("--device cuda converts its own artifact; --artifact is host-only")
    records, summary = gpu.run_cuda(
        target=request.target,
        variant=request.variant,
        precision=request.precision,
        form=request.form,
        warmup=request.warmup,
        iters=request.iters,
        weights=request.weights,
    )
    return DeviceRun(tuple(records), summary)


def run_on_device(device: Device, request: RunRequest, results: Path, options: PhoneOptions) -> str:
    """Time on ``device`` (not the host); append its records to ``results`` only once the
    whole run has succeeded; return the line to print."""
    phone = PHONES.get(device.kind)
    taken = phone.options if phone is not None else ()
    for flag in options.given():
        if flag not in taken:
            takers = [row.usage for row in PHONES.values() if flag in row.options]
            raise ProjectError(f"{flag} is for --device {' or '.join(takers)}, not {device}")
    if phone is None:
        if device.kind != "cuda":
            raise ProjectError(f"--device {device} is timed by device_bench run itself")
        done = _run_cuda(request)
    else:
        phone.find_tool()  # refused here before any conversion
        path, manifest = artifact_for_phone(device, request)
        done = phone.run(device, path, manifest, request, options)
    append_records(results, list(done.records))
    return f"{done.summary}; appended to {results}"
