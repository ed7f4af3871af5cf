"""BaS: real-time breast-lesion segmentation for ultrasound video (Pang et al., JBHI 2025)."""

from .bas import BaS
from .checkpoint import CheckpointError
from .config import VARIANTS, BaSConfig, get_config
from .hub import build_bas
from .legacy import load_public_checkpoint

__all__ = [
    "VARIANTS",
    "BaS",
    "BaSConfig",
    "CheckpointError",
    "build_bas",
    "get_config",
    "load_public_checkpoint",
]
