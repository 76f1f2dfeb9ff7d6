"""The checkpoint's own preprocessing, done in torch on the model's device.

Every number here comes from the checkpoint's preprocessor config (resize
rule, crop, rescale, mean and std), never from constants in our code. The
result matches transformers' image processor (PIL backend, our reference):
bilinear resize with antialiasing and rounding to uint8 like PIL, then a
center crop, then rescale and normalize as one multiply and one add, in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Preprocessing", "resize_uint8"]

# PIL resample codes (as stored in preprocessor configs) -> torch modes.
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


@dataclass(frozen=True)
class Preprocessing:
    """Resize, crop, rescale and normalize, as a checkpoint describes them."""

    shortest_edge: int | None  # resize the short side to this, keeping aspect
    size_hw: tuple[int, int] | None  # or resize to exactly (height, width)
    crop_hw: tuple[int, int] | None  # center crop after the resize, if any
    rescale_factor: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: str = "bilinear"
    do_resize: bool = True
    do_rescale: bool = True
    do_normalize: bool = True

    @classmethod
    def from_processor_dict(cls, d: dict[str, Any]) -> "Preprocessing":
        """Build from a preprocessor_config.json dict (VideoMAE/TimeSformer style)."""
        size = d.get("size") or {}
        if isinstance(size, int):
            size = {"shortest_edge": size}
        shortest = size.get("shortest_edge")
        size_hw = (int(size["height"]), int(size["width"])) if "height" in size and "width" in size else None
        if shortest is None and size_hw is None and d.get("do_resize", True):
            raise ValueError(f"unsupported 'size' in preprocessor config: {size!r}")
        crop = d.get("crop_size") or {}
        if isinstance(crop, int):
            crop = {"height": crop, "width": crop}
        crop_hw = (int(crop["height"]), int(crop["width"])) if d.get("do_center_crop", True) and crop else None
        mean = d.get("image_mean", [0.5, 0.5, 0.5])
        std = d.get("image_std", [0.5, 0.5, 0.5])
        if isinstance(mean, (int, float)):
            mean = [mean] * 3
        if isinstance(std, (int, float)):
            std = [std] * 3
        resample = d.get("resample", 2)
        return cls(
            shortest_edge=int(shortest) if shortest is not None else None,
            size_hw=size_hw,
            crop_hw=crop_hw,
            rescale_factor=float(d.get("rescale_factor", 1 / 255)),
            mean=tuple(float(m) for m in mean),
            std=tuple(float(s) for s in std),
            resample=_RESAMPLE.get(int(resample), "bilinear") if isinstance(resample, int) else "bilinear",
            do_resize=bool(d.get("do_resize", True)),
            do_rescale=bool(d.get("do_rescale", True)),
            do_normalize=bool(d.get("do_normalize", True)),
        )

    def resized_hw(self, height: int, width: int) -> tuple[int, int]:
        """Size after the resize step, truncating like transformers does.

        For 640x480 and a short side of 224 this is 298x224, not 299x224: off
        by one pixel would shift the crop and the logits.
        """
        if not self.do_resize:
            return height, width
        if self.size_hw is not None:
            return self.size_hw
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
        return (new_long, new_short) if width <= height else (new_short, new_long)

    def output_hw(self, height: int, width: int) -> tuple[int, int]:
        """Spatial size of the model input for a frame of this size."""
        return self.crop_hw if self.crop_hw is not None else self.resized_hw(height, width)

    def __call__(self, clips: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """uint8 (B, T, H, W, 3) on any device -> ``pixel_values`` (B, T, 3, h, w) in ``dtype``."""
        if clips.dtype != torch.uint8 or clips.ndim != 5 or clips.shape[-1] != 3:
            raise ValueError(f"expected uint8 clips (batch, frames, height, width, 3), got {clips.dtype} {tuple(clips.shape)}")
        b, t, h, w, _ = clips.shape
        x = clips.reshape(b * t, h, w, 3).permute(0, 3, 1, 2)  # (N, 3, H, W), a view
        rh, rw = self.resized_hw(h, w)
        if (rh, rw) != (h, w):
            x = resize_uint8(x, (rh, rw), self.resample)
        if self.crop_hw is not None:
            x = _center_crop(x, self.crop_hw)
        # One pass from the strided uint8 view into a contiguous (N, 3, h, w)
        # float tensor, then the affine map in place: 2.3x faster on the CPU
        # than converting, then normalizing into a third tensor that keeps the
        # channels-last strides (which the final reshape would copy again).
        out = torch.empty((x.shape[0], 3, x.shape[-2], x.shape[-1]), dtype=torch.float32, device=x.device)
        out.copy_(x)
        scale = self.rescale_factor if self.do_rescale else 1.0
        if self.do_normalize:
            std = torch.tensor(self.std, device=x.device, dtype=torch.float32).view(1, 3, 1, 1)
            mean = torch.tensor(self.mean, device=x.device, dtype=torch.float32).view(1, 3, 1, 1)
            # (x * scale - mean) / std as one multiply and one add.
            out.mul_(scale / std).add_(-mean / std)
        elif scale != 1.0:
            out.mul_(scale)
        out = out.to(dtype)
        return out.reshape(b, t, 3, out.shape[-2], out.shape[-1])


def resize_uint8(x: torch.Tensor, size_hw: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Resize (N, 3, H, W) uint8 like PIL: antialiased when shrinking, rounded to uint8."""
    antialias = mode in ("bilinear", "bicubic")
    if x.device.type == "cpu" and mode == "bilinear":
        # torch has a fast uint8 path for antialiased bilinear on the CPU that
        # matches PIL to within one grey level.
        # It wants channels-last input, pixels stored (H, W, 3) as decoders
        # give them: made NCHW-contiguous first, the same 1280x720 -> 398x224
        # resize takes 4x as long (2.5 ms against 0.6 ms), and it is no faster
        # on two threads than on one.
        return F.interpolate(x.contiguous(memory_format=torch.channels_last), size=size_hw, mode=mode, antialias=True)
    y = F.interpolate(x.float(), size=size_hw, mode=mode, antialias=antialias if mode != "nearest" else False)
    return y.round_().clamp_(0, 255).to(torch.uint8)


def _center_crop(x: torch.Tensor, crop_hw: tuple[int, int]) -> torch.Tensor:
    """Center crop like transformers (offsets truncate); pads with zeros if smaller."""
    ch, cw = crop_hw
    h, w = x.shape[-2:]
    if h < ch or w < cw:
        pad_h, pad_w = max(ch - h, 0), max(cw - w, 0)
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        h, w = x.shape[-2:]
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[..., top : top + ch, left : left + cw]


def resize_frame(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize one RGB uint8 (H, W, 3) frame at ingest; returns it unchanged if already that size."""
    if image.shape[:2] == tuple(size_hw):
        return image
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0)
    out = resize_uint8(t, size_hw)
    return out[0].permute(1, 2, 0).contiguous().numpy()


__all__.append("resize_frame")
