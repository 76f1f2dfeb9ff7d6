"""FrameRing: circular storage, clip sampling, decimation, resets and thread safety."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from stream.ring import FrameRing, RingStats, ring_capacity
from stream.sampling import sample_indices
from stream.types import Frame

H, W = 4, 6


def frame(ts: float, index: int = 0, shape: tuple[int, int] = (H, W)) -> Frame:
    """A frame whose every pixel encodes its timestamp (ts * 10 mod 256)."""
    value = int(round(ts * 10)) % 256
    return Frame(image=np.full((*shape, 3), value, dtype=np.uint8), ts=ts, index=index)


def pixel_ts(image: np.ndarray) -> int:
    return int(image[0, 0, 0])


def test_ring_capacity_covers_span_plus_slack():
    """ring_capacity is ceil(span*fps)+2 and is not fooled by float products."""
    assert ring_capacity(8.533, 3.75) == 32 + 2
    assert ring_capacity(0.1, 30) == 3 + 2
    with pytest.raises(ValueError):
        ring_capacity(0, 5)


def test_wraparound_keeps_newest_in_order():
    """After more pushes than capacity the ring holds exactly the newest frames, oldest first."""
    ring = FrameRing(capacity=5, fps=None)
    for i in range(12):
        ring.push(frame(float(i), index=i))
    assert len(ring) == 5
    assert ring.timestamps().tolist() == [7.0, 8.0, 9.0, 10.0, 11.0]
    frames, ts = ring.clip(count=5, span_s=4.0)
    assert ts.tolist() == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert [pixel_ts(f) for f in frames] == [70, 80, 90, 100, 110]
    latest = ring.latest()
    assert latest.ts == 11.0 and latest.index == 11 and pixel_ts(latest.image) == 110


@pytest.mark.parametrize(
    "timestamps",
    [
        [i / 30 for i in range(300)],  # regular 30 fps, wrapped
        [0.0, 0.05, 0.5, 0.52, 1.7, 2.0, 2.01, 3.3, 4.9, 5.0, 5.4, 7.7, 8.0, 8.1, 9.9],  # irregular
    ],
    ids=["regular", "irregular"],
)
def test_clip_picks_sample_indices(timestamps):
    """clip() returns the frames sample_indices picks over the frames held, and copies them."""
    ring = FrameRing(capacity=64, fps=None)
    for t in timestamps:
        ring.push(frame(t))
    held = np.asarray(timestamps[-64:])
    for end in (None, float(held[-1]) - 0.3):
        frames, ts = ring.clip(count=8, span_s=2.0, end=end)
        want = held[sample_indices(held, held[-1] if end is None else end, 2.0, 8)]
        np.testing.assert_array_equal(ts, want)
        assert frames.shape == (8, H, W, 3) and frames.dtype == np.uint8
        assert [pixel_ts(f) for f in frames] == [int(round(t * 10)) % 256 for t in want]
    frames[:] = 0  # the clip is a copy: writing it must not touch the ring
    assert pixel_ts(ring.latest().image) == int(round(held[-1] * 10)) % 256


def test_clip_right_after_start_repeats_frames():
    """With two frames held an 8-frame clip spreads over them, repeating frames."""
    ring = FrameRing(capacity=40, fps=None)
    assert ring.clip(8, 8.5) is None
    ring.push(frame(1.0))
    ring.push(frame(1.2))
    frames, ts = ring.clip(8, 8.5)
    assert frames.shape == (8, H, W, 3)
    assert set(ts.tolist()) == {1.0, 1.2}
    assert np.all(np.diff(ts) >= 0)
    assert ring.clip(8, 8.5, end=0.5) is None  # nothing at or before the end time


def test_reset_empties_and_counts():
    """reset() empties the ring and is counted; pushing afterwards starts fresh."""
    ring = FrameRing(capacity=8, fps=None)
    for i in range(5):
        ring.push(frame(float(i)))
    ring.reset()
    assert len(ring) == 0 and ring.clip(4, 1.0) is None and ring.latest() is None
    ring.push(frame(0.5))  # earlier than before the reset: fine, it is a new connection
    assert ring.timestamps().tolist() == [0.5]
    assert ring.stats().resets == 1


def test_decimation_gate_averages_requested_rate():
    """At fps=5 the gate accepts 50±1 of 300 frames at 30 fps over 10 s, evenly spaced."""
    ring = FrameRing(capacity=8, fps=5)
    accepted = [i / 30 for i in range(300) if ring.wants(i / 30)]
    assert 49 <= len(accepted) <= 51
    gaps = np.diff(accepted)
    assert gaps.min() >= 0.2 - 1 / 30 - 1e-9 and gaps.max() <= 0.2 + 1 / 30 + 1e-9
    assert ring.stats().frames_skipped == 300 - len(accepted)


def test_decimation_gate_resyncs_after_stall():
    """After a stall the gate resyncs to the new time instead of accepting a burst of late frames."""
    ring = FrameRing(capacity=8, fps=5)
    assert ring.wants(0.0)
    assert ring.wants(10.0)  # long gap
    assert not ring.wants(10.1)
    assert ring.wants(10.2)


def test_no_decimation_accepts_everything():
    """fps=None accepts every frame and counts none skipped."""
    ring = FrameRing(capacity=4, fps=None)
    assert all(ring.wants(i / 30) for i in range(100))
    assert ring.stats().frames_skipped == 0


def test_out_of_order_frames_dropped():
    """A frame not newer than the newest held is dropped and counted."""
    ring = FrameRing(capacity=4, fps=None)
    ring.push(frame(1.0))
    ring.push(frame(1.0))
    ring.push(frame(0.5))
    ring.push(frame(2.0))
    assert ring.timestamps().tolist() == [1.0, 2.0]
    assert ring.stats().frames_out_of_order == 2


def test_shape_change_reallocates(caplog):
    """A frame of a new shape resets the ring and reallocates storage for it."""
    ring = FrameRing(capacity=3, fps=None)
    ring.push(frame(1.0))
    ring.push(frame(2.0))
    with caplog.at_level("INFO", logger="stream.ring"):
        ring.push(frame(3.0, shape=(8, 10)))
    assert "shape changed" in caplog.text
    frames, ts = ring.clip(2, 1.0)
    assert frames.shape == (2, 8, 10, 3) and ts.tolist() == [3.0, 3.0]
    assert ring.nbytes == 3 * 8 * 10 * 3 + 3 * 8 * 2
    assert ring.stats().resets == 1


def test_bad_image_rejected():
    """A non-uint8 or non-RGB image raises instead of being silently cast."""
    ring = FrameRing(capacity=3, fps=None)
    with pytest.raises(ValueError):
        ring.push(Frame(image=np.zeros((H, W, 3), dtype=np.float32), ts=1.0))
    with pytest.raises(ValueError):
        ring.push(Frame(image=np.zeros((H, W), dtype=np.uint8), ts=1.0))


def test_nbytes_and_stats():
    """nbytes is the preallocated images plus timestamps and indices, whatever the fill."""
    ring = FrameRing(capacity=10, fps=None)
    assert ring.nbytes == 10 * 8 * 2  # images not allocated until the first frame
    ring.push(frame(1.0))
    assert ring.nbytes == 10 * H * W * 3 + 10 * 8 * 2
    for i in range(2, 30):
        ring.push(frame(float(i)))
    stats = ring.stats()
    assert stats == RingStats(
        frames_in=29, frames_skipped=0, frames_out_of_order=0, resets=0, held=10, nbytes=ring.nbytes
    )
    assert ring.nbytes == 10 * H * W * 3 + 10 * 8 * 2  # no growth


def test_concurrent_push_and_clip_consistent():
    """Clips taken while another thread pushes are ordered and each image matches its timestamp."""
    ring = FrameRing(capacity=16, fps=None)
    n = 4000
    stop = threading.Event()
    errors: list[str] = []

    def writer() -> None:
        for i in range(n):
            ring.push(frame(i / 10))  # pixel value == i % 256
        stop.set()

    def reader() -> None:
        clips = 0
        while not stop.is_set() or clips < 10:
            got = ring.clip(8, 0.8)
            if got is None:
                continue
            frames, ts = got
            clips += 1
            if np.any(np.diff(ts) < 0):
                errors.append(f"timestamps decrease: {ts}")
            for img, t in zip(frames, ts):
                want = int(round(t * 10)) % 256
                if not np.all(img == want):
                    errors.append(f"frame at {t} holds {np.unique(img)}, want {want}")

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors[:3]
    assert ring.stats().frames_in == n
