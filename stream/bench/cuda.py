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


def run(ctx: BenchContext, section: Section, device: str = "cuda") -> None:
    """The section on ``device``: "cuda" in a bench run; tests dry-run the same code on "cpu"."""
    from stream.bench import preprocess
    from stream.bench.model import agreement, count_flops, ingest_clips, matmul_peak

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    why = unavailable() if cuda else None
    if why:
        section.skipped = why
        return
    options = ctx.options
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    variants = [("eager fp32 (reference)", "float32", "eager"), ("sdpa fp32", "float32", "sdpa"), ("sdpa fp16", "float16", "sdpa")]
    if not cuda or torch.cuda.is_bf16_supported():
        variants.append(("sdpa bf16", "bfloat16", "sdpa"))
    recs = {name: ctx.recognizer(dtype, attention, device=device) for name, dtype, attention in variants}
    dtypes = {name: dtype for name, dtype, _ in variants}
    ref_name = variants[0][0]
    reference = recs[ref_name]

    # Device preprocessing, as in the preprocessing section but on the GPU.
    pre_section = Section(f"preprocess-{dev.type}", "")
    preprocess.run(ctx, pre_section, device=device)
    for row in pre_section.rows:
        row.name = f"preprocessing: {row.name.strip()}"
        section.rows.append(row)

    clips = ingest_clips(reference, max(BATCHES), seed=2)
    flops = count_flops(reference, clips[0])
    size = (8192 if not options.quick else 2048) if cuda else 256  # CPU half-precision matmuls are slow
    peaks = {dt: matmul_peak(device, getattr(torch, dt), n=size, seconds=1.0) for dt in sorted(set(dtypes.values()))}

    def timed(rec, batch):
        def go():
            rec.logits(batch)
            sync()

        return go

    throughput: dict[str, dict[int, float]] = {name: {} for name in recs}
    for b in BATCHES:
        batch = clips[:b]
        try:
            times = interleaved({name: timed(rec, batch) for name, rec in recs.items()}, runs=max(3, options.runs), warmup=2)
        except torch.OutOfMemoryError:
            section.notes.append(f"batch {b}: out of GPU memory, skipped")
            if cuda:
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
    if cuda:
        props = torch.cuda.get_device_properties(dev)
        device_name = f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
    else:
        device_name = f"{device} (a dry run of this section's code)"
    section.notes.append(
        f"{device_name}; ratio column = reference time / ours at the same batch; "
        "clips/s include the uint8 host->device copy and device preprocessing (Recognizer.logits); "
        "peak = best square matmul in that dtype measured now (fp32 without TF32, torch's default)"
    )
    section.metrics.update(
        device=device_name,
        clips_per_s=throughput,
        flops_per_clip=flops,
        matmul_peak_flops=peaks,
        agreement=agree,
    )
