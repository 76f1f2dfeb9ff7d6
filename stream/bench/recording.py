"""Recording: what keeping packets and writing a clip costs, the packet buffer's memory, and the encoder's CPU.

1. Three 720p30 H.264 file cameras (FileSource in real time, each into a
   ring-like sink at the ring's rate and model scale), with recording off
   and on: on, every source copies its packets into a PacketBuffer
   (pre_capture_s) and one clip is being written by the ClipRecorder during
   the whole window. The process's CPU time per wall second is compared,
   runs interleaved off/on in this process, so neighbours' load touches both.
2. The buffers' memory after those runs: compressed bytes kept against
   pre_capture_s of the file's bit rate, and the per-packet bookkeeping.
3. The encoder that webcams and browser cameras need (they deliver decoded
   frames): CPU per 720p frame at encode_fps, for WebRTC-like frames (YUV
   VideoFrames) and webcam-like ones (BGR arrays), measured in its thread.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from stream.bench.common import MiB, Section, median
from stream.bench.context import BenchContext

__all__ = ["run"]

TARGET_CPU_RATIO = 1.05
CAMERAS = 3
PRE_CAPTURE_S = 5.0  # RecordConfig's default
ENCODE_FPS = 10.0
_WARMUP_S = 1.5  # sources open and fill their buffers before the window


def run(ctx: BenchContext, section: Section) -> None:
    from stream.config import RecordConfig, validate_config
    from stream.model.preprocess import Preprocessing
    from stream.pipeline import ring_fps_for

    quick = ctx.options.quick
    path = ctx.video()
    window = 2.0 if quick else 5.0
    runs = ctx.options.runs if quick else 2 * ctx.options.runs  # pairs; short ones, so load drifts less within a pair
    size_for = Preprocessing.from_processor_dict(ctx.processor_dict()).resized_hw
    ring_fps = ring_fps_for(validate_config({}), 8, None)
    assert RecordConfig().pre_capture_s == PRE_CAPTURE_S and RecordConfig().encode_fps == ENCODE_FPS
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    threads: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    last_on: dict[str, Any] = {}
    for r in range(runs):
        for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
            out = asyncio.run(_cameras(str(path), window, mode == "on", ctx.workdir / f"rec-{r}", size_for, ring_fps))
            cpu[mode].append(out["cpu_per_s"])
            threads[mode].append(out["threads"])
            if mode == "on":
                last_on = out
    _cpu_rows(section, cpu, threads, window, runs)
    _per_packet_rows(section, path, ctx.workdir / "rec-packets")
    _memory_rows(section, path, last_on)
    _encoder_rows(section, path, 20 if quick else 60)
    section.metrics.update(cpu_per_s=cpu, threads=threads, window_s=window, runs=runs, ring_fps=ring_fps)


async def _cameras(path: str, window: float, recording: bool, data_dir: Path, size_for, ring_fps: float) -> dict[str, Any]:
    """Run the cameras for ``window`` seconds after a warm-up; the process's CPU seconds per second."""
    from stream import clock
    from stream.events.clips import ClipRecorder
    from stream.events.files import MediaPaths
    from stream.events.packets import PacketBuffer
    from stream.sources import MemorySink
    from stream.sources.file import FileSource

    buffers = [PacketBuffer(PRE_CAPTURE_S) if recording else None for _ in range(CAMERAS)]
    sources = [FileSource(f"cam{i}", path, MemorySink(capacity=32, fps=ring_fps), size_for) for i in range(CAMERAS)]
    for source, buffer in zip(sources, buffers):
        source.set_recording(buffer)
    recorder = ClipRecorder(MediaPaths(data_dir)) if recording else None
    done: list[Any] = []
    out: dict[str, Any] = {}
    try:
        for source in sources:
            await source.start()
        await asyncio.sleep(_WARMUP_S)
        if recorder is not None:
            recorder.start("cam0:bench", "cam0", buffers[0], clock.now() - PRE_CAPTURE_S, 3600.0, done.append)
        threads0, cpu0, wall0 = _thread_cpu(), time.process_time(), time.perf_counter()
        await asyncio.sleep(window)
        threads1, cpu1, wall1 = _thread_cpu(), time.process_time(), time.perf_counter()
        wall = wall1 - wall0
        out["cpu_per_s"] = (cpu1 - cpu0) / wall
        out["threads"] = {k: (threads1.get(k, 0.0) - threads0.get(k, 0.0)) / wall for k in threads1}
        if recorder is not None:
            out["buffers"] = [b.stats() for b in buffers if b is not None]
            out["packet_overhead"] = _packet_overhead()
            finish0 = time.perf_counter()
            recorder.finish("cam0:bench", clock.now())
            while not done:
                await asyncio.sleep(0.01)
            out["finalize_s"] = time.perf_counter() - finish0
            out["clip"] = done[0]
    finally:
        for source in sources:
            await source.stop()
        if recorder is not None:
            recorder.close()
    return out


