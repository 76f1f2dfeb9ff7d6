"""The store's hub subscription: every event, clip and status of every stream, written as rows.

Events update their occurrence's row; events and clips are also appended to
the replay log (``event_log``) as the JSON a live client got, which
``subscribe`` with ``since_seq`` sends again (:mod:`stream.events.replay`);
a status only moves the stored seq on.

Its backlog is sized so that it never overflows at event rates (events come
a few per second per stream; the backlog holds minutes of them even with
hundreds of streams): the drop policies that protect the server from slow
websocket clients must not turn into lost rows. If it overflows anyway (the
loop starved for a long time), that is an error: counted in /metrics and
logged.
"""

from __future__ import annotations

import asyncio
import json
import logging

from stream.clock import to_wall
from stream.events.store import EventStore
from stream.hub import Filter, Hub, HubMessage, MessageKind, Subscription, SubscriptionClosed
from stream.types import EventKind, LabelEvent

__all__ = ["STORE_BACKLOG", "StoreSubscriber", "event_row", "log_row"]

log = logging.getLogger(__name__)

STORE_BACKLOG = 100_000


def event_row(ev: LabelEvent, seq: int) -> tuple:
    """The store's row for one event message (times turned into Unix seconds)."""
    end = to_wall(ev.end) if ev.end is not None else None
    reason = (ev.end_reason or "score_dropped") if ev.kind is EventKind.END else None
    peak_ts = to_wall(ev.peak_ts) if ev.peak_ts is not None else None
    return (ev.id, ev.stream_id, ev.label, to_wall(ev.start), end, float(ev.score), float(ev.peak_score), peak_ts, reason, seq, to_wall(ev.ts))


def log_row(msg: HubMessage) -> tuple:
    """The replay log's row for an event or clip message: the body is sent as is by a replay."""
    # Imported here: the wire format lives with the server, whose modules pull in the
    # whole pipeline; by the time a store subscriber runs, they are loaded anyway.
    from stream.server.protocol import message_json

    p = msg.payload
    # `dropped` is a per-client count: a replayed message has lost nothing before it.
    body = json.dumps({**message_json(msg), "dropped": 0}, separators=(",", ":"), allow_nan=False)
    kind, event_id = ("event", p.id) if msg.kind is MessageKind.EVENT else ("clip", p.event_id)
    return (msg.seq, event_id, msg.stream_id, p.label, float(p.peak_score), kind, body, to_wall(p.ts))


class StoreSubscriber:
    """Reads its subscription on the loop and hands each message to the store's writer queue (never blocking)."""

    def __init__(self, hub: Hub, store: EventStore, *, backlog: int = STORE_BACKLOG) -> None:
        self._store = store
        self._sub: Subscription = hub.subscribe(
            Filter(kinds={MessageKind.EVENT, MessageKind.CLIP, MessageKind.STATUS}),
            event_backlog=backlog,
            max_dropped_in_row=backlog,
        )
        self._task: asyncio.Task | None = None
        self.dropped = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="event-store-subscriber")

    def _record(self, msg: HubMessage) -> None:
        if msg.dropped:
            self.dropped += msg.dropped
            self._store.report_subscription_drop(msg.dropped)
            log.error("event store: its hub subscription lost %s messages; those events are missing rows", msg.dropped)
        if msg.kind is MessageKind.EVENT:
            self._store.write_event(event_row(msg.payload, msg.seq))
            self._store.log_message(log_row(msg))
        elif msg.kind is MessageKind.CLIP:
            self._store.log_message(log_row(msg))  # the row's has_clip is the recorder's (store.mark_clip)
        else:
            self._store.note_seq(msg.seq)

    def _drain(self) -> None:
        """Hand over every message waiting in the subscription now (loop thread; keeps seq order)."""
        while (msg := self._sub.get_nowait()) is not None:
            self._record(msg)

    async def synced(self) -> None:
        """Return once every message published before the call is committed: what a replay reads is complete.

        Raises StoreError if the store refuses the flush (closed, or its queue is full).
        """
        try:
            self._drain()
        except SubscriptionClosed:
            pass
        await asyncio.wrap_future(self._store.flush())

    async def _run(self) -> None:
        try:
            async for msg in self._sub:
                self._record(msg)
        except Exception:
            log.exception("event store: the subscriber failed; events are no longer stored")

    async def stop(self) -> None:
        """Hand over what is still queued (ends the pipeline just published), then stop. Idempotent."""
        try:
            self._drain()
        except SubscriptionClosed:
            pass
        self._sub.close()
        task, self._task = self._task, None
        if task is not None:
            await asyncio.wait([task], timeout=5)
