"""Helpers for source tests: collect statuses, wait for conditions, count threads and fds."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Callable

from stream.types import SourceState, StreamStatus

__all__ = ["StatusLog", "wait_until", "half_size", "open_fds", "source_threads"]


def half_size(height: int, width: int) -> tuple[int, int]:
    """A stand-in for the recognizer's size rule: half each side, so resizing is visible."""
    return height // 2, width // 2


class StatusLog:
    """An ``on_status`` callback that records statuses and the thread they arrived on."""

    def __init__(self) -> None:
        self.statuses: list[StreamStatus] = []
        self.threads: set[int] = set()

    def __call__(self, status: StreamStatus) -> None:
        self.statuses.append(status)
        self.threads.add(threading.get_ident())

    @property
    def states(self) -> list[SourceState]:
        return [s.state for s in self.statuses]

    def last(self, state: SourceState) -> StreamStatus | None:
        return next((s for s in reversed(self.statuses) if s.state is state), None)

    def count(self, state: SourceState) -> int:
        return sum(1 for s in self.statuses if s.state is state)


async def wait_until(predicate: Callable[[], object], timeout: float, what: str = "condition") -> float:
    """Poll ``predicate`` every 20 ms; return the seconds it took, fail the test after ``timeout``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def source_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("source-")]
