"""Sources without I/O: URL classification and masking, backoff, the state machine, recv/stats."""

from __future__ import annotations

import asyncio
import logging
import random
import threading

import numpy as np
import pytest

from stream.sources import (
    TRANSITIONS,
    Backoff,
    EndOfStream,
    IllegalTransition,
    InvalidSource,
    MemorySink,
    Source,
    SourceOptions,
    ThreadedSource,
    classify,
    describe_source,
    open_source,
)
from stream.types import SourceState
from tests.support.sources import StatusLog, half_size, wait_until


# ------------------------------------------------------------------ URLs


# Masking (mask_url, scrub, classify's messages) is tested in tests/test_urls.py.


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        (0, "webcam"),
        ("2", "webcam"),
        ("/dev/video3", "webcam"),
        ("rtsp://cam/stream", "network"),
        ("RTSPS://cam:322/stream", "network"),
        ("rtmp://server/app/key", "network"),
        ("http://cam/video.mjpg", "network"),
        ("https://cdn/live.m3u8", "network"),
    ],
)
def test_classify_kinds(source: str | int, kind: str) -> None:
    """Webcam indexes and devices, and the five network schemes, are recognised."""
    assert classify(source).kind.value == kind


def test_classify_local_file_and_file_url(tmp_path) -> None:
    """An existing path and a file:// URL are files, resolved to an absolute path."""
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"x")
    assert classify(str(path)).target == str(path)
    assert classify(path.as_uri()).target == str(path)


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("ftp://x", "unsupported scheme 'ftp' in ftp://x: use rtsp, rtsps, rtmp, http or https"),
        ("foo://", "unsupported scheme 'foo'"),
        ("rtsp://", "no host"),
        ("rtsp:/cam/stream", "malformed URL"),
        ("rtsp://cam:99999/x", "malformed URL"),
        ("rtsp://cam/has space", "spaces"),
        ("", "empty source"),
        (-1, "index must be 0 or more"),
        ("/no/such/clip.mp4", "no such file: /no/such/clip.mp4"),
    ],
)
def test_classify_rejects_sources_that_can_never_work(source: str | int, words: str) -> None:
    """Malformed URLs, unknown schemes and missing files raise InvalidSource with a clear message."""
    with pytest.raises(InvalidSource) as info:
        classify(source)
    assert words in str(info.value)


def test_describe_source() -> None:
    """describe_source gives (kind, masked url) and 'invalid' instead of raising."""
    assert describe_source("rtsp://u:p@cam/x") == ("network", "rtsp://u:***@cam/x")
    assert describe_source("foo://u:p@x") == ("invalid", "foo://u:***@x")
    assert describe_source(1) == ("webcam", "webcam 1")


def test_open_source_raises_invalid_source_immediately() -> None:
    """The factory refuses an unknown scheme before any thread or connection exists."""
    with pytest.raises(InvalidSource, match="unsupported scheme 'ftp'"):
        open_source("cam", "ftp://x", MemorySink(), half_size)


def test_open_source_picks_the_class(tmp_path) -> None:
    """Each kind of source string gets its own class."""
    from stream.sources.file import FileSource
    from stream.sources.network import NetworkSource
    from stream.sources.webcam import WebcamSource

    path = tmp_path / "a.mp4"
    path.write_bytes(b"x")
    sink = MemorySink()
    assert isinstance(open_source("a", "rtsp://cam/x", sink, half_size), NetworkSource)
    assert isinstance(open_source("b", str(path), sink, half_size), FileSource)
    assert isinstance(open_source("c", "0", sink, half_size), WebcamSource)


# --------------------------------------------------------------- backoff


def test_backoff_doubles_to_the_maximum_with_bounded_jitter() -> None:
    """Delays double from initial up to max, stay within the jitter band, and reset."""
    backoff = Backoff(0.5, 4.0, jitter=0.2, rng=random.Random(1))
    delays = [backoff.next() for _ in range(8)]
    for delay, base in zip(delays, [0.5, 1, 2, 4, 4, 4, 4, 4]):
        assert base * 0.8 - 1e-9 <= delay <= min(4.0, base * 1.2) + 1e-9
    backoff.reset()
    assert backoff.next() <= 0.6


def test_backoff_never_overflows() -> None:
    """After thousands of failures the delay is still the maximum, not an OverflowError."""
    backoff = Backoff(0.5, 30.0, jitter=0.0)
    for _ in range(5000):
        delay = backoff.next()
    assert delay == 30.0


def test_options_are_validated() -> None:
    """Nonsense options fail at construction with the field name."""
    with pytest.raises(ValueError, match="watchdog_s"):
        SourceOptions(watchdog_s=0)
    with pytest.raises(ValueError, match="backoff_max_s"):
        SourceOptions(backoff_initial_s=5, backoff_max_s=1)


# ---------------------------------------------------------- state machine


class PushSource(Source):
    """A source fed by hand from any thread, like a WebRTC track would be from a task."""

    kind = "test"

    async def _start_impl(self) -> None:
        pass

    def feed(self, image: np.ndarray, ts: float) -> bool:
        self._keep_latest(image, lambda raw: raw, ts)
        if self._admit(ts, image.shape[:2]):
            self._push_rgb(image, ts)
            return True
        return False


def test_transition_table_is_complete_and_final_states_are_final() -> None:
    """Every state has an entry; STOPPED and FAILED lead nowhere."""
    assert set(TRANSITIONS) == set(SourceState) | {None}
    assert TRANSITIONS[SourceState.STOPPED] == frozenset()
    assert TRANSITIONS[SourceState.FAILED] == frozenset()


