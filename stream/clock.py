"""Monotonic time inside, Unix time at the edges."""

from __future__ import annotations

import time

__all__ = ["now", "to_wall"]

now = time.monotonic

# Fixed once per process: converting with a fixed offset keeps the order and
# spacing of monotonic stamps even if the wall clock is stepped later.
_OFFSET = time.time() - time.monotonic()


def to_wall(mono: float) -> float:
    """Unix time for a ``time.monotonic()`` stamp."""
    return mono + _OFFSET
