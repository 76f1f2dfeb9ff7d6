"""Ingest: frames per second of decode + ring gate + RGB + resize + ring push, against decoding alone.

FileSource plays a file in real time (it is a camera stand-in), which would
measure the clock, not the code. So this drives the real source's own pieces
as fast as they go: ``FileSource._open`` / ``_frames`` (PyAV demux + decode
with the source's decoder settings), and per frame exactly the body of its
read loop: ``_keep_latest``, ``_admit`` (the rate gate and the ring's
``wants``), ``av_to_rgb`` and ``_push_rgb`` (``resize_frame`` + ``FrameRing.push``).
NetworkSource runs the same per-frame body; only its timestamps differ.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from stream.bench.common import Section, interleaved, median
from stream.bench.context import BenchContext

__all__ = ["run", "ingest_pass", "decode_pass"]

TARGET_RATIO = 0.85
T = TypeVar("T")


def _source(path: str, ring, size_for):
    from stream.sources.file import FileSource

    # Never started: no loop, no thread; statuses go nowhere. We call its reader's pieces directly.
    return FileSource("bench", path, ring, size_for)


def decode_pass(path: str) -> int:
    """Decode every frame of the file with the source's decoder settings; return the frame count."""
    from stream.ring import FrameRing

    src = _source(path, FrameRing(1), lambda h, w: (h, w))
    src._open()
    count = 0
    try:
        for _frame in src._frames():
            count += 1
    finally:
        src._disconnect()
    return count


def ingest_pass(path: str, ring, size_for) -> int:
    """The FileSource read loop minus its real-time pacing; returns frames decoded."""
    from stream.sources._av import av_to_rgb

    src = _source(path, ring, size_for)
    src._open()
    count = 0
    period = src._frame_period()
    try:
        for frame in src._frames():
            ts = frame.time if frame.time is not None else count * period
            count += 1
            src._keep_latest(frame, av_to_rgb, ts)
            if src._admit(ts, (frame.height, frame.width)):
                src._push_decoded(frame, av_to_rgb, ts)
    finally:
        src._disconnect()
    return count


def in_reader_thread(fn: Callable[[], T]) -> Callable[[], T]:
    """``fn`` run in a fresh thread set up like a source's reader thread, as the live path runs it."""

    def go() -> T:
        from stream.threads import one_thread_here

        result: list[T] = []

        def body() -> None:
            one_thread_here()
            result.append(fn())

        thread = threading.Thread(target=body, name="bench-reader")
        thread.start()
        thread.join()
        if not result:
            raise RuntimeError("the ingest pass failed in its thread (see the traceback above)")
        return result[0]

    return go


