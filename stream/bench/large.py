"""Large frames: what one 1080p, 4K and 8K H.264 stream costs to decode, hold and snapshot.

Each measurement runs in a fresh Python process (``python -m
stream.bench.large PATH MODE`` prints one JSON line), so the peak RSS it
reports is that stream's alone: glibc keeps freed memory, and one process
measuring 8K after 4K would hide the second's cost. The videos are made here
at run time: a smooth picture with coarse texture and a moving block, coded
with x264 ultrafast at a low bit rate, so the decode times are a lower
bound for a real camera's stream; memory, RGB conversion and resize do not
depend on the content.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from stream.bench.common import MiB, Section
from stream.bench.context import BenchContext

__all__ = ["run", "make_large_h264", "measure"]

SIZES: dict[str, tuple[int, int]] = {"1080p": (1920, 1080), "4K": (3840, 2160), "8K": (7680, 4320)}
# How the decoder's threads are set: "bounded" is open_video as the sources
# call it (frame threads capped above 4K); "ffmpeg" is FFmpeg's own count on
# this machine (one per core, plus one); "17" is that count on a 16-core
# server, which a 2-core machine can still allocate and measure.
MODES = {
    "bounded": "as the sources open it",
    "ffmpeg": "FFmpeg's thread count here",
    "17": "FFmpeg's thread count on 16 cores",
}
_CHILD_TIMEOUT_S = 300
_FOUR_K = 3840 * 2160
_SHORT_SIDE = 224  # the model scale a snapshot is resized to (TimeSformer's shortest edge)


def run(ctx: BenchContext, section: Section) -> None:
    from stream.sources._av import open_video
    from stream.sources.errors import FatalSourceError

    quick = ctx.options.quick
    # Quick: one 4K stream, a few frames (a smoke test); full: 1080p, 4K, 8K.
    names = ["4K"] if quick else list(SIZES)
    frames = 3 if quick else 20
    for name in names:
        width, height = SIZES[name]
        path = make_large_h264(Path(ctx.workdir) / f"large-{name}.mp4", width, height, frames)
        # Up to 4K the sources keep FFmpeg's thread count: "bounded" is the only mode that differs.
        modes = list(MODES) if width * height > _FOUR_K and not quick else ["bounded"]
        for mode in modes:
            m = _measure_in_child(path, mode)
            label = f"{name}, {m['threads']} threads ({MODES[mode]})"
            section.add(
                f"{label}: decode per frame",
                f"{m['decode_ms']:.1f} ms ({1000 / m['decode_ms']:.0f} fps)" if m["decode_ms"] > 0 else "n/a",
            )
            section.add(f"{label}: decoder peak memory", f"{m['decoder_mib']:.0f} MiB")
            section.add(
                f"{label}: snapshot (RGB {m['rgb_ms']:.0f} ms + resize {m['resize_ms']:.0f} ms)",
                f"{m['rgb_ms'] + m['resize_ms']:.0f} ms, peak {m['snapshot_mib']:.0f} MiB",
            )
            section.metrics[f"{name}_{mode}"] = m
    from stream.config import validate_config

    limit = validate_config({}).ingest.max_pixels
    big = Path(ctx.workdir) / f"large-{names[-1]}.mp4"
    try:
        container, _ = open_video(str(big), big.name, network=False, max_pixels=limit)
        container.close()
        verdict = "accepted"
    except FatalSourceError as exc:
        verdict = "refused, the reason names ingest.max_pixels" if "ingest.max_pixels" in str(exc) else f"refused: {exc}"
    section.add(f"{names[-1]} at the default ingest.max_pixels ({limit})", verdict)
    section.notes.append(
        "each row is one stream measured alone in a fresh process; peak memory is RSS above that process's "
        "baseline (torch and PyAV imported); a server also holds the stream's ring at model scale (a few MiB)"
    )
    section.notes.append(
        "test video: x264 ultrafast, low bit rate: a real camera's 4K/8K stream takes longer to decode; "
        "memory and snapshot cost do not depend on the content"
    )


def _measure_in_child(path: Path, mode: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "stream.bench.large", str(path), mode],
        capture_output=True, text=True, timeout=_CHILD_TIMEOUT_S, check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"measuring {path.name} ({mode}) failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_large_h264(path: Path, width: int, height: int, frames: int) -> Path:
    """A short H.264 MP4 at this size (every frame differs), reused if it is already there."""
    import av

    from stream.bench.media import encode_frames

    if path.exists() and path.stat().st_size > 0:
        return path
    base = _picture(width, height)
    side = height // 5

    def images():
        for i in range(frames):
            image = np.roll(base, 16 * i, axis=1)
            image[height // 3 : height // 3 + side, 40 * i : 40 * i + side] = (230, 40, 50)
            yield image

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(30))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "x264-params": "keyint=30:bframes=0"}
        encode_frames(container, stream, images(), Fraction(30))
    return path


def _picture(width: int, height: int) -> np.ndarray:
    """Smooth colour gradients plus 16-pixel texture blocks, made at 1/8 size and scaled up (cheap at 8K)."""
    h8, w8 = -(-height // 8), -(-width // 8)
    yy, xx = np.mgrid[0:h8, 0:w8].astype(np.float32)
    small = np.stack([128 + 60 * np.sin(xx / (w8 / 9)), 255 * xx / w8, 255 * yy / h8], -1)
    small += np.random.default_rng(0).integers(0, 24, (h8, w8, 1))
    small = np.clip(small, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(np.repeat(small, 8, 0), 8, 1)[:height, :width])


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measure(path: str, mode: str) -> dict[str, Any]:
    """Decode the file as a source does (packet by packet, keeping the newest frame), then take snapshots."""
    import torch  # noqa: F401  (imported before the baseline: a server has it loaded)

    from stream.model.preprocess import resize_frame
    from stream.sources._av import av_to_rgb, open_video

    baseline = _rss_kib("VmRSS")
    container, stream = open_video(path, Path(path).name, network=False, max_pixels=None)
    if mode == "ffmpeg":
        stream.codec_context.thread_count = 0  # FFmpeg chooses: one per core, plus one
    elif mode.isdigit():
        stream.codec_context.thread_count = int(mode)  # what N threads would cost (by hand: python -m ... PATH N)
    latest = None
    count = 0
    t0 = time.perf_counter()
    for packet in container.demux(stream):
        for frame in packet.decode():
            latest = frame  # the newest frame is kept for previews, as a source keeps it
            count += 1
    decode_s = time.perf_counter() - t0
    threads = int(stream.codec_context.thread_count)
    decoder_peak = _rss_kib("VmHWM") - baseline
    rgb_ms, resize_ms = [], []
    for _ in range(3):
        t1 = time.perf_counter()
        rgb = av_to_rgb(latest)
        t2 = time.perf_counter()
        short, long = sorted(rgb.shape[:2])
        size = (_SHORT_SIDE, int(_SHORT_SIDE * long / short))
        resize_frame(rgb, size if rgb.shape[0] <= rgb.shape[1] else size[::-1])
        t3 = time.perf_counter()
        rgb_ms.append(1000 * (t2 - t1))
        resize_ms.append(1000 * (t3 - t2))
    container.close()
    return {
        "frames": count,
        "threads": threads,
        "decode_ms": 1000 * decode_s / max(count, 1),
        "decoder_mib": decoder_peak * 1024 / MiB,
        "rgb_ms": statistics.median(rgb_ms),
        "resize_ms": statistics.median(resize_ms),
        "snapshot_mib": (_rss_kib("VmHWM") - baseline) * 1024 / MiB,
    }


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], sys.argv[2])))
