"""``python -m stream bench``: our paths against the reference pipeline, side by side, in one process.

Sections (``--only`` picks some): preprocess, model, ingest, e2e, memory,
cuda. Each prints a table of medians with ratios against a reference
measured in the same run, the target and pass/FAIL. Targets are ratios on
purpose: other work shares these machines, so absolute times drift while
interleaved ratios hold.

    python -m stream bench                 # full: base-size random TimeSformer, ~6-8 min on 2 cores
    python -m stream bench --quick         # tiny model, short runs: a smoke test (<30 s)
    python -m stream bench --only model --runs 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stream.argtypes import positive_float, positive_int

__all__ = ["SECTIONS", "add_parser", "run_bench", "main"]

log = logging.getLogger(__name__)

# key -> (title, module name); run in this order.
SECTIONS: dict[str, tuple[str, str]] = {
    "preprocess": ("1. preprocessing: 8 frames of 1280x720 -> model input", "preprocess"),
    "model": ("2. model per clip (CPU)", "model"),
    "ingest": ("3. ingest: 720p H.264 frames per second", "ingest"),
    "e2e": ("4. end to end: label age with 1 and 4 camera streams", "e2e"),
    "memory": ("5. memory", "memory"),
    "cuda": ("6. CUDA", "cuda"),
    "http": ("7. HTTP: keep-alive request latency, TCP_NODELAY vs Nagle", "http"),
    "large": ("8. large frames: a 1080p, 4K and 8K stream's decode, memory and snapshot", "large"),
    "recording": ("9. recording: packet buffers and a clip on 3 file cameras, buffer memory, the encoder", "recording"),
}


def _sections(text: str) -> list[str]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in SECTIONS]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(f"unknown section(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(SECTIONS)}")
    return keys


def _configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--quick", action="store_true", help="tiny model and short runs: a smoke test, under 30 s")
    parser.add_argument(
        "--only", type=_sections, default=list(SECTIONS), metavar="LIST",
        help=f"comma-separated sections to run (default: all): {','.join(SECTIONS)}",
    )
    parser.add_argument("--runs", type=positive_int, default=None, help="timed runs per measurement (default 5, quick 2)")
    parser.add_argument("--clips", type=positive_int, default=None, help="clips for the agreement figures (default 10, quick 4)")
    parser.add_argument("--e2e-seconds", type=positive_float, default=None, help="seconds per end-to-end scenario (default 25, quick 3)")
    parser.add_argument("--model", default=None, help="benchmark this checkpoint folder or hub id instead of a random one")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--json", dest="json_out", default=None, metavar="PATH", help="also write every figure to this JSON file")
    parser.add_argument("--workdir", default=None, help="keep the generated model and video here (default: a temp folder)")
    return parser


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``bench`` on ``python -m stream``'s subcommands."""
    doc = __doc__ or ""
    p = subparsers.add_parser(
        "bench",
        help="benchmark our paths against the reference pipeline",
        description=doc.split("\n\n")[0] + "\n\n" + doc.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _configure(p)
    p.set_defaults(func=_cmd_bench)
    return p


def _options(args: argparse.Namespace):
    from stream.bench.context import BenchOptions

    quick = bool(args.quick)
    return BenchOptions(
        quick=quick,
        runs=args.runs or (2 if quick else 5),
        clips=args.clips or (4 if quick else 10),
        model=args.model,
        e2e_seconds=args.e2e_seconds or (3.0 if quick else 25.0),
        video_seconds=2.0 if quick else 10.0,
        stride_s=0.5 if quick else 1.0,
    )


def run_bench(
    options, sections: Sequence[str], workdir: Path, out: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the chosen sections in order, printing each table as it finishes; return everything as a dict."""
    import importlib

    from stream.bench.common import Section, format_machine, format_section, load_average, machine_info
    from stream.bench.context import BenchContext

    started = time.perf_counter()
    info = machine_info()
    out(format_machine(info))
    mode = "quick (tiny model, short runs)" if options.quick else "full"
    out(f"mode: {mode}; runs {options.runs}; agreement clips {options.clips}\n")
    ctx = BenchContext(options, workdir)
    results = []
    for key in SECTIONS:
        if key not in sections:
            continue
        title, module = SECTIONS[key]
        section = Section(key, title)
        load_start = load_average()
        t0 = time.perf_counter()
        try:
            importlib.import_module(f"stream.bench.{module}").run(ctx, section)
        except Exception as exc:  # one broken section must not hide the others' figures
            log.exception("bench section %s failed", key)
            section.skipped = f"failed: {type(exc).__name__}: {exc}"
        section.seconds = time.perf_counter() - t0
        section.load_avg = (load_start, load_average())
        if key == "model":
            # The float models are ~0.5 GB each; the end-to-end run needs only int8 + SDPA.
            ctx.release(keep={("cpu", "int8", "sdpa")})
        out(format_section(section) + "\n")
        results.append(section)
    total = time.perf_counter() - started
    targets = [(s.key, r) for s in results for r in s.rows if r.ok is not None]
    failed = [f"{k}: {r.name.strip()}" for k, r in targets if not r.ok]
    out(
        f"targets: {len(targets) - len(failed)} of {len(targets)} met"
        + (f"; missed: {'; '.join(failed)}" if failed else "")
        + f"  (total {total:.0f} s)"
    )
    return {
        "machine": info,
        "options": options.__dict__ if hasattr(options, "__dict__") else {},
        "sections": [s.to_json() for s in results],
        "targets_met": len(targets) - len(failed),
        "targets_total": len(targets),
        "missed": failed,
        "seconds": total,
    }


def _cmd_bench(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    # Offline by default: the random model never needs the hub, and a hub id passed with --model still works
    # from the local cache. (Set before transformers reads it.)
    if not args.model:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    options = _options(args)
    with tempfile.TemporaryDirectory(prefix="stream-bench-") as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        report = run_bench(options, args.only, workdir, out=lambda s: print(s, flush=True))
    report["options"] = dataclasses.asdict(options)
    report["command"] = " ".join(["python", "-m", "stream", *sys.argv[1:]]) if sys.argv else ""
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2, default=_jsonable))
    return 0


def _jsonable(value: Any) -> Any:
    try:
        import numpy as np

        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, np.generic):
            return value.item()
    except ImportError:
        pass
    return str(value)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stream.bench`` (same as ``python -m stream bench``)."""
    from stream.cli import main as cli_main

    return cli_main(["bench", *(argv if argv is not None else sys.argv[1:])])
