"""A camera that stops sending but stays connected: its last clip is published once, then nothing."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from stream import clock
from stream.config import validate_config
from stream.hub import Filter, MessageKind
from stream.pipeline import Pipeline
from stream.sources import Source

pytestmark = pytest.mark.slow

FPS = 15.0


class FreezableCamera(Source):
    """Pushes a 15 fps moving picture from a task, like a WebRTC track; ``freeze()`` stops it, still LIVE."""

    kind = "test"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.frozen = asyncio.Event()
        self.last_ts = float("-inf")
        self._task: asyncio.Task | None = None

    async def _start_impl(self) -> None:
        self._task = asyncio.create_task(self._send())

    async def _stop_impl(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])

    def freeze(self) -> None:
        self.frozen.set()

    async def _send(self) -> None:
        n = 0
        while not self.frozen.is_set():
            image = np.full((120, 160, 3), n % 256, np.uint8)
            ts = clock.now()
            self._keep_latest(image, lambda raw: raw, ts)
            if self._admit(ts, image.shape[:2]):
                self._push_rgb(image, ts)
            self.last_ts, n = ts, n + 1
            await asyncio.sleep(1 / FPS)


async def test_a_frozen_camera_publishes_its_last_clip_once_and_then_nothing(recognizer):
    """After the frames stop (state still LIVE), no label repeats a clip or ends after the last frame."""
    # A long span with 8 frames keeps the ring at 4 fps, so most clips end on the
    # source's freshest frame rather than one the ring kept: the case that repeated.
    cfg = validate_config({"window": {"span_s": 8.0, "stride_s": 0.2}, "scheduler": {"max_batch": 4}})
    cameras: list[FreezableCamera] = []

    def factory(sink, size_for, on_status):
        cameras.append(FreezableCamera("frozen", sink, size_for, on_status))
        return cameras[-1]

    async with Pipeline(recognizer, cfg) as pipe:
        sub = pipe.hub.subscribe(Filter(streams={"frozen"}, kinds={MessageKind.LABELS}))
        await pipe.add_source(factory, stream_id="frozen")
        camera = cameras[0]
        labels = [(await asyncio.wait_for(sub.get(), 30)).payload for _ in range(5)]
        camera.freeze()
        await asyncio.sleep(0.1)  # the send task has seen it: no frame after last_ts
        last_frame = camera.last_ts
        before = len(labels)
        deadline = time.monotonic() + 3.0  # fifteen strides with nothing new
        while (left := deadline - time.monotonic()) > 0:
            try:
                labels.append((await asyncio.wait_for(sub.get(), left)).payload)
            except asyncio.TimeoutError:
                break
        # All labels, those before the freeze too: the clip ending on the last
        # frame may have been published just before it, and its repeat after.
        ends = [p.clip_end for p in labels]
        assert all(end <= last_frame for end in ends), (ends, last_frame)
        assert len(ends) == len(set(ends)), f"the same clip was published twice: {[e - last_frame for e in ends]}"
        assert len(ends) - before <= 2, ends  # at most the clips already under way when the frames stopped
        assert pipe.stream("frozen").state.value == "live"
