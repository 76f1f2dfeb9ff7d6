"""Local webcams through OpenCV, always delivering the newest frame."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Callable, Protocol

import numpy as np

from stream.sources.base import FrameSink, SizeFor, SourceOptions, StatusCallback
from stream.sources.threaded import ThreadedSource
from stream.sources.errors import FatalSourceError, InvalidSource, TransientSourceError
from stream.sources.urls import SourceKind, classify

__all__ = ["Capture", "CaptureFactory", "WebcamSource", "bgr_to_rgb", "opencv_capture"]

logger = logging.getLogger(__name__)

REQUEST_WIDTH, REQUEST_HEIGHT, REQUEST_FPS = 640, 480, 30


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` a webcam source uses (tests pass a fake)."""

    def isOpened(self) -> bool: ...  # noqa: N802 (OpenCV's names)

    def set(self, prop_id: int, value: float) -> bool: ...

    def get(self, prop_id: int) -> float: ...

    def grab(self) -> bool: ...

    def retrieve(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...


CaptureFactory = Callable[[int | str], Capture]


def opencv_capture(device: int | str) -> Capture:
    """A real ``cv2.VideoCapture`` (imported lazily: only webcam users pay for it)."""
    import cv2

    return cv2.VideoCapture(device)


def bgr_to_rgb(image: np.ndarray) -> np.ndarray:
    """OpenCV hands out BGR; the pipeline speaks RGB."""
    return np.ascontiguousarray(image[:, :, ::-1])


def device_path(device: int | str) -> str:
    """``3`` -> ``/dev/video3`` (for messages and the existence check on Linux)."""
    return f"/dev/video{device}" if isinstance(device, int) else device


class WebcamSource(ThreadedSource):
    """A local camera. Grabs in a tight loop so the driver's one buffer always
    holds the newest frame, and retrieves (decodes and copies) a frame only
    when the sink wants it or someone is watching the preview.

    ``Frame.ts`` is ``time.monotonic()`` right after the grab returned.
    """

    kind = "webcam"
    encodes_for_clips = True  # decoded frames: clips come from a FrameEncoder
    array_format = "bgr24"  # OpenCV's

    def __init__(
        self,
        stream_id: str,
        device: int | str,
        sink: FrameSink,
        size_for: SizeFor,
        on_status: StatusCallback | None = None,
        options: SourceOptions | None = None,
        *,
        capture_factory: CaptureFactory | None = None,
    ) -> None:
        spec = classify(device)
        if spec.kind is not SourceKind.WEBCAM:
            raise InvalidSource(f"{spec.display} is not a webcam (an index like 0 or a /dev/videoN path)")
        self._device: int | str = spec.target
        self._path = device_path(self._device)
        super().__init__(stream_id, sink, size_for, on_status, options, display=self._path)
        self._factory = capture_factory or opencv_capture
        self._capture: Capture | None = None
        self._ever_live = False

    def _missing(self, message: str) -> Exception:
        # A camera that never worked is a configuration error; one that
        # worked and vanished was probably unplugged and may come back.
        if self._ever_live:
            return TransientSourceError(f"{message} (unplugged?)")
        return FatalSourceError(message)

    def _connect(self) -> None:
        capture = self._factory(self._device)
        if not capture.isOpened():
            capture.release()
            if sys.platform.startswith("linux") and not os.path.exists(self._path):
                raise self._missing(f"no camera at {self._path}")
            raise self._missing(f"cannot open camera {self._path}: not a capture device, or busy")
        self._capture = capture
        import cv2

        # Ask; cameras pick the nearest mode they have. One buffer so a grab
        # returns the newest frame, not one queued while we were busy.
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, REQUEST_WIDTH)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, REQUEST_HEIGHT)
        capture.set(cv2.CAP_PROP_FPS, REQUEST_FPS)
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        logger.info(
            "source %s: opened %s (%dx%d @ %.0f fps)",
            self.stream_id,
            self._path,
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            capture.get(cv2.CAP_PROP_FPS),
        )

    def _read(self) -> None:
        capture = self._capture
        assert capture is not None
        while not self.stopping:
            if not capture.grab():
                raise TransientSourceError(f"camera {self._path} stopped sending frames")
            ts = time.monotonic()
            wanted = self._admit(ts)
            if wanted or self._frame_wanted():
                ok, image = capture.retrieve()
                if not ok or image is None:
                    raise TransientSourceError(f"camera {self._path} sent a frame that could not be decoded")
                self._keep_latest(image, bgr_to_rgb, ts)
                if wanted:
                    self._push_decoded(image, bgr_to_rgb, ts)
            self._check_watchdog()

    def _admit(self, ts: float, size: tuple[int, int] | None = None) -> bool:
        self._ever_live = True
        return super()._admit(ts, size)

    def _disconnect(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            try:
                capture.release()
            except Exception as exc:  # OpenCV errors on release are not actionable
                logger.debug("source %s: release failed: %s", self.stream_id, exc)

