"""The live pipeline end to end on the tiny model: file-as-camera streams, overload, bad sources."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from stream.config import validate_config
from stream.hub import Filter, MessageKind
from stream.pipeline import Pipeline, StreamExists, UnknownStream
from stream.sources import SourceOptions
from stream.types import SourceState
from tests.support.models import SlowRecognizer
from tests.support.videos import make_audio_only, make_garbage_file

pytestmark = pytest.mark.slow

FAST = SourceOptions(watchdog_s=2.0, backoff_initial_s=0.2, backoff_max_s=1.0, open_timeout_s=2.0, read_timeout_s=2.0)


def config(**window):
    return validate_config({"window": {"span_s": 2.0, "stride_s": 0.25, **window}, "scheduler": {"max_batch": 4}})


async def collect(sub, seconds: float, kinds=("labels",)):
    out = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg = await asyncio.wait_for(sub.get(), left)
        except asyncio.TimeoutError:
            break
        if msg.kind.value in kinds:
            out.append((time.monotonic(), msg))
    return out


async def test_file_camera_labels_arrive_at_the_stride(recognizer, video):
    """Labels come every stride, the first within two strides of the first frame, clip times increase."""
    async with Pipeline(recognizer, config(), source_options=FAST) as pipe:
        sub = pipe.hub.subscribe(Filter(kinds={MessageKind.LABELS, MessageKind.STATUS}))
        t0 = time.monotonic()
        await pipe.add_stream(str(video), stream_id="demo")
        msgs = await collect(sub, 4.0, kinds=("labels", "status"))
        live_at = next(t for t, m in msgs if m.kind is MessageKind.STATUS and m.payload.state is SourceState.LIVE)
        labels = [(t, m.payload) for t, m in msgs if m.kind is MessageKind.LABELS]
        assert labels, "no labels arrived"
        assert labels[0][0] - live_at <= 2 * 0.25 + 0.3  # two strides, plus tiny-model inference
        gaps = np.diff([t for t, _ in labels])
        assert 0.15 <= float(np.median(gaps)) <= 0.4
        ends = [p.clip_end for _, p in labels]
        assert all(b > a for a, b in zip(ends, ends[1:]))
        assert all(p.label_age_s < 1.0 for _, p in labels)
        assert labels[-1][1].top_k[0][0].startswith("action_")
        info = pipe.stream("demo")
        assert info.state is SourceState.LIVE and info.figures.clips_inferred >= len(labels) - 1
        assert t0 < live_at


async def test_events_are_published_and_end_on_remove(recognizer, video):
    """With a low enter threshold a label event starts, and removing the stream ends it."""
    cfg = validate_config(
        {"window": {"span_s": 2.0, "stride_s": 0.25}, "labels": {"enter": 0.05, "exit": 0.01, "smoothing": 0}}
    )
    async with Pipeline(recognizer, cfg, source_options=FAST) as pipe:
        sub = pipe.hub.subscribe(Filter(kinds={MessageKind.EVENT}))
        await pipe.add_stream(str(video), stream_id="ev")
        first = await asyncio.wait_for(sub.get(), 5)
        assert first.payload.kind.value == "start" and first.payload.stream_id == "ev"
        status = pipe.hub.subscribe(Filter(kinds={MessageKind.STATUS}))
        await pipe.remove_stream("ev")
        kinds = [m.payload.kind.value for _, m in await collect(sub, 0.5, kinds=("event",))]
        assert "end" in kinds
        finals = [(m.payload.state, m.payload.reason) for _, m in await collect(status, 0.3, kinds=("status",))]
        assert finals.count((SourceState.STOPPED, "removed")) == 1, finals
        with pytest.raises(UnknownStream):
            pipe.stream("ev")


async def test_overload_keeps_label_age_bounded_and_is_fair(tiny_model_dir, video):
    """Four streams on a recognizer slower than the stride: every stream served, age flat, drops counted."""
    slow = SlowRecognizer.load(tiny_model_dir, device="cpu")
    cfg = validate_config({"window": {"span_s": 2.0, "stride_s": 0.2}, "scheduler": {"max_batch": 1, "max_wait_ms": 0}})
    async with Pipeline(slow, cfg, source_options=FAST) as pipe:
        sub = pipe.hub.subscribe(Filter(kinds={MessageKind.LABELS}))
        for i in range(4):
            await pipe.add_stream(str(video), stream_id=f"s{i}")
        msgs = [m.payload for _, m in await collect(sub, 9.0)]
        per_stream = {f"s{i}": [p for p in msgs if p.stream_id == f"s{i}"] for i in range(4)}
        assert all(len(v) >= 2 for v in per_stream.values()), {k: len(v) for k, v in per_stream.items()}
        counts = [len(v) for v in per_stream.values()]
        assert max(counts) - min(counts) <= 2  # served in turn
        ages = [p.label_age_s for p in sorted(msgs, key=lambda p: p.published)]
        half = len(ages) // 2
        # Bounded: one batch per stream ahead of you plus a stride, and not growing over the run.
        assert max(ages) < 4 * SlowRecognizer.delay + 1.0
        assert np.mean(ages[half:]) <= np.mean(ages[:half]) + 0.3
        assert pipe.scheduler.stats().dropped > 0
        assert sum(pipe.stream(f"s{i}").figures.clips_dropped for i in range(4)) > 0


async def test_bad_sources_fail_clearly_while_a_healthy_one_carries_on(recognizer, video, tmp_path):
    """Malformed URL, unknown scheme, missing file, garbage and audio-only files fail; the good stream keeps labelling."""
    garbage = make_garbage_file(tmp_path / "garbage.mp4")
    audio = make_audio_only(tmp_path / "audio.wav")
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    bad = {
        "malformed": "rtsp://",
        "scheme": "ftp://example.invalid/video",
        "missing": str(tmp_path / "missing.mp4"),
        "garbage": str(garbage),
        "audio": str(audio),
    }
    async with Pipeline(recognizer, config(), source_options=FAST) as pipe:
        sub = pipe.hub.subscribe(Filter(streams={"good"}, kinds={MessageKind.LABELS}))
        await pipe.add_stream(str(video), stream_id="good")
        for sid, url in bad.items():
            await pipe.add_stream(url, stream_id=sid)
        labels = await collect(sub, 3.0)
        for sid in bad:
            info = pipe.stream(sid)
            assert info.state is SourceState.FAILED, (sid, info.state, info.reason)
            assert info.reason, sid
        await pipe.add_stream(f"rtsp://127.0.0.1:{closed_port}/cam", stream_id="closed")
        labels += await collect(sub, 2.0)
        closed = pipe.stream("closed")
        assert closed.state is SourceState.RECONNECTING and "refused" in closed.reason, closed.reason
        assert closed.figures.last_error
        assert "ftp" in pipe.stream("scheme").reason
        assert "missing.mp4" in pipe.stream("missing").reason
        assert pipe.stream("good").state is SourceState.LIVE
        assert len(labels) >= 12  # the healthy stream kept labelling throughout (stride 0.25 s over 5 s)


async def test_duplicate_id_and_generated_ids(recognizer, video):
    """A taken id is refused with a clear error; ids are generated from the URL otherwise."""
    async with Pipeline(recognizer, config(), source_options=FAST) as pipe:
        a = await pipe.add_stream(str(video))
        b = await pipe.add_stream(str(video))
        assert a.id == "clip" and b.id == "clip-2"
        with pytest.raises(StreamExists, match="already exists"):
            await pipe.add_stream(str(video), stream_id="clip")
        info = await pipe.add_stream("rtsp://user:secret@127.0.0.1:9/cam")
        assert "secret" not in info.url and info.id == "127.0.0.1-cam"
        # An unencoded '/' in a password: the id comes from the real host, never the password.
        info = await pipe.add_stream("rtsp://admin:SECRET9/x@127.0.0.1:9/door")
        assert "SECRET9" not in info.id + info.url and info.id == "127.0.0.1-door"


async def test_shutdown_leaves_no_threads(recognizer, video):
    """Stopping the pipeline joins the source and inference threads."""
    import threading

    before = {t.ident for t in threading.enumerate()}
    pipe = Pipeline(recognizer, config(), source_options=FAST)
    await pipe.start()
    await pipe.add_stream(str(video))
    await asyncio.sleep(0.5)
    await pipe.stop()
    await asyncio.sleep(0.1)
    # asyncio_N are the event loop's own executor threads, not ours.
    left = [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive() and not t.name.startswith("asyncio_")]
    assert left == []
