"""Per-stream frame ring: a bounded, preallocated store of recent frames.

The reader thread pushes frames; the event loop / scheduler takes clips. A
live camera must never make memory or latency grow, so the ring keeps only
the newest ``capacity`` frames (drop policy: overwrite the oldest) in one
preallocated uint8 array, and copies a clip out under the lock so the array
handed to another thread is never written again.

Ingest decimation lives here too (:meth:`FrameRing.wants`): the source asks
*before* converting and resizing a decoded frame, because that conversion is
the expensive part and most frames of a 30 fps camera never land in a clip.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass

import numpy as np

from stream.sampling import sample_indices
from stream.types import Frame

__all__ = ["FrameRing", "RingStats", "ring_capacity"]

log = logging.getLogger(__name__)


def ring_capacity(span_s: float, fps: float) -> int:
    """Frames needed to hold ``span_s`` seconds at ``fps``, plus two of slack.

    The slack covers both ends of the span: a clip's first target time can
    fall just before the oldest frame at exactly ``span_s * fps`` frames.
    """
    if span_s <= 0 or fps <= 0:
        raise ValueError(f"span_s and fps must be positive, got span_s={span_s}, fps={fps}")
    # Round first so 0.1 * 30 (= 3.0000000000000004) does not become 4 frames.
    return math.ceil(round(span_s * fps, 9)) + 2


@dataclass(frozen=True, slots=True)
class RingStats:
    """Counters of one ring, for metrics and status pages."""

    frames_in: int
    frames_skipped: int  # refused by the decimation gate
    frames_out_of_order: int  # dropped: timestamp not after the newest frame
    resets: int  # reset() calls and shape changes
    held: int  # frames currently held
    nbytes: int  # bytes allocated


class FrameRing:
    """The newest ``capacity`` frames of one stream, thread-safe.

    ``fps`` is the most frames per second :meth:`wants` accepts (None = all).
    """

    def __init__(self, capacity: int, fps: float | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if fps is not None and not fps > 0:
            raise ValueError(f"fps must be positive or None, got {fps}")
        self._capacity = int(capacity)
        self._period = None if fps is None else 1.0 / fps
        self._lock = threading.Lock()
        # Images are allocated on the first frame: only then do we know the
        # source's aspect ratio. Timestamps and indices are known-size now.
        self._images: np.ndarray | None = None
        self._ts = np.zeros(self._capacity, dtype=np.float64)
        self._idx = np.zeros(self._capacity, dtype=np.int64)
        self._start = 0  # physical slot of the oldest frame
        self._count = 0
        self._next_due: float | None = None
        self._shape_logged = False
        self._frames_in = 0
        self._frames_skipped = 0
        self._frames_out_of_order = 0
        self._resets = 0

    # -- writer side (reader thread) -------------------------------------

    def wants(self, ts: float) -> bool:
        """Whether a frame captured at ``ts`` should be converted and pushed.

        Due times advance by one period from the previous due time, not from
        ``ts``, so the accepted rate averages exactly ``fps`` even when the
        source's frame times do not divide evenly; after a stall of more than
        one period it resyncs to ``ts`` instead of accepting a burst.
        """
        if self._period is None:
            return True
        with self._lock:
            due = self._next_due
            # A relative epsilon: i/30 computed in floats may land a hair
            # before a due time that is mathematically equal to it.
            if due is not None and ts < due - 1e-9 * max(1.0, abs(due)):
                self._frames_skipped += 1
                return False
            if due is None or ts - due > self._period:
                due = ts
            self._next_due = due + self._period
            return True

    def push(self, frame: Frame) -> None:
        """Copy ``frame`` into the ring, overwriting the oldest when full.

        A frame whose timestamp is not after the newest one is dropped and
        counted: clips are sampled by time and need increasing timestamps.
        """
        image = frame.image
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
        with self._lock:
            if self._images is None or self._images.shape[1:] != image.shape:
                self._allocate(image.shape)
            if self._count and frame.ts <= self._ts[(self._start + self._count - 1) % self._capacity]:
                self._frames_out_of_order += 1
                return
            if self._count < self._capacity:
                slot = (self._start + self._count) % self._capacity
                self._count += 1
            else:
                slot = self._start
                self._start = (self._start + 1) % self._capacity
            self._images[slot] = image  # the one copy per frame; no allocation
            self._ts[slot] = frame.ts
            self._idx[slot] = frame.index
            self._frames_in += 1

    def _allocate(self, shape: tuple[int, ...]) -> None:
        """(Re)allocate image storage for ``shape``; caller holds the lock."""
        if self._images is not None:
            # A source that changes resolution mid-stream (a camera renegotiating,
            # an RTSP server switching profiles): old frames cannot share a clip
            # with new ones, so start over.
            level = logging.DEBUG if self._shape_logged else logging.INFO
            log.log(level, "frame shape changed from %s to %s: ring reset", self._images.shape[1:], shape)
            self._shape_logged = True
            self._clear()
        self._images = np.empty((self._capacity, *shape), dtype=np.uint8)

    def reset(self) -> None:
        """Forget every frame, e.g. on reconnect, so no clip spans the gap."""
        with self._lock:
            self._clear()

    def _clear(self) -> None:
        self._start = 0
        self._count = 0
        self._next_due = None
        self._resets += 1

    # -- reader side (event loop / scheduler) -----------------------------

    def _order(self) -> np.ndarray:
        """Physical slots oldest to newest; caller holds the lock."""
        return (self._start + np.arange(self._count)) % self._capacity

    def clip(self, count: int, span_s: float, end: float | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """``count`` frames over ``span_s`` seconds ending at ``end`` (default: newest frame).

        Returns (frames uint8 (count, H, W, 3), timestamps float64 (count,)),
        both new arrays, or None if no frame is held at or before ``end``.
        Until the ring holds ``span_s`` of frames the clip spreads over what
        is there, repeating frames if needed (see :func:`sample_indices`).
        """
        with self._lock:
            if self._count == 0 or self._images is None:
                return None
            slots = self._order()
            ts = self._ts[slots]
            if end is None:
                end = float(ts[-1])
            elif end < ts[0]:
                return None
            picked = slots[sample_indices(ts, end, span_s, count)]
            # Fancy indexing copies, so the result is safe after the lock is gone.
            return self._images[picked], self._ts[picked]

    def latest(self) -> Frame | None:
        """The newest frame (a copy of its image), or None if empty."""
        with self._lock:
            if self._count == 0 or self._images is None:
                return None
            slot = (self._start + self._count - 1) % self._capacity
            return Frame(image=self._images[slot].copy(), ts=float(self._ts[slot]), index=int(self._idx[slot]))

    def latest_ts(self) -> float | None:
        """Timestamp of the newest frame (no image copy), or None if empty."""
        with self._lock:
            if self._count == 0:
                return None
            return float(self._ts[(self._start + self._count - 1) % self._capacity])

    def timestamps(self) -> np.ndarray:
        """Timestamps of the frames held, oldest first (a copy)."""
        with self._lock:
            return self._ts[self._order()]

    def __len__(self) -> int:
        return self._count

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def fps(self) -> float | None:
        return None if self._period is None else 1.0 / self._period

    @property
    def nbytes(self) -> int:
        """Bytes allocated: images (once the first frame is in), timestamps and indices."""
        images = self._images
        return (0 if images is None else images.nbytes) + self._ts.nbytes + self._idx.nbytes

    def stats(self) -> RingStats:
        with self._lock:
            return RingStats(
                frames_in=self._frames_in,
                frames_skipped=self._frames_skipped,
                frames_out_of_order=self._frames_out_of_order,
                resets=self._resets,
                held=self._count,
                nbytes=self.nbytes,
            )
