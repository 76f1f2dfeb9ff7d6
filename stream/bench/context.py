"""What the sections share in one run: options, a scratch folder, the model folder, the test video, loaded models."""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["BenchOptions", "BenchContext", "FLOPS_PER_CLIP_BASE"]

# torch's FLOP counter on the base model, one 8x224x224 clip (see ARCHITECTURE.md).
FLOPS_PER_CLIP_BASE = 392e9


@dataclass(frozen=True)
class BenchOptions:
    quick: bool = False
    runs: int = 5  # timed repetitions of each slow measurement (model forwards, ingest passes)
    clips: int = 10  # clips for the agreement figures
    model: str | None = None  # a checkpoint folder or hub id instead of the random one
    e2e_seconds: float = 25.0  # per scenario
    video_seconds: float = 10.0
    stride_s: float = 1.0


class BenchContext:
    """Lazily builds what several sections need, once per run."""

    def __init__(self, options: BenchOptions, workdir: Path) -> None:
        self.options = options
        self.workdir = workdir
        self._model_dir: str | None = None
        self._video: Path | None = None
        self._recognizers: dict[tuple[str, str, str], Any] = {}
        self.flops_per_clip: float | None = None  # counted by the model section

    @property
    def model_size(self) -> str:
        if self.options.model:
            return "given"
        return "tiny" if self.options.quick else "base"

    @property
    def model_label(self) -> str:
        if self.options.model:
            return self.options.model
        return "random tiny TimeSformer" if self.options.quick else "random base TimeSformer (k400 shapes)"

    def model_dir(self) -> str:
        """Folder (or hub id) of the model under test; a random one is saved on first use."""
        if self._model_dir is None:
            if self.options.model:
                self._model_dir = self.options.model
            else:
                from stream.model.random_weights import save_random_timesformer

                path = self.workdir / f"timesformer-{self.model_size}"
                save_random_timesformer(path, self.model_size)  # type: ignore[arg-type]
                self._model_dir = str(path)
        return self._model_dir

    def processor_dict(self) -> dict[str, Any]:
        """Preprocessor config for the preprocessing section: the real checkpoint's unless a model is given.

        The tiny model's 36-pixel preprocessing would say nothing about 720p
        frames, so quick mode still measures the base checkpoint's.
        """
        if self.options.model:
            from transformers.image_processing_utils import ImageProcessingMixin

            config, _ = ImageProcessingMixin.get_image_processor_dict(self.model_dir())
            return config
        from stream.model.random_weights import processor_config

        return processor_config("base")

    def video(self) -> Path:
        """A 720p 30 fps H.264 file with moving content, made on first use."""
        if self._video is None:
            from stream.bench.media import make_h264

            path = self.workdir / "camera-720p30.mp4"
            self._video = make_h264(path, width=1280, height=720, fps=30, seconds=self.options.video_seconds)
        return self._video

    def recognizer(self, dtype: str, attention: str, device: str = "cpu") -> Any:
        """A Recognizer loaded through the real loading code, cached per (device, dtype, attention)."""
        key = (device, dtype, attention)
        if key not in self._recognizers:
            from stream.model import Recognizer

            self._recognizers[key] = Recognizer.load(self.model_dir(), device=device, dtype=dtype, attention=attention)
        return self._recognizers[key]

    def release(self, keep: set[tuple[str, str, str]] | None = None) -> None:
        """Drop cached recognizers (all but ``keep``), so later sections and RSS see less."""
        for key in list(self._recognizers):
            if keep is None or key not in keep:
                del self._recognizers[key]
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
