"""Seed a data folder with stored events, clips and snapshots before a server starts on it.

The browser tests of the events page need known events with known media,
independent of what the recorder happens to capture: they write rows through
the real EventStore (the same writer the server uses), a real H.264 MP4 that
Chromium plays (yuv420p, moov atom first so playback starts before the whole
file arrives) and a real JPEG per event, at the paths the server serves from.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2

from stream.bench.media import encode_frames
from stream.events import EventStore
from tests.support.videos import frame_pattern

__all__ = ["SeedEvent", "make_clip", "make_snapshot", "seed_events"]


@dataclass(frozen=True, slots=True)
class SeedEvent:
    """One finished event to store. ``clip_file=False`` marks a clip that is stored as ready but whose file is gone."""

    id: str
    stream: str
    label: str
    start: float  # Unix seconds
    end: float
    peak_score: float
    clip: bool = True
    snapshot: bool = True
    clip_file: bool = True


def make_clip(path: str | Path, *, seconds: float = 3.0, fps: int = 15, width: int = 320, height: int = 240) -> Path:
    """An H.264 yuv420p MP4 with faststart (what a browser plays straight from a Range request)."""
    path = Path(path)
    rate = Fraction(fps)
    count = max(1, int(round(seconds * fps)))
    with av.open(str(path), mode="w", container_options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline"}
        encode_frames(container, stream, (frame_pattern(i, width, height) for i in range(count)), rate)
    return path


def make_snapshot(index: int, *, width: int = 320, height: int = 240) -> bytes:
    """A JPEG of frame ``index`` of the moving-square pattern (each event's thumbnail looks different)."""
    rgb = frame_pattern(index * 7, width, height)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        raise RuntimeError("cv2.imencode could not make a JPEG")
    return data.tobytes()


def seed_events(data_dir: str | Path, events: Iterable[SeedEvent], *, clip: Path) -> None:
    """Store ``events`` (rows, clip files copied from ``clip``, snapshots) in ``data_dir``; the store is closed after."""
    store = EventStore.open(data_dir)
    try:
        store.media.ensure()
        clip_seconds = _duration(clip)
        for seq, ev in enumerate(events, start=1):
            # The row layout of stream.events.subscriber.event_row.
            store.write_event(
                (ev.id, ev.stream, ev.label, ev.start, ev.end, ev.peak_score, ev.peak_score, (ev.start + ev.end) / 2,
                 "score_dropped", seq, ev.end)
            )  # fmt: skip
            if ev.snapshot:
                data = make_snapshot(seq)
                store.media.snapshot(ev.id).write_bytes(data)
                store.mark_snapshot(ev.id, len(data))
            if ev.clip:
                if ev.clip_file:
                    shutil.copyfile(clip, store.media.clip(ev.id))
                store.mark_clip(ev.id, clip_seconds, clip.stat().st_size)
        store.flush().result(timeout=10)
    finally:
        store.close()


def _duration(path: Path) -> float:
    with av.open(str(path)) as container:
        return float(container.duration) / av.time_base
