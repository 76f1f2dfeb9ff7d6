"""Random TimeSformer checkpoints saved like real ones, for benchmarks and offline checks.

Our build machines cannot reach the Hugging Face hub. A random model with the
real checkpoint's config has the same shapes, the same FLOPs and so the same
speed, and loading it from a folder goes through the very same code
(:meth:`stream.model.Recognizer.load`) as a downloaded checkpoint.

``base`` is ``facebook/timesformer-base-finetuned-k400``'s architecture
(TimesformerConfig defaults: 8 frames of 224x224, 12 layers, hidden 768, 400
labels) with its preprocessor config (short side 224, crop 224, mean 0.45,
std 0.225). ``tiny`` is a few-kilobyte model for smoke tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch

__all__ = ["save_random_timesformer", "processor_config", "SIZES"]

SIZES = ("base", "tiny")

# The real checkpoint's preprocessing (preprocessor_config.json of
# facebook/timesformer-base-finetuned-k400), VideoMAEImageProcessor style.
_BASE_PROCESSOR: dict[str, Any] = {
    "size": {"shortest_edge": 224},
    "crop_size": {"height": 224, "width": 224},
    "image_mean": [0.45] * 3,
    "image_std": [0.225] * 3,
}
_TINY_PROCESSOR: dict[str, Any] = {
    "size": {"shortest_edge": 36},
    "crop_size": {"height": 32, "width": 32},
    "image_mean": [0.45] * 3,
    "image_std": [0.225] * 3,
}


def processor_config(size: Literal["base", "tiny"] = "base") -> dict[str, Any]:
    """Keyword arguments of ``VideoMAEImageProcessor`` for a model size (a fresh copy)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    src = _BASE_PROCESSOR if size == "base" else _TINY_PROCESSOR
    return {k: (dict(v) if isinstance(v, dict) else list(v)) for k, v in src.items()}


def save_random_timesformer(path: str | Path, size: Literal["base", "tiny"] = "base", *, seed: int = 0) -> Path:
    """Save a random ``TimesformerForVideoClassification`` and its preprocessor config to ``path``.

    ``base`` keeps transformers' own initialisation (near-uniform logits, as
    benchmarks have always measured). ``tiny`` widens the classifier and
    randomises the time embedding so its answers are decisive and depend on
    frame order, which smoke tests want.
    """
    from transformers import TimesformerConfig, TimesformerForVideoClassification, VideoMAEImageProcessor

    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    torch.manual_seed(seed)
    if size == "base":
        labels = [f"class_{i:03d}" for i in range(400)]
        config = TimesformerConfig(num_labels=len(labels))
    else:
        labels = [f"action_{i:02d}" for i in range(12)]
        config = TimesformerConfig(
            image_size=32,
            patch_size=8,
            num_frames=8,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            num_labels=len(labels),
        )
    config.id2label = dict(enumerate(labels))
    config.label2id = {name: i for i, name in enumerate(labels)}
    model = TimesformerForVideoClassification(config).eval()
    if size == "tiny":
        with torch.no_grad():
            model.classifier.weight.mul_(50.0)
            model.timesformer.embeddings.time_embeddings.normal_(0.0, 0.5)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    VideoMAEImageProcessor(**processor_config(size)).save_pretrained(path)
    return path
