"""``python -m model.evaluate`` one layer up: the same command, and ``--artifact`` scores a
converted artifact through its runtime (variant, form and window from its manifest).

    python -m runtimes.evaluate --artifact artifacts/bas_s_stream_240_fp32.onnx --data DIR

The options, the scoring and the tables are ``model.evaluate``'s; only opening the
artifact needs ``runtimes``.
"""

from __future__ import annotations

from typing import Any

from model.evaluate import (
    EvaluationRequest,
    Scored,
    evaluation_options,
    pytorch_network,
    run_evaluation,
)
from model.masks import MaskStream
from model.options import command

from .loader import load


def artifact_network(request: EvaluationRequest) -> tuple[MaskStream, Scored]:
    """The artifact's session (a ``model.masks.MaskStream``), named by its manifest;
    PyTorch BaS where no ``--artifact`` is given."""
    if request.artifact is None:
        return pytorch_network(request)
    session = load(request.artifact)
    manifest = session.manifest
    scored = Scored(
        manifest.variant,
        str(request.artifact),
        session.runtime,
        manifest.temporal_window,
        manifest.form == "stream",
        manifest.weights.sha256,
    )
    return session, scored


@command("python -m runtimes.evaluate")
@evaluation_options
def main(**options: Any) -> None:
    """Score BaS, or a converted artifact through its runtime, on a dataset at native
    resolution, streaming each video frame by frame."""
    run_evaluation(artifact_network, EvaluationRequest(**options))


if __name__ == "__main__":
    main()
