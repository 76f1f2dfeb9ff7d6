"""Synthetic frames and H.264 files for the benchmark, made at run time (no data files, no network)."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["FrameMaker", "encode_frames", "make_h264", "smooth_clips"]


class FrameMaker:
    """Camera-like RGB frames: gradients, a scrolling texture, a moving block, sensor noise.

    Not pure noise (which no camera makes and which encodes and resizes
    unlike real video), not flat colour either: every frame differs from the
    last, so the encoder has motion to code and the decoder real work to do.
    """

    def __init__(self, width: int, height: int, seed: int = 0) -> None:
        self.width, self.height = width, height
        rng = np.random.default_rng(seed)
        self._pad = 512
        yy, xx = np.mgrid[0:height, 0 : width + self._pad].astype(np.float32)
        base = np.stack(
            [
                128 + 60 * np.sin(xx / (width / 9)) + 40 * np.cos(yy / (height / 7)),
                255 * (xx % width) / max(width - 1, 1),
                255 * yy / max(height - 1, 1),
            ],
            -1,
        )
        # A low-contrast texture (blurred noise) so the picture has detail to code.
        texture = rng.normal(0, 18, (height // 8 + 1, (width + self._pad) // 8 + 1, 1)).astype(np.float32)
        texture = np.repeat(np.repeat(texture, 8, 0), 8, 1)[:height, : width + self._pad]
        self._base = np.clip(base + texture, 0, 255).astype(np.uint8)
        self._noise = rng.integers(-4, 5, (4, height, width, 3), dtype=np.int16)

    def frame(self, index: int) -> np.ndarray:
        """RGB uint8 (H, W, 3) for frame ``index``."""
        shift = (index * 3) % self._pad
        img = self._base[:, shift : shift + self.width].astype(np.int16)
        img += self._noise[index % len(self._noise)]
        side = self.height // 5
        top = (self.height - side) // 2 + int(self.height / 6 * np.sin(index / 15))
        left = (index * 7) % max(1, self.width - side)
        img[top : top + side, left : left + side] = (230, 40, 50)
        return np.clip(img, 0, 255).astype(np.uint8)


def encode_frames(container, stream, images: Iterable[np.ndarray], rate: Fraction) -> None:
    """Encode RGB frames into ``stream`` with exact pts (1/rate time base), mux them, and flush the encoder."""
    import av

    for index, image in enumerate(images):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = index
        frame.time_base = 1 / rate
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def make_h264(path: str | Path, *, width: int = 1280, height: int = 720, fps: int = 30, seconds: float = 10.0) -> Path:
    """Write an H.264 (High profile, CABAC, 2 s GOP, no B-frames: camera-like) MP4 and return its path."""
    import av

    path = Path(path)
    maker = FrameMaker(width, height)
    rate = Fraction(fps)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "x264-params": f"keyint={2 * fps}:bframes=0"}
        encode_frames(container, stream, (maker.frame(i) for i in range(max(1, int(round(seconds * fps))))), rate)
    return path


def smooth_clips(count: int, frames: int, height: int, width: int, seed: int = 1) -> list[np.ndarray]:
    """uint8 clips (frames, H, W, 3) of upsampled low-resolution noise: image-like spatial correlation.

    Random weights give near-uniform logits; clips like these at least make
    the agreement figures (cosine, top-k) depend on the input, as with real video.
    """
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    low = torch.randn(count * frames, 3, 14, 14, generator=gen)
    up = F.interpolate(low, size=(height, width), mode="bicubic", align_corners=False)
    pixels = (128 + 50 * up).round_().clamp_(0, 255).to(torch.uint8)
    pixels = pixels.permute(0, 2, 3, 1).reshape(count, frames, height, width, 3)
    return [c.contiguous().numpy() for c in pixels]
