"""MJPEG previews of streams: the newest frame, JPEG-encoded only while someone watches.

Frames are the ones the pipeline already keeps at model scale (a few hundred
pixels on the short side), so a preview costs one small JPEG encode per
frame sent and nothing at all when nobody is looking.

Viewers are capped (``server.max_preview_viewers``, all streams together):
each one holds a connection and a slot for as long as it watches. A viewer
that stops reading is cut by the HTTP protocol's stalled-reader timeout
(:mod:`stream.server.http_protocol`), which ends its response and frees
its slot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import cv2
import numpy as np
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from stream.pipeline import Pipeline, UnknownStream

__all__ = [
    "BOUNDARY",
    "MAX_PREVIEW_FPS",
    "PreviewResponse",
    "PreviewViewers",
    "encode_jpeg",
    "mjpeg_frames",
    "snapshot_jpeg",
]

log = logging.getLogger(__name__)

BOUNDARY = "frame"
MAX_PREVIEW_FPS = 5.0
JPEG_QUALITY = 75
_MAX_SIDE = 480  # keep previews small even if a model works at a larger scale


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """RGB uint8 (H, W, 3) -> JPEG bytes, downscaled to at most _MAX_SIDE pixels."""
    height, width = rgb.shape[:2]
    scale = _MAX_SIDE / max(height, width)
    if scale < 1.0:
        rgb = cv2.resize(rgb, (max(1, int(width * scale)), max(1, int(height * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def snapshot_jpeg(pipeline: Pipeline, stream_id: str) -> bytes | None:
    """One JPEG of the stream's newest frame, or None if it has none yet (raises UnknownStream)."""
    frame = pipeline.snapshot(stream_id)
    return None if frame is None else encode_jpeg(frame)


async def mjpeg_frames(
    pipeline: Pipeline,
    stream_id: str,
    closing: asyncio.Event,
    fps: float = MAX_PREVIEW_FPS,
) -> AsyncIterator[bytes]:
    """Multipart parts for ``multipart/x-mixed-replace``; ends when the stream goes or the server closes.

    Runs only while a client reads the response (Starlette pulls the next
    part after sending the previous one), so nothing is encoded for nobody.
    An unchanged frame is not sent again: a frozen camera costs no bandwidth.
    """
    interval = 1.0 / min(fps, MAX_PREVIEW_FPS)
    last: np.ndarray | None = None
    loop = asyncio.get_running_loop()
    while not closing.is_set():
        started = loop.time()
        try:
            # Conversion of the raw frame and the encode take milliseconds: off the loop.
            frame = await asyncio.to_thread(pipeline.snapshot, stream_id)
        except UnknownStream:
            return  # removed while watched: end the response cleanly
        if frame is not None and not (last is not None and last.shape == frame.shape and np.array_equal(last, frame)):
            last = frame
            jpeg = await asyncio.to_thread(encode_jpeg, frame)
            yield (
                f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n"
            )
        delay = max(0.0, interval - (loop.time() - started))
        try:
            await asyncio.wait_for(closing.wait(), delay)
        except asyncio.TimeoutError:
            pass


class PreviewViewers:
    """How many previews are being watched, against the cap; counts refusals (read by /metrics).

    Used from the event loop only, so plain integers suffice.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self.refused = 0

    def try_join(self) -> bool:
        """Take a slot; False (and one refusal counted) when all ``limit`` are taken."""
        if self.active >= self.limit:
            self.refused += 1
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active = max(0, self.active - 1)


class PreviewResponse(StreamingResponse):
    """The MJPEG response of one viewer: gives its slot back however the response ends.

    Released in ``__call__``'s ``finally`` rather than in the frame
    generator's: a generator cancelled before its first step never runs its
    ``finally``, and the slot would leak.
    """

    def __init__(self, content: AsyncIterator[bytes], viewers: PreviewViewers, **kwargs) -> None:
        super().__init__(content, media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}", **kwargs)
        self._viewers: PreviewViewers | None = viewers

    def release(self) -> None:
        if self._viewers is not None:
            self._viewers.leave()
            self._viewers = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()