async def test_illegal_transition_raises() -> None:
    """Going from STOPPED back to LIVE is refused with an IllegalTransition naming both states."""
    source = PushSource("s1", MemorySink(), half_size)
    await source.start()
    await source.stop()
    with pytest.raises(IllegalTransition, match="from stopped to live"):
        source._set_state(SourceState.LIVE, "no")
    fresh = PushSource("s2", MemorySink(), half_size)
    with pytest.raises(IllegalTransition, match="from new to live"):
        fresh._set_state(SourceState.LIVE, "no")


async def test_status_is_delivered_on_the_loop_thread() -> None:
    """States changed from another thread reach on_status on the event loop's thread, in order."""
    log = StatusLog()
    source = PushSource("s", MemorySink(), half_size, on_status=log)
    await source.start()
    image = np.zeros((40, 60, 3), np.uint8)
    worker = threading.Thread(target=source.feed, args=(image, 1.0))
    worker.start()
    worker.join()
    await wait_until(lambda: SourceState.LIVE in log.states, 2, "LIVE status")
    await source.stop()
    await wait_until(lambda: SourceState.STOPPED in log.states, 2, "STOPPED status")
    assert log.states == [SourceState.CONNECTING, SourceState.LIVE, SourceState.STOPPED]
    assert log.threads == {threading.get_ident()}
    assert log.statuses[1].reason == "receiving 60x40 video from s"


async def test_recv_stats_snapshot_and_end_of_stream() -> None:
    """recv() gets the next pushed frame at model scale; stats count; EndOfStream after stop."""
    sink = MemorySink(fps=10)
    source = PushSource("s", sink, half_size, options=SourceOptions(max_fps=100))
    assert source.snapshot() is None
    await source.start()
    image = np.full((40, 60, 3), 7, np.uint8)
    pending = asyncio.ensure_future(source.recv())
    await asyncio.sleep(0)
    await asyncio.to_thread(source.feed, image, 1.0)
    frame = await asyncio.wait_for(pending, 2)
    assert frame.image.shape == (20, 30, 3) and frame.ts == 1.0
    assert not source.feed(image, 1.01)  # the sink decimates to 10 fps: skipped, not converted
    stats = source.stats()
    assert (stats.frames_decoded, stats.frames_in, stats.frames_skipped) == (2, 1, 1)
    assert stats.state is SourceState.LIVE
    assert source.snapshot().shape == (20, 30, 3)
    waiter = asyncio.ensure_future(source.recv())
    await asyncio.sleep(0)
    await source.stop()
    await source.stop()  # idempotent
    with pytest.raises(EndOfStream):
        await waiter
    with pytest.raises(EndOfStream):
        await source.recv()
    assert [f async for f in source] == []


async def test_max_fps_caps_admitted_frames() -> None:
    """max_fps=10 admits 10 of 30 evenly spaced frames per second."""
    sink = MemorySink()
    source = PushSource("s", sink, half_size, options=SourceOptions(max_fps=10))
    await source.start()
    image = np.zeros((8, 8, 3), np.uint8)
    admitted = sum(source.feed(image, i / 30) for i in range(90))
    await source.stop()
    assert admitted == 30


async def test_status_callback_errors_are_logged_not_raised(caplog) -> None:
    """A failing on_status callback is logged and does not break the source."""

    def broken(status) -> None:
        raise RuntimeError("callback bug")

    source = PushSource("s", MemorySink(), half_size, on_status=broken)
    with caplog.at_level(logging.ERROR, logger="stream.sources.base"):
        await source.start()
        await asyncio.sleep(0.05)
        await source.stop()
    assert "status callback failed" in caplog.text
    assert source.state is SourceState.STOPPED


class StuckOpenSource(ThreadedSource):
    """A camera whose open never returns until ``release`` is set (a device that does not answer)."""

    kind = "stuck"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.release = threading.Event()

    def _connect(self) -> None:
        self.release.wait(60)

    def _read(self) -> None:
        self._stop_event.wait(60)

    def _disconnect(self) -> None:
        pass


async def test_an_open_stuck_past_its_deadline_is_reported_and_stop_is_bounded(caplog) -> None:
    """An open no timeout reaches turns RECONNECTING with a reason after open_timeout_s; stop() gives up on the reader after its bound."""
    options = SourceOptions(open_timeout_s=0.5, read_timeout_s=0.5)
    log = StatusLog()
    source = StuckOpenSource("stuck", MemorySink(), half_size, log, options, display="camera 7")
    await source.start()
    try:
        await wait_until(lambda: source.state is SourceState.RECONNECTING, 10, "the open deadline")
        reason = log.last(SourceState.RECONNECTING).reason
        assert "still opening camera 7" in reason and "answering" in reason, reason
        with caplog.at_level(logging.WARNING, logger="stream.sources.threaded"):
            await asyncio.wait_for(source.stop(), 30)
        assert source.state is SourceState.STOPPED
        assert "reader thread still busy" in caplog.text
    finally:
        source.release.set()
    await wait_until(lambda: not [t for t in threading.enumerate() if t.name == "source-stuck"], 10, "the reader to exit")


async def test_stop_releases_the_sink_callback_and_newest_frame() -> None:
    """A stopped source no longer references its stream's callback, its sink or its last decoded frame."""
    sink = MemorySink()
    source = PushSource("s", sink, half_size, on_status=StatusLog())
    await source.start()
    source.feed(np.zeros((8, 8, 3), np.uint8), 1.0)
    assert source.latest_frame() is not None
    await source.stop()
    assert source.latest_frame() is None and source.snapshot() is None
    assert source._on_status is None and source._sink is not sink
