"""A rolling buffer of a stream's *compressed* video, for clips that start before their event.

A source that demuxes (network, file) copies every packet into a
:class:`PacketBuffer` as it reads it: no extra decode, a ``bytes`` copy per
packet. Sources of decoded frames (webcams, WebRTC) feed one through
:class:`~stream.events.encoder.FrameEncoder`. The buffer keeps the current
*segment* (one connection, or one run of a looping file) as whole GOPs: a clip
must start on a keyframe, so what is trimmed from the front is always a
whole GOP, and what is kept reaches ``keep_s`` back from the newest packet
from the keyframe at or before that point. ``max_bytes`` bounds a stream
whose GOP or bitrate is huge (trimming early, counted).

Clip writers :meth:`~PacketBuffer.attach` a tap: it gets the buffered
packets from a keyframe at or before the time it asks for, then every new
packet, with nothing missed or repeated between the two (both under the
buffer's lock), until the segment ends. A segment never spans a gap: a
reconnect or stop ends it, so a clip never shows two connections as one.
"""

from __future__ import annotations

import collections
import io
import logging
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol, Sequence

__all__ = ["CodecInfo", "StoredPacket", "PacketTap", "PacketBuffer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CodecInfo:
    """Enough to mux a segment's packets into MP4 after its input stream is gone (a reconnect closes it).

    ``template`` is an output stream in an unstarted in-memory MP4 container,
    holding a copy of the input's codec parameters (extradata, profile,
    pixel format, aspect ratio...): PyAV offers no way to set a remuxed
    stream's extradata from plain data, but it copies every parameter from
    a template. It is None when MP4 cannot hold the codec
    (``template_error`` says why); such a stream records no clips.
    """

    codec: str  # FFmpeg codec name: "h264", "hevc"...
    width: int
    height: int
    time_base: Fraction  # of the packets' pts, dts and duration
    extradata: bytes | None
    pix_fmt: str | None = None
    rate: Fraction | None = None  # nominal frame rate, when the stream states one
    bit_rate: int = 0
    template: Any = field(default=None, compare=False, repr=False)
    template_error: str = field(default="", compare=False)

    @classmethod
    def from_stream(cls, stream: Any) -> CodecInfo:
        """From an open PyAV input video stream (call on the thread that reads it, while it is open)."""
        ctx = stream.codec_context
        template, error = mp4_template(stream)
        return cls(
            codec=ctx.name,
            width=int(ctx.width or 0),
            height=int(ctx.height or 0),
            time_base=stream.time_base or Fraction(1, 90000),
            extradata=ctx.extradata,
            pix_fmt=ctx.pix_fmt,
            rate=stream.average_rate or stream.guessed_rate or None,
            bit_rate=int(stream.bit_rate or ctx.bit_rate or 0),
            template=template,
            template_error=error,
        )

    @property
    def recordable(self) -> bool:
        return self.template is not None


def mp4_template(stream: Any) -> tuple[Any, str]:
    """``(template stream, "")`` copying ``stream``'s parameters, or ``(None, why)`` if MP4 cannot hold its codec."""
    import av

    try:
        holder = av.open(io.BytesIO(), mode="w", format="mp4")
        # opaque: the new context uses the input's own codec (a decoder);
        # the default would look for an encoder, which e.g. HEVC may not have here.
        return holder.add_stream_from_template(stream, opaque=True), ""
    except (ValueError, av.error.FFmpegError) as exc:
        return None, str(exc)


@dataclass(frozen=True, slots=True)
class StoredPacket:
    """One compressed video packet, copied out of FFmpeg (in :attr:`CodecInfo.time_base` units)."""

    data: bytes
    pts: int | None
    dts: int | None
    duration: int  # 0 when unknown
    keyframe: bool
    ts: float  # monotonic time of the packet's frame, on the clock of Frame.ts and label events (stream.clock)


class PacketTap(Protocol):
    """What :meth:`PacketBuffer.attach` feeds. Called with the buffer's lock held: must not block."""

    def on_packets(self, codec: CodecInfo, packets: Sequence[StoredPacket]) -> None:
        """The replay (many packets, from a keyframe) or one new packet, in decode order."""
        ...

    def on_end(self, reason: str) -> None:
        """The segment ended (disconnect, stop...): no more packets come to this tap; it is detached."""
        ...


class _Gop:
    """A keyframe and the packets after it, up to the next keyframe."""

    __slots__ = ("packets", "start_ts", "nbytes")

    def __init__(self, first: StoredPacket) -> None:
        self.packets = [first]
        self.start_ts = first.ts
        self.nbytes = len(first.data)


class PacketBuffer:
    """Thread-safe rolling buffer of one stream's compressed packets; one writer (the source's reader).

    ``keep_s``: how far back from the newest packet :meth:`attach` can
    still reach. Give it ``pre_capture_s`` plus how late an event's start
    can arrive after its frames (inference latency): the GOP before that
    point is kept on top of it by the trimming rule. Memory is then about
    ``keep_s`` plus one GOP of compressed video, and never over ``max_bytes``
    (plus a fixed ~150 bytes per packet of bookkeeping).
    """

    def __init__(self, keep_s: float, *, max_bytes: int = 64 << 20) -> None:
        if not keep_s >= 0:
            raise ValueError(f"PacketBuffer keep_s must be >= 0, got {keep_s!r}")
        if not max_bytes > 0:
            raise ValueError(f"PacketBuffer max_bytes must be > 0, got {max_bytes!r}")
        self.keep_s = float(keep_s)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._codec: CodecInfo | None = None  # the open segment's; None between segments
        self._gops: collections.deque[_Gop] = collections.deque()
        self._bytes = 0
        self._packets = 0
        self._newest_ts = float("-inf")
        self._taps: list[PacketTap] = []
        self._delivering = False  # the segment's first keyframe came: packets go to taps
        self._storing = False  # packets are kept (False until a keyframe, again after an oversized GOP)
        self._end_pts: int | None = None  # end of the segment's latest packet, for continuing timestamps
        self._shift = 0  # added to pts/dts: a looping file's later runs follow on from the first
        self._shift_pending = False
        # Counters (read under the lock by stats()).
        self._segments = 0
        self._trimmed_early = 0  # GOPs trimmed before keep_s because of max_bytes
        self._dropped = 0  # packets not kept because their GOP alone exceeded max_bytes
        self._before_keyframe = 0  # packets of a segment before its first keyframe (not decodable)

    # ------------------------------------------------------------- writer side

    def begin(self, codec: CodecInfo, *, continues: bool = False) -> None:
        """A new connection or file run: a new segment (the previous one, if still open, ends as ``reconnected``).

        ``continues=True`` (a looping file opened again) keeps the open
        segment when the codec is the same: timestamps are shifted to follow
        on from the previous run, so a clip goes on across the loop.
        """
        with self._lock:
            if continues and self._codec is not None and codec == self._codec:
                self._shift_pending = True
                return
            if self._codec is not None:
                self._end_locked("reconnected")
            self._codec = codec
            self._segments += 1
            self._delivering = self._storing = False
            self._end_pts, self._shift, self._shift_pending = None, 0, False
            self._newest_ts = float("-inf")

    def add(self, packet: Any, ts: float) -> None:
        """Copy one demuxed ``av.Packet`` in (``ts``: its frame's monotonic time). Ignored outside a segment."""
        if packet.size == 0:
            return  # the empty packet demux yields at the end, to flush decoders
        data = bytes(packet)
        pts, dts = packet.pts, packet.dts
        duration = int(packet.duration or 0)
        keyframe = bool(packet.is_keyframe)
        with self._lock:
            codec = self._codec
            if codec is None:
                return
            if self._shift_pending:
                self._shift_pending = False
                first = dts if dts is not None else pts
                if first is not None and self._end_pts is not None:
                    self._shift = self._end_pts - first
            if self._shift:
                pts = pts + self._shift if pts is not None else None
                dts = dts + self._shift if dts is not None else None
            stored = StoredPacket(data, pts, dts, duration, keyframe, ts)
            start = pts if pts is not None else dts
            if start is not None:
                end = start + duration
                self._end_pts = end if self._end_pts is None else max(self._end_pts, end)
            if not self._delivering:
                if not keyframe:
                    self._before_keyframe += 1
                    return
                self._delivering = True
            self._store_locked(stored)
            for tap in self._taps:
                try:
                    tap.on_packets(codec, (stored,))
                except Exception:  # a clip writer's bug must not break the camera's reader
                    log.exception("packet tap failed")

    def end(self, reason: str) -> None:
        """The source disconnected, stopped or was removed: taps get ``on_end(reason)``, the video is let go."""
        with self._lock:
            self._end_locked(reason)

    # ------------------------------------------------------------- reader side

    def attach(self, tap: PacketTap, since_ts: float) -> None:
        """Replay buffered packets from the last keyframe at or before ``since_ts`` (else the oldest kept), then feed new ones.

        Atomic: no packet is missed or repeated between the replay and the
        live packets. A tap attached between segments gets the next one.
        """
        with self._lock:
            codec = self._codec
            gops = self._gops
            if codec is not None and gops:
                first = 0
                for index, gop in enumerate(gops):
                    if gop.start_ts > since_ts:
                        break
                    first = index
                replay = [p for gop in list(gops)[first:] for p in gop.packets]
                tap.on_packets(codec, replay)
            self._taps.append(tap)

    def detach(self, tap: PacketTap) -> None:
        """Stop feeding ``tap`` (idempotent)."""
        with self._lock:
            try:
                self._taps.remove(tap)
            except ValueError:
                pass

    def stats(self) -> dict[str, Any]:
        with self._lock:
            oldest = self._gops[0].start_ts if self._gops else None
            return {
                "bytes": self._bytes,
                "packets": self._packets,
                "gops": len(self._gops),
                "seconds": (self._newest_ts - oldest) if oldest is not None else 0.0,
                "segments": self._segments,
                "recording": self._codec is not None,
                "taps": len(self._taps),
                "trimmed_early": self._trimmed_early,
                "dropped": self._dropped,
                "before_keyframe": self._before_keyframe,
                "keep_s": self.keep_s,
                "max_bytes": self.max_bytes,
            }

    # ----------------------------------------------------------------- helpers

    def _store_locked(self, packet: StoredPacket) -> None:
        if packet.keyframe:
            self._gops.append(_Gop(packet))
            self._storing = True
        elif self._storing:
            gop = self._gops[-1]
            gop.packets.append(packet)
            gop.nbytes += len(packet.data)
        else:
            self._dropped += 1  # the rest of an oversized GOP: no keyframe to start a clip from
            return
        self._bytes += len(packet.data)
        self._packets += 1
        self._newest_ts = max(self._newest_ts, packet.ts)
        self._trim_locked()

    def _trim_locked(self) -> None:
        gops = self._gops
        horizon = self._newest_ts - self.keep_s
        # The front GOP goes once the next keyframe is itself old enough to start any clip that can still ask.
        while len(gops) >= 2 and gops[1].start_ts <= horizon:
            self._pop_front()
        while len(gops) >= 2 and self._bytes > self.max_bytes:
            self._pop_front()
            self._trimmed_early += 1
        if self._bytes > self.max_bytes:
            # One GOP alone is too big: keep nothing until the next keyframe.
            gop = gops.pop()
            self._bytes -= gop.nbytes
            self._packets -= len(gop.packets)
            self._dropped += len(gop.packets)
            self._storing = False

    def _pop_front(self) -> None:
        gop = self._gops.popleft()
        self._bytes -= gop.nbytes
        self._packets -= len(gop.packets)

    def _end_locked(self, reason: str) -> None:
        if self._codec is None:
            return
        taps, self._taps = self._taps, []
        self._codec = None
        self._gops.clear()
        self._bytes = self._packets = 0
        for tap in taps:
            try:
                tap.on_end(reason)
            except Exception:  # one broken tap must not keep the others open
                log.exception("packet tap failed at the end of a segment")
