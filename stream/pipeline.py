"""The live pipeline: streams in, labels and label events out through the hub.

This is what the server calls: add and remove streams while running, list
them with their figures, and shut everything down in order.

With an event store (``Pipeline(..., store=EventStore.open(...))``) every
label event is written to it, streams added with ``persist=True`` (the
server's POST /api/streams) are stored and started again by the next
:meth:`Pipeline.start`, and events are recorded (``events.record``: a clip out
of each stream's packet buffer, snapshots; see stream.events.recorder) and
expired (``events.retain_days``, ``events.max_disk_mb``). Without one
(library use) nothing touches the disk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from stream import clock
from stream.config import Config, LabelConfig, RecordConfig
from stream.events.types import EndReason, StoredStream
from stream.hub import Hub
from stream.ids import STREAM_ID_RULE, is_valid_stream_id
from stream.labels import LabelTracker
from stream.live import LiveStream, StreamInfo
from stream.model.recognizer import Recognizer
from stream.ring import FrameRing, ring_capacity
from stream.scheduler import InferenceScheduler
from stream.sources import (
    FrameSink,
    InvalidSource,
    SizeFor,
    Source,
    SourceOptions,
    StatusCallback,
    describe_source,
    mask_url,
    open_source,
)
from stream.types import Prediction, SourceState, StreamStatus

if TYPE_CHECKING:
    from stream.events.store import EventStore

__all__ = ["Pipeline", "StreamExists", "UnknownStream", "SourceFactory"]

log = logging.getLogger(__name__)

SourceFactory = Callable[[FrameSink, SizeFor, StatusCallback], Source]
_PRE_CAPTURE_SLACK_S = 3.0


class StreamExists(ValueError):
    """A stream with that id is already running."""


class UnknownStream(KeyError):
    """No stream has that id."""

    def __str__(self) -> str:
        return f"no stream with id {self.args[0]!r}"


def ring_fps_for(config: Config, num_frames: int, max_fps: float | None) -> float:
    """Frames per second a ring keeps: 4 per interval between sampled frames unless configured.

    Only 8 frames of a clip's ~8.5 s reach the model; keeping (and converting)
    every frame of a 30 fps camera would cost memory and CPU for nothing.
    Four per interval keeps the nearest-frame error under an eighth of it.
    """
    window = config.window
    fps = window.ring_fps or min(30.0, max(2.0, 4 * max(num_frames - 1, 1) / window.span_s))
    return min(fps, max_fps) if max_fps else fps


class Pipeline:
    """Sources -> rings -> scheduler -> trackers -> hub, for any number of streams."""

    def __init__(
        self,
        recognizer: Recognizer,
        config: Config,
        *,
        hub: Hub | None = None,
        source_options: SourceOptions | None = None,
        store: EventStore | None = None,
    ) -> None:
        self.recognizer = recognizer
        self.config = config
        self.store = store
        # Seqs go on from the highest one stored, so they increase across restarts.
        self.hub = hub or Hub(first_seq=store.last_seq if store is not None else 0)
        self._store_sub = None
        self.recorder = None  # stream.events.recorder.Recorder, with a store
        self.retention = None  # stream.events.retention.Retention, with a store
        self.disk_guard = None  # stream.events.retention.DiskGuard, with a store
        self.source_options = source_options or SourceOptions()
        self.num_frames = config.window.frames or recognizer.num_frames
        self.scheduler = InferenceScheduler(
            recognizer,
            top_k=config.top_k,
            max_batch=config.scheduler.max_batch,
            max_wait_ms=config.scheduler.max_wait_ms,
        )
        self.observers: list[Callable[[Prediction], None]] = []
        self._streams: dict[str, LiveStream] = {}
        self._lock = asyncio.Lock()
        self._started = False
        self._closed = False

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start inference and the streams named in the config."""
        if self._started:
            return
        self._started = True
        if self.store is not None:
            from stream.events.subscriber import StoreSubscriber

            # Subscribed before any stream starts: no event can be missed.
            self._store_sub = StoreSubscriber(self.hub, self.store)
            self._store_sub.start()
            self._start_recording()
        self.scheduler.start()
        for src in self.config.sources:
            await self.add_stream(src.url, stream_id=src.id, max_fps=src.max_fps, loop=src.loop, labels=src.labels, record=src.record)
        if self.store is not None:
            await self._restore_streams()

    def _start_recording(self) -> None:
        from stream.events.recorder import Recorder
        from stream.events.retention import DiskGuard, Retention

        events = self.config.events
        self.disk_guard = guard = DiskGuard(self.store.media, events.min_free_mb)
        self.recorder = Recorder(
            self.hub,
            self.store,
            settings_for=lambda sid: s.record if (s := self._streams.get(sid)) is not None else None,
            source_of=lambda sid: s.source if (s := self._streams.get(sid)) is not None else None,
            buffer_of=lambda sid: s.packets if (s := self._streams.get(sid)) is not None else None,
            disk_check=guard.check,
            on_change=self._recording_changed,
        )
        self.recorder.start()
        self.retention = Retention(self.store, self.store.media, events)
        self.retention.start()

    @property
    def store_subscriber(self):
        """The store's hub subscription (stream.events.subscriber.StoreSubscriber), with a store."""
        return self._store_sub

    def _recording_changed(self) -> None:
        """Recording paused or resumed: each recorded stream's subscribers get a status saying so (state unchanged)."""
        for stream in self._streams.values():
            info = self._info(stream)
            if info.recording is not None and info.recording.state != "off":
                recording = {"state": info.recording.state, "reason": info.recording.reason}
                self.hub.publish_status(StreamStatus(stream.id, info.state, info.reason, clock.now(), {"recording": recording}))

    async def _restore_streams(self) -> None:
        """Start the streams the API added before the last stop (after the config's, which win a clash)."""
        for stored in await self.store.aread(_stored_streams):
            if stored.id in self._streams:
                log.warning("stored stream %s is not started: the config has a stream with that id", stored.id)
                continue
            if len(self._streams) >= self.config.server.max_streams:
                log.warning("stored stream %s is not started: server.max_streams (%s) is reached", stored.id, self.config.server.max_streams)
                continue
            try:
                labels = LabelConfig(**stored.labels) if stored.labels else None
                record = RecordConfig(**stored.record) if stored.record else None
                await self.add_stream(stored.url, stream_id=stored.id, max_fps=stored.max_fps, loop=stored.loop, labels=labels, record=record)
            except (ValueError, StreamExists) as exc:
                log.warning("stored stream %s could not be started: %s", stored.id, exc)

    async def stop(self) -> None:
        """Stop every stream (ending open events), then inference. Idempotent."""
        if self._closed:
            return
        self._closed = True
        streams = list(self._streams.values())
        self._streams.clear()
        for s in streams:
            s.tracker.close_reason = EndReason.SERVER_STOPPED.value
        await asyncio.gather(*(s.stop("server shutting down") for s in streams), return_exceptions=True)
        await self.scheduler.stop()
        if self.retention is not None:
            await self.retention.stop()
        if self.recorder is not None:
            # Clips end with what they have; their clip messages reach the store's subscription below.
            await self.recorder.stop()
        if self._store_sub is not None:
            # The ends just published reach the writer's queue; the store's owner closes it (drains).
            await self._store_sub.stop()

    async def __aenter__(self) -> "Pipeline":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # ------------------------------------------------------------ streams
    def _new_id(self, url: str | int) -> str:
        if isinstance(url, int) or str(url).isdigit():
            base = f"cam{url}"
        else:
            # From the masked URL: the id is shown everywhere, and with an unencoded
            # '/' in a password the parser would take part of the password for the host.
            text = mask_url(str(url))
            try:
                parts = urlsplit(text)
                host = parts.hostname
            except ValueError:  # e.g. an unbalanced '[' (bad IPv6 literal)
                parts, host = urlsplit(""), None
            base = host if parts.scheme and host else Path(parts.path or text).stem or "stream"
            if host and parts.path.strip("/"):
                base = f"{host}-{Path(parts.path).stem}"
        base = re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip("-.")[:48] or "stream"
        candidate, n = base, 2
        while candidate in self._streams:
            candidate, n = f"{base}-{n}", n + 1
        return candidate

    def _make_stream(
        self, stream_id: str, url: str, kind: str, max_fps: float | None, labels: LabelConfig | None, record: RecordConfig | None = None
    ) -> LiveStream:
        ring = make_ring(self.config, self.num_frames, max_fps)
        tracker = LabelTracker(stream_id, self.recognizer.labels, labels or self.config.labels, self.config.top_k)
        record = record or self.config.events.record
        packets = None
        if self.store is not None and record.clips:
            from stream.events.packets import PacketBuffer

            # The pre-capture reaches back from an event's start, which is stamped when the
            # model's answer arrives (a label age after the frames): keep a little more.
            packets = PacketBuffer(keep_s=record.pre_capture_s + _PRE_CAPTURE_SLACK_S)
        return LiveStream(
            stream_id,
            url=url,
            kind=kind,
            ring=ring,
            tracker=tracker,
            scheduler=self.scheduler,
            hub=self.hub,
            num_frames=self.num_frames,
            span_s=self.config.window.span_s,
            stride_s=self.config.window.stride_s,
            observers=self.observers,
            record=record if self.store is not None else None,
            packets=packets,
        )

    def _claim_id(self, stream_id: str | None, url: str | int) -> str:
        if stream_id is None:
            return self._new_id(url)
        if not is_valid_stream_id(stream_id):
            raise ValueError(f"stream id {stream_id!r} is not valid: use {STREAM_ID_RULE}")
        if stream_id in self._streams:
            raise StreamExists(f"a stream with id {stream_id!r} already exists; remove it first or pick another id")
        return stream_id

    async def add_stream(
        self,
        url: str | int,
        *,
        stream_id: str | None = None,
        max_fps: float | None = None,
        loop: bool = True,
        labels: LabelConfig | None = None,
        record: RecordConfig | None = None,
        persist: bool = False,
    ) -> StreamInfo:
        """Start a stream from a URL, device or file.

        A source that can never work (malformed URL, unknown scheme, missing
        file) is still added, as a failed stream with the reason, so it shows up
        where people look; the other streams are not affected. ``persist``
        (the API's streams) stores it, if there is a store, so that the next
        start brings it back; it is stored before this returns.
        """
        self._check_open()
        async with self._lock:
            sid = self._claim_id(stream_id, url)
            kind, shown = describe_source(url)
            stream = self._make_stream(sid, shown, kind, max_fps, labels, record)
            self._streams[sid] = stream
        options = SourceOptions(
            **{
                **_options_dict(self.source_options),
                "max_fps": max_fps,
                "loop": loop,
                "max_pixels": self.source_options.max_pixels or self.config.ingest.max_pixels,
            }
        )
        try:
            source = open_source(sid, url, stream.ring, self.recognizer.ingest_hw, stream.on_status, options)
        except InvalidSource as exc:
            log.warning("stream %s: %s", sid, exc)
            stream.fail(str(exc))
            await self._persist(persist, sid, url, max_fps, loop, labels, record)
            return stream.info()
        self._record_into(stream, source)
        await stream.start(source)
        log.info("stream %s added: %s", sid, shown)
        await self._persist(persist, sid, url, max_fps, loop, labels, record)
        return self.stream(sid)

    @staticmethod
    def _record_into(stream: LiveStream, source: Source) -> None:
        if stream.packets is not None:
            source.set_recording(stream.packets, stream.record)

    async def _persist(
        self, persist: bool, sid: str, url: str | int, max_fps: float | None, loop: bool, labels: LabelConfig | None, record: RecordConfig | None
    ) -> None:
        if not persist or self.store is None:
            return
        stored = StoredStream(
            sid, url, max_fps, loop, labels.model_dump() if labels is not None else None, record.model_dump() if record is not None else None
        )
        # Awaited: once the API answers 201 the stream survives a crash.
        await _stored(self.store.put_stream(stored), f"stream {sid} could not be stored; it will not come back after a restart")

    async def add_source(
        self, factory: SourceFactory, *, stream_id: str | None = None, kind: str = "custom", url: str = "", labels: LabelConfig | None = None
    ) -> StreamInfo:
        """Start a stream from a source built by ``factory(sink, size_for, on_status)`` (WebRTC uses this)."""
        self._check_open()
        async with self._lock:
            sid = self._claim_id(stream_id, url or kind)
            stream = self._make_stream(sid, url or kind, kind, None, labels)
            self._streams[sid] = stream
        source = factory(stream.ring, self.recognizer.ingest_hw, stream.on_status)
        self._record_into(stream, source)
        await stream.start(source)
        return self.stream(sid)

    async def remove_stream(self, stream_id: str, reason: str = "removed") -> None:
        """Stop a stream and forget it; its open label events end."""
        async with self._lock:
            stream = self._streams.pop(stream_id, None)
        if stream is None:
            raise UnknownStream(stream_id)
        stream.tracker.close_reason = EndReason.STREAM_REMOVED.value
        await stream.stop(reason)
        if self.store is not None and not self.store.closed:
            # Whatever its origin: a stored stream that was removed must not come back.
            await _stored(self.store.delete_stream(stream_id), f"the removal of stream {stream_id} could not be stored")
        if stream.reason != "removed":
            # Whatever ended it before (a browser hanging up, a failure), subscribers
            # always learn the stream is gone from this one final status.
            self.hub.publish_status(StreamStatus(stream_id, SourceState.STOPPED, "removed", clock.now()))
        self.hub.forget(stream_id)
        log.info("stream %s removed", stream_id)

    def streams(self) -> list[StreamInfo]:
        return [self._info(s) for s in self._streams.values()]

    def stream(self, stream_id: str) -> StreamInfo:
        return self._info(self._get(stream_id))

    def packet_bytes(self) -> dict[str, int]:
        """Bytes of compressed video each recorded stream keeps for pre-capture (for /metrics)."""
        return {sid: int(s.packets.stats().get("bytes", 0)) for sid, s in self._streams.items() if s.packets is not None}

    def _info(self, stream: LiveStream) -> StreamInfo:
        info = stream.info()
        if self.recorder is not None:
            info = dataclasses.replace(info, recording=self.recorder.recording(stream.id))
        return info

    def live_stream(self, stream_id: str) -> LiveStream:
        return self._get(stream_id)

    def snapshot(self, stream_id: str):
        """The newest frame of a stream as RGB at model scale (for previews), or None."""
        stream = self._get(stream_id)
        return stream.source.snapshot() if stream.source is not None else None

    def __contains__(self, stream_id: str) -> bool:
        return stream_id in self._streams

    def __len__(self) -> int:
        return len(self._streams)

    def _get(self, stream_id: str) -> LiveStream:
        try:
            return self._streams[stream_id]
        except KeyError:
            raise UnknownStream(stream_id) from None

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the pipeline is shut down")
        if not self._started:
            raise RuntimeError("start the pipeline first (await pipeline.start() or `async with`)")


