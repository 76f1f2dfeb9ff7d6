"""The clip sampling rule: evenly spaced target times, nearest frames."""

from __future__ import annotations

import numpy as np
import pytest

from stream.sampling import sample_indices, target_times


def test_regular_frames_spread_over_span():
    """30 fps over 10 s: 8 frames evenly over the last 8.533 s, ending at the newest frame."""
    ts = np.arange(300) / 30
    idx = sample_indices(ts, end=ts[-1], span=256 / 30, count=8)
    assert idx[-1] == 299
    assert idx[0] == 299 - 256
    steps = np.diff(ts[idx])
    assert np.allclose(steps, steps.mean(), atol=1 / 30)


def test_irregular_frames_pick_nearest_by_time():
    """Uneven spacing: each pick is the frame nearest its target time."""
    rng = np.random.default_rng(0)
    ts = np.cumsum(rng.uniform(0.01, 0.2, 200))
    idx = sample_indices(ts, end=ts[-1], span=5.0, count=8)
    targets = target_times(ts[-1] - 5.0, ts[-1], 8)
    for i, t in zip(idx, targets):
        assert np.abs(ts - t).min() == pytest.approx(abs(ts[i] - t))


def test_gap_in_stream_picks_around_it():
    """A 3 s gap: targets inside the gap snap to the frames at its edges."""
    ts = np.concatenate([np.arange(0, 2, 0.1), np.arange(5, 8, 0.1)])
    idx = sample_indices(ts, end=ts[-1], span=8.0, count=8)
    assert (np.diff(idx) >= 0).all()
    assert set(ts[idx]) <= set(ts)


def test_too_few_frames_repeat_evenly():
    """Three frames for an 8-frame clip: every frame used, repeated, in order, no crash."""
    ts = np.array([0.0, 0.5, 1.0])
    idx = sample_indices(ts, end=1.0, span=8.5, count=8)
    assert len(idx) == 8 and set(idx) == {0, 1, 2}
    assert (np.diff(idx) >= 0).all()


def test_single_frame_and_short_stream_spread_over_what_is_there():
    """One frame repeats; a 1 s old stream spreads the clip over that 1 s, not 8.5 s."""
    assert list(sample_indices(np.array([3.0]), 3.0, 8.5, 8)) == [0] * 8
    ts = np.arange(31) / 30
    idx = sample_indices(ts, ts[-1], 8.5, 8)
    assert idx[0] == 0 and idx[-1] == 30


def test_frames_after_end_are_never_used():
    """Frames newer than the end time are not picked."""
    ts = np.arange(100) / 10
    idx = sample_indices(ts, end=5.0, span=2.0, count=4)
    assert ts[idx].max() <= 5.0 and ts[idx[-1]] == 5.0


def test_errors():
    """No frame before the end, or a bad count, raise ValueError."""
    with pytest.raises(ValueError):
        sample_indices(np.array([5.0]), end=1.0, span=1.0, count=8)
    with pytest.raises(ValueError):
        sample_indices(np.array([0.0]), end=1.0, span=1.0, count=0)
