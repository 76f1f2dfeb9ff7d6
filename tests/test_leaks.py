"""Removing a stream frees it at once: its LiveStream, source, ring, frames and reader thread."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref

import pytest

from stream.config import validate_config
from stream.hub import Filter, MessageKind
from stream.pipeline import Pipeline
from stream.sources import SourceOptions

pytestmark = pytest.mark.slow

FAST = SourceOptions(watchdog_s=2.0, backoff_initial_s=0.2, backoff_max_s=1.0, open_timeout_s=2.0, read_timeout_s=2.0)


def config():
    return validate_config({"window": {"span_s": 1.0, "stride_s": 0.2}, "scheduler": {"max_batch": 4}})


async def labels_of(sub, stream_id: str, count: int, timeout: float) -> None:
    """Wait for ``count`` labels messages of ``stream_id``."""
    seen = 0
    async with asyncio.timeout(timeout):
        while seen < count:
            msg = await sub.get()
            if msg.kind is MessageKind.LABELS and msg.payload.stream_id == stream_id:
                seen += 1


def refs_of(pipe: Pipeline, stream_id: str) -> dict[str, weakref.ref]:
    """Weak references to everything a stream owns that holds frames."""
    live = pipe.live_stream(stream_id)
    ring_images = live.ring._images
    assert ring_images is not None, "the ring never received a frame"
    return {
        "stream": weakref.ref(live),
        "source": weakref.ref(live.source),
        "ring": weakref.ref(live.ring),
        "ring frames": weakref.ref(ring_images),
        "tracker": weakref.ref(live.tracker),
    }


@pytest.mark.parametrize("others", [0, 1], ids=["inference-idle-after", "inference-busy-after"])
async def test_a_removed_stream_is_freed_without_the_cyclic_collector(recognizer, video, others):
    """After remove_stream, the stream, its source, ring, frame buffer and tracker are gone by reference counting alone."""
    async with Pipeline(recognizer, config(), source_options=FAST) as pipe:
        sub = pipe.hub.subscribe(Filter(kinds={MessageKind.LABELS}))
        await pipe.add_stream(str(video), stream_id="leaky")
        for n in range(others):  # keeps the inference thread serving someone after the removal
            await pipe.add_stream(str(video), stream_id=f"other{n}")
        await labels_of(sub, "leaky", 3, 30)
        gc.collect()
        gc.disable()  # from here on only reference counting frees anything
        try:
            refs = refs_of(pipe, "leaky")
            await pipe.remove_stream("leaky")
            # Let the loop run the callbacks already queued (a status, a result in
            # flight) and the inference thread finish a batch that held this stream's
            # clip; when idle, that thread then waits with whatever it still holds.
            if others:
                await labels_of(sub, "other0", 3, 30)
            else:
                await asyncio.sleep(1.0)
            alive = [name for name, ref in refs.items() if ref() is not None]
            assert alive == [], f"still alive after remove without gc: {alive}"
        finally:
            gc.enable()
    assert not [t for t in threading.enumerate() if t.name == "source-leaky"]
