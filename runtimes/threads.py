"""ATen's thread count around short ATen calls that sit between another runtime's calls."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def aten_single_threaded() -> Iterator[None]:
    """ATen on one thread inside the block, PyTorch's own setting restored after.

    ATen parallelises even a small copy or resize over its OpenMP threads, which then
    spin-wait on the cores that LiteRT's or ExecuTorch's thread pool computes on next:
    measured in ExecuTorch's Python bindings (BaS-S frame, two threads: 18.6 ms and 32.7
    ms of CPU per call, 11.8 ms without) and in segment's post-processing.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
