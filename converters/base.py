"""The one interface every target implements: available?, versions, convert, name its I/O.

Targets only write artifacts; running one is ``runtimes``' business (each target names the
runtime plug-in that opens its files).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from runtimes.backend import RawTensor
from runtimes.manifest import GraphSummary
from runtimes.targets import get_target_spec

from .spec import ConvertRequest


@dataclass(frozen=True)
class ConversionJob:
    """Everything a target needs to write one artifact at ``artifact``."""

    request: ConvertRequest
    module: nn.Module  # the form's export wrapper, in eval mode
    example_inputs: tuple[torch.Tensor, ...]
    artifact: Path
    # form inputs in video order, quantized precisions only; ``contrast`` scales each
    # frame about its mean (1.0: the frames as they are)
    calibration: Callable[..., Iterator[tuple[torch.Tensor, ...]]]


class Target(ABC):
    """A converter plug-in; its ``name`` is a row of ``runtimes.targets.TARGETS``, which gives
    its suffix, precisions and runtime."""

    name: ClassVar[str]
    suffix: ClassVar[str]  # from the table
    precisions: ClassVar[tuple[str, ...]]  # from the table
    runtime: ClassVar[str]  # from the table: the runtimes plug-in that opens its artifacts
    modules: ClassVar[tuple[str, ...]]  # importable modules the target needs
    distributions: ClassVar[tuple[str, ...]]  # packages whose versions go into the manifest
    calibrates: ClassVar[bool] = True  # whether int8 calibrates on frames (Core ML's: weights only)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        spec = get_target_spec(cls.name)
        cls.suffix, cls.precisions, cls.runtime = spec.suffix, spec.precisions, spec.runtime

    @classmethod
    def is_available(cls) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in cls.modules)

    @classmethod
    def versions(cls) -> dict[str, str]:
        found = {}
        for dist in ("torch", *cls.distributions):
            try:
                found[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                found[dist] = "missing"
        return found

    @abstractmethod
    def convert(self, job: ConversionJob) -> dict[str, Any]:
        """Write the artifact at ``job.artifact``; return the options it used (for the manifest)."""

    def canonical_names(
        self, inputs: list[RawTensor], outputs: list[RawTensor], job: ConversionJob, options: dict
    ) -> tuple[list[str], list[str]]:
        """Which BaS tensor each of the file's inputs and outputs carries (default: same names)."""
        return [t.name for t in inputs], [t.name for t in outputs]

    def file_layout(self, canonical: str, job: ConversionJob) -> tuple[int, ...] | None:
        """The permutation of canonical tensor ``canonical`` that the target chose to write, if
        it chose one (else it is read from the file's shapes: as is, or channels-last)."""
        return None

    def graph_summary(self, job: ConversionJob, options: dict) -> GraphSummary | None:
        """Op counts of the written artifact (float compute, quantise / dequantise), if known."""
        return None

    def accumulation(self, job: ConversionJob, options: dict) -> str:
        """The arithmetic the written file asks its runtime for (Manifest.accumulation): "fp32",
        or "fp16" where it allows FP16 inference, so that parity measures what phones compute."""
        return "fp32"
