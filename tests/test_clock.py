"""PtsClock: a frame's time is when the camera made it, on the monotonic clock, never after its arrival."""

from __future__ import annotations

import pytest

from stream.clock import PtsClock

FPS = 15
PERIOD = 1 / FPS


def steady(clock: PtsClock, frames: int, *, pts0: float = 1000.0, t0: float = 50.0, latency: float = 0.02) -> list[float]:
    """Stamps of ``frames`` frames sent every PERIOD and arriving ``latency`` later (jitter on odd frames)."""
    return [
        clock.stamp(pts0 + i * PERIOD, t0 + i * PERIOD + latency + (0.015 if i % 2 else 0.0)) for i in range(frames)
    ]


def test_stamps_follow_the_cameras_spacing_and_never_pass_arrival() -> None:
    """Jittery arrivals get evenly spaced stamps at the least-delayed arrival's offset."""
    clock = PtsClock()
    stamps = steady(clock, 30)
    assert stamps[-1] == pytest.approx(50.0 + 29 * PERIOD + 0.02, abs=2e-3)
    assert all(b - a == pytest.approx(PERIOD, abs=2e-3) for a, b in zip(stamps, stamps[1:]))
    arrivals = [50.0 + i * PERIOD + 0.02 + (0.015 if i % 2 else 0.0) for i in range(30)]
    assert all(s <= a + 1e-6 for s, a in zip(stamps, arrivals))


def test_a_held_back_frame_keeps_the_time_it_was_made() -> None:
    """A frame released 1 s late (FFmpeg's parser when the camera froze) is stamped one period after the last, not at its arrival."""
    clock = PtsClock()
    stamps = steady(clock, 30)
    held = clock.stamp(1000.0 + 30 * PERIOD, 50.0 + 29 * PERIOD + 1.0)
    assert held - stamps[-1] == pytest.approx(PERIOD, abs=5e-3)


def test_pts_going_back_or_missing_restarts_the_fit_at_arrival() -> None:
    """A pts that wraps back, or none at all, is stamped at arrival; stamps keep increasing."""
    clock = PtsClock()
    stamps = steady(clock, 10)
    wrapped = clock.stamp(3.0, 51.0)
    assert wrapped == pytest.approx(51.0) and wrapped > stamps[-1]
    assert clock.stamp(3.0 + PERIOD, 51.0 + PERIOD + 0.01) == pytest.approx(51.0 + PERIOD, abs=1e-3)
    assert clock.stamp(None, 52.0) == pytest.approx(52.0)


def test_a_camera_clock_running_slow_is_followed() -> None:
    """Arrivals drifting 200 ppm later than pts: stamps stay within a few ms of the least-delayed arrival."""
    clock = PtsClock()
    drift = 2e-4
    last = 0.0
    for i in range(FPS * 600):  # ten minutes
        pts = i * PERIOD
        arrival = 100.0 + pts * (1 + drift) + 0.02
        last = clock.stamp(pts, arrival)
    assert arrival - 0.01 <= last <= arrival + 1e-6
