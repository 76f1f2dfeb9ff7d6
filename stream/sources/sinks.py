"""A small in-memory :class:`~stream.sources.base.FrameSink`: for tests, tools and previews.

The pipeline's real sink is the stream's FrameRing; this one keeps the last
``capacity`` frames in a deque (drop-oldest, counted) and can decimate to a
frame rate, which is enough to exercise a source end to end.
"""

from __future__ import annotations

import collections
import threading

from stream.types import Frame

__all__ = ["MemorySink"]


class MemorySink:
    """Bounded, thread-safe frame store; drops the oldest frame when full."""

    def __init__(self, capacity: int = 256, fps: float | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._frames: collections.deque[Frame] = collections.deque(maxlen=capacity)
        self._period = 1.0 / fps if fps else None
        self._next_ts = float("-inf")
        self._lock = threading.Lock()
        self.pushed = 0  # frames ever pushed
        self.dropped = 0  # pushed frames that fell off the end
        self.resets = 0  # reset() calls (one per source connection)
        self.asked = 0  # wants() calls (one per decoded frame)

    def wants(self, ts: float) -> bool:
        with self._lock:
            self.asked += 1
            if self._period is None:
                return True
            if ts + 1e-3 < self._next_ts:
                return False
            self._next_ts = ts + self._period
            return True

    def push(self, frame: Frame) -> None:
        with self._lock:
            if len(self._frames) == self._frames.maxlen:
                self.dropped += 1
            self._frames.append(frame)
            self.pushed += 1

    def reset(self) -> None:
        with self._lock:
            self._frames.clear()
            self._next_ts = float("-inf")
            self.resets += 1

    def frames(self) -> list[Frame]:
        """A copy of the stored frames, oldest first."""
        with self._lock:
            return list(self._frames)

    def latest(self) -> Frame | None:
        with self._lock:
            return self._frames[-1] if self._frames else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)
