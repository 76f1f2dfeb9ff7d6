"""The recognizer: loading through the real code, tensor layout, labels, input checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stream.model import ModelUnavailableError, Recognizer
from tests.support.models import TINY_LABELS


@pytest.fixture(scope="module")
def rec(tiny_model_dir) -> Recognizer:
    return Recognizer.load(tiny_model_dir, device="cpu", dtype="float32", attention="eager")


def moving_clip(frames: int = 8, size: int = 36, seed: int = 1) -> np.ndarray:
    """A clip whose frames differ: a bright square moving over a random background."""
    rng = np.random.default_rng(seed)
    clip = rng.integers(0, 255, (frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        clip[t, 4 : 14, 3 * t : 3 * t + 10] = 255
    return clip


def test_labels_come_from_id2label(rec, tiny_model_dir):
    """Labels are the checkpoint's own id2label, in id order, even when edited on disk."""
    assert rec.labels == tuple(TINY_LABELS)
    cfg_path = f"{tiny_model_dir}/config.json"
    cfg = json.loads(open(cfg_path).read())
    renamed = dict(cfg, id2label={str(i): f"renamed_{i}" for i in range(len(TINY_LABELS))})
    other = tiny_model_dir + "-renamed"
    import shutil

    shutil.copytree(tiny_model_dir, other, dirs_exist_ok=True)
    with open(f"{other}/config.json", "w") as f:
        json.dump(renamed, f)
    assert Recognizer.load(other, device="cpu").labels[3] == "renamed_3"


def test_pixel_values_are_batch_frames_channels_height_width(rec):
    """pixel_values is (B, T, C, H, W): frame t of clip b holds that frame's own pixels."""
    clip = moving_clip()
    pv = rec.pixel_values(np.stack([clip, clip[::-1]]))
    assert tuple(pv.shape) == (2, 8, 3, 32, 32)
    # Frame 0 of clip 1 is frame 7 of clip 0 (reversed), channels in dim 2.
    assert torch.allclose(pv[1, 0], pv[0, 7])
    red = np.zeros_like(clip)
    red[..., 0] = 255
    pv_red = rec.pixel_values(red)
    assert pv_red[0, :, 0].mean() > pv_red[0, :, 1].mean()


def test_transposed_layout_changes_logits(rec):
    """Feeding (B, C, T, H, W) instead of (B, T, C, H, W) changes the answer, so order matters."""
    clip = moving_clip()
    pv = rec.pixel_values(clip)
    with torch.inference_mode():
        right = rec.model(pixel_values=pv).logits
        wrong = rec.model(pixel_values=pv.transpose(1, 2).reshape(pv.shape)).logits
        reversed_time = rec.model(pixel_values=pv.flip(1)).logits
    assert not torch.allclose(right, wrong, atol=1e-3)
    assert not torch.allclose(right, reversed_time, atol=1e-3)


def test_probs_and_top_k(rec):
    """Probabilities sum to one per clip and top-k is sorted, with label names."""
    probs = rec.probs([moving_clip(seed=1), moving_clip(seed=2)])
    assert probs.shape == (2, len(TINY_LABELS))
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    top = rec.predict(moving_clip(), k=5)[0]
    assert len(top) == 5 and all(a[1] >= b[1] for a, b in zip(top, top[1:]))
    assert top[0][0] == TINY_LABELS[int(np.argmax(rec.probs(moving_clip())[0]))]


def test_mixed_sizes_in_one_batch(rec):
    """Clips of different aspect ratios batch together and match their single-clip answers."""
    a = moving_clip(size=36)
    b = np.ascontiguousarray(np.repeat(moving_clip(size=36), 2, axis=2))  # 36x72, landscape
    batch = rec.probs([a, b])
    assert np.allclose(batch[0], rec.probs(a)[0], atol=1e-5)
    assert np.allclose(batch[1], rec.probs(b)[0], atol=1e-5)


@pytest.mark.parametrize(
    "clip,fragment",
    [
        (np.zeros((7, 36, 36, 3), np.uint8), "got (7, 36, 36, 3)"),
        (np.zeros((8, 36, 36, 3), np.float32), "got float32"),
        (np.zeros((8, 36, 36, 4), np.uint8), "got (8, 36, 36, 4)"),
        (np.zeros((8, 36, 36), np.uint8), "got shape (8, 36, 36)"),
    ],
)
def test_bad_clips_raise_value_error_with_shapes(rec, clip, fragment):
    """Wrong frame count, dtype or channels: ValueError naming expected and actual."""
    with pytest.raises(ValueError) as err:
        rec.probs(clip)
    assert fragment in str(err.value)
    assert "frames=8" in str(err.value)


def test_missing_folder_is_a_clear_error(tmp_path):
    """A local path that does not exist says so, not a hub error."""
    with pytest.raises(ModelUnavailableError, match="no such folder"):
        Recognizer.load(str(tmp_path / "nope"), device="cpu")


def test_unknown_hub_id_offline_says_how_to_fix():
    """Offline, a hub id names the id, says it could not be downloaded, and points at --model."""
    with pytest.raises(ModelUnavailableError) as err:
        Recognizer.load("facebook/does-not-exist-xyz", device="cpu")
    msg = str(err.value)
    assert "facebook/does-not-exist-xyz" in msg and "--model" in msg and "download" in msg


def test_folder_without_preprocessor_config(tmp_path, tiny_model_dir):
    """A model folder missing preprocessor_config.json is reported by name."""
    import shutil

    shutil.copy(f"{tiny_model_dir}/config.json", tmp_path / "config.json")
    with pytest.raises(ModelUnavailableError, match="preprocessor_config.json"):
        Recognizer.load(str(tmp_path), device="cpu")


def test_cuda_request_without_gpu_is_clear():
    """Asking for CUDA on a machine without one is a clear error, not a torch traceback."""
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ModelUnavailableError, match="no CUDA"):
        Recognizer.load("unused", device="cuda")


def test_videomae_checkpoint_loads_through_auto_classes(tmp_path):
    """A VideoMAE-style checkpoint loads through the same code and predicts."""
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification, VideoMAEImageProcessor

    cfg = VideoMAEConfig(
        image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=64, num_labels=3, id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2},
    )
    VideoMAEForVideoClassification(cfg).save_pretrained(tmp_path)
    VideoMAEImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    rec = Recognizer.load(str(tmp_path), device="cpu")
    assert rec.labels == ("a", "b", "c") and rec.num_frames == 4
    assert rec.probs(np.zeros((4, 40, 50, 3), np.uint8)).shape == (1, 3)
