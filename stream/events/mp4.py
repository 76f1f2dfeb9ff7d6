"""One clip file being written: stored packets remuxed into MP4, timestamps from zero, ``+faststart``.

Nothing is decoded or encoded: each packet's bytes go into the file as they
came (the MP4 muxer only reframes Annex B H.264 from RTSP into length
prefixes). The writer is the clip recorder's thread; this class knows
nothing of events, only of one file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import av
import av.error

from stream.events.packets import CodecInfo, StoredPacket

__all__ = ["Mp4Writer", "WriteError"]

log = logging.getLogger(__name__)

WriteError = (OSError, av.error.FFmpegError)  # what opening, writing or closing a clip may raise


class Mp4Writer:
    """Writes ``part`` from a keyframe on; :meth:`close` renames it, :meth:`discard` deletes it."""

    def __init__(self, part: Path, codec: CodecInfo, first: StoredPacket) -> None:
        if not codec.recordable:
            raise ValueError(f"{codec.codec} video cannot be stored in MP4 ({codec.template_error})")
        self.part = part
        self.codec = codec
        self.first_ts = first.ts  # monotonic time of the clip's first frame
        self.end_ts = float("-inf")  # monotonic end of the newest packet written
        self.packets = 0
        self._tb_s = float(codec.time_base)  # Fraction arithmetic per packet would cost more than the muxing
        self._base = first.pts if first.pts is not None else (first.dts if first.dts is not None else 0)
        self._last_dts: int | None = None
        self._last_pts: int | None = None
        self._gap = 0  # the last pts step: the duration of packets that state none
        self._min_pts: int | None = None
        self._max_end = 0
        # The file is opened here, not by FFmpeg: when FFmpeg's own open is
        # followed by a failed header write (a full disk), PyAV never closes
        # that descriptor. Unbuffered, so a failed write is not retried at
        # every seek; by path, so +faststart can reopen it to move the index.
        self._file = open(part, "w+b", buffering=0, opener=_private)
        self._container: Any = None
        try:
            self._container = av.open(self._file, mode="w", format="mp4", options={"movflags": "+faststart"})
            stream = self._container.add_stream_from_template(codec.template, opaque=True)
        except BaseException:
            self.discard()
            raise
        ctx = stream.codec_context
        # The template may be an encoder's, made before its size was known: the plain fields rule.
        ctx.width, ctx.height = codec.width, codec.height
        if codec.extradata is not None:
            ctx.extradata = codec.extradata
        stream.time_base = codec.time_base
        self._stream = stream

    @property
    def duration_s(self) -> float:
        """Last packet's end - first packet's start, as the file says."""
        return float((self._max_end - (self._min_pts or 0)) * self.codec.time_base)

    def write(self, packet: StoredPacket) -> None:
        tb = self.codec.time_base
        if packet.pts is None and packet.dts is None:
            pts = dts = round((packet.ts - self.first_ts) / self._tb_s)  # a camera that sends no timestamps
        else:
            pts = (packet.pts if packet.pts is not None else packet.dts) - self._base
            dts = (packet.dts if packet.dts is not None else packet.pts) - self._base
        if self._last_dts is not None and dts <= self._last_dts:
            dts = self._last_dts + 1  # MP4 needs strictly increasing dts; a camera's jitter must not fail the clip
            pts = max(pts, dts)
        if self._last_pts is not None and pts > self._last_pts:
            self._gap = pts - self._last_pts
        duration = packet.duration or self._gap
        out = av.Packet(packet.data)
        out.pts, out.dts, out.duration = pts, dts, duration
        out.is_keyframe = packet.keyframe
        out.time_base = tb
        out.stream = self._stream
        self._container.mux(out)
        self._last_dts = dts
        self._last_pts = pts if self._last_pts is None else max(pts, self._last_pts)
        self._min_pts = pts if self._min_pts is None else min(self._min_pts, pts)
        self._max_end = max(self._max_end, pts + duration)
        self.end_ts = max(self.end_ts, packet.ts + duration * self._tb_s)
        self.packets += 1

    def close(self, path: Path) -> int:
        """Write the trailer (faststart moves the index to the front), rename to ``path``; its size in bytes."""
        try:
            self._container.close()
            self._file.close()
            os.replace(self.part, path)
            return path.stat().st_size
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Throw the file away: closed first, so PyAV skips the trailer instead of writing to a full disk."""
        for close in (self._file.close, self._container.close if self._container is not None else None):
            try:
                if close is not None:
                    close()
            except Exception as exc:  # the clip is being thrown away; its trailer does not matter
                log.debug("closing an abandoned clip failed: %s", exc)
        try:
            self.part.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not delete %s: %s", self.part, exc.strerror or exc)


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)  # clips show what cameras saw
