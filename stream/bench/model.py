"""The model per clip: each precision/attention path against eager float32, with agreement of the logits.

Every variant is loaded through :meth:`Recognizer.load` (the real loading,
SDPA patching and int8 quantization code) and timed on the real per-clip
call, :meth:`Recognizer.logits` on a uint8 clip at ingest scale, so the
device crop + normalize is included (a few ms against a forward of seconds).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from stream.bench.common import Section, interleaved, median
from stream.bench.context import BenchContext
from stream.bench.media import smooth_clips

__all__ = ["run", "agreement", "count_flops", "matmul_peak", "ingest_clips", "CPU_VARIANTS"]

TARGET_INT8_RATIO = 0.30
TARGET_COSINE = 0.99
TARGET_SDPA_MAX_DIFF = 1e-4

# (row name, dtype, attention) for Recognizer.load; the first is the reference.
CPU_VARIANTS = (
    ("eager fp32 (reference)", "float32", "eager"),
    ("sdpa fp32", "float32", "sdpa"),
    ("int8", "int8", "eager"),
    ("int8 + sdpa", "int8", "sdpa"),
    # Fast where the CPU has bf16 instructions (avx512_bf16, AMX), emulated and slow elsewhere.
    ("bf16 + sdpa", "bfloat16", "sdpa"),
)


def ingest_clips(recognizer, count: int, seed: int = 1) -> list[np.ndarray]:
    """Clips shaped like the ring hands them out for a 1280x720 camera: (T, h, w, 3) uint8 at model scale."""
    h, w = recognizer.ingest_hw(720, 1280)
    return smooth_clips(count, recognizer.num_frames, h, w, seed=seed)


def agreement(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """Logits of ``other`` against ``reference`` (both (clips, labels)): cosine, top-5 overlap, top-1, max diff."""
    reference, other = reference.float().cpu(), other.float().cpu()
    cosine = F.cosine_similarity(reference, other, dim=-1)
    k = min(5, reference.shape[-1])
    ref_k, oth_k = reference.topk(k).indices, other.topk(k).indices
    overlap = statistics.mean(len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(ref_k, oth_k))
    return {
        "cosine_min": float(cosine.min()),
        "cosine_mean": float(cosine.mean()),
        "top5_overlap": float(overlap),
        "top1_agreement": float((reference.argmax(-1) == other.argmax(-1)).float().mean()),
        "max_abs_diff": float((reference - other).abs().max()),
    }


def count_flops(recognizer, clip: np.ndarray) -> float:
    """FLOPs of one forward on one clip, counted by torch (matmuls, convolutions, SDPA)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        recognizer.logits(clip)
    return float(counter.get_total_flops())


def matmul_peak(device: str = "cpu", dtype: torch.dtype = torch.float32, n: int = 1024, seconds: float = 1.0) -> float:
    """Best FLOP/s of an n x n matrix multiply over about ``seconds``: this machine's practical ceiling."""
    dev = torch.device(device)
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    reps = 1 if dev.type == "cpu" else 20
    a @ b
    sync()
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync()
        elapsed = time.perf_counter() - start
        best = max(best, reps * 2 * n**3 / elapsed)
    return best


