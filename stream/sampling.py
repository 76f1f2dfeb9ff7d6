"""Which frames make a clip: evenly spaced target times, nearest frames.

One rule for files and live streams alike. The checkpoint we serve was
trained on 8 frames spread evenly over 256 frames at 30 fps (about 8.5 s), so
a clip covers a *span of time*, not a run of consecutive frames.
"""

from __future__ import annotations

import numpy as np

__all__ = ["target_times", "sample_indices"]


def target_times(start: float, end: float, count: int) -> np.ndarray:
    """``count`` evenly spaced times from ``start`` to ``end``, both included."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if count == 1:
        return np.array([end], dtype=np.float64)
    return np.linspace(start, end, count, dtype=np.float64)


def sample_indices(timestamps: np.ndarray, end: float, span: float, count: int) -> np.ndarray:
    """Indices of the frames nearest to ``count`` evenly spaced times over ``span`` ending at ``end``.

    ``timestamps`` must be non-decreasing. Frames after ``end`` are never
    picked. When the frames cover less than ``span`` (a stream that has just
    started, a short video) the targets are spread over what is there, so a
    clip is available from the first frame on. With fewer frames than
    ``count`` the nearest-frame rule repeats frames evenly. Gaps and uneven
    frame rates are handled by picking by time, not by position.
    """
    ts = np.asarray(timestamps, dtype=np.float64)
    if ts.ndim != 1:
        raise ValueError(f"timestamps must be 1-D, got shape {ts.shape}")
    if span < 0:
        raise ValueError(f"span must be >= 0, got {span}")
    # Only frames at or before the end time may land in the clip.
    n = int(np.searchsorted(ts, end, side="right"))
    if n == 0:
        raise ValueError("no frame at or before the end time: nothing to sample")
    ts = ts[:n]
    start = max(end - span, float(ts[0]))
    end = min(end, float(ts[-1])) if end > ts[-1] else end
    targets = target_times(start, end, count)
    right = np.clip(np.searchsorted(ts, targets, side="left"), 0, n - 1)
    left = np.clip(right - 1, 0, n - 1)
    # Nearest of the two neighbours; ties go to the earlier frame.
    pick_left = np.abs(targets - ts[left]) <= np.abs(ts[right] - targets)
    return np.where(pick_left, left, right).astype(np.int64)
