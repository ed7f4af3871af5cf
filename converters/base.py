"""The one interface every target implements: available?, versions, convert, load."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from .spec import ConvertRequest

# A converted artifact, run: canonical-named NCHW float32 arrays in and out.
Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class ConversionJob:
    """Everything a target needs to write one artifact at ``artifact``."""

    request: ConvertRequest
    module: nn.Module  # the form's export wrapper, in eval mode
    example_inputs: tuple[torch.Tensor, ...]
    artifact: Path
    calibration: Callable[[], Iterator[tuple[torch.Tensor, ...]]]  # form inputs, int8 only


class Target(ABC):
    name: ClassVar[str]
    suffix: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]]
    modules: ClassVar[tuple[str, ...]]  # importable modules the target needs
    distributions: ClassVar[tuple[str, ...]]  # packages whose versions go into the manifest
    layout: ClassVar[str] = "NCHW"

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

    @abstractmethod
    def load(self, artifact: Path, manifest: dict[str, Any]) -> Runner:
        """A callable that runs the artifact the way a device would."""
