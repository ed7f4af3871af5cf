"""Converted artifacts on real ARM64 kernels, under QEMU user-mode emulation.

A phone runs LiteRT and onnxruntime's aarch64 builds: NEON, dot-product and FP16 kernels
that an x86 host never executes. ``make arm64`` builds a small Debian arm64 sysroot (its
python3.11, the aarch64 wheels of numpy, ai_edge_litert and onnxruntime), and the
``litert-arm64`` / ``onnxruntime-arm64`` runtimes (``runtimes.backends.arm64``) run one
worker process per opened artifact in it (``worker.py``), under ``qemu-aarch64-static``.

No binfmt registration is needed: qemu is called directly, with ``-L`` pointing at the
sysroot so that the arm64 loader, libraries and ``/proc/cpuinfo`` are read from there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

SYSROOT_ENV = "BAS_ARM64_SYSROOT"
QEMU = "qemu-aarch64-static"
# QEMU's own "max" CPU, SME off: with SME on, XNNPACK's int8 kernels return garbage.
QEMU_CPU = "max,sme=off"
PLATFORM = f"linux-aarch64 (QEMU user-mode, -cpu {QEMU_CPU})"
PYTHON = "usr/bin/python3.11"
SITE = "opt/bas-arm64/site-packages"  # the aarch64 wheels, inside the sysroot
STAMP = ".bas-arm64-ready"  # written last by ``runtimes.arm64.sysroot``
WORKER = Path(__file__).with_name("worker.py")
REQUIREMENTS = Path(__file__).with_name("requirements.txt")


def sysroot() -> Path:
    """Where the sysroot lives: ``$BAS_ARM64_SYSROOT``, else ``<repo>/.arm64``."""
    configured = os.environ.get(SYSROOT_ENV)
    if configured:
        return Path(configured).absolute()
    return Path(__file__).resolve().parents[2] / ".arm64"


def qemu() -> str | None:
    """The qemu-aarch64-static binary on PATH, if any."""
    return shutil.which(QEMU)


def is_ready(root: Path | None = None) -> bool:
    """Whether the sysroot was built completely (its stamp is written last)."""
    root = sysroot() if root is None else root
    return (root / STAMP).is_file() and (root / PYTHON).is_file()


def python_command(args: list[str], root: Path | None = None) -> list[str]:
    """The command line running the sysroot's python3.11 with ``args`` under QEMU."""
    root = sysroot() if root is None else root
    binary = qemu() or QEMU
    return [binary, "-cpu", QEMU_CPU, "-L", str(root), str(root / PYTHON), *args]


def python_environment(root: Path | None = None) -> dict[str, str]:
    """A clean environment for it: the sysroot's stdlib and wheels, nothing of the host's."""
    root = sysroot() if root is None else root
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONHOME": str(root / "usr"),
        "PYTHONPATH": str(root / SITE),
        "PYTHONNOUSERSITE": "1",
        "PYTHONUNBUFFERED": "1",
    }


def worker_command(args: list[str], root: Path | None = None) -> list[str]:
    """The command line of the ARM-side worker (``worker.py``) with ``args``."""
    return python_command([str(WORKER), *args], root)
