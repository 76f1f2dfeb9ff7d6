"""The recognizer: uint8 RGB clips in, label probabilities out.

Preprocessing runs in torch on the model's device (see
:mod:`stream.model.preprocess`), so the host only ships uint8 frames, a
quarter of the bytes of float32 and no per-frame Python work.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from stream.model.loading import load_checkpoint, resolve_device, resolve_dtype
from stream.model.preprocess import Preprocessing

__all__ = ["Recognizer", "ClipBatch"]

log = logging.getLogger(__name__)

ClipBatch = np.ndarray | Sequence[np.ndarray]


@dataclass(frozen=True)
class _ModelInfo:
    name: str
    device: str
    dtype: str
    attention: str
    num_frames: int
    num_labels: int


class Recognizer:
    """A video classifier with its own preprocessing and labels.

    Thread-safety: one inference at a time (a lock), since the scheduler
    thread and a CLI may share one instance.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        preprocessing: Preprocessing,
        *,
        name: str = "model",
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        num_frames: int | None = None,
        labels: Sequence[str] | None = None,
        attention: str = "eager",
        quantized: bool = False,
    ) -> None:
        self.model = model
        self.preprocessing = preprocessing
        self.name = name
        self.device = torch.device(device)
        self.dtype = dtype
        self.quantized = quantized
        self.attention = attention
        config = getattr(model, "config", None)
        self.num_frames = int(num_frames or getattr(config, "num_frames", 8))
        if labels is None:
            id2label = getattr(config, "id2label", None) or {}
            labels = [id2label[i] for i in sorted(id2label, key=int)]
        self.labels: tuple[str, ...] = tuple(labels)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        name: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        attention: str = "auto",
        num_frames: int | None = None,
    ) -> "Recognizer":
        """Load a hub id or local folder; raises ModelUnavailableError with a way out."""
        dev = resolve_device(device)
        compute_dtype, int8 = resolve_dtype(dtype, dev)
        model, processor_dict, location = load_checkpoint(name)
        preprocessing = Preprocessing.from_processor_dict(processor_dict)
        used_attention = "eager"
        if attention in ("auto", "sdpa"):
            from stream.model.attention import use_sdpa

            if use_sdpa(model):
                used_attention = "sdpa"
            elif attention == "sdpa":
                log.info("model %s has no TimeSformer attention to switch to SDPA; using its own", name)
        if int8:
            from stream.model.quantize import quantize_int8

            model = quantize_int8(model)
        else:
            model = model.to(device=dev, dtype=compute_dtype)
        model.eval()
        config_frames = int(getattr(model.config, "num_frames", 8))
        if num_frames is not None and num_frames != config_frames:
            log.warning("model %s was trained on %d frames per clip; using %d as configured", name, config_frames, num_frames)
        return cls(
            model,
            preprocessing,
            name=name,
            device=dev,
            dtype=compute_dtype,
            num_frames=num_frames or config_frames,
            attention=used_attention,
            quantized=int8,
        )

    @classmethod
    def from_config(cls, config) -> "Recognizer":
        """Load the model a :class:`stream.config.Config` names, on its device and dtype."""
        return cls.load(
            config.model.name,
            device=config.model.device,
            dtype=config.model.dtype,
            attention=config.model.attention,
            num_frames=config.window.frames,
        )

    # ------------------------------------------------------------------ shapes
    def ingest_hw(self, height: int, width: int) -> tuple[int, int]:
        """Model-scale size a source should resize its frames to, once, at ingest."""
        return self.preprocessing.resized_hw(height, width)

    def info(self) -> _ModelInfo:
        return _ModelInfo(
            name=self.name,
            device=str(self.device),
            dtype="int8" if self.quantized else str(self.dtype).removeprefix("torch."),
            attention=self.attention,
            num_frames=self.num_frames,
            num_labels=len(self.labels),
        )

    def _check_clip(self, clip: np.ndarray, where: str) -> None:
        expected = f"(frames={self.num_frames}, height, width, 3) uint8"
        if not isinstance(clip, np.ndarray):
            raise ValueError(f"{where}: expected a numpy array {expected}, got {type(clip).__name__}")
        if clip.dtype != np.uint8:
            raise ValueError(f"{where}: expected dtype uint8 {expected}, got {clip.dtype}")
        if clip.ndim != 4 or clip.shape[-1] != 3 or clip.shape[0] != self.num_frames:
            raise ValueError(f"{where}: expected shape {expected}, got {tuple(clip.shape)}")
        if clip.shape[1] < 1 or clip.shape[2] < 1:
            raise ValueError(f"{where}: frames must be at least 1x1, got {clip.shape[1]}x{clip.shape[2]}")

    def _as_clip_list(self, clips: ClipBatch) -> list[np.ndarray]:
        if isinstance(clips, np.ndarray):
            if clips.ndim == 4:
                self._check_clip(clips, "clip")
                return [clips]
            if clips.ndim == 5:
                for i in range(clips.shape[0]):
                    self._check_clip(clips[i], f"clip {i}")
                return list(clips)
            raise ValueError(
                f"expected one clip (frames={self.num_frames}, height, width, 3) uint8 or a batch "
                f"(batch, frames={self.num_frames}, height, width, 3), got shape {tuple(clips.shape)}"
            )
        out = list(clips)
        if not out:
            raise ValueError("expected at least one clip, got an empty batch")
        for i, clip in enumerate(out):
            self._check_clip(clip, f"clip {i}")
        return out

    # ------------------------------------------------------------------ inference
    def pixel_values(self, clips: ClipBatch) -> torch.Tensor:
        """(batch, frames, channels, height, width) on the model's device, normalized."""
        clip_list = self._as_clip_list(clips)
        # Clips of one size go through the device in one piece; streams with
        # other aspect ratios are grouped separately and put back in order.
        groups: dict[tuple[int, int], list[int]] = {}
        for i, clip in enumerate(clip_list):
            groups.setdefault(clip.shape[1:3], []).append(i)
        parts: list[torch.Tensor | None] = [None] * len(clip_list)
        pin = self.device.type == "cuda"
        for idxs in groups.values():
            host = torch.from_numpy(np.stack([clip_list[i] for i in idxs]))
            if pin:
                host = host.pin_memory()
            x = self.preprocessing(host.to(self.device, non_blocking=True), dtype=self.dtype)
            for j, i in enumerate(idxs):
                parts[i] = x[j]
        return torch.stack(parts)  # type: ignore[arg-type]

    @torch.inference_mode()
    def logits(self, clips: ClipBatch) -> torch.Tensor:
        with self._lock:
            pixel_values = self.pixel_values(clips)
            return self.model(pixel_values=pixel_values).logits.float()

    def probs(self, clips: ClipBatch) -> np.ndarray:
        """Softmax probabilities, float32 (batch, num_labels), on the host."""
        return torch.softmax(self.logits(clips), dim=-1).cpu().numpy()

    def top_k(self, probs: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
        """The k most likely labels of one probability vector, highest first."""
        k = max(1, min(k, probs.shape[-1]))
        idx = np.argpartition(-probs, k - 1)[:k]
        idx = idx[np.argsort(-probs[idx], kind="stable")]
        return [(self.labels[i], float(probs[i])) for i in idx]

    def predict(self, clips: ClipBatch, k: int = 5) -> list[list[tuple[str, float]]]:
        """Top-k (label, score) per clip."""
        return [self.top_k(p, k) for p in self.probs(clips)]

    def warmup(self, height: int = 224, width: int = 224) -> None:
        """One throwaway forward pass, so the first real clip is not slow."""
        self.probs(np.zeros((self.num_frames, height, width, 3), np.uint8))
