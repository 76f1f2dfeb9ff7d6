"""FIFOs as cameras (stream/sources/pipes.py): played when fed, bounded waits with reasons when not, prompt stops."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from pathlib import Path

import pytest

from stream.sources import MemorySink, SourceOptions, open_source
from stream.sources.file import FileSource
from stream.sources.pipes import needs_pipe_reader
from stream.types import SourceState
from tests.support.sources import StatusLog, half_size, source_threads, wait_until
from tests.support.videos import make_video

OPTIONS = SourceOptions(open_timeout_s=1.5, read_timeout_s=1.5, backoff_initial_s=0.2, backoff_max_s=1.0)


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "camera.fifo"
    os.mkfifo(path)
    return path


def feed(fifo: Path, video: Path, hold: threading.Event | None = None) -> threading.Thread:
    """Write ``video`` into ``fifo`` from a thread (a camera program); with ``hold``, stall before closing."""

    def write() -> None:
        with open(fifo, "wb") as out, open(video, "rb") as src:
            shutil.copyfileobj(src, out)
            out.flush()
            if hold is not None:
                hold.wait(30)

    thread = threading.Thread(target=write, name="fifo-writer", daemon=True)
    thread.start()
    return thread


def test_only_fifos_and_devices_get_the_pipe_reader(fifo: Path, tmp_path: Path) -> None:
    """FIFOs and character devices are read with bounded waits; regular files go straight to FFmpeg."""
    regular = tmp_path / "clip.mkv"
    regular.write_bytes(b"x")
    assert needs_pipe_reader(str(fifo)) and needs_pipe_reader("/dev/null")
    assert not needs_pipe_reader(str(regular)) and not needs_pipe_reader(str(tmp_path / "missing"))


async def test_a_fed_fifo_plays_like_a_camera(fifo: Path, tmp_path: Path) -> None:
    """A FIFO a program writes a stream into goes LIVE and delivers its frames at model scale."""
    video = make_video(tmp_path / "clip.mkv", fps=15, seconds=1, width=160, height=120)
    sink, log = MemorySink(capacity=100), StatusLog()
    source = open_source("fifo", str(fifo), sink, half_size, log, OPTIONS)
    assert isinstance(source, FileSource)
    await source.start()
    try:
        feed(fifo, video)
        await wait_until(lambda: len(sink.frames()) >= 10, 15, "10 frames from the fifo")
        assert log.last(SourceState.LIVE) is not None
        assert sink.frames()[0].image.shape == (60, 80, 3)
    finally:
        await source.stop()
    assert not source_threads()


async def test_a_fifo_without_writer_times_out_with_a_reason_and_stops_at_once(fifo: Path) -> None:
    """Nobody writes: RECONNECTING within the open timeout, saying to connect a writer; stop() returns and no thread is left."""
    log = StatusLog()
    source = open_source("fifo", str(fifo), MemorySink(), half_size, log, OPTIONS)
    await source.start()
    try:
        await wait_until(lambda: source.state is SourceState.RECONNECTING, OPTIONS.open_timeout_s + 5, "reconnecting")
        reason = log.last(SourceState.RECONNECTING).reason
        assert "no data from" in reason and "is a writer connected" in reason, reason
        assert source.stats().last_error
    finally:
        # Must not wait for the next timeout: the reader looks at stop() every slice of its wait.
        await wait_until_stopped(source, OPTIONS.open_timeout_s)
    assert not source_threads()


async def test_a_writer_that_stalls_is_reported_and_stop_is_prompt(fifo: Path, tmp_path: Path) -> None:
    """The writer keeps the FIFO open but sends nothing more: RECONNECTING after the read timeout, and stop() still returns at once."""
    video = make_video(tmp_path / "clip.mkv", fps=15, seconds=1, width=160, height=120)
    hold = threading.Event()
    sink, log = MemorySink(capacity=100), StatusLog()
    source = open_source("fifo", str(fifo), sink, half_size, log, OPTIONS)
    await source.start()
    try:
        feed(fifo, video, hold=hold)
        await wait_until(lambda: source.state is SourceState.RECONNECTING, 20, "reconnecting after the stall")
        assert sink.pushed > 0
        assert "did its writer stall" in log.last(SourceState.RECONNECTING).reason
    finally:
        await wait_until_stopped(source, OPTIONS.open_timeout_s)
        hold.set()
    assert not source_threads()


async def wait_until_stopped(source, limit: float) -> None:
    """Stop ``source``; fail if that takes as long as one of its timeouts."""
    await asyncio.wait_for(source.stop(), limit)
    assert source.state is SourceState.STOPPED
