"""Removing streams whose source is stuck opening: prompt, no pool thread held, no reader left behind."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
import threading

import pytest

from stream.config import validate_config
from stream.pipeline import Pipeline
from stream.sources import SourceOptions
from stream.types import SourceState
from tests.support.sources import wait_until

pytestmark = pytest.mark.slow


def config():
    return validate_config({"window": {"span_s": 1.0, "stride_s": 0.25}, "scheduler": {"max_batch": 4}})


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never says a word (a camera hung in connect)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            self._held.append(conn)

    @property
    def connections(self) -> int:
        return len(self._held)

    def close(self) -> None:
        self._listener.close()
        for conn in self._held:
            conn.close()


@pytest.fixture
def silent_server():
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


def readers(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"source-{prefix}")]


async def test_removing_streams_stuck_in_connect_holds_no_default_pool_thread(recognizer, video, silent_server):
    """With a one-worker default executor, a pool request answers while ten removals of hung cameras are in flight."""
    loop = asyncio.get_running_loop()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="tiny-pool")
    loop.set_default_executor(pool)
    # Each hung open lasts until FFmpeg's socket timeout (8 s here): long enough
    # that the removals are surely still waiting when the pool request is made.
    hung = SourceOptions(watchdog_s=20.0, open_timeout_s=10.0, read_timeout_s=8.0, backoff_initial_s=0.2, backoff_max_s=1.0)
    async with Pipeline(recognizer, config(), source_options=hung) as pipe:
        await pipe.add_stream(str(video), stream_id="good")
        for n in range(10):
            await pipe.add_stream(f"rtsp://127.0.0.1:{silent_server.port}/cam{n}", stream_id=f"hung{n}")
        await wait_until(lambda: silent_server.connections >= 10, 10, "ten connections to the silent camera")
        await wait_until(lambda: pipe.snapshot("good") is not None, 10, "a frame from the good stream")
        removals = [asyncio.create_task(pipe.remove_stream(f"hung{n}")) for n in range(10)]
        await asyncio.sleep(0.1)  # the removals are now waiting for their readers
        frame = await asyncio.to_thread(pipe.snapshot, "good")
        # Answered by the only pool worker while every hung reader is still in its open.
        still_opening = len(readers("hung"))
        pending = sum(not t.done() for t in removals)
        assert frame is not None
        assert still_opening == 10 and pending == 10, (still_opening, pending)
        await asyncio.wait_for(asyncio.gather(*removals), 30)
        assert readers("hung") == []
        assert pipe.stream("good").state is SourceState.LIVE
    pool.shutdown(wait=True)


async def test_a_fifo_without_writer_says_why_and_is_removed_promptly(recognizer, tmp_path):
    """A FIFO nobody writes to: reconnecting with a reason within the open deadline; removed in well under its timeout, no reader left."""
    fifo = tmp_path / "camera.fifo"
    os.mkfifo(fifo)
    options = SourceOptions(open_timeout_s=2.0, read_timeout_s=2.0, backoff_initial_s=0.2, backoff_max_s=1.0)
    async with Pipeline(recognizer, config(), source_options=options) as pipe:
        await pipe.add_stream(str(fifo), stream_id="fifo")
        await wait_until(lambda: pipe.stream("fifo").state is SourceState.RECONNECTING, 10, "a reconnecting fifo stream")
        reason = pipe.stream("fifo").reason
        assert "no data from" in reason and "writer" in reason, reason
        # Removed while its reader waits for a writer again (it retries every backoff).
        await asyncio.wait_for(pipe.remove_stream("fifo"), options.open_timeout_s)
        assert readers("fifo") == []
        assert "fifo" not in pipe
