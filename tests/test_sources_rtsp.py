"""Network source against a real RTSP server (GStreamer): live frames, kill/restart, freeze, refusals."""

from __future__ import annotations

import asyncio
import logging
import socket

import numpy as np
import pytest

from stream.sources import MemorySink, SourceOptions, open_source
from stream.sources.network import NetworkSource
from stream.types import SourceState
from tests.support.sources import StatusLog, half_size, open_fds, source_threads, wait_until

WATCHDOG_S = 2.0
FAST = SourceOptions(
    watchdog_s=WATCHDOG_S, backoff_initial_s=0.2, backoff_max_s=1.0, open_timeout_s=2.0, read_timeout_s=2.0
)
SECRET = "hunter2"


@pytest.fixture
def server(rtsp_camera):
    """The shared live RTSP camera (tests/conftest.py), under the name these tests use."""
    return rtsp_camera


def free_port() -> int:
    """A port nobody listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_no_secret(log: StatusLog, caplog) -> None:
    """The password appears in no status, no log record and no stats."""
    for status in log.statuses:
        assert SECRET not in status.reason and SECRET not in str(status.extra)
    for record in caplog.records:
        assert SECRET not in record.getMessage()


@pytest.mark.slow
@pytest.mark.rtsp
async def test_rtsp_frames_arrive_and_stop_leaves_nothing_behind(server, caplog) -> None:
    """Frames arrive at model scale with state LIVE; stop() leaves no thread and no fd behind."""
    caplog.set_level(logging.DEBUG, logger="stream.sources")
    fds_before = open_fds()
    sink = MemorySink(capacity=500)
    log = StatusLog()
    source = open_source("cam", server.url_with(f"admin:{SECRET}"), sink, half_size, log, FAST)
    assert isinstance(source, NetworkSource)
    await source.start()
    await wait_until(lambda: len(sink.frames()) >= 10, 8, "10 frames")
    assert source.state is SourceState.LIVE
    frames = sink.frames()
    assert all(f.image.shape == (120, 160, 3) for f in frames)
    assert np.all(np.diff([f.ts for f in frames]) > 0)
    assert source.stats().fps == pytest.approx(15, rel=0.35)
    assert source.snapshot().shape == (120, 160, 3)
    assert "admin:***@127.0.0.1" in log.last(SourceState.CONNECTING).reason
    await source.stop()
    assert source.state is SourceState.STOPPED
    assert not source_threads()
    assert open_fds() <= fds_before + 2
    assert_no_secret(log, caplog)


@pytest.mark.slow
@pytest.mark.rtsp
async def test_rtsp_server_killed_then_restarted_on_same_port(server) -> None:
    """Killed server -> RECONNECTING within the watchdog time; back on the same port -> LIVE, frames resume, sink reset."""
    sink = MemorySink(capacity=500)
    log = StatusLog()
    source = NetworkSource("cam", server.url, sink, half_size, log, FAST)
    await source.start()
    try:
        await wait_until(lambda: sink.frames(), 8, "first frame")
        resets_before = sink.resets
        server.kill()
        took = await wait_until(lambda: source.state is SourceState.RECONNECTING, WATCHDOG_S + 1, "RECONNECTING")
        assert took <= WATCHDOG_S + 1
        await asyncio.sleep(0.5)  # a failed attempt or two against the closed port
        server.start()  # same port
        await wait_until(lambda: source.state is SourceState.LIVE, 10, "LIVE again")
        pushed = sink.pushed
        await wait_until(lambda: sink.pushed >= pushed + 5, 5, "frames resuming")
        assert sink.resets > resets_before
        assert source.stats().reconnects >= 1
        assert log.states[-1] is SourceState.LIVE
        assert log.count(SourceState.LIVE) >= 2
    finally:
        await source.stop()
    assert not source_threads()


@pytest.mark.slow
@pytest.mark.rtsp
async def test_rtsp_frozen_server_trips_the_watchdog(server) -> None:
    """A SIGSTOPped server (connection open, no data) -> RECONNECTING via the watchdog; stop() still returns."""
    sink = MemorySink(capacity=500)
    log = StatusLog()
    source = NetworkSource("cam", server.url, sink, half_size, log, FAST)
    await source.start()
    try:
        await wait_until(lambda: sink.frames(), 8, "first frame")
        server.freeze()
        took = await wait_until(
            lambda: source.state is SourceState.RECONNECTING, WATCHDOG_S + 2, "RECONNECTING after freeze"
        )
        assert took >= WATCHDOG_S * 0.5  # not before frames had really stopped
        reason = log.last(SourceState.RECONNECTING).reason
        assert "no frames from" in reason or "no data from" in reason
    finally:
        stop_started = asyncio.get_running_loop().time()
        await source.stop()
        assert asyncio.get_running_loop().time() - stop_started < FAST.read_timeout_s + 1.5
        server.thaw()
    assert not source_threads()


@pytest.mark.slow
@pytest.mark.rtsp
async def test_closed_port_reconnects_with_refused_reason_and_masks_credentials(caplog) -> None:
    """Nobody listening -> RECONNECTING 'connection refused ... retrying in', password masked everywhere."""
    caplog.set_level(logging.DEBUG, logger="stream.sources")
    port = free_port()
    log = StatusLog()
    source = open_source("cam", f"rtsp://admin:{SECRET}@127.0.0.1:{port}/test", MemorySink(), half_size, log, FAST)
    await source.start()
    try:
        await wait_until(lambda: log.count(SourceState.RECONNECTING) >= 2, 5, "two failed attempts")
    finally:
        await source.stop()
    reason = log.last(SourceState.RECONNECTING).reason
    assert reason.startswith(f"connection refused by rtsp://admin:***@127.0.0.1:{port}/test")
    assert "retrying in" in reason
    assert source.stats().reconnects >= 2
    assert SECRET not in source.stats().last_error
    assert_no_secret(log, caplog)
    assert any("refused" in r.getMessage() for r in caplog.records)
    assert source.state is SourceState.STOPPED


@pytest.fixture
def http_server(tmp_path):
    """A plain HTTP file server on 127.0.0.1 (port 0) serving tmp_path."""
    import functools
    import http.server
    import threading

    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


class QuietHandler(__import__("http.server").server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.mark.slow
async def test_http_file_that_ends_is_treated_as_a_reconnect(tmp_path, http_server) -> None:
    """A plain file over HTTP plays, then its end counts as a dropped stream: RECONNECTING, then LIVE again."""
    from tests.support.videos import make_video

    make_video(tmp_path / "clip.mp4", seconds=0.5, fps=30)
    sink = MemorySink(capacity=500)
    log = StatusLog()
    source = open_source("web", f"http://127.0.0.1:{http_server}/clip.mp4", sink, half_size, log, FAST)
    await source.start()
    try:
        await wait_until(lambda: log.count(SourceState.LIVE) >= 2, 8, "LIVE twice")
    finally:
        await source.stop()
    assert "ended the stream; retrying in" in log.last(SourceState.RECONNECTING).reason
    assert sink.pushed >= 16  # the whole 15-frame clip, then the start of the replay
    assert sink.resets >= 2
