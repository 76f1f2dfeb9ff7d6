"""InferenceScheduler: freshest clip wins, batching across streams, fair service, clean stop."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from stream.model import Recognizer
from stream.scheduler import InferenceScheduler
from stream.types import Window


class GatedRecognizer(Recognizer):
    """A real recognizer that waits for a gate before each batch and records batch sizes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.gate.set()
        self.batches: list[list[int]] = []

    def probs(self, clips):
        self.gate.wait(10)
        self.batches.append([int(c[0, 0, 0, 0]) for c in clips])
        return super().probs(clips)


@pytest.fixture
def rec(tiny_model_dir):
    base = Recognizer.load(tiny_model_dir, device="cpu")
    return GatedRecognizer(base.model, base.preprocessing, name="tiny", num_frames=base.num_frames)


def window(stream_id: str, tag: int) -> Window:
    frames = np.full((8, 36, 36, 3), tag, np.uint8)
    ts = np.linspace(0, 1, 8) + time.monotonic()
    return Window(stream_id, frames, ts, time.monotonic())


async def results(queue: asyncio.Queue, n: int, timeout: float = 5.0):
    return [await asyncio.wait_for(queue.get(), timeout) for _ in range(n)]


async def test_freshest_offer_wins_and_drops_are_counted(rec):
    """While the model is busy, three offers for one stream collapse to the newest; two drops counted."""
    got: asyncio.Queue = asyncio.Queue()
    async with InferenceScheduler(rec, max_batch=4, max_wait_ms=0) as sched:
        sched.register("a", got.put_nowait)
        rec.gate.clear()
        sched.offer("a", lambda: window("a", 1))
        await asyncio.sleep(0.2)  # the first batch is now running (blocked on the gate)
        for tag in (2, 3, 4):
            sched.offer("a", lambda tag=tag: window("a", tag))
        rec.gate.set()
        await results(got, 2)
        assert rec.batches == [[1], [4]]
        assert sched.stream_counts("a") == (4, 2, 2)
        assert sched.stats().dropped == 2


async def test_batches_across_streams(rec):
    """Offers of several streams waiting together run as one batch, each result routed to its stream."""
    queues = {sid: asyncio.Queue() for sid in "abc"}
    async with InferenceScheduler(rec, max_batch=8, max_wait_ms=50) as sched:
        for sid, q in queues.items():
            sched.register(sid, q.put_nowait)
        rec.gate.clear()
        sched.offer("a", lambda: window("a", 9))
        await asyncio.sleep(0.2)
        for i, sid in enumerate("abc"):
            sched.offer(sid, lambda sid=sid, i=i: window(sid, 10 + i))
        rec.gate.set()
        for sid, q in queues.items():
            preds = await results(q, 2 if sid == "a" else 1)
            assert all(p.stream_id == sid for p in preds)
        assert sorted(rec.batches[-1]) == [10, 11, 12]


async def test_least_recently_served_goes_first(rec):
    """With batch size 1 and every stream always waiting, streams are served in turn."""
    got: asyncio.Queue = asyncio.Queue()
    served: list[str] = []

    def on_result(pred):
        served.append(pred.stream_id)
        got.put_nowait(pred)

    async with InferenceScheduler(rec, max_batch=1, max_wait_ms=0) as sched:
        for sid in "abcd":
            sched.register(sid, on_result)
        for _ in range(12):
            for sid in "abcd":
                sched.offer(sid, lambda sid=sid: window(sid, 1))
            await got.get()
        counts = {sid: served.count(sid) for sid in "abcd"}
        assert max(counts.values()) - min(counts.values()) <= 1, counts


async def test_unregistered_stream_results_are_discarded_and_stop_is_idempotent(rec):
    """A stream removed while its clip runs gets no result; stop() twice is fine and joins the thread."""
    got: asyncio.Queue = asyncio.Queue()
    sched = InferenceScheduler(rec, max_batch=1, max_wait_ms=0)
    sched.start()
    sched.register("a", got.put_nowait)
    rec.gate.clear()
    sched.offer("a", lambda: window("a", 1))
    await asyncio.sleep(0.2)
    sched.unregister("a")
    rec.gate.set()
    await asyncio.sleep(0.3)
    assert got.empty()
    with pytest.raises(KeyError):
        sched.offer("a", lambda: window("a", 1))
    await sched.stop()
    await sched.stop()
    assert not any(t.name == "inference" for t in threading.enumerate())


async def test_inference_error_does_not_kill_the_thread(rec):
    """A batch that raises is counted and the next batch still runs."""
    got: asyncio.Queue = asyncio.Queue()
    async with InferenceScheduler(rec, max_batch=1, max_wait_ms=0) as sched:
        sched.register("a", got.put_nowait)
        sched.offer("a", lambda: Window("a", np.zeros((3, 36, 36, 3), np.uint8), np.zeros(3), 0.0))  # wrong frame count
        await asyncio.sleep(0.3)
        sched.offer("a", lambda: window("a", 5))
        pred = (await results(got, 1))[0]
        assert pred.stream_id == "a" and sched.stats().errors == 1