def _packet_overhead() -> int:
    """Bytes of Python bookkeeping per kept packet: the StoredPacket, its bytes object's header, a list slot."""
    from stream.events.packets import StoredPacket

    return sys.getsizeof(StoredPacket(b"", 0, 0, 0, False, 0.0)) + sys.getsizeof(b"") + 8


def _thread_cpu() -> dict[str, float]:
    """CPU seconds so far of this process's source readers and clip writer (Linux /proc; empty elsewhere)."""
    import threading

    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for thread in threading.enumerate():
        name = thread.name
        key = "readers" if name.startswith("source-") else "clip writer" if name == "clip-recorder" else None
        if key is None or thread.native_id is None:
            continue
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # the thread ended, or no /proc here
        fields = stat[stat.rindex(")") + 2 :].split()
        out[key] = out.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return out


def _cpu_rows(section: Section, cpu: dict[str, list[float]], threads: dict[str, list[dict[str, float]]], window: float, runs: int) -> None:
    # Each pair ran back to back: its ratio sees the same neighbours; the median of those ratios is the figure.
    ratios = sorted(on / off for on, off in zip(cpu["on"], cpu["off"]) if off > 0)
    ratio = median(ratios) if ratios else float("nan")
    off, on = median(cpu["off"]), median(cpu["on"])
    section.add(
        f"CPU, {CAMERAS} x 720p30 file cameras, recording on / off",
        f"{on * 100:.1f}% of a core",
        f"{off * 100:.1f}%",
        ratio,
        f"<= {TARGET_CPU_RATIO}",
        ratio <= TARGET_CPU_RATIO,
    )
    if ratios:
        section.add("  pairs' ratios (min / max)", f"{ratios[0]:.3f} / {ratios[-1]:.3f}")
    for key in ("readers", "clip writer"):
        on_k = median([t.get(key, 0.0) for t in threads["on"]])
        off_k = median([t.get(key, 0.0) for t in threads["off"]])
        section.add(f"  of which the {key} thread(s)", f"{on_k * 100:.1f}% of a core", f"{off_k * 100:.1f}%")
    section.notes.append(
        f"process CPU time over {window:g} s windows after {_WARMUP_S:g} s of warm-up, {runs} pairs of runs (off/on, "
        f"alternating which goes first), ratio = median of the pairs' ratios; 'on' = every camera copies its packets into "
        f"a PacketBuffer ({PRE_CAPTURE_S:g} s) and one clip is being written through the whole window (its finalization, "
        "after the window, is a row below); readers' threads = the sources' Python threads (demux, our copies; FFmpeg's "
        "decoder threads are not in them)"
    )


def _per_packet_rows(section: Section, path: Path, data_dir: Path) -> None:
    """The same work without the cameras around it: what one packet costs in the buffer and in a clip."""
    import av

    from stream.events.clips import ClipRecorder
    from stream.events.files import MediaPaths
    from stream.events.packets import CodecInfo, PacketBuffer

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size]
        codec = CodecInfo.from_stream(stream)
    passes = 10
    buffer = PacketBuffer(PRE_CAPTURE_S)
    start = time.process_time()
    for n in range(passes):
        buffer.begin(codec)
        for i, packet in enumerate(packets):
            buffer.add(packet, n * 100.0 + i / 30)
        buffer.end("bench")
    add_us = (time.process_time() - start) / (passes * len(packets)) * 1e6
    recorder = ClipRecorder(MediaPaths(data_dir))
    done: list[Any] = []
    buffer.begin(codec)
    recorder.start("bench:packets", "bench", buffer, 0.0, 3600.0, done.append)
    start = time.process_time()
    for n in range(passes):
        for i, packet in enumerate(packets):
            buffer.add(packet, n * 100.0 + i / 30)
    buffer.end("bench")
    while not done:
        time.sleep(0.005)
    clip_us = (time.process_time() - start) / (passes * len(packets)) * 1e6 - add_us
    recorder.close()
    share = (CAMERAS * 30 * add_us + 30 * clip_us) / 1e6
    section.add("per packet: copy into the buffer (warm caches)", f"{add_us:.1f} us")
    section.add("per packet: remux into a clip (writer thread)", f"{clip_us:.1f} us")
    section.add(
        f"  so {CAMERAS} cameras at 30 fps + one clip cost", f"{share * 100:.2f}% of a core",
        "", None, "", None,
    )
    section.metrics.update(add_us=add_us, clip_us=clip_us)


