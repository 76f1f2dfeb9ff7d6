"""The benchmark command runs end to end in its quickest mode and reports every section with sane numbers."""

from __future__ import annotations

import json
import math

import pytest

from stream.cli import main

pytestmark = pytest.mark.slow


@pytest.mark.timeout(120)
def test_quick_bench_reports_every_section(tmp_path, capsys):
    """`python -m stream bench --quick` prints each section's table and writes finite, plausible figures."""
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--runs", "1", "--e2e-seconds", "2.5", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    titles = ("1. preprocessing", "2. model per clip", "3. ingest", "4. end to end", "5. memory", "6. CUDA", "7. HTTP", "8. large", "9. recording")
    for title in titles:
        assert title in printed, title
    assert "targets:" in printed

    report = json.loads(out.read_text())
    sections = {s["key"]: s for s in report["sections"]}
    assert set(sections) == {"preprocess", "model", "ingest", "e2e", "memory", "cuda", "http", "large", "recording"}
    for key in ("preprocess", "model", "ingest", "e2e", "memory", "http", "large", "recording"):
        assert sections[key]["skipped"] is None, (key, sections[key]["skipped"])
        assert sections[key]["rows"], key

    pre = sections["preprocess"]["metrics"]
    assert 0 < pre["ours_s"] < 5 and 0 < pre["reference_s"] < 5
    assert pre["mean_abs_diff"] <= 0.01 and pre["max_abs_diff"] <= 0.1  # correctness, not speed

    model = sections["model"]["metrics"]
    assert model["flops_per_clip"] > 0
    assert set(model["agreement"]) == {"eager fp32 (reference)", "sdpa fp32", "int8", "int8 + sdpa", "bf16 + sdpa"}
    assert model["agreement"]["bf16 + sdpa"]["cosine_min"] >= 0.99
    assert model["agreement"]["sdpa fp32"]["max_abs_diff"] <= 1e-4
    assert all(math.isfinite(v["median"]) and v["median"] > 0 for v in model["seconds"].values())

    ingest = sections["ingest"]["metrics"]
    assert ingest["frames"] == 60 and ingest["kept"]["ingest"] < ingest["kept"]["every"] == 60
    assert 0 < ingest["ratio"] <= 1.5

    e2e = sections["e2e"]["metrics"]
    assert e2e["one"]["labels"] >= 1
    assert all(s["labels_received"] >= 1 for s in e2e["four"]["per_stream"].values())
    assert 0 < e2e["one"]["age_median_ms"] < 5000

    memory = sections["memory"]["metrics"]
    assert 0 < memory["ring_default_bytes"] <= 64 * 2**20
    assert memory["peak_rss_bytes"] > 0

    http = sections["http"]["metrics"]
    assert http["requests"] > 0 and http["nodelay_ms"]["median"] > 0 and http["nagle_ms"]["median"] > 0

    recording = sections["recording"]["metrics"]
    assert all(v > 0 for v in recording["cpu_per_s"]["on"] + recording["cpu_per_s"]["off"]) and recording["add_us"] > 0

    large = sections["large"]["metrics"]
    assert large and all(m["decoder_mib"] > 0 and m["threads"] >= 1 for m in large.values())

    cuda = sections["cuda"]
    import torch

    if not torch.cuda.is_available():
        assert cuda["skipped"] and "no CUDA GPU" in cuda["skipped"]


@pytest.mark.timeout(120)
def test_cuda_section_code_runs_as_a_dry_run_on_the_cpu(tmp_path):
    """The CUDA section has no GPU here; its code still runs end to end on the CPU and reports every figure."""
    from stream.bench import cuda
    from stream.bench.common import Section
    from stream.bench.context import BenchContext, BenchOptions

    ctx = BenchContext(BenchOptions(quick=True, runs=1, clips=2), tmp_path)
    section = Section("cuda", "dry run")
    cuda.run(ctx, section, device="cpu")
    assert section.skipped is None
    names = [row.name for row in section.rows]
    variants = ("eager fp32 (reference)", "sdpa fp32", "sdpa fp16", "sdpa bf16")
    for variant in variants:
        for batch in cuda.BATCHES:
            assert f"{variant} batch {batch}" in names
    assert any(name.startswith("preprocessing:") for name in names)
    metrics = section.metrics
    assert all(cps > 0 for per_batch in metrics["clips_per_s"].values() for cps in per_batch.values())
    assert metrics["flops_per_clip"] > 0 and set(metrics["matmul_peak_flops"]) == {"float32", "float16", "bfloat16"}
    # Half precision against float32 on random tiny weights: close, but not equal.
    for variant in ("sdpa fp16", "sdpa bf16"):
        assert metrics["agreement"][variant]["cosine_min"] >= 0.99, variant
    assert metrics["agreement"]["sdpa fp32"]["max_abs_diff"] <= 1e-4
    assert "dry run" in metrics["device"]


@pytest.mark.timeout(120)
def test_http_section_runs_and_reports_both_sockets(tmp_path):
    """The HTTP section serves the real app on a TCP_NODELAY and a Nagle socket and reports finite latencies for both."""
    from stream.bench import http
    from stream.bench.common import Section
    from stream.bench.context import BenchContext, BenchOptions

    ctx = BenchContext(BenchOptions(quick=True, runs=1, clips=2), tmp_path)
    section = Section("http", "dry run")
    http.run(ctx, section)
    assert section.skipped is None and len(section.rows) == 2
    metrics = section.metrics
    assert metrics["requests"] == 20
    for variant in ("nodelay_ms", "nagle_ms"):
        assert 0 < metrics[variant]["median"] <= metrics[variant]["p99"] < 10_000, (variant, metrics[variant])
    assert math.isfinite(metrics["ratio"]) and metrics["ratio"] > 0
