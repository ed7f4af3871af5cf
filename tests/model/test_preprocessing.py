"""One preprocessing (model.preprocessing): training, evaluation and every runtime apply it,
and the manifest records it as data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import runtimes
from model.config import get_config
from model.data import ClipDataset, discover
from model.data.layouts import read_frame
from model.data.synth import render_video
from model.hub import build_bas
from model.masks import BaSMasks
from model.preprocessing import Preprocessing
from runtimes import ArtifactModel, Session
from runtimes.backends.pytorch import pytorch_manifest
from runtimes.session import to_input


def test_the_shipped_contract_is_rgb_in_unit_range_resized_bilinearly() -> None:
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(image).resize((16, 16), Image.Resampling.BILINEAR))
    x = get_config("S").preprocessing.to_input(image, 16)
    assert x.shape == (1, 3, 16, 16) and x.dtype == np.float32
    assert np.array_equal(x[0], expected.transpose(2, 0, 1).astype(np.float32) / 255.0)
    assert np.array_equal(to_input(image, 16), x)


def test_range_mean_and_std_apply_alike_to_arrays_and_tensors() -> None:
    custom = Preprocessing(range=(-1.0, 1.0), mean=(0.5, 0.0, 0.0), std=(2.0, 1.0, 1.0))
    unit = np.array([0.0, 0.5, 1.0], np.float32).reshape(1, 1, 3).repeat(3, 0)[None]
    values = custom.normalize(unit)
    assert np.allclose(values[0, 0, 0], [-0.75, -0.25, 0.25])  # ((2 x - 1) - 0.5) / 2
    assert np.allclose(values[0, 1, 0], [-1.0, 0.0, 1.0])
    assert np.allclose(custom.normalize(torch.from_numpy(unit)).numpy(), values)


def test_training_clips_are_what_the_runtime_feeds(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for t, (image, mask) in enumerate(render_video(1, 0, 3)):
        (root / "images" / "v").mkdir(parents=True, exist_ok=True)
        (root / "labels" / "v").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "images" / "v" / f"{t}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "labels" / "v" / f"{t}.png")
    index = discover(root)
    item = ClipDataset(index, ["v"], clip_length=3, image_size=32)[0]
    for t, frame in enumerate(index.video("v").frames):
        fed = to_input(read_frame(frame)[0], 32)[0]
        assert np.array_equal(item["images"][t].numpy(), fed)


def test_the_manifest_records_the_networks_preprocessing_and_the_session_applies_it() -> None:
    model = build_bas("S", 32)
    manifest = pytorch_manifest(model=model, form="frame")
    assert manifest.preprocessing == model.config.preprocessing
    custom = replace(manifest, preprocessing=Preprocessing(range=(-1.0, 1.0)))
    echo = ArtifactModel(lambda arrays: [arrays[0][:, :1]], custom, "pytorch")  # logits = red
    session = Session(echo)
    image = np.full((8, 8, 3), 255, np.uint8)
    assert session.run(image).logits == pytest.approx(np.ones((8, 8)))


@pytest.mark.parametrize("form", ["stream", "frame"])
def test_pytorch_masks_in_model_match_a_runtime_session(form: str) -> None:
    torch.manual_seed(0)
    model = build_bas("S", 32)
    frames = [image for image, _ in render_video(1, 0, 4)]
    session = runtimes.from_model(model, form)
    expected = list(runtimes.stream_masks(session, frames))
    got = list(BaSMasks(model, form).masks(frames))
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))
