"""Reading a FIFO or device as a file, with deadlines FFmpeg cannot give.

FFmpeg opens a path with a blocking open(2) and reads it with blocking
read(2). On a regular file both return at once. On a FIFO with no writer,
open(2) blocks until one connects, and a writer that stalls blocks read(2):
PyAV's interrupt callback is only consulted between calls, so neither a
timeout nor stop() reaches the reader, which stays "connecting" forever and
outlives its stream. A :class:`PipeReader` opens without blocking and waits
with poll(2) in short slices instead, so every wait has a deadline with a
reason, and a stop is noticed within a slice. PyAV reads it as a file
object.
"""

from __future__ import annotations

import io
import os
import select
import stat
import threading

from stream import clock
from stream.sources.errors import TransientSourceError

__all__ = ["PipeReader", "needs_pipe_reader"]

_SLICE_S = 0.1  # how often a waiting read looks at the stop event


def needs_pipe_reader(path: str) -> bool:
    """True for paths whose open or read may block without end: FIFOs, character devices, sockets."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False  # let FFmpeg's open say what is wrong with it
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


class PipeReader(io.RawIOBase):
    """A non-seekable, read-only file over ``path`` whose every wait is bounded.

    The first data must come within ``open_timeout_s`` (for a FIFO: a writer
    must connect and write), later data within ``read_timeout_s`` of each
    read; either deadline raises :class:`TransientSourceError` with a reason
    people can act on. Once ``stop`` is set a read raises at once (within
    one poll slice), so the reader thread gets control back.
    """

    def __init__(
        self,
        path: str,
        display: str,
        stop: threading.Event,
        *,
        open_timeout_s: float,
        read_timeout_s: float,
    ) -> None:
        super().__init__()
        self._display = display
        self._stop = stop
        self._open_timeout_s = open_timeout_s
        self._read_timeout_s = read_timeout_s
        self._got_data = False
        # O_NONBLOCK: opening a FIFO's read end then returns at once, writer or not.
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes once some are there; b"" when the writer closed (end of stream)."""
        if self.closed:
            raise ValueError("read from a closed PipeReader")
        size = size if size is not None and size > 0 else 1 << 16
        first = not self._got_data
        limit = self._open_timeout_s if first else self._read_timeout_s
        deadline = clock.now() + limit
        while True:
            if self._stop.is_set():
                raise TransientSourceError(f"stopped while reading {self._display}")
            left = deadline - clock.now()
            if left <= 0:
                raise TransientSourceError(self._timeout_reason(first, limit))
            # Linux reports no POLLHUP on a FIFO whose writer never came, so
            # this waits for a writer's first bytes, not just any writer.
            if not self._poll.poll(int(min(left, _SLICE_S) * 1000) + 1):
                continue
            try:
                data = os.read(self._fd, size)
            except BlockingIOError:
                continue  # woken, but another reader took the bytes
            if data:
                self._got_data = True
            return data

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            try:
                os.close(self._fd)
            finally:
                super().close()

    def _timeout_reason(self, first: bool, limit: float) -> str:
        if first:
            return f"no data from {self._display} within {limit:g} s: is a writer connected to it?"
        return f"no data from {self._display} for {limit:g} s: did its writer stall?"
