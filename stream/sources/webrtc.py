"""A source fed by a remote WebRTC video track (aiortc): the browser's own camera.

aiortc decodes in its own worker thread and queues every decoded frame in an
unbounded asyncio.Queue inside the remote track. Left alone, that queue grows
whenever we fall behind and latency grows without limit. This source drains
the track continuously: every frame is taken off the queue at once, only the
newest is kept for previews, and only the frames the ring wants are converted.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from stream import clock
from stream.sources.base import FrameSink, SizeFor, Source, SourceOptions, StatusCallback
from stream.sources._av import av_to_rgb, display_size
from stream.types import SourceState

__all__ = ["TrackSource"]

logger = logging.getLogger(__name__)


class TrackSource(Source):
    """Frames from an aiortc ``MediaStreamTrack`` (kind "video"), drained by one task."""

    kind = "webrtc"
    encodes_for_clips = True  # decoded frames: clips come from a FrameEncoder

    def __init__(
        self,
        stream_id: str,
        track: Any,
        sink: FrameSink,
        size_for: SizeFor,
        on_status: StatusCallback | None = None,
        options: SourceOptions | None = None,
        *,
        display: str = "browser camera",
    ) -> None:
        super().__init__(stream_id, sink, size_for, on_status, options, display=display)
        self._track = track
        self._task: asyncio.Task | None = None

    async def _start_impl(self) -> None:
        self._begin_connection()
        self._task = asyncio.create_task(self._drain(), name=f"webrtc:{self.stream_id}")

    async def _stop_impl(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _drain(self) -> None:
        from aiortc.mediastreams import MediaStreamError

        watchdog = self.options.watchdog_s
        try:
            while True:
                try:
                    frame = await asyncio.wait_for(self._track.recv(), timeout=watchdog)
                except asyncio.TimeoutError:
                    if self.state is SourceState.LIVE:
                        self._set_state(SourceState.RECONNECTING, f"no video from the browser for {watchdog:.0f} s")
                    continue
                ts = clock.now()
                self._keep_latest(frame, av_to_rgb, ts)
                if self._admit(ts, display_size(frame)):
                    self._push_decoded(frame, av_to_rgb, ts)
        except MediaStreamError:
            self._set_state(SourceState.STOPPED, "the browser closed the connection")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a decoder or conversion bug must not kill the loop silently
            logger.exception("webrtc source %s failed", self.stream_id)
            self._set_state(SourceState.FAILED, f"video from the browser could not be read: {exc}")
