"""Build the arm64 sysroot the ``*-arm64`` runtimes run in (``make arm64``).

    python -m runtimes.arm64.sysroot [--out DIR]

Debian's own arm64 python3.11 and the libraries it and the wheels load (``PACKAGES``,
downloaded with apt and unpacked with ``dpkg -x``: nothing is installed for arm64), the
pinned aarch64 wheels of ``requirements.txt`` (host pip, ``--target``), and an ARM
``/proc/cpuinfo``. Installs ``qemu-user-static`` and adds the arm64 architecture to apt
where they are missing (root). The result is smoke-tested under QEMU, then moved into
place; a sysroot already built from the same recipe is kept.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import click

from model.atomic import check_output_folder, staged_folder
from model.errors import ProjectError
from model.options import command

from . import (
    PYTHON,
    QEMU,
    REQUIREMENTS,
    SITE,
    STAMP,
    is_ready,
    python_command,
    python_environment,
    qemu,
    sysroot,
)

# python3.11 and what it, numpy, ai_edge_litert and onnxruntime load (their Depends,
# resolved once for Debian 12 and checked by the smoke test).
PACKAGES = (
    "libc6",
    "libgcc-s1",
    "libstdc++6",
    "libgomp1",
    "zlib1g",
    "libbz2-1.0",
    "liblzma5",
    "libzstd1",
    "libexpat1",
    "libffi8",
    "libssl3",
    "libcrypt1",
    "libuuid1",
    "libsqlite3-0",
    "libncursesw6",
    "libtinfo6",
    "libreadline8",
    "libdb5.3",
    "libnsl2",
    "libtirpc3",
    "libgssapi-krb5-2",
    "libkrb5-3",
    "libk5crypto3",
    "libkrb5support0",
    "libcom-err2",
    "libkeyutils1",
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
)

# QEMU's "max" CPU as it is (implementer 0x00, part 0x051), not a real core's identity:
# cpuinfo turns on dot-product and FP16 kernels from a list of known cores, which would
# crash (SIGILL) under a CPU model lacking them. QEMU passes the host's x86 /proc/cpuinfo
# through otherwise, and LiteRT's cpuinfo crashes on it; ``-L`` redirects the read here.
CPU_FEATURES = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt "
    "fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs "
    "sb paca pacg dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm "
    "svebf16 i8mm bf16 dgh rng bti mte"
)

# pip takes the platforms literally (no older manylinux implied); Debian 12's glibc is 2.36.
WHEEL_PLATFORMS = (
    "manylinux_2_28_aarch64",
    "manylinux_2_27_aarch64",
    "manylinux_2_17_aarch64",
    "manylinux2014_aarch64",
)

SMOKE_TEST = (
    "import platform, numpy, ai_edge_litert.interpreter, onnxruntime; "
    "print(platform.machine(), numpy.__version__, onnxruntime.__version__)"
)


def recipe() -> str:
    """What the sysroot is built from; a sysroot stamped with another recipe is rebuilt."""
    digest = hashlib.sha256("\n".join(PACKAGES).encode())
    digest.update(CPU_FEATURES.encode())
    digest.update(REQUIREMENTS.read_bytes())
    return digest.hexdigest()


def _run(args: list[str], what: str, **kwargs) -> str:
    """Run a command; its stdout, or ProjectError naming ``what`` and its last error line."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, **kwargs)
    except OSError as err:
        raise ProjectError(f"{what}: cannot run {args[0]}: {err.strerror}") from err
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit status {done.returncode}"
        raise ProjectError(f"{what} failed: {last}")
    return done.stdout


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise ProjectError(f"{what} needs root (run make arm64 as root once)")


def prepare_apt() -> None:
    """qemu-user-static installed and arm64 package lists fetched."""
    if qemu() is None:
        _need_root(f"installing qemu-user-static ({QEMU} is not on PATH)")
        _run(["apt-get", "update", "-qq"], "apt-get update")
        _run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "qemu-user-static"],
            "apt-get install qemu-user-static",
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    foreign = _run(["dpkg", "--print-foreign-architectures"], "dpkg").split()
    if "arm64" not in foreign:
        _need_root("adding the arm64 architecture to apt")
        _run(["dpkg", "--add-architecture", "arm64"], "dpkg --add-architecture arm64")
    if os.geteuid() == 0:
        _run(["apt-get", "update", "-qq"], "apt-get update (arm64 lists)")


def cpuinfo(processors: int) -> str:
    entry = (
        "processor\t: {n}\nBogoMIPS\t: 2000.00\nFeatures\t: {features}\n"
        "CPU implementer\t: 0x00\nCPU architecture: 8\nCPU variant\t: 0x0\n"
        "CPU part\t: 0x051\nCPU revision\t: 0\n\n"
    )
    return "".join(entry.format(n=n, features=CPU_FEATURES) for n in range(processors))


def build(root: Path) -> None:
    """Fill the empty folder ``root`` with the sysroot, smoke-tested, stamped last."""
    debs = root / ".debs"
    debs.mkdir()
    os.chmod(debs, 0o755)  # apt's download sandbox user must write here
    _run(
        ["apt-get", "download", "-qq", *(f"{name}:arm64" for name in PACKAGES)],
        "apt-get download (arm64 packages)",
        cwd=debs,
    )
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg", "-x", str(deb), str(root)], f"dpkg -x {deb.name}")
        deb.unlink()
    debs.rmdir()
    if not (root / PYTHON).is_file():
        raise ProjectError(f"the arm64 packages hold no {PYTHON}")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
            str(root / SITE),
            *(f"--platform={tag}" for tag in WHEEL_PLATFORMS),
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--no-deps",
            "-r",
            str(REQUIREMENTS),
        ],
        "pip install (aarch64 wheels)",
    )
    (root / "proc").mkdir()
    (root / "proc" / "cpuinfo").write_text(cpuinfo(os.cpu_count() or 1))
    reply = _run(
        python_command(["-c", SMOKE_TEST], root),
        "smoke test (python3.11 under QEMU importing numpy, ai_edge_litert, onnxruntime)",
        env=python_environment(root),
        timeout=600,
    )
    if not reply.startswith("aarch64 "):
        raise ProjectError(f"smoke test: expected an aarch64 python, got {reply.strip()!r}")
    (root / STAMP).write_text(recipe() + "\n")


def ensure(out: Path) -> bool:
    """Build the sysroot at ``out`` unless one of the same recipe is there; True if built."""
    stamp = out / STAMP
    if is_ready(out) and stamp.read_text().strip() == recipe() and qemu() is not None:
        stamp.touch()  # up to date: newer than its inputs, for make
        return False
    check_output_folder(out)  # before apt: a folder not ours is refused, untouched
    prepare_apt()
    with staged_folder(out) as staging:
        build(staging)
    return True


@command("python -m runtimes.arm64.sysroot")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Sysroot folder [default: $BAS_ARM64_SYSROOT, else .arm64 in the repository].",
)
def main(out: Path | None) -> None:
    """Build the arm64 sysroot the litert-arm64 and onnxruntime-arm64 runtimes run in."""
    out = sysroot() if out is None else out
    started = time.perf_counter()
    if ensure(out):
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and not p.is_symlink())
        seconds = time.perf_counter() - started
        print(f"built {out} ({size / 1e6:.0f} MB) in {seconds:.0f} s", file=sys.stderr)
    else:
        print(f"{out} is up to date", file=sys.stderr)


if __name__ == "__main__":
    main()
