"""This host's CPU, read once: its model, its vector flags, its clock, the cores we may use.

Benchmarks record these beside every figure (device_bench), parity records the CPU a host
runtime ran on (XNNPACK picks its kernels by it), and every results file names the machine
that made it (``model.provenance``).
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")  # Linux (and Android); absent on macOS and Windows


@functools.cache
def _cpuinfo() -> tuple[tuple[str, str], ...]:
    """(key, value) of every line of /proc/cpuinfo; empty where there is none."""
    if not CPUINFO.is_file():
        return ()
    pairs = []
    for line in CPUINFO.read_text(errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what ``platform`` knows of it."""
    found = next((value for key, value in _cpuinfo() if key == "model name"), None)
    return found or platform.processor() or platform.machine()


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (x86 ``flags``, Arm ``Features``); empty where unknown."""
    return frozenset(
        flag for key, value in _cpuinfo() if key in ("flags", "Features") for flag in value.split()
    )


def cpu_clock_ghz() -> float:
    """The highest clock the kernel reports for a core, in GHz; 0.0 where unknown."""
    return max((float(v) for k, v in _cpuinfo() if k == "cpu MHz"), default=0.0) / 1000


def cores_available() -> int:
    """The cores this process may run on: its affinity where the OS has one (Linux), else
    the machine's count (macOS and Windows have no ``sched_getaffinity``)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    count = getattr(os, "process_cpu_count", os.cpu_count)()  # process_cpu_count: 3.13
    return count or 1


@functools.cache
def native_bf16() -> bool:
    """Whether PyTorch's CPU kernels compute bf16 here (AVX-512 on x86, BF16 on Arm), as
    oneDNN decides. Without it, bf16 autocast falls back to reference kernels: on a 2-core
    AVX2 EPYC a stage-3 training step took 9.8 x as long as in fp32."""
    import torch  # the rest of this module serves processes that never load torch

    mkldnn = torch.backends.mkldnn
    return bool(mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
