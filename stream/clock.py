"""Monotonic time inside, Unix time at the edges."""

from __future__ import annotations

import time

__all__ = ["PtsClock", "now", "to_wall"]

now = time.monotonic

# Fixed once per process: converting with a fixed offset keeps the order and
# spacing of monotonic stamps even if the wall clock is stepped later.
_OFFSET = time.time() - time.monotonic()


def to_wall(mono: float) -> float:
    """Unix time for a ``time.monotonic()`` stamp."""
    return mono + _OFFSET


# How fast the fitted offset may rise on its own, in seconds per second: a
# camera clock running slow (arrival - pts growing) is followed at up to this
# rate, while a held-back frame, released seconds late, moves it by a few ms.
_CREEP = 1e-3
# A frame stamped this much earlier than it arrived means the camera's clock
# jumped back (a wrap, a restart mid-connection): start the fit again.
_MAX_LAG_S = 30.0


class PtsClock:
    """Maps a stream's presentation times onto the monotonic clock, one connection at a time.

    A frame's time should be when the camera produced it. Its arrival is not
    that: a decoder or parser may hold a frame back and release it seconds
    later (FFmpeg's H.264 parser does when a camera freezes), and that frame
    must not look fresh. The offset between the two clocks is fitted as the
    smallest ``arrival - pts`` seen on the connection (the frame that waited
    least), allowed to creep up slowly so a camera clock running slow does
    not make frames look ever older. So a stamp is never after its arrival,
    and a held-back frame gets about the time the camera made it.

    A pts that does not move forward, or jumps back far against arrival,
    restarts the fit from that frame; a frame without pts is stamped at its
    arrival.
    """

    def __init__(self) -> None:
        self._offset: float | None = None
        self._last_pts: float | None = None
        self._last_arrival = 0.0
        self._last_ts = float("-inf")

    def reset(self) -> None:
        """Forget the fit: call on every (re)connect, the camera's clock may start anywhere."""
        self._offset = self._last_pts = None

    def stamp(self, pts_s: float | None, arrival: float) -> float:
        """Monotonic time of a frame with presentation time ``pts_s`` (seconds) that arrived at ``arrival``."""
        if pts_s is None:
            self.reset()
            return self._out(arrival)
        if self._last_pts is not None and pts_s <= self._last_pts:
            self.reset()  # the camera's clock went back: fit again from this frame
        candidate = arrival - pts_s
        offset = self._offset
        if offset is not None:
            offset += _CREEP * max(0.0, arrival - self._last_arrival)
            if candidate - offset > _MAX_LAG_S:
                offset = None
        self._offset = candidate if offset is None else min(offset, candidate)
        self._last_pts, self._last_arrival = pts_s, arrival
        return self._out(pts_s + self._offset)

    def _out(self, ts: float) -> float:
        # Strictly increasing, whatever the camera's clock did: clips are sampled by time.
        ts = max(ts, self._last_ts + 1e-6)
        self._last_ts = ts
        return ts
