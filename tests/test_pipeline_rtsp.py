"""The whole pipeline on a real RTSP camera (GStreamer) that goes away and comes back."""

from __future__ import annotations

import asyncio
import time

import pytest

from stream.config import validate_config
from stream.hub import Filter, MessageKind
from stream.model import Recognizer
from stream.pipeline import Pipeline
from stream.sources import SourceOptions
from stream.types import SourceState
from tests.support.sources import open_fds

pytestmark = [pytest.mark.slow, pytest.mark.rtsp]

WATCHDOG_S = 2.0
FAST = SourceOptions(watchdog_s=WATCHDOG_S, backoff_initial_s=0.2, backoff_max_s=1.0, open_timeout_s=2.0, read_timeout_s=2.0)


async def next_of(sub, predicate, timeout: float):
    """The first hub message matching ``predicate`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        msg = await asyncio.wait_for(sub.get(), left)
        if predicate(msg):
            return msg
    raise asyncio.TimeoutError


def is_labels(msg) -> bool:
    return msg.kind is MessageKind.LABELS


def is_state(state):
    return lambda msg: msg.kind is MessageKind.STATUS and msg.payload.state is state


async def test_labels_survive_a_camera_restart(tiny_model_dir, rtsp_camera):
    """Labels flow; killed camera -> reconnecting within the watchdog; restarted -> live, labels resume; nothing leaks."""
    rec = Recognizer.load(tiny_model_dir, device="cpu")
    cfg = validate_config({"window": {"span_s": 2.0, "stride_s": 0.25}})
    fds_before = open_fds()
    async with Pipeline(rec, cfg, source_options=FAST) as pipe:
        sub = pipe.hub.subscribe(Filter(streams={"cam"}))
        await pipe.add_stream(rtsp_camera.url, stream_id="cam")
        await next_of(sub, is_labels, 15)

        port = rtsp_camera.port
        rtsp_camera.kill()
        killed_at = time.monotonic()
        await next_of(sub, is_state(SourceState.RECONNECTING), WATCHDOG_S + 3)
        assert time.monotonic() - killed_at <= WATCHDOG_S + 3
        rtsp_camera.start(port=port)
        # Until the stream is live again, no labels: a frozen ring must not yield stale clips.
        seen = []
        await next_of(sub, lambda m: seen.append(m) or is_state(SourceState.LIVE)(m), 15)
        assert not any(is_labels(m) for m in seen), [m.kind for m in seen]
        labels = await next_of(sub, is_labels, 5)
        assert labels.payload.clip_start > killed_at  # the ring was reset: no clip spans the gap
        assert pipe.stream("cam").figures.reconnects >= 1

        await pipe.remove_stream("cam")
    await asyncio.sleep(0.2)
    assert open_fds() <= fds_before + 3


async def test_a_frozen_camera_publishes_no_label_newer_than_its_last_frame(tiny_model_dir, rtsp_camera):
    """SIGSTOPped camera: no label claims a frame after the freeze (FFmpeg's held-back frame keeps its own time), none repeats, ages are honest."""
    rec = Recognizer.load(tiny_model_dir, device="cpu")
    cfg = validate_config({"window": {"span_s": 2.0, "stride_s": 0.25}})
    # read_timeout 1 s: FFmpeg releases its held-back frame after about 1 s, well before the 2 s watchdog.
    options = SourceOptions(watchdog_s=2.0, read_timeout_s=1.0, open_timeout_s=2.0, backoff_initial_s=0.2, backoff_max_s=1.0)
    async with Pipeline(rec, cfg, source_options=options) as pipe:
        sub = pipe.hub.subscribe(Filter(streams={"cam"}))
        await pipe.add_stream(rtsp_camera.url, stream_id="cam")
        # A few labels first: the timestamps' fit has seen frames.
        before = [(await next_of(sub, is_labels, 15)).payload for _ in range(4)]
        rtsp_camera.freeze()
        frozen_at = time.monotonic()
        try:
            seen = []
            await next_of(sub, lambda m: seen.append((time.monotonic(), m)) or is_state(SourceState.RECONNECTING)(m), 10)
            # Stay past the watchdog and a reconnect attempt or two: nothing may come from the frozen camera.
            deadline = time.monotonic() + 3.0
            while (left := deadline - time.monotonic()) > 0:
                try:
                    seen.append((time.monotonic(), await asyncio.wait_for(sub.get(), left)))
                except asyncio.TimeoutError:
                    break
        finally:
            rtsp_camera.thaw()
        labels = [(at, m.payload) for at, m in seen if is_labels(m)]
        tolerance = 0.25  # a frame sent just before SIGSTOP landed, plus the decoder's few ms
        late = [(round(p.clip_end - frozen_at, 3), round(p.label_age_s, 3)) for _, p in labels if p.clip_end > frozen_at + tolerance]
        assert late == [], f"labels claiming frames after the freeze (clip_end - freeze, label_age): {late}"
        # Those before the freeze count too: the last clip may have run just before it and its repeat after.
        ends = [p.clip_end for p in before] + [p.clip_end for _, p in labels]
        assert len(ends) == len(set(ends)), f"a clip was published twice: {ends}"
        for at, p in labels:
            # Age measured from the newest real frame: at least the time since the freeze, minus the tolerance.
            assert p.label_age_s >= (at - frozen_at) - tolerance - 0.1, (p.label_age_s, at - frozen_at)
        await pipe.remove_stream("cam")
