"""Network cameras and streams through PyAV: rtsp, rtsps, rtmp, http, https."""

from __future__ import annotations

import logging
from typing import Any

import av.error

from stream import clock
from stream.clock import PtsClock
from stream.sources._av import av_to_rgb, classify_av_error, close_quietly, display_size, open_video
from stream.sources.base import FrameSink, SizeFor, SourceOptions, StatusCallback
from stream.sources.threaded import ThreadedSource
from stream.sources.errors import InvalidSource
from stream.sources.urls import SourceKind, classify

__all__ = ["NetworkSource", "ffmpeg_options", "read_timeout"]

logger = logging.getLogger(__name__)


def read_timeout(options: SourceOptions) -> float:
    """Seconds one blocking read may take before FFmpeg gives up.

    Half the watchdog, because a frozen H.264 server is noticed only at the
    *second* timed-out read: at the first one FFmpeg's parser releases the
    frame it was holding back (stamped with the time the camera made it,
    see :class:`~stream.clock.PtsClock`), and only the next read fails.
    """
    return min(options.read_timeout_s, options.watchdog_s / 2)


def ffmpeg_options(scheme: str, options: SourceOptions) -> dict[str, str]:
    """FFmpeg options for a live network source: low latency, bounded waits."""
    # "flags=low_delay" is not here: PyAV does not pass these options to the
    # decoder it opens, so open_video(low_delay=True) sets the flag itself.
    opts: dict[str, str] = {}
    socket_timeout_us = str(int(read_timeout(options) * 1_000_000))
    if scheme in ("rtsp", "rtsps", "rtmp"):
        # Hand packets over as they arrive. This also drops the packets read
        # while probing, so the first picture waits for the next keyframe,
        # instead of a burst of second-old frames stamped "now" at connect.
        opts["fflags"] = "nobuffer"
    if scheme in ("rtsp", "rtsps"):
        opts.update(
            rtsp_transport="tcp",  # UDP drops packets under load and is blocked by most NATs
            timeout=socket_timeout_us,  # socket I/O timeout in microseconds ("stimeout" is gone)
            allowed_media_types="video",  # do not set up audio we would throw away
            analyzeduration="1000000",  # probe 1 s, not 5 s: a camera's SDP already says most of it
        )
    elif scheme in ("http", "https"):
        # No nobuffer here: over HTTP a short clip can be read whole while
        # probing, and nobuffer would throw all of it away.
        opts.update(timeout=socket_timeout_us)
    # rtmp: its "timeout" option means *listen* for a publisher, so it is not
    # set; PyAV's interrupt-callback timeouts bound the waits instead.
    return opts


class NetworkSource(ThreadedSource):
    """A live network stream, decoded by PyAV in a reader thread, reconnected when it breaks.

    Every frame is decoded (a stream cannot be skipped into), but only the
    frames the sink wants are converted to RGB and resized. ``Frame.ts`` is
    when the camera produced the frame, on our monotonic clock: its
    presentation time mapped through the offset that fits this connection
    (:class:`~stream.clock.PtsClock`), never later than its arrival. So a
    frame FFmpeg held back while the camera froze keeps its own time, and a
    label made from it says how old it really is. The no-frame watchdog
    still counts arrivals.
    """

    kind = "network"

    def __init__(
        self,
        stream_id: str,
        url: str,
        sink: FrameSink,
        size_for: SizeFor,
        on_status: StatusCallback | None = None,
        options: SourceOptions | None = None,
    ) -> None:
        spec = classify(url)
        if spec.kind is not SourceKind.NETWORK:
            raise InvalidSource(f"{spec.display} is not a network URL (rtsp, rtsps, rtmp, http or https)")
        super().__init__(stream_id, sink, size_for, on_status, options, display=spec.display)
        self._url = url
        self._scheme = spec.scheme
        self._container: Any = None
        self._stream: Any = None
        self._pts_clock = PtsClock()
        self._pts_offset: float | None = None  # ts - pts of the newest frame: maps packets like their frames
        self._time_base_s: float | None = None  # the stream's, as a float (Fraction arithmetic costs 4 us a packet)

    def _connect(self) -> None:
        self._pts_clock.reset()
        self._pts_offset = None
        options = self.options
        read_s = read_timeout(options)
        self._container, self._stream = open_video(
            self._url,
            self.display,
            network=True,
            options=ffmpeg_options(self._scheme, options),
            timeout=(options.open_timeout_s, read_s),
            low_delay=True,
            max_pixels=options.max_pixels,
        )
        logger.info(
            "source %s: opened %s (%s %sx%s)",
            self.stream_id,
            self.display,
            self._stream.codec_context.name,
            self._stream.codec_context.width,
            self._stream.codec_context.height,
        )
        if self._record_buffer is not None:
            from stream.events.packets import CodecInfo

            self._time_base_s = float(self._stream.time_base) if self._stream.time_base else None
            self._record_buffer.begin(CodecInfo.from_stream(self._stream))

    def _read(self) -> None:
        read_s = read_timeout(self.options)
        stream = self._stream
        buffer = self._record_buffer
        try:
            for packet in self._container.demux(stream):
                if self.stopping:
                    return
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    # A damaged packet (lost data, missing reference): the
                    # decoder recovers at the next keyframe; the watchdog
                    # catches a stream that never does.
                    frames = ()
                for frame in frames:
                    ts = self._pts_clock.stamp(frame.time, clock.now())
                    if frame.time is not None:
                        self._pts_offset = ts - frame.time
                    self._keep_latest(frame, av_to_rgb, ts)
                    if self._admit(ts, display_size(frame)):
                        self._push_decoded(frame, av_to_rgb, ts)
                if buffer is not None:
                    buffer.add(packet, self._packet_ts(packet))
                self._check_watchdog()
        except av.error.FFmpegError as exc:
            if self.stopping:
                return
            raise classify_av_error(exc, self.display, network=True, reading=True, timeout_s=read_s) from None

    def _packet_ts(self, packet: Any) -> float:
        """A packet's time on the frames' clock: its pts through their offset, never after its arrival."""
        arrival = clock.now()
        if packet.pts is None or self._pts_offset is None or self._time_base_s is None:
            return arrival
        return min(arrival, packet.pts * self._time_base_s + self._pts_offset)

    def _disconnect(self) -> None:
        container, self._container, self._stream = self._container, None, None
        close_quietly(container)