def run(ctx: BenchContext, section: Section) -> None:
    from stream.config import validate_config
    from stream.model.preprocess import Preprocessing
    from stream.pipeline import ring_fps_for
    from stream.ring import FrameRing, ring_capacity

    path = str(ctx.video())
    pre = Preprocessing.from_processor_dict(ctx.processor_dict())
    config = validate_config({})
    span = config.window.span_s
    ring_fps = ring_fps_for(config, 8, None)
    rings: dict[str, FrameRing] = {}

    def full(name: str, fps: float | None):
        def go() -> int:
            # A fresh ring each pass, as a new stream gets; its first push allocates it.
            ring = FrameRing(ring_capacity(span, fps or 30.0), fps)
            rings[name] = ring
            return ingest_pass(path, ring, pre.resized_hw)

        return go

    frames = decode_pass(path)
    runs = max(2, ctx.options.runs)
    times = interleaved(
        {
            "decode": in_reader_thread(lambda: decode_pass(path)),
            "ingest": in_reader_thread(full("ingest", ring_fps)),
            "every": in_reader_thread(full("every", None)),
        },
        runs=runs,
        warmup=1,
    )
    fps = {k: frames / median(v) for k, v in times.items()}
    best = {k: frames / min(v) for k, v in times.items()}
    kept = {k: rings[k].stats().frames_in for k in ("ingest", "every")}
    ratio = fps["ingest"] / fps["decode"]
    section.add(
        f"full ingest, default ring ({ring_fps:.2f} fps kept)",
        f"{fps['ingest']:.0f} fps (best {best['ingest']:.0f})",
        f"{fps['decode']:.0f} fps (best {best['decode']:.0f})",
        ratio,
        f">= {TARGET_RATIO}",
        ratio >= TARGET_RATIO,
    )
    section.add(
        "full ingest, every frame converted",
        f"{fps['every']:.0f} fps (best {best['every']:.0f})",
        f"{fps['decode']:.0f} fps",
        fps["every"] / fps["decode"],
    )
    decode_ms = 1e3 / fps["decode"]
    convert_ms = (1e3 / fps["every"] - decode_ms) * frames / max(kept["every"], 1)
    section.add("decode per 720p frame", f"{decode_ms:.2f} ms")
    section.add("RGB + resize + push per kept frame", f"{convert_ms:.2f} ms")
    alternatives = in_reader_thread(lambda: resampler_costs(path, pre, ctx.processor_dict()))()
    lines = [f"{'way to model scale, per 720p frame':<42}{'ms':>7}{'mean|d|':>9}{'max|d|':>8}"]
    lines += [f"{n:<42}{ms:>7.2f}{m:>9.4f}{x:>8.3f}" for n, ms, m, x in alternatives]
    hw = pre.resized_hw(720, 1280)
    section.notes.append(
        f"{frames} frames of 1280x720 H.264 (30 fps, {ctx.options.video_seconds:g} s) decoded as fast as possible, "
        f"{runs} interleaved passes; kept {kept['ingest']} of {frames} frames with the default ring, resized to {hw[1]}x{hw[0]}"
    )
    section.notes.append(
        "FileSource paces in real time, so its read loop's body is called directly (same functions, no sleeping); "
        "decoder threads as the source sets them (thread_type AUTO); each pass in its own thread set up like a reader (one torch thread)"
    )
    section.notes.append(
        "conversion alone, no decoder running beside it, in a reader-like thread (tensor diff vs the reference processor; "
        "bounds 0.01 mean / 0.1 max):\n      " + "\n      ".join(lines)
    )
    section.metrics.update(
        alternatives=[dict(zip(("name", "ms", "mean_abs_diff", "max_abs_diff"), a)) for a in alternatives],
        frames=frames,
        fps_median=fps,
        fps_best=best,
        ratio=ratio,
        ring_fps=ring_fps,
        kept=kept,
        decode_ms=decode_ms,
        convert_ms_per_kept=convert_ms,
        runs=runs,
    )


def resampler_costs(path: str, pre, config: dict, count: int = 8) -> list[tuple[str, float, float, float]]:
    """(name, ms per frame, mean diff, max diff) of ways to get a decoded 720p frame to model scale.

    Measured on decoded frames in isolation (no decoder running beside
    them); the diff is of the final model input against the reference
    processor fed the same frames converted to RGB. These are what a faster
    ingest could switch to, and what it would cost in agreement.
    """
    import time

    import av
    import numpy as np
    import torch

    from stream.bench.preprocess import reference_processor
    from stream.model.preprocess import resize_frame
    from stream.sources._av import av_to_rgb

    with av.open(path) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame)
            if len(frames) >= count:
                break
    rgb = [av_to_rgb(f) for f in frames]
    expected = reference_processor(config)(rgb)
    h, w = pre.resized_hw(rgb[0].shape[0], rgb[0].shape[1])

    def cost(fn, compare: bool = True) -> tuple[float, float, float]:
        outs = [fn(i) for i in range(len(frames))]  # warm-up, and the frames to compare
        start = time.perf_counter()
        for _ in range(3):
            for i in range(len(frames)):
                fn(i)
        ms = (time.perf_counter() - start) / (3 * len(frames)) * 1e3
        if not compare:
            return ms, float("nan"), float("nan")
        diff = (pre(torch.from_numpy(np.stack(outs))[None]) - expected).abs()
        return ms, float(diff.mean()), float(diff.max())

    ways = {
        "av_to_rgb + resize_frame (torch, now)": lambda i: resize_frame(av_to_rgb(frames[i]), (h, w)),
        "av_to_rgb only (no resize)": lambda i: av_to_rgb(frames[i]),
        "PyAV reformat to size (swscale bilinear)": lambda i: frames[i].reformat(
            width=w, height=h, format="rgb24", interpolation="BILINEAR"
        ).to_ndarray(),
    }
    try:
        import cv2

        ways["av_to_rgb + cv2 INTER_AREA"] = lambda i: cv2.resize(av_to_rgb(frames[i]), (w, h), interpolation=cv2.INTER_AREA)
    except ImportError:
        pass
    out = []
    for name, fn in ways.items():
        out.append((name, *cost(fn, compare="only" not in name)))  # full-size frames are not a model input
    return out
