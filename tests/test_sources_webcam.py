"""Webcam source with a fake OpenCV capture: newest frame, BGR->RGB, missing device, unplugging."""

from __future__ import annotations

import asyncio
import threading
import time

import cv2
import numpy as np
import pytest

from stream.sources import MemorySink, SourceOptions
from stream.sources.webcam import WebcamSource
from stream.types import SourceState
from tests.support.sources import StatusLog, half_size, source_threads, wait_until

FAST = SourceOptions(watchdog_s=2.0, backoff_initial_s=0.2, backoff_max_s=1.0)


class FakeCapture:
    """Duck of cv2.VideoCapture's used methods (subclassing cv2.VideoCapture segfaults at exit).

    Each grab takes one frame period and makes frame number ``grabbed``;
    retrieve() returns it as a flat BGR image with blue = number, red = 255.
    """

    def __init__(self, *, fps: float = 60, opened: bool = True, frames: int | None = None) -> None:
        self.period = 1.0 / fps
        self.opened = opened
        self.frames = frames  # grab() fails after this many frames (camera unplugged)
        self.grabbed = 0
        self.retrieved = 0
        self.props: dict[int, float] = {}
        self.released = threading.Event()

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return self.opened

    def set(self, prop_id: int, value: float) -> bool:
        self.props[prop_id] = value
        return True

    def get(self, prop_id: int) -> float:
        return self.props.get(prop_id, 0.0)

    def grab(self) -> bool:
        time.sleep(self.period)
        if self.frames is not None and self.grabbed >= self.frames:
            return False
        self.grabbed += 1
        return True

    def retrieve(self) -> tuple[bool, np.ndarray]:
        self.retrieved += 1
        image = np.zeros((48, 64, 3), np.uint8)
        image[..., 0] = self.grabbed % 256  # blue
        image[..., 2] = 255  # red
        return True, image

    def release(self) -> None:
        self.released.set()


async def test_webcam_delivers_newest_frame_in_rgb() -> None:
    """Only wanted frames are retrieved, each is the one just grabbed, and colours come out RGB."""
    fake = FakeCapture(fps=60)
    sink = MemorySink(fps=5)
    source = WebcamSource("cam", 0, sink, half_size, options=FAST, capture_factory=lambda device: fake)
    await source.start()
    await wait_until(lambda: len(sink.frames()) >= 4, 3, "4 frames")
    await source.stop()
    frames = sink.frames()
    stats = source.stats()
    assert fake.retrieved == stats.frames_in  # no retrieve for skipped frames (no preview asked)
    assert fake.grabbed >= 3 * fake.retrieved
    for frame in frames:
        assert frame.image.shape == (24, 32, 3)
        assert np.all(frame.image[..., 0] == 255)  # red came from BGR's last channel
        # The pushed picture is the frame grabbed just before: not a queued, older one.
        assert int(frame.image[0, 0, 2]) == (frame.index + 1) % 256
    assert fake.props[cv2.CAP_PROP_FRAME_WIDTH] == 640
    assert fake.props[cv2.CAP_PROP_FRAME_HEIGHT] == 480
    assert fake.props[cv2.CAP_PROP_FPS] == 30
    assert fake.props[cv2.CAP_PROP_BUFFERSIZE] == 1
    assert fake.released.is_set()
    assert not source_threads()


async def test_webcam_snapshot_keeps_retrieving_while_watched() -> None:
    """While someone watches the preview, frames are retrieved for it even if the sink skips them."""
    fake = FakeCapture(fps=60)
    sink = MemorySink(fps=1)
    source = WebcamSource("cam", "/dev/video0", sink, half_size, options=FAST, capture_factory=lambda d: fake)
    await source.start()
    await wait_until(lambda: sink.frames(), 3, "a frame")
    first = source.snapshot()
    await wait_until(lambda: fake.retrieved > 5, 3, "retrieves for the preview")
    snap = source.snapshot()
    await source.stop()
    assert first is not None and snap.shape == (24, 32, 3)
    assert np.all(snap[..., 0] == 255)
    assert source.stats().frames_in < fake.retrieved


async def test_webcam_decodes_its_next_frame_when_a_clip_asks() -> None:
    """A grab-only webcam decodes the next frame on request_frame(), though the ring does not want it."""
    fake = FakeCapture(fps=60)
    sink = MemorySink(fps=0.25)  # the ring wants one frame per 4 s
    source = WebcamSource("cam", 0, sink, half_size, options=FAST, capture_factory=lambda d: fake)
    await source.start()
    try:
        await wait_until(lambda: sink.frames(), 3, "a first frame")
        last = source.latest_ts()
        # Unasked, no frame is decoded for the next 0.3 s: the ring's next wanted one is ~4 s away.
        assert not await asyncio.to_thread(source.wait_for_frame, last, 0.3)
        retrieved = fake.retrieved
        source.request_frame()
        assert await asyncio.to_thread(source.wait_for_frame, last, 1.0)  # 60 fps: due in ~17 ms
        assert fake.retrieved == retrieved + 1  # that one frame, not every frame from now on
        assert len(sink.frames()) == 1  # decoded for the clip, not pushed into the ring
    finally:
        await source.stop()


async def test_missing_webcam_fails() -> None:
    """A device that does not exist ends FAILED 'no camera at /dev/video3' without retrying."""
    log = StatusLog()
    calls = []

    def factory(device):
        calls.append(device)
        return FakeCapture(opened=False)

    source = WebcamSource("cam", "/dev/video3", MemorySink(), half_size, log, FAST, capture_factory=factory)
    await source.start()
    await wait_until(lambda: source.state is SourceState.FAILED, 3, "FAILED")
    assert source.reason == "no camera at /dev/video3"
    await source.stop()
    assert calls == ["/dev/video3"]
    assert log.states == [SourceState.CONNECTING, SourceState.FAILED]


async def test_missing_webcam_index_names_the_device() -> None:
    """Index 7 is reported as /dev/video7."""
    source = WebcamSource("cam", 7, MemorySink(), half_size, options=FAST, capture_factory=lambda d: FakeCapture(opened=False))
    await source.start()
    await wait_until(lambda: source.state is SourceState.FAILED, 3, "FAILED")
    assert source.reason == "no camera at /dev/video7"
    await source.stop()


@pytest.mark.slow
async def test_unplugged_webcam_reconnects() -> None:
    """A camera that stops mid-stream goes RECONNECTING, is reopened, and the sink is reset."""
    log = StatusLog()
    captures = []

    def factory(device):
        captures.append(FakeCapture(fps=60, frames=10))
        return captures[-1]

    sink = MemorySink()
    source = WebcamSource("cam", 0, sink, half_size, log, FAST, capture_factory=factory)
    await source.start()
    await wait_until(lambda: len(captures) >= 2 and source.state is SourceState.LIVE, 3, "a second connection")
    await source.stop()
    assert SourceState.RECONNECTING in log.states
    reason = log.last(SourceState.RECONNECTING).reason
    assert "camera /dev/video0 stopped sending frames; retrying in" in reason
    assert sink.resets >= 2
    assert all(c.released.is_set() for c in captures)