def _memory_rows(section: Section, path: Path, on: dict[str, Any]) -> None:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        seconds = float(stream.duration * stream.time_base) if stream.duration else 10.0
    byterate = os.path.getsize(path) / seconds
    gop_s = 2.0  # stream.bench.media.make_h264: keyint = 2 s
    stats = on.get("buffers") or []
    if not stats:
        section.add("packet buffer per stream", "not measured")
        return
    worst = max(stats, key=lambda s: s["bytes"])
    bound = (PRE_CAPTURE_S + gop_s) * byterate
    overhead = on["packet_overhead"] * worst["packets"]
    section.add(
        f"packet buffer per stream (keep_s {PRE_CAPTURE_S:g} s)",
        f"{worst['bytes'] / MiB:.2f} MiB over {worst['seconds']:.1f} s, {worst['packets']} packets",
        f"{PRE_CAPTURE_S * byterate / MiB:.2f} MiB = {PRE_CAPTURE_S:g} s at {byterate * 8 / 1e6:.2f} Mbit/s",
        worst["bytes"] / (PRE_CAPTURE_S * byterate),
        f"<= keep_s + 1 GOP ({bound / MiB:.2f} MiB)",
        worst["bytes"] <= bound * 1.05,
    )
    section.add("  + bookkeeping (per packet object + bytes header)", f"{overhead / 1024:.0f} KiB ({on['packet_overhead']} B/packet)")
    clip = on.get("clip")
    if clip is not None and hasattr(clip, "size_bytes"):
        section.add(
            "clip done after finish() (next packet, writer batch, trailer + faststart)",
            f"{on['finalize_s'] * 1e3:.0f} ms for {clip.size_bytes / MiB:.1f} MiB, {clip.duration_s:.1f} s",
        )
    section.notes.append(
        "the buffer keeps whole GOPs: from the keyframe at or before keep_s back, so up to one GOP (2 s in this file) more "
        "than keep_s; the pipeline gives keep_s = pre_capture_s plus a few seconds of slack for a late event start"
    )
    section.metrics.update(buffers=stats, byterate=byterate, packet_overhead=on["packet_overhead"])


def _encoder_rows(section: Section, path: Path, frames: int) -> None:
    costs = asyncio.run(_encoder_costs(path, frames))
    for name, (ms, dropped, kbps) in costs.items():
        share = ms * ENCODE_FPS / 10  # ms per frame x frames per second / 1000 ms, in percent
        section.add(
            f"encoder, {name} 720p at {ENCODE_FPS:g} fps",
            f"{ms:.1f} ms/frame = {share:.1f}% of a core",
            "",
            None,
        )
        kept = kbps * 1000 / 8 * PRE_CAPTURE_S
        section.add(f"  encoded bit rate ({name})", f"{kbps:.0f} kbit/s ({kept / MiB:.2f} MiB per {PRE_CAPTURE_S:g} s kept)")
        section.metrics[f"encoder_{name}_ms"] = ms
        section.metrics[f"encoder_{name}_dropped"] = dropped
    section.notes.append(
        f"encoder: libx264 ultrafast/zerolatency, one thread, GOP 2 s, yuv420p; {frames} frames of the bench's 720p file "
        "offered one at a time, CPU of the encoder's own thread (conversion to YUV + encoding) per frame"
    )


async def _encoder_costs(path: Path, frames: int) -> dict[str, tuple[float, int, float]]:
    import av

    from stream.events.encoder import FrameEncoder
    from stream.events.packets import PacketBuffer
    from stream.sources._av import av_to_rgb
    from stream.sources.webcam import WebcamSource, bgr_to_rgb

    with av.open(str(path)) as container:
        decoded = []
        for frame in container.decode(video=0):
            decoded.append(frame)
            if len(decoded) >= 30:
                break
    inputs = {
        "WebRTC-like (YUV frames)": ([f for f in decoded], av_to_rgb),
        "webcam-like (BGR arrays)": ([f.to_ndarray(format="bgr24") for f in decoded], bgr_to_rgb),
    }
    out = {}
    for name, (items, to_rgb) in inputs.items():
        buffer = PacketBuffer(3600.0)
        fmt = WebcamSource.array_format if to_rgb is bgr_to_rgb else "rgb24"
        encoder = FrameEncoder(buffer, fps=ENCODE_FPS, max_height=720, array_format=fmt, name="bench")
        encoder.start()
        try:
            for i in range(frames + 2):
                encoder.offer(items[i % len(items)], to_rgb, i / ENCODE_FPS)
                while encoder.frames_encoded <= i:
                    await asyncio.sleep(0.001)
                if i == 1:
                    warm = encoder.cpu_s  # the first frames open the encoder
            cpu = encoder.cpu_s - warm
            stats = buffer.stats()
        finally:
            await encoder.stop()
        kbps = stats["bytes"] * 8 / 1000 / max(stats["seconds"], 1e-9)
        out[name] = (cpu / frames * 1e3, encoder.dropped, kbps)
    return out
