"""``python -m model.evaluate`` one layer up: the same command, and ``--artifact`` scores a
converted artifact through its runtime (variant, form and window from its manifest).

    python -m runtimes.evaluate --artifact artifacts/bas_s_stream_240_fp32.onnx --data DIR

The options, the scoring and the tables are ``model.evaluate``'s; only opening the
artifact needs ``runtimes``.
"""

from __future__ import annotations

from pathlib import Path

from model.cli import command
from model.evaluate import Scored, evaluation_options, pytorch_network, run_evaluation
from model.masks import MaskStream

from .loader import load


def artifact_network(artifact: Path) -> tuple[MaskStream, Scored]:
    """The artifact's session (a ``model.masks.MaskStream``), named by its manifest."""
    session = load(artifact)
    manifest = session.manifest
    scored = Scored(
        manifest.variant,
        str(artifact),
        session.runtime,
        manifest.temporal_window,
        manifest.form == "stream",
    )
    return session, scored


@command("python -m runtimes.evaluate")
@evaluation_options
def main(
    variant: str,
    weights: str,
    data: Path,
    image_size: int,
    temporal_window: int,
    no_history: bool,
    screen_names: tuple[str, ...],
    lost_contact_every: int | None,
    split: Path | None,
    subset: str | None,
    artifact: Path | None,
) -> None:
    """Score BaS, or a converted artifact through its runtime, on a dataset at native
    resolution, streaming each video frame by frame."""

    def open_network() -> tuple[MaskStream, Scored]:
        if artifact is not None:
            return artifact_network(artifact)
        return pytorch_network(variant, weights, image_size, temporal_window, no_history)

    run_evaluation(open_network, data, screen_names, lost_contact_every, split, subset)


if __name__ == "__main__":
    main()
