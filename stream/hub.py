"""The hub: the one place results leave the pipeline.

Publishers (loop callbacks of the scheduler, label trackers and sources) call
``publish_*``; each subscriber (a websocket client, the ``subscribe`` CLI,
metrics) reads its own :class:`Subscription`. Publishing never blocks or
awaits: every subscription has bounded queues with a named drop policy, so a
slow or stuck client loses *its own* messages and nobody else notices.

Drop policies, per subscription:

- labels (:attr:`DropPolicy.KEEP_NEWEST`): per stream only the newest
  ``label_backlog`` undelivered results are kept; a newer one replaces the
  oldest. A stale label is worthless, the latest one is what a client wants.
- events and status (:attr:`DropPolicy.DROP_OLDEST`): one FIFO backlog of
  ``event_backlog`` messages; when full the oldest is dropped.

Every drop is counted, and the next delivered message carries in
:attr:`HubMessage.dropped` how many were lost since the previous one, so the
client can be told. Everything here runs on the event loop thread only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import math
from collections import OrderedDict, deque
from collections.abc import Iterable

from stream.types import ClipReady, LabelEvent, Prediction, StreamStatus

__all__ = [
    "DropPolicy",
    "Filter",
    "Hub",
    "HubMessage",
    "HubStats",
    "MessageKind",
    "Subscription",
    "SubscriptionClosed",
]

log = logging.getLogger(__name__)


class MessageKind(str, enum.Enum):
    LABELS = "labels"
    EVENT = "event"
    STATUS = "status"
    CLIP = "clip"  # an event's clip is ready (stream.events.recorder)


class DropPolicy(str, enum.Enum):
    """What a full subscriber queue gives up (ARCHITECTURE habit 3)."""

    KEEP_NEWEST = "keep_newest"  # labels: a newer result replaces an undelivered older one
    DROP_OLDEST = "drop_oldest"  # events/status: FIFO backlog, oldest goes first


class SubscriptionClosed(Exception):
    """Raised by :meth:`Subscription.get` once the subscription is closed."""


Payload = Prediction | LabelEvent | StreamStatus | ClipReady


@dataclasses.dataclass(frozen=True, slots=True)
class HubMessage:
    """One message to a subscriber; ``dropped`` = messages it lost just before this one."""

    kind: MessageKind
    stream_id: str
    payload: Payload
    dropped: int = 0
    # The hub's publish number: increases by one per message, and across restarts
    # when the hub starts after the highest one stored (Hub(first_seq=...)).
    seq: int = 0


def _frozen(values: Iterable | None, what: str) -> frozenset | None:
    if values is None:
        return None
    if isinstance(values, str):
        # frozenset("cam1") would be a set of characters: a classic slip.
        raise TypeError(f"{what} must be a collection of strings, not a single string")
    return frozenset(values)


@dataclasses.dataclass(frozen=True, slots=True)
class Filter:
    """What a subscriber wants. Plain sets and lists are accepted and frozen.

    ``labels`` keeps a labels message if any of its top-k labels (those at or
    above ``min_score``) is in the set, and an event if its label is.
    ``min_score`` trims labels messages' top-k (dropping the message if none
    remain) and, for events, is compared with the event's *peak* score: an
    END's current score is below the exit threshold by definition, so judging
    it by that would show a client starts that never end. With the peak, once
    an occurrence passes the filter every later event of it does too.
    Clip messages are judged like their event (label, peak score). Status
    messages are filtered by stream and kind only.
    """

    streams: frozenset[str] | None = None
    labels: frozenset[str] | None = None
    kinds: frozenset[MessageKind] = frozenset(MessageKind)
    min_score: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "streams", _frozen(self.streams, "streams"))
        object.__setattr__(self, "labels", _frozen(self.labels, "labels"))
        object.__setattr__(self, "kinds", frozenset(MessageKind(k) for k in _frozen(self.kinds, "kinds")))
        if not (math.isfinite(self.min_score) and 0.0 <= self.min_score <= 1.0):
            raise ValueError(f"min_score must be between 0 and 1, got {self.min_score}")

    def matches(self, msg: HubMessage) -> HubMessage | None:
        """``msg`` if it passes (a trimmed copy for labels below ``min_score``), else None."""
        if msg.kind not in self.kinds:
            return None
        if self.streams is not None and msg.stream_id not in self.streams:
            return None
        payload = msg.payload
        if msg.kind is MessageKind.LABELS:
            top = payload.top_k
            kept = tuple(entry for entry in top if entry[1] >= self.min_score)
            if not kept:
                return None
            if self.labels is not None and not any(label in self.labels for label, _ in kept):
                return None
            if len(kept) != len(top):
                return dataclasses.replace(msg, payload=dataclasses.replace(payload, top_k=kept))
            return msg
        if msg.kind in (MessageKind.EVENT, MessageKind.CLIP):
            if self.labels is not None and payload.label not in self.labels:
                return None
            if payload.peak_score < self.min_score:
                return None
        return msg


@dataclasses.dataclass(frozen=True, slots=True)
class HubStats:
    published: dict[MessageKind, int]
    dropped: int  # over all subscriptions, closed ones included
    subscribers: int


class Subscription:
    """One subscriber's bounded view of the hub. Create with :meth:`Hub.subscribe`.

    ``overflowed`` becomes True (and stays True) once more than
    ``max_dropped_in_row`` event/status messages were dropped with no read in
    between: the server uses it to disconnect clients that cannot keep up.
    """

    def __init__(
        self,
        hub: Hub | None,
        filter: Filter = Filter(),
        *,
        label_backlog: int = 1,
        event_backlog: int = 256,
        max_dropped_in_row: int = 1000,
    ) -> None:
        if label_backlog < 1 or event_backlog < 1:
            raise ValueError(f"backlogs must be at least 1, got {label_backlog}, {event_backlog}")
        self._hub = hub
        self._filter = filter
        self._label_backlog = label_backlog
        self._max_dropped_in_row = max_dropped_in_row
        # Queues hold (seq, message) with the hub's publish sequence number,
        # so get() can deliver in publish order across the two queues.
        self._backlog: deque[tuple[int, HubMessage]] = deque(maxlen=event_backlog)
        # Labels in publish order (OrderedDict: O(1) delete anywhere and O(1)
        # oldest), plus each stream's seqs to find what a newer one replaces.
        self._labels: OrderedDict[int, HubMessage] = OrderedDict()
        self._label_seqs: dict[str, deque[int]] = {}
        self._ready = asyncio.Event()
        self._closed = False
        self._dropped = 0
        self._dropped_since_delivery = 0
        self._dropped_in_row = 0
        self._overflowed = False

    # -- publisher side (called by the hub) --------------------------------

    def _offer(self, seq: int, msg: HubMessage) -> None:
        if self._closed or self._filter.matches(msg) is None:
            return
        if msg.kind is MessageKind.LABELS:
            seqs = self._label_seqs.setdefault(msg.stream_id, deque())
            if len(seqs) >= self._label_backlog:
                del self._labels[seqs.popleft()]
                self._count_drop(event=False)
            seqs.append(seq)
            self._labels[seq] = msg
        else:
            if len(self._backlog) == self._backlog.maxlen:
                self._count_drop(event=True)  # append below pushes the oldest out
            self._backlog.append((seq, msg))
        self._ready.set()

    def _count_drop(self, *, event: bool) -> None:
        self._dropped += 1
        self._dropped_since_delivery += 1
        if event:
            self._dropped_in_row += 1
            if self._dropped_in_row > self._max_dropped_in_row and not self._overflowed:
                self._overflowed = True
                log.warning(
                    "subscriber dropped more than %s event/status messages without reading", self._max_dropped_in_row
                )

    # -- subscriber side -----------------------------------------------------

    def get_nowait(self) -> HubMessage | None:
        """The next message, or None if none is pending. Raises SubscriptionClosed once closed."""
        if self._closed:
            raise SubscriptionClosed
        while True:
            head_event = self._backlog[0][0] if self._backlog else None
            head_label = next(iter(self._labels)) if self._labels else None
            if head_event is None and head_label is None:
                return None
            if head_label is None or (head_event is not None and head_event < head_label):
                _, msg = self._backlog.popleft()
            else:
                seq, msg = self._labels.popitem(last=False)
                self._label_seqs[msg.stream_id].popleft()
            # Queued messages passed the filter when published; apply the
            # current one again for labels' min_score trimming.
            msg = self._filter.matches(msg)
            if msg is not None:
                break
        msg = dataclasses.replace(msg, dropped=self._dropped_since_delivery)
        self._dropped_since_delivery = 0
        self._dropped_in_row = 0
        return msg

    async def get(self) -> HubMessage:
        """Wait for the next message. Raises SubscriptionClosed once closed."""
        while True:
            msg = self.get_nowait()
            if msg is not None:
                return msg
            self._ready.clear()
            await self._ready.wait()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> HubMessage:
        try:
            return await self.get()
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def filter(self) -> Filter:
        return self._filter

    def set_filter(self, f: Filter) -> None:
        """Replace the filter; pending messages it no longer matches are discarded (not counted as drops)."""
        self._filter = f
        self._backlog = deque(((s, m) for s, m in self._backlog if f.matches(m) is not None), self._backlog.maxlen)
        for seq, msg in list(self._labels.items()):
            if f.matches(msg) is None:
                del self._labels[seq]
                self._label_seqs[msg.stream_id].remove(seq)

    @property
    def dropped(self) -> int:
        """Messages lost to the drop policies since subscribing."""
        return self._dropped

    @property
    def pending(self) -> int:
        return len(self._backlog) + len(self._labels)

    @property
    def overflowed(self) -> bool:
        return self._overflowed

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop the subscription: wakes any waiting get(), frees the queues. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._backlog.clear()
        self._labels.clear()
        self._label_seqs.clear()
        self._ready.set()
        if self._hub is not None:
            self._hub._detach(self)
            self._hub = None


class Hub:
    """Fan-out of labels, events and status to subscribers; publishing never blocks."""

    def __init__(
        self, label_backlog: int = 1, event_backlog: int = 256, max_dropped_in_row: int = 1000, *, first_seq: int = 0
    ) -> None:
        if first_seq < 0:
            raise ValueError(f"first_seq must not be negative, got {first_seq}")
        self._label_backlog = label_backlog
        self._event_backlog = event_backlog
        self._max_dropped_in_row = max_dropped_in_row
        self._subs: dict[Subscription, None] = {}  # insertion-ordered set
        self._seq = first_seq  # the first message published gets first_seq + 1
        self._published = {kind: 0 for kind in MessageKind}
        self._retired_drops = 0
        # Latest per stream, for snapshots to late joiners (insertion = first seen).
        self._latest_status: dict[str, HubMessage] = {}
        self._latest_labels: dict[str, HubMessage] = {}

    def subscribe(
        self,
        filter: Filter = Filter(),
        *,
        event_backlog: int | None = None,
        max_dropped_in_row: int | None = None,
    ) -> Subscription:
        sub = Subscription(
            self,
            filter,
            label_backlog=self._label_backlog,
            event_backlog=self._event_backlog if event_backlog is None else event_backlog,
            max_dropped_in_row=self._max_dropped_in_row if max_dropped_in_row is None else max_dropped_in_row,
        )
        self._subs[sub] = None
        return sub

    def _detach(self, sub: Subscription) -> None:
        if sub in self._subs:
            del self._subs[sub]
            # Keep its drops in the hub's total after it is gone.
            self._retired_drops += sub.dropped

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    @property
    def seq(self) -> int:
        """The seq of the latest message published (first_seq before any)."""
        return self._seq

    def _publish(self, kind: MessageKind, stream_id: str, payload: Payload) -> HubMessage:
        self._seq += 1
        msg = HubMessage(kind, stream_id, payload, seq=self._seq)
        self._published[kind] += 1
        for sub in self._subs:
            sub._offer(self._seq, msg)
        return msg

    def publish_labels(self, pred: Prediction) -> None:
        self._latest_labels[pred.stream_id] = self._publish(MessageKind.LABELS, pred.stream_id, pred)

    def publish_event(self, ev: LabelEvent) -> None:
        self._publish(MessageKind.EVENT, ev.stream_id, ev)

    def publish_clip(self, clip: ClipReady) -> None:
        self._publish(MessageKind.CLIP, clip.stream_id, clip)

    def publish_status(self, st: StreamStatus) -> None:
        self._latest_status[st.stream_id] = self._publish(MessageKind.STATUS, st.stream_id, st)

    def forget(self, stream_id: str) -> None:
        """Drop a removed stream's latest status and labels from snapshots."""
        self._latest_status.pop(stream_id, None)
        self._latest_labels.pop(stream_id, None)

    def snapshot(self, filter: Filter | None = None) -> list[HubMessage]:
        """Latest status, then latest labels, of each stream: what a new subscriber should see first."""
        streams = dict.fromkeys([*self._latest_status, *self._latest_labels])
        out: list[HubMessage] = []
        for stream_id in streams:
            for latest in (self._latest_status, self._latest_labels):
                msg = latest.get(stream_id)
                if msg is not None and filter is not None:
                    msg = filter.matches(msg)
                if msg is not None:
                    out.append(msg)
        return out

    def stats(self) -> HubStats:
        dropped = self._retired_drops + sum(sub.dropped for sub in self._subs)
        return HubStats(published=dict(self._published), dropped=dropped, subscribers=len(self._subs))

    def close(self) -> None:
        """Close every subscription (shutdown): their readers see SubscriptionClosed."""
        for sub in list(self._subs):
            sub.close()
