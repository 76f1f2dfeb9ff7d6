"""Source.await_fresh_frame: clip assembly waits for the camera's next frame when it is about to arrive, and only then."""

from __future__ import annotations

import threading
import time

import numpy as np

from stream import clock
from stream.ring import FrameRing
from stream.sources import base
from stream.sources.base import Source


class _Camera(Source):
    """A source fed by hand: frames are 'decoded' when the test says so, at a rate it states."""

    def __init__(self, interval: float) -> None:
        super().__init__("cam", FrameRing(4), lambda h, w: (h, w))
        self._interval = interval

    async def _start_impl(self) -> None:  # never started: the test feeds it
        pass

    async def _stop_impl(self) -> None:
        pass

    def frame_interval(self) -> float | None:
        return self._interval

    def decode(self, ts: float) -> None:
        self._last_frame_at = ts  # what a reader's _admit records for every frame
        self._keep_latest(np.zeros((4, 4, 3), np.uint8), lambda image: image, ts)


def _decode_later(camera: _Camera, delay: float) -> threading.Timer:
    timer = threading.Timer(delay, lambda: camera.decode(clock.now()))
    timer.start()
    return timer


def test_waits_for_a_frame_due_within_the_interval_and_takes_it(monkeypatch):
    # Slowed down 25x (a 1 fps camera, a 5 s cap) so a busy test machine cannot miss the window.
    monkeypatch.setattr(base, "_MAX_FRAME_WAIT_S", 5.0)
    camera = _Camera(interval=1.0)
    old = clock.now() - 0.5  # half an interval old: the next one is due in ~0.5 s
    camera.decode(old)
    timer = _decode_later(camera, 0.05)
    start = time.monotonic()
    try:
        camera.await_fresh_frame()
    finally:
        timer.join()
    # Had it not waited, it would have returned before the timer fired; it stopped waiting when the frame came.
    assert camera.latest_ts() > old
    assert time.monotonic() - start < 0.5


def test_gives_up_on_a_late_frame_after_about_one_interval():
    camera = _Camera(interval=0.04)
    camera.decode(clock.now() - 0.02)
    start = time.monotonic()
    camera.await_fresh_frame()  # nothing ever comes
    waited = time.monotonic() - start
    # Due at +20 ms, given up at +30 ms (25% jitter allowance); bounded by 50 ms by design.
    assert 0.015 <= waited < 0.3


def test_does_not_wait_for_a_slow_camera_or_a_fresh_frame():
    slow = _Camera(interval=0.5)  # 2 fps: the next frame is far off, waiting would cost ~0.5 s
    slow.decode(clock.now() - 0.1)
    fresh = _Camera(interval=0.04)
    fresh.decode(clock.now())  # just arrived
    start = time.monotonic()
    slow.await_fresh_frame()
    fresh.await_fresh_frame()
    assert time.monotonic() - start < 0.3


def test_no_frames_yet_or_unknown_rate_means_no_wait():
    camera = _Camera(interval=0.04)
    start = time.monotonic()
    camera.await_fresh_frame()  # no frame yet
    unknown = _Camera(interval=None)  # type: ignore[arg-type]
    unknown.decode(clock.now() - 0.02)
    unknown.await_fresh_frame()
    assert time.monotonic() - start < 0.3


def test_wait_for_frame_reports_whether_one_came():
    camera = _Camera(interval=0.04)
    camera.decode(1.0)
    assert camera.wait_for_frame(0.5, timeout=0.0)  # already newer
    assert not camera.wait_for_frame(1.0, timeout=0.01)
    timer = threading.Timer(0.01, lambda: camera.decode(2.0))
    timer.start()
    try:
        assert camera.wait_for_frame(1.0, timeout=5.0)
    finally:
        timer.join()
    assert camera.latest_ts() == 2.0
