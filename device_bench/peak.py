"""The machine's fp32 peak, so every figure shows its distance to the physical limit.

peak = cores used x fp32 FMA lanes per cycle x 2 (multiply and add) x clock.

The lanes come from the CPU's flags; the clock from the kernel, raised to what a one-core
sgemm proves: a VM's /proc/cpuinfo reports the nominal clock, and turbo runs above it, so the
reported clock alone would put achieved figures above "peak".
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from model.host import cores_available, cpu_clock_ghz, cpu_flags
from runtimes.timing import time_calls

# fp32 FMA lanes issued per core and cycle: 2 x 256-bit FMA pipes on AVX2 cores (Zen 2-4,
# Skylake client); AVX-512 cores give the same 16 (Zen 4 splits 512-bit ops in two; Xeons with
# two 512-bit pipes reach 32, so this is a lower bound there); NEON cores: 2 x 128-bit pipes.
LANES_BY_FLAG = (("avx512f", 16), ("avx2", 16), ("fma", 16), ("avx", 8), ("sse2", 4))
NEON_LANES = 8
SGEMM_SIZE = 512


@dataclass(frozen=True)
class Peak:
    isa: str  # the widest vector flag found
    fp32_lanes: int  # FMA lanes per core per cycle
    reported_ghz: float  # the kernel's clock
    sgemm_ghz: float  # the clock a one-core sgemm needs at full FMA use (a lower bound)

    @classmethod
    def of(cls, host: Mapping[str, Any]) -> Peak | None:
        """The peak recorded in a record's machine, if it has one."""
        try:
            return cls(**{f.name: host[f.name] for f in fields(cls)})
        except KeyError:
            return None

    @property
    def clock_ghz(self) -> float:
        return max(self.reported_ghz, self.sgemm_ghz)

    def gflops(self, cores: int) -> float:
        return cores * self.fp32_lanes * 2 * self.clock_ghz

    def formula(self, cores: int) -> str:
        return (
            f"{cores} cores x {self.fp32_lanes} fp32 FMA lanes ({self.isa}) x 2 x "
            f"{self.clock_ghz:.2f} GHz = {self.gflops(cores):.0f} GFLOP/s"
        )


def _sgemm_gflops() -> float:
    """Best of a few one-thread 512 x 512 sgemms: close to one core's real peak."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = torch.randn(SGEMM_SIZE, SGEMM_SIZE)
        b = torch.randn(SGEMM_SIZE, SGEMM_SIZE)
        best = min(time_calls(lambda _: torch.mm(a, b), 12)) / 1000
    finally:
        torch.set_num_threads(previous)
    return 2 * SGEMM_SIZE**3 / best / 1e9


def measure_peak() -> Peak:
    """This machine's per-core peak: flags, the kernel's clock, and a one-core sgemm."""
    flags, reported = cpu_flags(), cpu_clock_ghz()
    isa, lanes = next(((f, n) for f, n in LANES_BY_FLAG if f in flags), ("scalar", 1))
    arm = flags & {"asimd", "neon"} or platform.machine() in ("arm64", "aarch64")
    if isa == "scalar" and arm:
        isa, lanes = "neon", NEON_LANES
    return Peak(isa, lanes, round(reported, 3), round(_sgemm_gflops() / (lanes * 2), 3))


def cores_used(threads: int | None, cores: int) -> int:
    """The cores a run could use: its threads, capped by the cores it may run on."""
    available = cores or cores_available()
    return max(1, min(threads or available, available))
