"""Hub: filters, per-subscriber drop policies, ordering, isolation of slow subscribers, close, snapshot."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from stream.hub import Filter, Hub, HubMessage, MessageKind, Subscription, SubscriptionClosed
from stream.types import EventKind, LabelEvent, Prediction, SourceState, StreamStatus


def labels(stream: str, t: float, top=(("run", 0.6), ("jump", 0.3))) -> Prediction:
    return Prediction(
        stream_id=stream,
        clip_start=t - 8.5,
        clip_end=t,
        probs=np.zeros(3, dtype=np.float32),
        top_k=tuple(top),
        inference_s=0.01,
        published=t,
    )


def event(stream: str, n: int, label: str = "run", score: float = 0.7, peak: float | None = None, kind=EventKind.START):
    return LabelEvent(
        id=f"{stream}:{n}",
        kind=kind,
        stream_id=stream,
        label=label,
        score=score,
        peak_score=score if peak is None else peak,
        start=float(n),
        end=None,
        ts=float(n),
    )


def status(stream: str, state=SourceState.LIVE, t: float = 0.0) -> StreamStatus:
    return StreamStatus(stream_id=stream, state=state, ts=t)


def drain(sub: Subscription) -> list[HubMessage]:
    out = []
    while (msg := sub.get_nowait()) is not None:
        out.append(msg)
    return out


def test_filter_by_stream_and_kind():
    """Stream and kind filters keep only the matching streams and kinds."""
    hub = Hub()
    sub = hub.subscribe(Filter(streams={"a"}, kinds={MessageKind.EVENT, MessageKind.STATUS}))
    hub.publish_labels(labels("a", 1.0))
    hub.publish_event(event("a", 1))
    hub.publish_event(event("b", 2))
    hub.publish_status(status("a"))
    hub.publish_status(status("b"))
    got = drain(sub)
    assert [(m.kind, m.stream_id) for m in got] == [(MessageKind.EVENT, "a"), (MessageKind.STATUS, "a")]


def test_filter_by_label():
    """A label filter keeps labels messages with any matching top-k label and events of that label; status passes."""
    hub = Hub()
    sub = hub.subscribe(Filter(labels={"jump"}))
    hub.publish_labels(labels("a", 1.0))  # jump is in its top-k
    hub.publish_labels(labels("b", 1.0, top=(("sit", 0.9),)))
    hub.publish_event(event("a", 1, label="run"))
    hub.publish_event(event("a", 2, label="jump"))
    hub.publish_status(status("a"))
    got = drain(sub)
    assert [(m.kind.value, m.stream_id) for m in got] == [("labels", "a"), ("event", "a"), ("status", "a")]
    assert got[1].payload.label == "jump"
    assert got[0].payload.top_k == (("run", 0.6), ("jump", 0.3))  # not trimmed by label


def test_filter_min_score_trims_labels_and_drops_events():
    """min_score trims top-k entries, drops labels messages left empty and events whose peak is below it."""
    f = Filter(min_score=0.5)
    trimmed = f.matches(HubMessage(MessageKind.LABELS, "a", labels("a", 1.0)))
    assert trimmed.payload.top_k == (("run", 0.6),)
    assert f.matches(HubMessage(MessageKind.LABELS, "a", labels("a", 1.0, top=(("run", 0.4),)))) is None
    assert f.matches(HubMessage(MessageKind.EVENT, "a", event("a", 1, score=0.4))) is None
    assert f.matches(HubMessage(MessageKind.EVENT, "a", event("a", 1, score=0.6))) is not None
    # An END falls below exit by definition; its peak decides, so the client sees the end of what it saw start.
    end = event("a", 1, score=0.2, peak=0.8, kind=EventKind.END)
    assert f.matches(HubMessage(MessageKind.EVENT, "a", end)) is not None
    # A label below min_score does not satisfy the label filter.
    both = Filter(labels={"jump"}, min_score=0.5)
    assert both.matches(HubMessage(MessageKind.LABELS, "a", labels("a", 1.0))) is None


def test_filter_rejects_bad_values():
    """A single string for a set, or an out-of-range min_score, raises at construction."""
    with pytest.raises(TypeError):
        Filter(streams="cam1")
    with pytest.raises(ValueError):
        Filter(min_score=1.5)
    with pytest.raises(ValueError):
        Filter(kinds={"bogus"})
    assert Filter(kinds=["labels"]).kinds == frozenset({MessageKind.LABELS})


def test_labels_keep_newest_per_stream():
    """An undelivered labels message is replaced by a newer one of the same stream, counted as dropped."""
    hub = Hub()
    sub = hub.subscribe()
    hub.publish_labels(labels("a", 1.0))
    hub.publish_labels(labels("b", 1.0))
    hub.publish_labels(labels("a", 2.0))
    hub.publish_labels(labels("a", 3.0))
    assert sub.pending == 2
    got = drain(sub)
    assert [(m.stream_id, m.payload.published) for m in got] == [("b", 1.0), ("a", 3.0)]
    assert got[0].dropped == 2 and got[1].dropped == 0
    assert sub.dropped == 2 and not sub.overflowed  # label drops never make a client hopeless


def test_event_backlog_drops_oldest_and_reports_dropped():
    """A full event backlog drops the oldest; the next delivered message says how many were lost."""
    hub = Hub(event_backlog=3)
    sub = hub.subscribe()
    for n in range(5):
        hub.publish_event(event("a", n))
    got = drain(sub)
    assert [m.payload.id for m in got] == ["a:2", "a:3", "a:4"]
    assert [m.dropped for m in got] == [2, 0, 0]
    hub.publish_event(event("a", 9))
    assert sub.get_nowait().dropped == 0
    assert hub.stats().dropped == 2


def test_delivery_in_publish_order_across_kinds():
    """Messages of different kinds come out in the order they were published."""
    hub = Hub()
    sub = hub.subscribe()
    hub.publish_status(status("a"))
    hub.publish_labels(labels("a", 1.0))
    hub.publish_event(event("a", 1))
    hub.publish_labels(labels("b", 1.0))
    hub.publish_status(status("b"))
    got = drain(sub)
    assert [(m.kind.value, m.stream_id) for m in got] == [
        ("status", "a"),
        ("labels", "a"),
        ("event", "a"),
        ("labels", "b"),
        ("status", "b"),
    ]


def test_label_backlog_greater_than_one():
    """With label_backlog=2 the two newest labels per stream are kept."""
    hub = Hub(label_backlog=2)
    sub = hub.subscribe()
    for t in range(4):
        hub.publish_labels(labels("a", float(t)))
    got = drain(sub)
    assert [m.payload.published for m in got] == [2.0, 3.0] and got[0].dropped == 2


async def test_slow_subscriber_does_not_affect_fast_one():
    """A subscriber that never reads loses only its own messages, bounded; the fast one gets every event in order."""
    hub = Hub(event_backlog=64)
    fast = hub.subscribe()
    slow = hub.subscribe(max_dropped_in_row=500)
    n = 10_000
    received: list[int] = []
    fast_dropped: list[int] = []

    async def reader() -> None:
        async for msg in fast:
            fast_dropped.append(msg.dropped)
            if msg.kind is MessageKind.EVENT:
                received.append(int(msg.payload.id.split(":")[1]))

    async def settle() -> None:
        while fast.pending:
            await asyncio.sleep(0)

    task = asyncio.create_task(reader())
    for i in range(n):
        hub.publish_event(event("a", i))
        if i % 32 == 0:
            # A publisher callback returns to the loop now and then; one labels result per turn.
            hub.publish_labels(labels("a", float(i)))
            await asyncio.sleep(0)
    await asyncio.wait_for(settle(), 5)
    fast.close()
    await asyncio.wait_for(task, 5)

    assert received == list(range(n))
    assert fast.dropped == 0 and set(fast_dropped) == {0}
    assert slow.pending == 64 + 1  # the event backlog plus the newest labels of its one stream
    n_labels = len(range(0, n, 32))
    assert slow.dropped == (n - 64) + (n_labels - 1)
    assert slow.overflowed
    stats = hub.stats()
    assert stats.published[MessageKind.EVENT] == n and stats.dropped == slow.dropped
    assert stats.subscribers == 1


async def test_get_waits_for_publish():
    """get() waits until something is published, then returns it."""
    hub = Hub()
    sub = hub.subscribe()
    waiter = asyncio.create_task(sub.get())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    hub.publish_status(status("a"))
    msg = await asyncio.wait_for(waiter, 1)
    assert msg.kind is MessageKind.STATUS


async def test_close_wakes_waiting_get_and_ends_iteration():
    """close() wakes a waiting get() with SubscriptionClosed, ends iteration, and is idempotent."""
    hub = Hub()
    sub = hub.subscribe()
    waiter = asyncio.create_task(sub.get())
    await asyncio.sleep(0.01)
    sub.close()
    with pytest.raises(SubscriptionClosed):
        await asyncio.wait_for(waiter, 1)
    sub.close()
    assert [m async for m in sub] == []
    assert hub.subscribers == 0
    hub.publish_event(event("a", 1))  # publishing to nobody is fine
    with pytest.raises(SubscriptionClosed):
        sub.get_nowait()


async def test_hub_close_closes_all():
    """Hub.close() ends every subscription."""
    hub = Hub()
    subs = [hub.subscribe() for _ in range(3)]
    hub.close()
    assert all(s.closed for s in subs) and hub.subscribers == 0


def test_set_filter_applies_to_pending_and_future():
    """Changing the filter discards pending messages it excludes and filters later ones."""
    hub = Hub()
    sub = hub.subscribe()
    hub.publish_event(event("a", 1))
    hub.publish_event(event("b", 2))
    hub.publish_labels(labels("b", 1.0))
    sub.set_filter(Filter(streams={"a"}))
    hub.publish_event(event("b", 3))
    hub.publish_event(event("a", 4))
    assert [m.payload.id for m in drain(sub)] == ["a:1", "a:4"]
    assert sub.dropped == 0
    sub.set_filter(Filter())
    hub.publish_labels(labels("b", 2.0))
    assert [m.stream_id for m in drain(sub)] == ["b"]


def test_snapshot_latest_status_and_labels_per_stream():
    """snapshot() holds each stream's latest status and labels, optionally filtered."""
    hub = Hub()
    hub.publish_status(status("a", SourceState.CONNECTING))
    hub.publish_labels(labels("b", 1.0))
    hub.publish_status(status("a", SourceState.LIVE))
    hub.publish_labels(labels("a", 2.0))
    hub.publish_labels(labels("b", 3.0))
    hub.publish_event(event("a", 1))  # events are not part of a snapshot
    snap = hub.snapshot()
    assert [(m.kind.value, m.stream_id) for m in snap] == [("status", "a"), ("labels", "a"), ("labels", "b")]
    assert snap[0].payload.state is SourceState.LIVE
    assert snap[2].payload.published == 3.0
    assert [m.stream_id for m in hub.snapshot(Filter(streams={"b"}))] == ["b"]
    hub.forget("a")
    assert [m.stream_id for m in hub.snapshot()] == ["b"]


def test_overflowed_counts_event_drops_in_a_row():
    """overflowed trips only after more than max_dropped_in_row event drops with no read between, and stays set."""
    hub = Hub(event_backlog=1)
    sub = hub.subscribe(max_dropped_in_row=2)
    for n in range(3):  # 2 drops
        hub.publish_event(event("a", n))
    assert not sub.overflowed
    assert sub.get_nowait().dropped == 2  # reading resets the run
    for n in range(3, 6):  # 2 more drops after the read: still not more than 2 in a row
        hub.publish_event(event("a", n))
    assert not sub.overflowed
    hub.publish_event(event("a", 6))  # 3 in a row
    assert sub.overflowed
    sub.get_nowait()
    assert sub.overflowed  # sticky: the server decides, not a lucky late read