def run(ctx: BenchContext, section: Section) -> None:
    options = ctx.options
    loads: dict[str, float] = {}
    recognizers = {}
    for name, dtype, attention in CPU_VARIANTS:
        start = time.perf_counter()
        recognizers[name] = ctx.recognizer(dtype, attention)
        loads[name] = time.perf_counter() - start
    ref_name = CPU_VARIANTS[0][0]
    reference = recognizers[ref_name]
    clip = ingest_clips(reference, 1, seed=0)[0]

    # The reference's warm-up runs under the FLOP counter (counted once; it is not timed).
    flops = count_flops(reference, clip)
    ctx.flops_per_clip = flops
    peak = matmul_peak("cpu", n=1024 if not options.quick else 256, seconds=1.0 if not options.quick else 0.2)

    fns = {name: (lambda rec=rec: rec.logits(clip)) for name, rec in recognizers.items()}
    times = interleaved(fns, runs=options.runs, warmup=1)
    med = {name: median(t) for name, t in times.items()}

    clips = ingest_clips(reference, options.clips)
    ref_logits = reference.logits(clips)
    agree = {name: agreement(ref_logits, ref_logits if rec is reference else rec.logits(clips)) for name, rec in recognizers.items()}

    # A timing table with every figure, then the target rows.
    detail = [f"{'variant':<24}{'median s':>10}{'min s':>8}{'vs eager':>9}{'GFLOP/s':>9}{'cos min':>9}{'top5':>6}{'top1':>6}{'max|d|':>9}"]
    for name in recognizers:
        gflops = flops / med[name] / 1e9
        a = agree[name]
        detail.append(
            f"{name:<24}{med[name]:>10.3f}{min(times[name]):>8.3f}{med[name] / med[ref_name]:>9.3f}{gflops:>9.1f}"
            f"{a['cosine_min']:>9.4f}{a['top5_overlap']:>6.2f}{a['top1_agreement']:>6.2f}{a['max_abs_diff']:>9.2e}"
        )
    eager_s = med[ref_name]
    fmt = lambda s: f"{s:.3f} s" if s >= 0.1 else f"{s * 1e3:.2f} ms"  # noqa: E731
    for name in recognizers:
        if name == ref_name:
            section.add(f"{name} per clip", f"{fmt(eager_s)} (min {fmt(min(times[name]))})", "", 1.0)
            continue
        ratio = med[name] / eager_s
        target, ok = ("", None)
        if name == "int8":
            target, ok = f"<= {TARGET_INT8_RATIO}", ratio <= TARGET_INT8_RATIO
        section.add(f"{name} per clip", f"{fmt(med[name])} (min {fmt(min(times[name]))})", fmt(eager_s), ratio, target, ok)
    for name in recognizers:
        if name == ref_name:
            continue
        a = agree[name]
        if "fp32" not in name:  # reduced precision: agreement, not equality
            section.add(
                f"{name} logits cosine (min of {options.clips})", f"{a['cosine_min']:.4f}", "", None,
                f">= {TARGET_COSINE}", a["cosine_min"] >= TARGET_COSINE,
            )
            section.add(f"{name} top-5 overlap / top-1 agreement", f"{a['top5_overlap']:.2f} / {a['top1_agreement']:.2f}")
        else:
            section.add(
                f"{name} max |logits - eager|", f"{a['max_abs_diff']:.2e}", "", None,
                f"<= {TARGET_SDPA_MAX_DIFF:g}", a["max_abs_diff"] <= TARGET_SDPA_MAX_DIFF,
            )
    section.add("FLOPs per clip (torch FlopCounterMode)", f"{flops / 1e9:.1f} GFLOP")
    section.add("fp32 matmul peak on this CPU (measured)", f"{peak / 1e9:.1f} GFLOP/s")
    section.add("eager fp32 share of that peak", f"{flops / eager_s / peak:.0%}")
    section.notes.append(f"model: {ctx.model_label}; {options.runs} interleaved runs per variant after one warm-up")
    section.notes.append(
        f"agreement over {options.clips} image-like random clips, logits against eager fp32; random weights give "
        "near-uniform logits, so top-k orderings are fragile (a trained checkpoint is more decisive)"
    )
    section.notes.append("load times (Recognizer.load, s): " + ", ".join(f"{n} {t:.1f}" for n, t in loads.items()))
    section.notes.append("all figures:\n      " + "\n      ".join(detail))
    section.metrics.update(
        flops_per_clip=flops,
        matmul_peak_flops=peak,
        seconds={name: {"median": med[name], "min": min(times[name]), "all": times[name]} for name in recognizers},
        ratio_vs_eager={name: med[name] / eager_s for name in recognizers},
        agreement=agree,
        load_s=loads,
        clips=options.clips,
        runs=options.runs,
    )
