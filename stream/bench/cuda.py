"""CUDA: clips per second at batch 1, 8 and 32 for float32/float16/bfloat16 with SDPA, and the share of the GPU's peak.

Skipped, with the reason, when torch sees no CUDA GPU.
"""

from __future__ import annotations

import torch

from stream.bench.common import Section, interleaved, median
from stream.bench.context import BenchContext

__all__ = ["run", "unavailable"]

TARGET_COSINE = 0.99
BATCHES = (1, 8, 32)


def unavailable() -> str | None:
    """Why the CUDA section cannot run here, or None if it can."""
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        return f"no CUDA GPU visible to torch {torch.__version__} ({build})"
    return None


def run(ctx: BenchContext, section: Section) -> None:
    from stream.bench import preprocess
    from stream.bench.model import agreement, count_flops, ingest_clips, matmul_peak

    why = unavailable()
    if why:
        section.skipped = why
        return
    options = ctx.options
    props = torch.cuda.get_device_properties(0)
    variants = [("eager fp32 (reference)", "float32", "eager"), ("sdpa fp32", "float32", "sdpa"), ("sdpa fp16", "float16", "sdpa")]
    if torch.cuda.is_bf16_supported():
        variants.append(("sdpa bf16", "bfloat16", "sdpa"))
    recs = {name: ctx.recognizer(dtype, attention, device="cuda") for name, dtype, attention in variants}
    dtypes = {name: dtype for name, dtype, _ in variants}
    ref_name = variants[0][0]
    reference = recs[ref_name]

    # Device preprocessing, as in the preprocessing section but on the GPU.
    pre_section = Section("preprocess-cuda", "")
    preprocess.run(ctx, pre_section, device="cuda")
    for row in pre_section.rows:
        row.name = f"preprocessing: {row.name.strip()}"
        section.rows.append(row)

    clips = ingest_clips(reference, max(BATCHES), seed=2)
    flops = count_flops(reference, clips[0])
    peaks = {
        dt: matmul_peak("cuda", getattr(torch, dt), n=8192 if not options.quick else 2048, seconds=1.0)
        for dt in sorted(set(dtypes.values()))
    }

    def timed(rec, batch):
        def go():
            rec.logits(batch)
            torch.cuda.synchronize()

        return go

    throughput: dict[str, dict[int, float]] = {name: {} for name in recs}
    for b in BATCHES:
        batch = clips[:b]
        try:
            times = interleaved({name: timed(rec, batch) for name, rec in recs.items()}, runs=max(3, options.runs), warmup=2)
        except torch.cuda.OutOfMemoryError:
            section.notes.append(f"batch {b}: out of GPU memory, skipped")
            torch.cuda.empty_cache()
            continue
        for name in recs:
            throughput[name][b] = b / median(times[name])

    eval_clips = ingest_clips(reference, options.clips)
    ref_logits = reference.logits(eval_clips)
    agree = {name: agreement(ref_logits, rec.logits(eval_clips)) for name, rec in recs.items() if rec is not reference}

    for name in recs:
        for b, cps in throughput[name].items():
            ref_cps = throughput[ref_name].get(b)
            share = cps * flops / peaks[dtypes[name]]
            section.add(
                f"{name} batch {b}",
                f"{cps:.1f} clips/s ({share:.0%} of {dtypes[name]} peak)",
                f"{ref_cps:.1f} clips/s" if ref_cps else "",
                (ref_cps / cps) if ref_cps else None,  # time ratio against the reference, like the CPU table
            )
    for name, a in agree.items():
        if dtypes[name] == "float32":
            section.add(f"{name} max |logits - eager|", f"{a['max_abs_diff']:.2e}")
            continue
        section.add(
            f"{name} logits cosine (min of {options.clips})", f"{a['cosine_min']:.4f}", "", None,
            f">= {TARGET_COSINE}", a["cosine_min"] >= TARGET_COSINE,
        )
        section.add(f"{name} top-5 overlap / top-1 agreement", f"{a['top5_overlap']:.2f} / {a['top1_agreement']:.2f}")
    section.add("FLOPs per clip", f"{flops / 1e9:.1f} GFLOP")
    for dt, peak in peaks.items():
        section.add(f"{dt} matmul peak (measured)", f"{peak / 1e12:.1f} TFLOP/s")
    section.notes.append(
        f"{props.name}, {props.total_memory / 2**30:.0f} GiB; ratio column = reference time / ours at the same batch; "
        "clips/s include the uint8 host->device copy and device preprocessing (Recognizer.logits); "
        "peak = best square matmul in that dtype measured now (fp32 without TF32, torch's default)"
    )
    section.metrics.update(
        device=props.name,
        clips_per_s=throughput,
        flops_per_clip=flops,
        matmul_peak_flops=peaks,
        agreement=agree,
    )
