"""Helpers for the recording tests: short-GOP test videos, reading clips back with PyAV, feeding buffers, collecting results."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import av
import numpy as np

from stream.bench.media import encode_frames
from tests.support.videos import frame_pattern

__all__ = ["ClipProbe", "Collected", "TapLog", "feed_file", "make_gop_video", "probe", "packet", "source_packets"]


def make_gop_video(
    path: str | Path, *, width: int = 320, height: int = 240, fps: int = 30, seconds: float = 2.0, gop: int = 10,
    pattern: str = "solid",
) -> Path:
    """An H.264 MP4 with a keyframe every ``gop`` frames (so a pre-capture has keyframes to start from)."""
    path = Path(path)
    rate = Fraction(fps)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        count = max(1, int(round(seconds * fps)))
        encode_frames(container, stream, (frame_pattern(i, width, height, pattern) for i in range(count)), rate)
    return path


def source_packets(path: str | Path) -> list[Any]:
    """Every non-empty packet of the file's video stream, as (bytes, pts, dts, duration, keyframe, time_base)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [
            (bytes(p), p.pts, p.dts, p.duration, p.is_keyframe, p.time_base) for p in container.demux(stream) if p.size
        ]


def packet(data: bytes, pts: int, *, key: bool = False, duration: int = 1, time_base: Fraction = Fraction(1, 30)) -> av.Packet:
    """A synthetic av.Packet (content irrelevant to the buffer)."""
    out = av.Packet(data)
    out.pts = out.dts = pts
    out.duration = duration
    out.is_keyframe = key
    out.time_base = time_base
    return out


def feed_file(buffer, path: str | Path, t0: float, *, seconds: float | None = None) -> int:
    """Demux ``path`` into ``buffer`` (begin + add) with ts = t0 + pts seconds, all at once; returns packets added."""
    from stream.events.packets import CodecInfo

    count = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        buffer.begin(CodecInfo.from_stream(stream))
        for p in container.demux(stream):
            if not p.size:
                continue
            ts = t0 + float(p.pts * p.time_base)
            if seconds is not None and ts - t0 > seconds:
                break
            buffer.add(p, ts)
            count += 1
    return count


@dataclass
class ClipProbe:
    """What a clip file says about itself, read with PyAV."""

    codec: str
    width: int
    height: int
    pix_fmt: str
    profile: str | None
    extradata: bytes | None
    duration_s: float
    packets: list[bytes]
    first_pts: int
    times: list[float]  # decoded frames' times, presentation order
    first_image: np.ndarray
    rate: float


def probe(path: str | Path) -> ClipProbe:
    """Read a clip back: container facts, every packet's bytes, and every frame decoded (all must decode)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        demuxed = [p for p in container.demux(stream) if p.size]
        packets = [bytes(p) for p in demuxed]
        first_pts = demuxed[0].pts
        duration = float(stream.duration * stream.time_base) if stream.duration else float("nan")
        facts = (ctx.name, stream.width, stream.height, ctx.pix_fmt, ctx.profile, ctx.extradata, float(stream.average_rate or 0))
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return ClipProbe(
        codec=facts[0], width=facts[1], height=facts[2], pix_fmt=facts[3], profile=facts[4], extradata=facts[5],
        duration_s=duration, packets=packets, first_pts=first_pts, times=[f.time for f in frames],
        first_image=frames[0].to_ndarray(format="rgb24"), rate=facts[6],
    )


class Collected:
    """An ``on_done`` callback that keeps what it got and lets a test wait for it (it runs on the recorder thread)."""

    def __init__(self) -> None:
        self.results: list[Any] = []
        self._event = threading.Event()

    def __call__(self, result: Any) -> None:
        self.results.append(result)
        self._event.set()

    def wait(self, timeout: float = 10.0) -> Any:
        if not self._event.wait(timeout):
            raise AssertionError(f"no clip result within {timeout:g} s")
        return self.results[0]


class TapLog:
    """A PacketTap that records what the buffer gave it."""

    def __init__(self) -> None:
        self.calls: list[Sequence[Any]] = []
        self.ended: list[str] = []

    def on_packets(self, codec, packets) -> None:
        self.calls.append(list(packets))

    def on_end(self, reason: str) -> None:
        self.ended.append(reason)

    @property
    def packets(self) -> list[Any]:
        return [p for call in self.calls for p in call]