async def _stored(fut, failure: str) -> None:
    """Wait for a store write; a failure is logged (the stream itself is fine), never raised into the API."""
    from stream.events.types import StoreError

    try:
        await asyncio.wrap_future(fut)
    except StoreError as exc:
        log.error("%s: %s", failure, exc)


def _stored_streams(conn) -> list[StoredStream]:
    from stream.events.queries import list_streams

    return list_streams(conn)


def _options_dict(options: SourceOptions) -> dict:
    return {name: getattr(options, name) for name in options.__dataclass_fields__}


def _ring_size(config: Config, num_frames: int, max_fps: float | None) -> tuple[int, float]:
    fps = ring_fps_for(config, num_frames, max_fps)
    # Room for the kept frames plus the one freshest frame each clip adds (LiveStream._take_clip).
    return ring_capacity(config.window.span_s, fps + 1 / config.window.stride_s), fps


def make_ring(config: Config, num_frames: int, max_fps: float | None = None) -> FrameRing:
    """The ring a stream gets: span_s of frames at the ring's frame rate."""
    capacity, fps = _ring_size(config, num_frames, max_fps)
    return FrameRing(capacity, fps)


def bytes_per_stream(config: Config, num_frames: int, height: int, width: int, max_fps: float | None = None) -> int:
    """Ring memory one stream needs for frames of this model-scale size."""
    return _ring_size(config, num_frames, max_fps)[0] * (height * width * 3 + 16)


__all__ += ["bytes_per_stream", "make_ring", "ring_fps_for"]
