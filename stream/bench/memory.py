"""Memory: ring bytes per 30 fps 720p stream at the default span, and the process's peak RSS."""

from __future__ import annotations

import numpy as np

from stream.bench.common import MiB, Section, peak_rss_bytes, rss_bytes
from stream.bench.context import BenchContext

__all__ = ["run"]

TARGET_BYTES = 64 * MiB


def run(ctx: BenchContext, section: Section) -> None:
    from stream.config import validate_config
    from stream.model.preprocess import Preprocessing
    from stream.pipeline import bytes_per_stream, make_ring, ring_fps_for
    from stream.ring import FrameRing, ring_capacity
    from stream.types import Frame

    config = validate_config({})
    pre = Preprocessing.from_processor_dict(ctx.processor_dict())
    h, w = pre.resized_hw(720, 1280)
    span = config.window.span_s

    def measured(fps: float | None) -> tuple[int, int]:
        # The default is the very ring a stream gets; "every frame" keeps 30 fps of the span.
        ring = make_ring(config, 8) if fps is not None else FrameRing(ring_capacity(span, 30.0), None)
        ring.push(Frame(np.zeros((h, w, 3), np.uint8), ts=0.0))  # images are allocated on the first frame
        return ring.nbytes, ring.capacity

    fps = ring_fps_for(config, 8, None)
    default_bytes, default_cap = measured(fps)
    every_bytes, every_cap = measured(None)
    section.add(
        f"ring per 30 fps 720p stream (default, {fps:.2f} fps kept)",
        f"{default_bytes / MiB:.1f} MiB ({default_cap} frames {w}x{h})",
        "",
        None,
        f"<= {TARGET_BYTES // MiB} MiB",
        default_bytes <= TARGET_BYTES,
    )
    section.add(
        "ring if every frame were kept (30 fps)",
        f"{every_bytes / MiB:.1f} MiB ({every_cap} frames)",
    )
    section.add("pipeline.bytes_per_stream (same ring, computed)", f"{bytes_per_stream(config, 8, h, w) / MiB:.1f} MiB")
    peak, now = peak_rss_bytes(), rss_bytes()
    section.add("peak RSS of this process (getrusage)", f"{peak / MiB:.0f} MiB")
    section.add("RSS now", f"{now / MiB:.0f} MiB")
    section.notes.append(
        "peak RSS covers the whole bench run so far: every model variant it loaded (a float32 base model is "
        "~0.5 GB of weights) plus torch, transformers and FFmpeg; a server loads one model"
    )
    section.notes.append(
        "beyond the ring a stream holds its decoder (a few 720p YUV frames per FFmpeg thread) and the newest "
        "decoded frame for previews, not counted here"
    )
    section.metrics.update(
        ring_default_bytes=default_bytes,
        ring_default_frames=default_cap,
        ring_every_frame_bytes=every_bytes,
        peak_rss_bytes=peak,
        rss_bytes=now,
        ring_fps=fps,
    )
