"""Run any converted BaS (or PyTorch BaS itself) on frames as they come.

    session = runtimes.load("artifacts/bas_s_stream_240_fp32.tflite", threads=2)
    for frame in video:                      # uint8 gray, RGB or RGBA, any size
        prediction = session.run(frame)      # .probability, .mask(), at the frame's size
    session.reset()                          # before the next video

The manifest beside the artifact says what the file takes and returns; its sha256 is
checked before anything is loaded. One plug-in per runtime (``runtimes.registry``).
"""

from .loader import from_model, load, load_pytorch, open_model
from .manifest import ArtifactError, Manifest, read_manifest
from .registry import RUNTIME_NAMES, get_backend, runtimes_for
from .session import ArtifactModel, Prediction, Session, stream_masks

__all__ = [
    "RUNTIME_NAMES",
    "ArtifactError",
    "ArtifactModel",
    "Manifest",
    "Prediction",
    "Session",
    "from_model",
    "get_backend",
    "load",
    "load_pytorch",
    "open_model",
    "read_manifest",
    "runtimes_for",
    "stream_masks",
]
