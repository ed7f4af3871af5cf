"""glibc's allocator, told to keep what a training step frees for the next step.

By default glibc maps every block over 32 MB straight from the kernel and unmaps it on
free, and gives the heap's top back; a CPU training step allocates and frees gigabytes
of activations, so each step page-faulted all of it in again: at 8 clips of BaS-S, half
a step's time was the kernel's (``python -m model.train_bench`` times it). Other C
libraries (musl, macOS) keep their behaviour.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_MAX = -4
_DEFAULT_MMAP_MAX = 65536
_DEFAULT_TRIM_THRESHOLD = 128 * 1024


def _mallopt() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library of that kind, or one without mallopt
        return None


def keep_freed_memory(keep: bool = True) -> bool:
    """Keep freed memory in the process (``keep``), or go back to glibc's defaults.

    Returns whether glibc took the setting. Peak memory is unchanged; what is freed is
    not returned to the system until the process ends.
    """
    mallopt = _mallopt()
    if mallopt is None:
        return False
    mmap_max, trim = (0, 2**31 - 1) if keep else (_DEFAULT_MMAP_MAX, _DEFAULT_TRIM_THRESHOLD)
    return bool(mallopt(_M_MMAP_MAX, mmap_max)) and bool(mallopt(_M_TRIM_THRESHOLD, trim))
