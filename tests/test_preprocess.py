"""Our device preprocessing against transformers' own image processor (the reference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import VideoMAEImageProcessor
from transformers.image_processing_utils import ImageProcessingMixin

from stream.model import Preprocessing, Recognizer
from stream.model.preprocess import resize_frame


def natural_frames(height: int, width: int, count: int = 8, seed: int = 0) -> list[np.ndarray]:
    """Frames with gradients, edges, a moving object and sensor-like noise (not pure noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for t in range(count):
        r = 128 + 60 * np.sin(xx / (width / 9) + t * 0.4) + 40 * np.cos(yy / (height / 7))
        g = 255 * xx / max(width - 1, 1)
        b = 255 * yy / max(height - 1, 1)
        img = np.stack([r, g, b], -1)
        y0, x0 = int(height * (0.2 + 0.05 * t)), int(width * (0.1 + 0.08 * t))
        img[y0 : y0 + height // 5, x0 : x0 + width // 6] = [240, 30, 40]
        img += rng.normal(0, 6, img.shape)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


@pytest.fixture(scope="module")
def k400_style_dir(tmp_path_factory) -> str:
    """A preprocessor config with the real checkpoint's values, saved the way the hub stores it."""
    path = tmp_path_factory.mktemp("k400-preproc")
    VideoMAEImageProcessor(
        size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}, image_mean=[0.45] * 3, image_std=[0.225] * 3
    ).save_pretrained(path)
    return str(path)


def ours(preprocessing: Preprocessing, frames: list[np.ndarray]) -> torch.Tensor:
    """What the live path does: resize once at ingest, then crop and normalize on the device."""
    h, w = frames[0].shape[:2]
    small = [resize_frame(f, preprocessing.resized_hw(h, w)) for f in frames]
    return preprocessing(torch.from_numpy(np.stack(small))[None])


@pytest.mark.parametrize("height,width", [(720, 1280), (480, 640), (640, 480), (224, 224)])
def test_matches_reference_processor(k400_style_dir, height, width):
    """Ingest resize + device preprocessing equal VideoMAEImageProcessor within 0.01 mean / 0.1 max."""
    config, _ = ImageProcessingMixin.get_image_processor_dict(k400_style_dir)
    pre = Preprocessing.from_processor_dict(config)
    reference = VideoMAEImageProcessor.from_pretrained(k400_style_dir)
    frames = natural_frames(height, width)
    ref = reference(frames, return_tensors="pt")["pixel_values"]
    got = ours(pre, frames)
    assert got.shape == ref.shape == (1, 8, 3, 224, 224)
    diff = (got - ref).abs()
    assert diff.mean().item() <= 0.01, diff.mean().item()
    assert diff.max().item() <= 0.1, diff.max().item()


def test_device_resize_matches_ingest_resize(k400_style_dir):
    """Full-size frames resized on the device give the same tensor as frames resized at ingest."""
    config, _ = ImageProcessingMixin.get_image_processor_dict(k400_style_dir)
    pre = Preprocessing.from_processor_dict(config)
    frames = natural_frames(480, 640)
    full = pre(torch.from_numpy(np.stack(frames))[None])
    assert torch.allclose(full, ours(pre, frames), atol=1e-6)


def test_resized_size_truncates_like_transformers(k400_style_dir):
    """640x480 with a 224 short side becomes 298x224 (transformers truncates), portrait too."""
    config, _ = ImageProcessingMixin.get_image_processor_dict(k400_style_dir)
    pre = Preprocessing.from_processor_dict(config)
    assert pre.resized_hw(480, 640) == (224, 298)
    assert pre.resized_hw(640, 480) == (298, 224)
    assert pre.resized_hw(720, 1280) == (224, 398)


def test_values_come_from_the_checkpoint(tmp_path):
    """Mean, std, sizes and rescale are read from preprocessor_config.json, not constants."""
    VideoMAEImageProcessor(
        size={"shortest_edge": 40}, crop_size={"height": 30, "width": 20}, image_mean=[0.1, 0.2, 0.3], image_std=[0.5, 0.6, 0.7]
    ).save_pretrained(tmp_path)
    config, _ = ImageProcessingMixin.get_image_processor_dict(str(tmp_path))
    pre = Preprocessing.from_processor_dict(config)
    assert (pre.shortest_edge, pre.crop_hw, pre.mean, pre.std) == (40, (30, 20), (0.1, 0.2, 0.3), (0.5, 0.6, 0.7))
    out = pre(torch.full((1, 2, 50, 60, 3), 255, dtype=torch.uint8))
    assert out.shape == (1, 2, 3, 30, 20)
    expected = torch.tensor([(1 - 0.1) / 0.5, (1 - 0.2) / 0.6, (1 - 0.3) / 0.7])
    assert torch.allclose(out[0, 0, :, 0, 0], expected, atol=1e-5)


@pytest.mark.parametrize("height,width", [(720, 1280), (480, 640), (640, 480), (224, 224)])
def test_same_top_k_as_reference_on_tiny_model(tiny_model_dir, height, width):
    """The tiny model gives the same top-5 on our tensor as on the reference processor's."""
    rec = Recognizer.load(tiny_model_dir, device="cpu", dtype="float32")
    reference = VideoMAEImageProcessor.from_pretrained(tiny_model_dir)
    frames = natural_frames(height, width, seed=3)
    ref = reference(frames, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        ref_probs = torch.softmax(rec.model(pixel_values=ref).logits, -1)[0].numpy()
    ingest = np.stack([resize_frame(f, rec.ingest_hw(height, width)) for f in frames])
    got = rec.probs(ingest)[0]
    assert [label for label, _ in rec.top_k(got, 5)] == [label for label, _ in rec.top_k(ref_probs, 5)]
