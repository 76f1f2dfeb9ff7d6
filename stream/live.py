"""One live stream: its source, ring, clip ticker and label tracker.

A LiveStream owns its ticker task and touches only its own state; the
source owns its reader thread, the scheduler owns inference. Everything here
runs on the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream import clock
from stream.hub import Hub
from stream.labels import LabelTracker
from stream.ring import FrameRing
from stream.scheduler import InferenceScheduler
from stream.sources import Source
from stream.types import LabelEvent, Prediction, SourceState, StreamStatus, Window

__all__ = ["LiveStream", "StreamFigures", "StreamInfo"]

log = logging.getLogger(__name__)

_AGE_WINDOW = 200  # label ages kept for the percentile


@dataclass(frozen=True)
class StreamFigures:
    """What a stream has done so far; read by the server for REST and metrics."""

    frames_in: int  # frames stored in the ring
    frames_decoded: int
    frames_dropped: int  # decoded but not kept (decimation) or out of order
    clips_inferred: int
    clips_dropped: int  # clips replaced by a fresher one before they ran
    ingest_fps: float
    label_age_s: float | None  # of the newest labels
    label_age_p95_s: float | None
    inference_s: float | None
    reconnects: int
    last_error: str  # the most recent source error, even after it recovered ("" if none)
    ring_bytes: int
    ring_frames: int


@dataclass(frozen=True)
class StreamInfo:
    id: str
    url: str  # masked: credentials never leave the process
    kind: str
    state: SourceState
    reason: str
    figures: StreamFigures
    top_k: tuple[tuple[str, float], ...]
    open_events: tuple[LabelEvent, ...]
    recording: Any = None  # stream.events.recorder.StreamRecording, when events are recorded


class LiveStream:
    """Wires a source to the ring, offers clips every stride, tracks labels, publishes."""

    def __init__(
        self,
        stream_id: str,
        *,
        url: str,
        kind: str,
        ring: FrameRing,
        tracker: LabelTracker,
        scheduler: InferenceScheduler,
        hub: Hub,
        num_frames: int,
        span_s: float,
        stride_s: float,
        observers: list[Callable[[Prediction], None]] | None = None,
        record: Any = None,
        packets: Any = None,
    ) -> None:
        self.id = stream_id
        self.record = record  # its RecordConfig, when events are recorded (a store exists)
        self.packets = packets  # its stream.events.packets.PacketBuffer, when clips are recorded
        self.url = url
        self.kind = kind
        self.ring = ring
        self.tracker = tracker
        self.source: Source | None = None
        self._scheduler = scheduler
        self._hub = hub
        self._num_frames = num_frames
        self._span_s = span_s
        self._stride_s = stride_s
        self._observers = observers if observers is not None else []
        self._ticker: asyncio.Task | None = None
        self._state = SourceState.CONNECTING
        self._reason = ""
        self._last_offered_end = float("-inf")
        # Newest frame of the last clip assembled, written on the inference
        # thread (a float: atomic). A clip must end on a newer frame than that.
        self._last_clip_end = float("-inf")
        self._ages: collections.deque[float] = collections.deque(maxlen=_AGE_WINDOW)
        self._last_pred: Prediction | None = None
        self._stopped = False
        scheduler.register(stream_id, self._on_result)

    @property
    def reason(self) -> str:
        """Why the stream is in its state (the reason of its latest status)."""
        return self._reason

    # ------------------------------------------------------------ lifecycle
    async def start(self, source: Source) -> None:
        self.source = source
        self._ticker = asyncio.create_task(self._tick(), name=f"clips:{self.id}")
        await source.start()

    def fail(self, reason: str) -> None:
        """A stream that could never start: show it as failed, with the reason."""
        self._on_status(StreamStatus(self.id, SourceState.FAILED, reason, clock.now()))

    async def stop(self, reason: str = "removed") -> None:
        """Stop the source and ticker, end open label events (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self._scheduler.unregister(self.id)
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            # Not `await ticker`: its CancelledError would carry a traceback
            # through _tick's frame (and so this stream), and the caller's own
            # cancellation must not be swallowed with it.
            await asyncio.wait([ticker])
        if self.source is not None:
            await self.source.stop()
        self._publish_events(self.tracker.close(clock.now()))
        if self._state not in (SourceState.STOPPED, SourceState.FAILED):
            self._state, self._reason = SourceState.STOPPED, reason
            self._hub.publish_status(StreamStatus(self.id, SourceState.STOPPED, reason, clock.now()))

    # ------------------------------------------------------------ callbacks (loop thread)
    def on_status(self, status: StreamStatus) -> None:
        """Given to the source: statuses arrive here on the loop thread."""
        if not self._stopped:
            self._on_status(status)

    def _on_status(self, status: StreamStatus) -> None:
        self._state, self._reason = status.state, status.reason
        if status.state is not SourceState.LIVE:
            # A gap, a stop or a failure: what was going on before may not be now.
            self._publish_events(self.tracker.close(status.ts or clock.now()))
            self._last_offered_end = float("-inf")
        self._hub.publish_status(status)

    def _on_result(self, pred: Prediction) -> None:
        if self._stopped:
            return
        # Stamp publication on the loop, so label age includes the hop from the inference thread.
        pred = dataclasses.replace(pred, published=clock.now())
        self._ages.append(pred.label_age_s)
        smoothed, events = self.tracker.update(pred)
        self._last_pred = smoothed
        self._hub.publish_labels(smoothed)
        self._publish_events(events)
        for observe in self._observers:
            observe(pred)

    def _publish_events(self, events: list[LabelEvent]) -> None:
        for event in events:
            self._hub.publish_event(event)

    # ------------------------------------------------------------ clips
    async def _tick(self) -> None:
        """Every stride, offer the scheduler a clip if new frames arrived since the last one."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self._stride_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            if loop.time() - next_at > self._stride_s:
                next_at = loop.time()  # the loop was stalled: do not fire a burst
            if self._state is not SourceState.LIVE or not self._has_new_frame():
                continue  # nothing new: a frozen camera gets no stale labels
            self._last_offered_end = max(self._newest_ts(), self._last_offered_end)
            self._scheduler.offer(self.id, self._take_clip)

    def _newest_ts(self) -> float:
        """The newest frame the stream has: the ring's, or the source's newest decoded one."""
        ring = self.ring.latest_ts()
        source = self.source.latest_ts() if self.source is not None else None
        return max(t for t in (ring, source, float("-inf")) if t is not None)

    def _has_new_frame(self) -> bool:
        """Whether a frame newer than both the last offer and the last clip's end has arrived.

        Both count: a clip ends on the source's newest decoded frame, which
        _take_clip pushes into the ring, so the ring's newest frame moves on
        after the offer with no new frame from the camera. Comparing with the
        offer alone made a frozen camera's last clip run (and publish) twice.
        """
        return self._newest_ts() > max(self._last_offered_end, self._last_clip_end)

    def _take_clip(self) -> Window | None:
        """Runs on the inference thread when the batch starts: the freshest frames win."""
        newest = self.ring.latest_ts()
        source = self.source
        if source is not None:
            source.await_fresh_frame()
            fresh = source.latest_frame(newest if newest is not None else float("-inf"))
            if fresh is not None:
                self.ring.push(fresh)  # end the clip on the newest decoded frame, not the newest kept one
        got = self.ring.clip(self._num_frames, self._span_s)
        if got is None:
            return None
        frames, timestamps = got
        end = float(timestamps[-1])
        if end <= self._last_clip_end:
            return None  # no frame since the last clip: the same clip again would be a stale label
        self._last_clip_end = end
        return Window(self.id, frames, timestamps, clock.now())

    # ------------------------------------------------------------ figures
    def info(self) -> StreamInfo:
        src = self.source.stats() if self.source is not None else None
        ring = self.ring.stats()
        offered, inferred, dropped = self._scheduler.stream_counts(self.id)
        ages = np.fromiter(self._ages, dtype=np.float64) if self._ages else None
        figures = StreamFigures(
            frames_in=ring.frames_in,
            frames_decoded=src.frames_decoded if src else 0,
            # The source counts frames the ring's gate refused among its skipped ones.
            frames_dropped=(src.frames_skipped if src else ring.frames_skipped) + ring.frames_out_of_order,
            clips_inferred=inferred,
            clips_dropped=dropped,
            ingest_fps=round(src.fps, 2) if src else 0.0,
            label_age_s=float(ages[-1]) if ages is not None else None,
            label_age_p95_s=float(np.percentile(ages, 95)) if ages is not None else None,
            inference_s=self._last_pred.inference_s if self._last_pred else None,
            reconnects=src.reconnects if src else 0,
            last_error=src.last_error if src else (self._reason if self._state is SourceState.FAILED else ""),
            ring_bytes=ring.nbytes,
            ring_frames=ring.held,
        )
        return StreamInfo(
            id=self.id,
            url=self.url,
            kind=self.kind,
            state=self._state,
            reason=self._reason,
            figures=figures,
            top_k=self._last_pred.top_k if self._last_pred else (),
            open_events=self.tracker.open_events,
        )
