"""The recorder: a hub subscriber that keeps a clip and a snapshot of every label event.

On an event's ``start`` it asks the clip recorder for a clip from
``pre_capture_s`` before the start (out of the stream's packet buffer) and
takes a first snapshot. While the event runs, every labels message of its
stream is compared with the event's best smoothed score so far: a higher one
is the new peak, and the camera's newest frame at that moment becomes the
snapshot (at most every ``_SNAPSHOT_INTERVAL_S``; the last peak in an interval
is taken when it passes). On ``end`` the clip is finished ``post_capture_s``
later. The ``end`` itself was already published and stored: nothing waits for
the clip. When the clip is complete the store learns ``has_clip`` and
subscribers get a ``clip`` message.

Disk trouble pauses recording, never the events: a full or unwritable data
folder (the disk guard's check, refreshed every few seconds, or a clip or
snapshot that failed to write) stops new clips and snapshots of every stream
(they share the folder), with the reason in each stream's REST status
(``recording``) and in /metrics; the next check that finds room resumes them.

Everything here runs on the loop; the clip recorder and the snapshot writer
have their own threads and report back through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stream import clock
from stream.config import RecordConfig
from stream.events.clips import ClipError, ClipRecorder, ClipResult
from stream.events.snapshots import SnapshotDone, SnapshotWriter
from stream.events.store import EventStore
from stream.hub import Filter, Hub, HubMessage, MessageKind, Subscription, SubscriptionClosed
from stream.types import ClipReady, EventKind, LabelEvent, Prediction

__all__ = ["Recorder", "RecorderStats", "StreamRecording"]

log = logging.getLogger(__name__)

_SNAPSHOT_INTERVAL_S = 1.0  # at most one snapshot per event this often (each is a full-size JPEG)
_DISK_CHECK_S = 5.0  # how often the disk guard is asked again (statvfs and a probe: cheap, but not per frame)
_BACKLOG = 100_000  # like the store's: events must not be lost to a drop policy


@dataclass(slots=True)
class _Open:
    """An event being recorded."""

    event: LabelEvent
    settings: RecordConfig  # the stream's, at the start (the stream may be gone by the end)
    clip: bool  # a clip was started for it
    best: float  # highest smoothed score seen (the peak the snapshot shows)
    snap_at: float = float("-inf")  # when the last snapshot was asked for
    snap_due: bool = False  # a higher score came within the interval: take one when it passes


@dataclass(slots=True)
class StreamRecording:
    """Whether a stream is being recorded, for REST and /metrics."""

    state: str  # "on", "paused" (disk trouble) or "off" (events.record says so, or no store)
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RecorderStats:
    clips_started: int
    clips_written: int
    clips_failed: int
    clips_active: int
    snapshots_written: int
    snapshots_failed: int
    paused: bool  # recording is paused for disk trouble
    dropped: int  # hub messages the recorder's subscription lost (an error)
    clip_recorder: dict[str, Any] = field(default_factory=dict)
    snapshot_writer: dict[str, Any] = field(default_factory=dict)


class Recorder:
    """Wire with callables so it needs no pipeline: each takes a stream id, None when the stream is unknown.

    ``settings_for`` gives a stream's RecordConfig, ``source_of`` its source (for
    snapshots: ``latest_full_frame()``), ``buffer_of`` its packet buffer (None:
    that stream keeps no packets, so no clips). ``disk_check()`` returns None
    while recording may go on, else the reason it may not (a DiskGuard's check).
    ``on_change()`` runs when recording pauses, resumes or changes its reason.
    """

    def __init__(
        self,
        hub: Hub,
        store: EventStore,
        *,
        settings_for: Callable[[str], RecordConfig | None],
        source_of: Callable[[str], Any],
        buffer_of: Callable[[str], Any],
        disk_check: Callable[[], str | None] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._hub = hub
        self._on_change = on_change
        self._store = store
        self._settings_for = settings_for
        self._source_of = source_of
        self._buffer_of = buffer_of
        self._disk_check = disk_check
        self._paths = store.media
        self._sub: Subscription = hub.subscribe(
            Filter(kinds={MessageKind.EVENT, MessageKind.LABELS}), event_backlog=_BACKLOG, max_dropped_in_row=_BACKLOG
        )
        self._clips = ClipRecorder(self._paths)
        self._snapshots = SnapshotWriter(self._paths, self._threadsafe(self._snapshot_done))
        self._open: dict[str, _Open] = {}  # event id -> open event
        self._by_stream: dict[str, set[str]] = {}
        self._finishing: dict[str, asyncio.TimerHandle] = {}  # event id -> the post-capture timer
        self._clip_of: dict[str, LabelEvent] = {}  # event id -> its latest event, while its clip is written
        self._disk_reason: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []
        self._dropped = 0
        self._stopped = False

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start reading the hub (before any stream starts, so no event is missed)."""
        self._loop = asyncio.get_running_loop()
        self._paths.ensure()
        swept = self._paths.sweep_parts()
        if swept:
            log.info("recorder: removed %s unfinished clip/snapshot files left by the last run", swept)
        self._tasks = [
            asyncio.create_task(self._run(), name="recorder"),
            asyncio.create_task(self._watch_disk(), name="recorder-disk"),
        ]

    async def stop(self) -> None:
        """Finish every clip with what it has, write pending snapshots, publish what completed. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        # The ends the pipeline just published are still queued: handle them first.
        try:
            while (msg := self._sub.get_nowait()) is not None:
                self._handle_safely(msg)
        except SubscriptionClosed:
            pass
        self._sub.close()
        for handle in self._finishing.values():
            handle.cancel()
        self._finishing.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(self._close_writers)
        await asyncio.sleep(0)  # run the completions the writers handed to the loop

    def _close_writers(self) -> None:
        self._clips.close()
        self._snapshots.close()

    # ------------------------------------------------------------ state for REST and /metrics
    def recording(self, stream_id: str) -> StreamRecording:
        settings = self._settings_for(stream_id)
        if settings is None or not (settings.clips or settings.snapshots):
            return StreamRecording("off", "events.record turns clips and snapshots off")
        reason = self._disk_reason
        return StreamRecording("paused", reason) if reason else StreamRecording("on")

    def stats(self) -> RecorderStats:
        # The writers count what they did; the recorder keeps no second tally.
        clips, snapshots = self._clips.stats(), self._snapshots.stats()
        return RecorderStats(
            clips_started=clips["started"],
            clips_written=clips["written"],
            clips_failed=clips["failed"],
            clips_active=clips["active"],
            snapshots_written=snapshots["written"],
            snapshots_failed=snapshots["failed"],
            paused=self._disk_reason is not None,
            dropped=self._dropped,
            clip_recorder=clips,
            snapshot_writer=snapshots,
        )

    def forget(self, event_id: str) -> None:
        """The event was deleted: abandon its clip and snapshot (no file may come back after the delete)."""
        handle = self._finishing.pop(event_id, None)
        if handle is not None:
            handle.cancel()
        self._close_open(event_id)
        self._clip_of.pop(event_id, None)
        self._clips.cancel(event_id)
        self._snapshots.discard(event_id)

    # ------------------------------------------------------------ the hub
    async def _run(self) -> None:
        async for msg in self._sub:
            self._handle_safely(msg)

    def _handle_safely(self, msg: HubMessage) -> None:
        try:
            self._handle(msg)
        except Exception:  # a bug costs that event's recording, never the recorder
            log.exception("recorder: handling a %s message failed", msg.kind.value)

    def _handle(self, msg: HubMessage) -> None:
        if msg.dropped:
            self._dropped += msg.dropped
            log.error("recorder: its hub subscription lost %s messages; some events have no clip or snapshot", msg.dropped)
        if msg.kind is MessageKind.EVENT:
            ev: LabelEvent = msg.payload
            if ev.kind is EventKind.START:
                self._on_start(ev)
            elif ev.kind is EventKind.END:
                self._on_end(ev)
        elif msg.kind is MessageKind.LABELS:
            self._on_labels(msg.payload)

    def _on_start(self, ev: LabelEvent) -> None:
        settings = self._settings_for(ev.stream_id)
        if settings is None or not (settings.clips or settings.snapshots) or self._disk_reason is not None:
            return
        clip = False
        buffer = self._buffer_of(ev.stream_id) if settings.clips else None
        if buffer is not None:
            self._clip_of[ev.id] = ev
            try:
                self._clips.start(
                    ev.id,
                    ev.stream_id,
                    buffer,
                    ev.start - settings.pre_capture_s,
                    settings.max_clip_s,
                    self._threadsafe(functools.partial(self._clip_done, ev.id)),
                )
            except ValueError as exc:  # an id already being written (a replayed start): keep the first clip
                self._clip_of.pop(ev.id, None)
                log.warning("recorder: no clip for event %s: %s", ev.id, exc)
                return
            clip = True
        self._open[ev.id] = _Open(ev, settings, clip, best=float(ev.score))
        self._by_stream.setdefault(ev.stream_id, set()).add(ev.id)
        if settings.snapshots:
            self._snapshot(self._open[ev.id])

    def _on_end(self, ev: LabelEvent) -> None:
        opened = self._close_open(ev.id)
        if opened is None:
            return
        if ev.id in self._clip_of:
            self._clip_of[ev.id] = ev  # its final peak, for the clip message
        if opened.snap_due:
            self._snapshot(opened)
        if opened.clip:
            end = ev.end if ev.end is not None else ev.ts
            until = end + opened.settings.post_capture_s
            delay = max(0.0, until - clock.now())
            self._finishing[ev.id] = asyncio.get_running_loop().call_later(delay, self._finish, ev.id, until)

    def _finish(self, event_id: str, until: float) -> None:
        self._finishing.pop(event_id, None)
        self._clips.finish(event_id, until)

    def _close_open(self, event_id: str) -> _Open | None:
        opened = self._open.pop(event_id, None)
        if opened is not None:
            ids = self._by_stream.get(opened.event.stream_id)
            if ids is not None:
                ids.discard(event_id)
                if not ids:
                    del self._by_stream[opened.event.stream_id]
        return opened

    # ------------------------------------------------------------ snapshots at the peak
    def _on_labels(self, pred: Prediction) -> None:
        ids = self._by_stream.get(pred.stream_id)
        if not ids:
            return
        scores = dict(pred.top_k)
        now = clock.now()
        for event_id in list(ids):
            opened = self._open[event_id]
            score = scores.get(opened.event.label)
            if score is not None and score > opened.best:
                opened.best = float(score)
                opened.snap_due = True
            if opened.snap_due and now - opened.snap_at >= _SNAPSHOT_INTERVAL_S:
                self._snapshot(opened)

    def _snapshot(self, opened: _Open) -> None:
        ev = opened.event
        source = self._source_of(ev.stream_id)
        opened.snap_due = False
        opened.snap_at = clock.now()
        if not opened.settings.snapshots or source is None or self._disk_reason is not None:
            return
        grab = getattr(source, "latest_full_frame", None)
        if grab is None:
            return
        self._snapshots.submit(ev.id, ev.stream_id, lambda: _image(grab()))

    # ------------------------------------------------------------ completions (on the loop)
    def _threadsafe(self, fn: Callable[[Any], None]) -> Callable[[Any], None]:
        def call(result: Any) -> None:
            loop = self._loop
            if loop is None or loop.is_closed():
                return
            try:
                loop.call_soon_threadsafe(fn, result)
            except RuntimeError:  # the loop closed meanwhile: nobody is left to tell
                pass

        return call

    def _clip_done(self, event_id: str, result: ClipResult | ClipError) -> None:
        ev = self._clip_of.pop(event_id, None)
        if ev is None:
            return  # forgotten: the event was deleted while its clip was written
        if isinstance(result, ClipError):
            log.warning("recorder: no clip for event %s: %s", ev.id, result.reason)
            if result.disk:
                self._disk_trouble(result.reason)
            return
        # Thread-safe and ordered after the event's own row (written when it started).
        self._store.mark_clip(result.event_id, result.duration_s, result.size_bytes)
        self._hub.publish_clip(
            ClipReady(
                event_id=ev.id,
                stream_id=ev.stream_id,
                label=ev.label,
                peak_score=ev.peak_score,
                start=result.first_ts,
                duration_s=result.duration_s,
                size_bytes=result.size_bytes,
                ts=clock.now(),
                truncated=result.truncated,
            )
        )

    def _snapshot_done(self, done: SnapshotDone) -> None:
        if done.error:
            log.warning("recorder: no snapshot for event %s: %s", done.event_id, done.error)
            if done.disk:
                self._disk_trouble(done.error)
            return
        self._store.mark_snapshot(done.event_id, done.size_bytes)

    # ------------------------------------------------------------ disk trouble
    # One data folder holds every stream's files, so disk trouble pauses them all,
    # each showing the same reason.
    def _disk_trouble(self, reason: str) -> None:
        self._set_disk_reason(reason if reason.startswith("recording paused") else f"recording paused: {reason}")

    def _set_disk_reason(self, reason: str | None) -> None:
        if reason == self._disk_reason:
            return
        if reason is None:
            log.info("recorder: recording resumed (the data folder has room again)")
        else:
            log.warning("recorder: %s; events are still stored, without clips or snapshots", reason)
        self._disk_reason = reason
        if self._on_change is not None:
            self._on_change()

    async def _watch_disk(self) -> None:
        """Ask the disk guard every few seconds; without one, a write failure pauses recording until the next look."""
        while True:
            reason = None
            if self._disk_check is not None:
                try:
                    reason = await asyncio.to_thread(self._disk_check)
                except Exception as exc:
                    reason = f"recording paused: the data folder cannot be checked ({exc})"
            self._set_disk_reason(reason)
            await asyncio.sleep(_DISK_CHECK_S)


def _image(frame: Any) -> Any:
    """``latest_full_frame()`` gives (rgb, ts) or None."""
    return None if frame is None else frame[0]
