"""The one interface every runtime plug-in implements: available?, inspect a file, open it."""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from .manifest import Manifest, Quantization
from .targets import target_of_runtime

# An opened artifact: the file's own tensors in, in manifest order; its outputs, in manifest
# order. Layout, dtype and quantisation are the caller's business (runtimes.adapter).
RawRunner = Callable[[list[np.ndarray]], list[np.ndarray]]


@dataclass(frozen=True)
class RawTensor:
    """An input or output as the runtime reports it, before any mapping to BaS's names."""

    name: str
    index: int
    shape: tuple[int, ...]
    dtype: str
    quantization: Quantization | None = None


class Backend(ABC):
    """A runtime plug-in; its ``name`` is in one row of ``runtimes.targets.TARGETS``, which
    gives the target whose files it opens."""

    name: ClassVar[str]
    target: ClassVar[str]  # from the table: the artifact kind it runs (manifest.target)
    modules: ClassVar[tuple[str, ...]]  # what must be importable to run
    needs: ClassVar[str] = ""  # why it may be unavailable, for the error

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:  # a plug-in, not a shared base (Arm64Backend)
            cls.target = target_of_runtime(cls.name)

    @classmethod
    def is_available(cls) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in cls.modules)

    @classmethod
    def unavailable_reason(cls) -> str:
        return cls.needs or f"needs {', '.join(cls.modules)} importable"

    @abstractmethod
    def inspect(self, artifact: Path) -> tuple[list[RawTensor], list[RawTensor]]:
        """The file's inputs and outputs, as this runtime reads them."""

    @abstractmethod
    def open(self, artifact: Path, manifest: Manifest, threads: int | None) -> RawRunner:
        """Load the file for inference, ``threads`` intra-op threads (None: the runtime's)."""
