"""H.264 for sources that deliver decoded frames (webcams, WebRTC), so their clips can have a pre-capture too.

A network camera's packets are already compressed and only need copying;
a webcam or a browser's camera hands us pictures. To give their clips the
seconds before an event, they are encoded continuously while recording is
on (libx264 ``ultrafast``/``zerolatency``, one thread, at most
``encode_fps`` frames per second, scaled to at most ``encode_max_height``)
into the stream's :class:`~stream.events.packets.PacketBuffer`, where the
clip writer finds them like any other packets. What it costs is in
BENCHMARKS.md ("Recording").

The source calls :meth:`FrameEncoder.offer` from wherever it keeps its
newest frame: that only takes a reference (newest wins in a one-frame
slot, drops counted), so a slow encoder never holds the camera back.
Conversion and encoding run in the encoder's own thread.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
import numpy as np
from av.codec.context import Flags

from stream.events.packets import CodecInfo, PacketBuffer
from stream.sources._av import quarter_turns
from stream.threads import LoopThread

__all__ = ["FrameEncoder", "encoded_size"]

log = logging.getLogger(__name__)

_CODEC = "libx264"
_TIME_BASE = Fraction(1, 90000)
_GOP_S = 2.0  # a keyframe this often: how finely a clip's start can be placed before its event
_TOLERANCE = 0.1  # of a frame period: a frame a little early still counts for its slot
_STOP_TIMEOUT_S = 5.0


def encoded_size(width: int, height: int, max_height: int) -> tuple[int, int]:
    """``(width, height)`` to encode a frame at: at most ``max_height`` tall, aspect kept, both even (yuv420p)."""
    out_h = min(height, max_height)
    out_w = width * out_h / height
    return max(2, int(round(out_w / 2)) * 2), max(2, out_h // 2 * 2)


class FrameEncoder:
    """Encodes a decoded-frame source into a PacketBuffer, in its own thread.

    A segment (one encoder session) starts with the first frame after
    :meth:`start` or :meth:`break_segment`; its size is fixed by that frame,
    later frames of another size are scaled to it (WebRTC changes size as
    bandwidth moves; a new segment each time would cut clips short).
    """

    def __init__(
        self,
        buffer: PacketBuffer,
        *,
        fps: float,
        max_height: int,
        convert_lock: threading.Lock | None = None,
        array_format: str = "rgb24",
        name: str = "",
    ) -> None:
        if not fps > 0 or max_height < 2:
            raise ValueError(f"FrameEncoder needs fps > 0 and max_height >= 2, got {fps!r} and {max_height!r}")
        try:
            av.Codec(_CODEC, "w")
        except Exception as exc:
            raise ValueError(f"this PyAV build has no {_CODEC} encoder, needed to record clips of webcams and browser cameras") from exc
        self.buffer = buffer
        self.fps = float(fps)
        self.max_height = int(max_height)
        self.name = name
        self._period = 1.0 / self.fps
        self._convert_lock = convert_lock or threading.Lock()
        self._array_format = array_format  # of frames that come as arrays (OpenCV's are bgr24)
        self._cond = threading.Condition()
        self._slot: tuple[Any, Callable[[Any], np.ndarray], float] | None = None
        self._break: str | None = None
        self._stopping = False
        self._running = False
        self._next = float("-inf")  # earliest ts of the next frame taken
        self._thread: LoopThread | None = None
        # The encoder thread's own:
        self._ctx: Any = None
        self._size: tuple[int, int] = (0, 0)
        self._t0 = 0.0
        self._last_pts = -1
        # A template stream for the clip writer's MP4 (see CodecInfo.template); made once.
        self._template = av.open(io.BytesIO(), mode="w", format="mp4").add_stream(_CODEC)
        # Counters.
        self.frames_offered = 0
        self.frames_taken = 0
        self.frames_encoded = 0
        self.dropped = 0  # taken but replaced by a newer frame before the encoder got to it
        self.segments = 0
        self.failures = 0
        self.cpu_s = 0.0  # the encoder thread's CPU time (conversion + encoding)

    # ------------------------------------------------------------ source side

    def wants(self, ts: float) -> bool:
        """Whether a frame at ``ts`` would be taken (readers that can skip decoding ask first)."""
        return self._running and ts >= self._next - _TOLERANCE * self._period

    def offer(self, raw: Any, to_rgb: Callable[[Any], np.ndarray], ts: float) -> bool:
        """Hand over a decoded frame (a reference; converted later, in the encoder's thread). True if taken."""
        self.frames_offered += 1
        if not self.wants(ts):
            return False
        # Keep the schedule unless we fell a whole period behind (as the sources' rate gate does).
        self._next = self._next + self._period if ts - self._next < self._period else ts + self._period
        with self._cond:
            if self._slot is not None:
                self.dropped += 1
            self._slot = (raw, to_rgb, ts)
            self.frames_taken += 1
            self._cond.notify()
        return True

    def break_segment(self, reason: str) -> None:
        """The video stops (the camera dropped): end the segment after the frame already taken."""
        with self._cond:
            self._break = reason
            self._cond.notify()

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the encoder thread (on the event loop's thread: :meth:`stop` awaits it there)."""
        if self._thread is not None:
            return
        self._running = True
        self._thread = LoopThread(self._run, name=f"encoder-{self.name}")
        self._thread.start()

    async def stop(self) -> None:
        """Encode the frame already taken, flush, end the segment ("source_stopped") and stop the thread."""
        self._running = False
        with self._cond:
            self._stopping = True
            self._cond.notify()
        thread = self._thread
        if thread is not None and not await thread.join(_STOP_TIMEOUT_S):
            log.warning("encoder %s: still busy %.0f s after stop; leaving it", self.name, _STOP_TIMEOUT_S)

    def stats(self) -> dict[str, Any]:
        return {
            "frames_offered": self.frames_offered,
            "frames_taken": self.frames_taken,
            "frames_encoded": self.frames_encoded,
            "dropped": self.dropped,
            "segments": self.segments,
            "failures": self.failures,
            "cpu_s": self.cpu_s,
            "size": self._size,
        }

    # ----------------------------------------------------------- encoder thread

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._slot is None and self._break is None and not self._stopping:
                    self._cond.wait()
                item, self._slot = self._slot, None
                reason, self._break = self._break, None
                stopping = self._stopping
            start = time.thread_time()
            try:
                if item is not None:
                    self._encode(*item)
                if reason is not None or stopping:
                    self._end_segment(reason or "source_stopped")
            except Exception:
                # A frame that does not convert or encode must not end recording for good:
                # drop the session, the next frame starts a new one.
                self.failures += 1
                log.exception("encoder %s: encoding failed; starting a new segment", self.name)
                self._ctx = None
                self.buffer.end("encoder_failed")
            self.cpu_s += time.thread_time() - start
            if stopping:
                return

    def _encode(self, raw: Any, to_rgb: Callable[[Any], np.ndarray], ts: float) -> None:
        frame = self._yuv(raw, to_rgb)
        if self._ctx is None:
            self._open(frame.width, frame.height, ts)
        width, height = self._size
        if (frame.width, frame.height) != (width, height) or frame.format.name != "yuv420p":
            frame = frame.reformat(width=width, height=height, format="yuv420p")
        pts = max(round((ts - self._t0) / _TIME_BASE), self._last_pts + 1)
        self._last_pts = pts
        frame.pts, frame.time_base = pts, _TIME_BASE
        self._emit(self._ctx.encode(frame))
        self.frames_encoded += 1

    def _yuv(self, raw: Any, to_rgb: Callable[[Any], np.ndarray]) -> av.VideoFrame:
        """The source's frame as a VideoFrame, straight from its own pixels where it can be (no RGB copy on the way)."""
        if isinstance(raw, np.ndarray):
            return av.VideoFrame.from_ndarray(raw, format=self._array_format)  # a new frame: no lock needed
        if isinstance(raw, av.VideoFrame) and not quarter_turns(raw):
            width, height = self._size if self._ctx is not None else encoded_size(raw.width, raw.height, self.max_height)
            with self._convert_lock:  # the source's own frame: PyAV frames must not convert on two threads at once
                return raw.reformat(width=width, height=height, format="yuv420p")
        with self._convert_lock:
            rgb = to_rgb(raw)  # upright RGB (a rotated video's frame, turned)
        return av.VideoFrame.from_ndarray(rgb, format="rgb24")

    def _open(self, width: int, height: int, ts: float) -> None:
        width, height = encoded_size(width, height, self.max_height)
        ctx = av.CodecContext.create(_CODEC, "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        ctx.time_base = _TIME_BASE
        ctx.framerate = Fraction(self.fps).limit_denominator(1001)
        ctx.gop_size = max(1, round(_GOP_S * self.fps))
        ctx.flags |= Flags.global_header  # SPS/PPS as extradata, for the MP4 header
        # One thread: a 720p frame at ultrafast takes a few ms, and a second
        # thread per camera would only contend with the decoders and the model.
        ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "threads": "1"}
        ctx.open()
        self._ctx, self._size, self._t0, self._last_pts = ctx, (width, height), ts, -1
        self.segments += 1
        self.buffer.begin(
            CodecInfo(
                codec="h264", width=width, height=height, time_base=_TIME_BASE, extradata=ctx.extradata,
                pix_fmt="yuv420p", rate=ctx.framerate, template=self._template,
            )
        )

    def _emit(self, packets: list[av.Packet]) -> None:
        nominal = round(self._period / _TIME_BASE)
        for packet in packets:
            packet.duration = nominal
            self.buffer.add(packet, self._t0 + float(packet.pts * _TIME_BASE))

    def _end_segment(self, reason: str) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            self._emit(ctx.encode(None))  # zerolatency keeps nothing back, but flush anyway
        self.buffer.end(reason)
