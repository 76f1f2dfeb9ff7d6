"""Build and save tiny random checkpoints that load through the real loading code."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from stream.model import Recognizer

TINY_LABELS = [f"action_{i:02d}" for i in range(12)]


def save_tiny_timesformer(
    path: str | Path,
    *,
    image_size: int = 32,
    num_frames: int = 8,
    shortest_edge: int = 36,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 2,
    seed: int = 0,
    mean: float = 0.45,
    std: float = 0.225,
) -> Path:
    """Save a random TimeSformer with its own labels and a VideoMAE preprocessor config."""
    from transformers import TimesformerConfig, TimesformerForVideoClassification, VideoMAEImageProcessor

    torch.manual_seed(seed)
    config = TimesformerConfig(
        image_size=image_size,
        patch_size=8,
        num_frames=num_frames,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden_size * 2,
        id2label={i: name for i, name in enumerate(TINY_LABELS)},
        label2id={name: i for i, name in enumerate(TINY_LABELS)},
    )
    model = TimesformerForVideoClassification(config).eval()
    # Random init gives near-uniform logits; widen the classifier so top-k
    # orderings are decisive and transposed inputs visibly change the answer.
    with torch.no_grad():
        model.classifier.weight.mul_(50.0)
        # TimeSformer initialises its time embedding to zeros, which makes a
        # random model blind to frame order; a trained one is not.
        model.timesformer.embeddings.time_embeddings.normal_(0.0, 0.5)
    path = Path(path)
    model.save_pretrained(path)
    processor = VideoMAEImageProcessor(
        size={"shortest_edge": shortest_edge},
        crop_size={"height": image_size, "width": image_size},
        image_mean=[mean] * 3,
        image_std=[std] * 3,
    )
    processor.save_pretrained(path)
    return path


def save_base_timesformer(path: str | Path, seed: int = 0) -> Path:
    """A base-size random TimeSformer: the real checkpoint's shapes and FLOPs, for benchmarks."""
    from transformers import TimesformerConfig, TimesformerForVideoClassification, VideoMAEImageProcessor

    torch.manual_seed(seed)
    config = TimesformerConfig(
        num_labels=400, id2label={i: f"class_{i:03d}" for i in range(400)}, label2id={f"class_{i:03d}": i for i in range(400)}
    )
    TimesformerForVideoClassification(config).eval().save_pretrained(path)
    VideoMAEImageProcessor(
        size={"shortest_edge": 224},
        crop_size={"height": 224, "width": 224},
        image_mean=[0.45] * 3,
        image_std=[0.225] * 3,
    ).save_pretrained(path)
    return Path(path)


class SlowRecognizer(Recognizer):
    """A real recognizer that takes at least ``delay`` seconds per batch, like a big model on a small CPU."""

    delay = 0.5

    def probs(self, clips):
        time.sleep(self.delay)
        return super().probs(clips)
