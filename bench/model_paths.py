"""Compare the model's CPU fast paths on a base-size random TimeSformer.

Times eager float32, SDPA float32, int8 and int8+SDPA forwards on one
(1, 8, 3, 224, 224) clip, and measures how far each strays from eager
float32 (logits cosine, top-5 overlap, top-1 agreement) over a few smooth
random clips. Random weights have the real checkpoint's shapes and FLOPs, so
the timings carry over; agreement on random weights is a lower bound of sorts
(near-uniform logits make top-k orderings fragile).

    .venv/bin/python bench/model_paths.py            # about 2-3 minutes on 2 cores
    .venv/bin/python bench/model_paths.py --runs 3 --clips 4
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream.model.attention import use_sdpa  # noqa: E402
from stream.model.quantize import quantize_int8  # noqa: E402

__all__ = ["main"]


def build_base_model(seed: int = 0) -> torch.nn.Module:
    """Base TimeSformer (TimesformerConfig defaults, 400 labels) with random weights."""
    from transformers import TimesformerConfig, TimesformerForVideoClassification

    torch.manual_seed(seed)
    return TimesformerForVideoClassification(TimesformerConfig(num_labels=400)).eval()


def smooth_clips(count: int, frames: int = 8, size: int = 224, seed: int = 1) -> torch.Tensor:
    """Clips of upsampled low-res noise: image-like spatial correlation, unlike pure noise."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.randn(count * frames, 3, 14, 14, generator=gen)
    clips = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    return clips.reshape(count, frames, 3, size, size)


def forward_seconds(models: dict[str, torch.nn.Module], clip: torch.Tensor, runs: int) -> dict[str, list[float]]:
    """Forward times per model, timed round-robin so CPU contention from
    other processes hits every variant alike instead of whichever ran during it."""
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            model(pixel_values=clip)  # warm-up: first call allocates and picks kernels
        for _ in range(runs):
            for name, model in models.items():
                start = time.perf_counter()
                model(pixel_values=clip)
                times[name].append(time.perf_counter() - start)
    return times


def logits(model: torch.nn.Module, clips: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model(pixel_values=c.unsqueeze(0)).logits for c in clips])


def agreement(reference: torch.Tensor, other: torch.Tensor) -> tuple[float, float, float]:
    """(min logits cosine, mean top-5 overlap fraction, top-1 agreement fraction) over clips."""
    cosine = F.cosine_similarity(reference, other, dim=-1).min().item()
    ref5, oth5 = reference.topk(5).indices, other.topk(5).indices
    overlap = statistics.mean(len(set(a.tolist()) & set(b.tolist())) / 5 for a, b in zip(ref5, oth5))
    top1 = (reference.argmax(-1) == other.argmax(-1)).float().mean().item()
    return cosine, overlap, top1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per variant after one warm-up")
    parser.add_argument("--clips", type=int, default=10, help="clips for the agreement columns")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    base = build_base_model()
    sdpa = copy.deepcopy(base)
    use_sdpa(sdpa)
    variants = {
        "eager fp32": base,
        "sdpa fp32": sdpa,
        "int8 (head fp32)": quantize_int8(base),
        "int8 + sdpa": quantize_int8(sdpa),
        "int8 (head int8 too)": quantize_int8(base, keep_head_float=False),
    }
    clip = smooth_clips(1, seed=0)
    clips = smooth_clips(args.clips)
    reference = logits(base, clips)

    times = forward_seconds(variants, clip, args.runs)
    seconds = {name: statistics.median(values) for name, values in times.items()}
    eager_time = seconds["eager fp32"]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.runs} runs after warm-up, "
          f"agreement over {args.clips} clips, load average {os.getloadavg()[0]:.1f} (others share this CPU)")
    # min is the least disturbed by other processes; median is the headline number.
    header = f"{'variant':<22}{'median s':>10}{'min s':>8}{'vs eager':>10}{'min cos':>10}{'top5 ovl':>10}{'top1 agr':>10}"
    print(header)
    print("-" * len(header))
    for name, model in variants.items():
        cos, ovl, top1 = agreement(reference, reference if model is base else logits(model, clips))
        print(f"{name:<22}{seconds[name]:>10.3f}{min(times[name]):>8.3f}{seconds[name] / eager_time:>10.2f}"
              f"{cos:>10.4f}{ovl:>10.2f}{top1:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
