"""A video file played as if it were a live camera: real-time pace, looping."""

from __future__ import annotations

import collections
import logging
import time
from fractions import Fraction
from typing import Any, Callable, Iterator

import av.error

from stream.sources._av import av_to_rgb, classify_av_error, close_quietly, display_size, open_video
from stream.sources.base import FrameSink, SizeFor, SourceOptions, StatusCallback
from stream.sources.threaded import ThreadedSource
from stream.sources.errors import FatalSourceError, InvalidSource
from stream.sources.pipes import PipeReader, needs_pipe_reader
from stream.sources.urls import SourceKind, classify
from stream.types import SourceState

__all__ = ["FileSource"]

logger = logging.getLogger(__name__)

_MAX_LAG_S = 0.5  # behind schedule by more than this: drop the debt instead of bursting to catch up
_DEFAULT_FPS = 25.0  # FFmpeg's own guess when a file states no rate
_MAX_HELD_PACKETS = 64  # demuxed packets held for recording until their frames are shown (the decoder's delay)


class FileSource(ThreadedSource):
    """Plays a local file at its native frame rate against the monotonic clock.

    Each frame is "shown" at ``start + (pts - first_pts)``; ``Frame.ts`` is
    that moment, so the rest of the pipeline cannot tell the file from a
    camera. At the end it starts again (``options.loop``, the default)
    without resetting the sink: a looping file is a camera watching a scene
    that repeats, and resetting would keep clips longer than the file from
    ever filling. With ``loop=False`` it ends STOPPED ("end of file").
    """

    kind = "file"
    # A file cannot stall like a network; a very low frame rate file must not trip it.
    watchdog_enabled = False

    def __init__(
        self,
        stream_id: str,
        path: str,
        sink: FrameSink,
        size_for: SizeFor,
        on_status: StatusCallback | None = None,
        options: SourceOptions | None = None,
    ) -> None:
        spec = classify(path)
        if spec.kind is not SourceKind.FILE:
            raise InvalidSource(f"{spec.display} is not a local video file")
        super().__init__(stream_id, sink, size_for, on_status, options, display=spec.display)
        self._path = str(spec.target)
        self._container: Any = None
        self._stream: Any = None
        self._pipe: PipeReader | None = None
        self._passes = 0
        self._time_base_s: float | None = None  # the stream's, as a float (Fraction arithmetic costs 4 us a packet)

    def _connect(self) -> None:
        self._open()

    def _open(self) -> None:
        target: Any = self._path
        if needs_pipe_reader(self._path):
            # A FIFO (or device) blocks FFmpeg's own open and reads beyond any
            # timeout or stop; read it through a reader whose waits are bounded.
            self._pipe = target = PipeReader(
                self._path,
                self.display,
                self._stop_event,
                open_timeout_s=self.options.open_timeout_s,
                read_timeout_s=self.options.read_timeout_s,
            )
        self._container, self._stream = open_video(target, self.display, network=False, max_pixels=self.options.max_pixels)
        if self._record_buffer is not None:
            from stream.events.packets import CodecInfo

            self._time_base_s = float(self._stream.time_base) if self._stream.time_base else None
            # A later run of a looping file continues the same clip segment.
            self._record_buffer.begin(CodecInfo.from_stream(self._stream), continues=self._passes > 0)

    def _frame_period(self) -> float:
        rate = self._stream.average_rate or self._stream.guessed_rate or Fraction(_DEFAULT_FPS)
        return float(1 / rate) if rate > 0 else 1 / _DEFAULT_FPS

    def _read(self) -> None:
        base = time.monotonic()  # monotonic time at which pts 0 of this pass is shown
        last_ts = float("-inf")
        while True:
            period = self._frame_period()
            first_pts: float | None = None
            shown = 0
            # Recording: packets wait here until their frame is shown, so the
            # buffer holds what the "camera" has shown, as a live one would.
            held: collections.deque[Any] = collections.deque()
            try:
                for frame in self._frames(held.append if self._record_buffer is not None else None):
                    pts = frame.time if frame.time is not None else shown * period
                    if first_pts is None:
                        first_pts = pts
                    show_at = base + (pts - first_pts)
                    delay = show_at - time.monotonic()
                    if delay > 0:
                        if self._stop_event.wait(delay):
                            return
                    elif delay < -_MAX_LAG_S:
                        base -= delay  # decoding could not keep up; carry on from now
                        show_at -= delay
                    if self.stopping:
                        return
                    ts = max(show_at, last_ts + 1e-6)  # strictly increasing even if pts are not
                    last_ts = ts
                    shown += 1
                    self._keep_latest(frame, av_to_rgb, ts)
                    if self._admit(ts, display_size(frame)):
                        self._push_decoded(frame, av_to_rgb, ts)
                    if held:
                        self._record_shown(held, base, first_pts, ts)
            except av.error.FFmpegError as exc:
                raise classify_av_error(exc, self.display, network=False, reading=True, timeout_s=0.0) from None
            self._record_shown(held, base, first_pts, float("inf"))
            self._passes += 1
            if shown == 0:
                # Opened fine but nothing decodes: looping would spin forever.
                raise FatalSourceError(f"{self.display} has a video stream but no frame could be decoded")
            if not self.options.loop:
                return
            # Next pass starts one frame after the last one was shown.
            base = last_ts + period
            # Reopen rather than seek: seeking back is unreliable in some
            # containers (raw streams, some AVI/MJPEG), opening a local file is cheap.
            self._close()
            self._open()

    def _record_shown(self, held: collections.deque[Any], base: float, first_pts: float | None, shown_ts: float) -> None:
        """Hand the held packets whose frames are shown by now (``shown_ts``) to the buffer, stamped with their show time."""
        buffer = self._record_buffer
        while held and buffer is not None:
            packet = held[0]
            if packet.pts is None or first_pts is None or self._time_base_s is None:
                ts = min(shown_ts, time.monotonic())
            else:
                ts = base + (packet.pts * self._time_base_s - first_pts)
            if ts > shown_ts and len(held) <= _MAX_HELD_PACKETS:
                return
            buffer.add(held.popleft(), ts)

    def _frames(self, on_packet: Callable[[Any], None] | None = None) -> Iterator[Any]:
        """Decoded frames in presentation order, skipping packets that do not decode.

        One damaged packet in the middle of a file should cost a frame or a
        GOP, not the stream (``container.decode`` would raise and end it).
        ``on_packet`` sees every demuxed packet first (recording keeps them).
        """
        for packet in self._container.demux(self._stream):
            if on_packet is not None:
                on_packet(packet)
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                continue
            yield from frames

    def _on_end_of_stream(self) -> bool:
        self._set_state_unless_stopping(SourceState.STOPPED, "end of file")
        return True

    def _disconnect(self) -> None:
        self._close()

    def _close(self) -> None:
        container, self._container, self._stream = self._container, None, None
        close_quietly(container)
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            pipe.close()
