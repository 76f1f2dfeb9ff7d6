"""The source stage: one class per kind of camera, all with the same lifecycle.

A source decodes frames and writes the ones the sink wants, resized to model
scale once, into a :class:`FrameSink` (the stream's FrameRing). Like aiortc's
MediaStreamTrack it has ``async start()``, an idempotent ``async stop()``, an
awaitable ``recv()`` and one end-of-stream exception. Its lifecycle is an
explicit state machine (:data:`TRANSITIONS`); every change is published as a
:class:`~stream.types.StreamStatus` on the asyncio loop thread, whichever
thread caused it.

:class:`Source` is deliberately small (state, statuses, frame admission,
``recv``/``snapshot``/``stats``) so a WebRTC source can push frames from an
asyncio task. :class:`~stream.sources.threaded.ThreadedSource` adds what
blocking readers need: a reader thread, reconnects with backoff, a no-frame
watchdog and an open deadline.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol, runtime_checkable

import numpy as np

from stream import clock
from stream.model.preprocess import resize_frame
from stream.sources.errors import EndOfStream, IllegalTransition
from stream.sources.urls import scrub
from stream.types import Frame, SourceState, StreamStatus

if TYPE_CHECKING:
    from stream.config import RecordConfig
    from stream.events.encoder import FrameEncoder
    from stream.events.packets import PacketBuffer

__all__ = [
    "FrameSink",
    "SizeFor",
    "StatusCallback",
    "SourceOptions",
    "SourceStats",
    "TRANSITIONS",
    "TERMINAL",
    "Source",
]

logger = logging.getLogger(__name__)

SizeFor = Callable[[int, int], tuple[int, int]]
StatusCallback = Callable[[StreamStatus], None]


@runtime_checkable
class FrameSink(Protocol):
    """Where a source writes frames (the stream's FrameRing). Called from the reader thread."""

    def wants(self, ts: float) -> bool:
        """Decimation gate, asked *before* a decoded frame is converted and resized."""
        ...

    def push(self, frame: Frame) -> None:
        """Store one RGB frame at model scale."""
        ...

    def reset(self) -> None:
        """Forget stored frames: called on every (re)connect so a clip never spans a gap."""
        ...


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """How patient a source is. Defaults suit real cameras; tests shorten them."""

    watchdog_s: float = 10.0  # no frame for this long -> reconnect (catches servers that freeze without closing)
    backoff_initial_s: float = 0.5  # first wait before reconnecting; doubles up to backoff_max_s
    backoff_max_s: float = 30.0
    open_timeout_s: float = 5.0  # connect + probe
    read_timeout_s: float = 5.0  # one blocking read
    max_fps: float | None = None  # admit at most this many frames per second into the sink
    loop: bool = True  # files: start again at the end instead of stopping
    max_pixels: int | None = None  # largest frame (width x height) this source may decode; None = no limit

    def __post_init__(self) -> None:
        for name in ("watchdog_s", "backoff_initial_s", "backoff_max_s", "open_timeout_s", "read_timeout_s"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"SourceOptions.{name} must be > 0, got {value!r}")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(
                f"SourceOptions.backoff_max_s ({self.backoff_max_s}) must be >= backoff_initial_s ({self.backoff_initial_s})"
            )
        if self.max_pixels is not None and not self.max_pixels > 0:
            raise ValueError(f"SourceOptions.max_pixels must be > 0 or None, got {self.max_pixels!r}")
        if self.max_fps is not None and not self.max_fps > 0:
            raise ValueError(f"SourceOptions.max_fps must be > 0 or None, got {self.max_fps!r}")


@dataclass(frozen=True, slots=True)
class SourceStats:
    """Counters of one source, read at any time from any thread."""

    stream_id: str
    state: SourceState | None
    reason: str
    frames_decoded: int  # every frame the decoder produced
    frames_in: int  # frames accepted by the sink (converted, resized, pushed)
    frames_skipped: int  # decoded but not wanted (max_fps or the sink's own decimation)
    fps: float  # decoded frames per second over the last few seconds
    reconnects: int
    last_error: str


# Which state may follow which. None is "created, not started yet".
# RECONNECTING -> RECONNECTING updates the reason after each failed attempt
# (the stream stays "reconnecting" until a frame arrives, so a page does not
# flicker between connecting and reconnecting). STOPPED and FAILED are final.
TRANSITIONS: dict[SourceState | None, frozenset[SourceState]] = {
    None: frozenset({SourceState.CONNECTING, SourceState.STOPPED, SourceState.FAILED}),
    SourceState.CONNECTING: frozenset(
        {SourceState.LIVE, SourceState.RECONNECTING, SourceState.STOPPED, SourceState.FAILED}
    ),
    SourceState.LIVE: frozenset({SourceState.RECONNECTING, SourceState.STOPPED, SourceState.FAILED}),
    SourceState.RECONNECTING: frozenset(
        {SourceState.RECONNECTING, SourceState.LIVE, SourceState.STOPPED, SourceState.FAILED}
    ),
    SourceState.STOPPED: frozenset(),
    SourceState.FAILED: frozenset(),
}
TERMINAL = frozenset({SourceState.STOPPED, SourceState.FAILED})

_FPS_WINDOW_S = 5.0  # stats().fps is measured over this many seconds
_PREVIEW_INTEREST_S = 2.0  # a snapshot() within this long makes grab-only readers keep frames for it
# await_fresh_frame() waits for the camera's next frame unless the newest is
# younger than this share of a frame interval...
_FRESH_ENOUGH = 0.15
# ...for at most one interval plus this share of jitter, and never longer than this.
_FRAME_JITTER = 0.25
_MAX_FRAME_WAIT_S = 0.05


class _DiscardSink:
    """The sink of a stopped source: wants nothing, keeps nothing."""

    def wants(self, ts: float) -> bool:
        return False

    def push(self, frame: Frame) -> None:
        pass

    def reset(self) -> None:
        pass


_DISCARD = _DiscardSink()


class _RateGate:
    """Admit at most ``max_fps`` frames per second, evenly, without drifting."""

    def __init__(self, max_fps: float | None) -> None:
        self._period = 1.0 / max_fps if max_fps else None
        self._next = float("-inf")

    def reset(self) -> None:
        self._next = float("-inf")

    def allow(self, ts: float) -> bool:
        if self._period is None:
            return True
        # A little tolerance: a 30 fps camera capped at 10 fps must not lose
        # every third slot to a frame that arrives a millisecond early.
        if ts < self._next - 0.1 * self._period:
            return False
        # Keep the schedule (no drift) unless we fell a whole period behind.
        self._next = self._next + self._period if ts - self._next < self._period else ts + self._period
        return True


class Source:
    """Base of every source: state machine, statuses, frame admission, recv/snapshot/stats.

    Subclasses implement :meth:`_start_impl` and :meth:`_stop_impl`, and feed
    frames with :meth:`_admit`, :meth:`_push_rgb` and :meth:`_keep_latest`
    (from any thread). ``display`` is how the source is named in statuses and
    logs; it must already be masked.
    """

    kind: ClassVar[str] = "source"
    # Sources of decoded frames (webcams, WebRTC) record clips through a FrameEncoder;
    # the others copy their compressed packets into the buffer themselves.
    encodes_for_clips: ClassVar[bool] = False
    array_format: ClassVar[str] = "rgb24"  # pixel format of decoded frames that are numpy arrays

    def __init__(
        self,
        stream_id: str,
        sink: FrameSink,
        size_for: SizeFor,
        on_status: StatusCallback | None = None,
        options: SourceOptions | None = None,
        *,
        display: str = "",
    ) -> None:
        self.stream_id = stream_id
        self.options = options or SourceOptions()
        self.display = scrub(display) if display else stream_id
        self._sink = sink
        self._size_for = size_for
        self._on_status = on_status
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()  # guards state/reason and the order statuses are queued in
        self._state: SourceState | None = None
        self._reason = "not started"
        self._started = False
        self._stop_task: asyncio.Future[None] | None = None
        self._sizes: dict[tuple[int, int], tuple[int, int]] = {}
        self._rate = _RateGate(self.options.max_fps)
        # recv() waiters live on the loop thread; readers only look at the flag.
        self._waiters: list[asyncio.Future[Frame]] = []
        self._waiting = False
        # Newest decoded frame and how to turn it into RGB, for snapshot().
        self._latest: tuple[Any, Callable[[Any], np.ndarray], float] | None = None
        # PyAV frames must not be converted by two threads at once (it crashes in
        # swscale): the reader, previews and clip assembly all convert under this.
        self._convert_lock = threading.Lock()
        # Notified on every decoded frame, for clip assembly waiting on the next one.
        self._new_frame = threading.Condition()
        self._preview_asked_at = float("-inf")
        self._frame_requested = False  # by clip assembly, see request_frame()
        # Counters: written by one reader thread, read anywhere (ints are atomic under the GIL).
        self._frames_decoded = 0
        self._frames_in = 0
        self._frames_skipped = 0
        self._reconnects = 0
        self._last_error = ""
        self._conn_index = 0
        self._last_frame_at = clock.now()
        self._decode_times: collections.deque[float] = collections.deque(maxlen=512)
        self._record_buffer: PacketBuffer | None = None  # see set_recording()
        self._encoder: FrameEncoder | None = None

    # ----------------------------------------------------------------- public

    @property
    def state(self) -> SourceState | None:
        """Current state; None until :meth:`start`."""
        return self._state

    @property
    def reason(self) -> str:
        """Why the source is in its state, in words people can act on."""
        return self._reason

    async def start(self) -> None:
        """Begin connecting. Statuses are delivered on the loop this is awaited on."""
        if self._started or self._stop_task is not None:
            raise RuntimeError(f"source {self.stream_id!r} was already started or stopped (sources are single-use)")
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._set_state(SourceState.CONNECTING, f"connecting to {self.display}")
        if self._encoder is not None:
            self._encoder.start()
        await self._start_impl()

    async def stop(self) -> None:
        """Stop reading and release everything. Idempotent; concurrent calls wait for the same stop."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop_once())
        await asyncio.shield(self._stop_task)

    async def recv(self) -> Frame:
        """The next frame the sink accepts after this call; :class:`EndOfStream` once stopped or failed."""
        if self._state in TERMINAL:
            raise EndOfStream(f"{self.stream_id}: {self._state.value}: {self._reason}")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        future: asyncio.Future[Frame] = loop.create_future()
        self._waiters.append(future)
        self._waiting = True
        return await future

    def __aiter__(self) -> Source:
        return self

    async def __anext__(self) -> Frame:
        try:
            return await self.recv()
        except EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Source:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def set_recording(self, buffer: PacketBuffer | None, settings: RecordConfig | None = None) -> None:
        """Keep this source's video in ``buffer`` for clips (None: do not). Call before :meth:`start`.

        ``settings`` (encode_fps, encode_max_height) matter only for sources
        of decoded frames, which encode them (see ``encodes_for_clips``).
        """
        if self._started:
            raise RuntimeError(f"source {self.stream_id!r}: set_recording() must come before start()")
        self._record_buffer, self._encoder = buffer, None
        if buffer is not None and self.encodes_for_clips:
            from stream.config import RecordConfig
            from stream.events.encoder import FrameEncoder

            settings = settings or RecordConfig()
            self._encoder = FrameEncoder(
                buffer, fps=settings.encode_fps, max_height=settings.encode_max_height,
                convert_lock=self._convert_lock, array_format=self.array_format, name=self.stream_id,
            )

    def latest_full_frame(self) -> tuple[np.ndarray, float] | None:
        """The newest decoded frame as RGB at full camera resolution, upright, and its ts (for snapshots)."""
        latest = self._latest
        if latest is None:
            return None
        raw, to_rgb, ts = latest
        with self._convert_lock:
            return to_rgb(raw), ts

    def snapshot(self) -> np.ndarray | None:
        """The newest decoded frame as RGB at model scale, converted now (for a live preview)."""
        self._preview_asked_at = clock.now()
        frame = self.latest_frame()
        return frame.image if frame is not None else None

    def latest_frame(self, newer_than: float = float("-inf")) -> Frame | None:
        """The newest decoded frame (converted and resized now) if it is newer than ``newer_than``.

        The ring keeps only a few frames per second; a clip assembled just
        before inference ends on this frame instead (see :meth:`await_fresh_frame`
        for getting the next one), so a label is at most about one camera frame
        old when the model starts, not one ring interval.
        """
        latest = self._latest
        if latest is None or latest[2] <= newer_than:
            return None
        raw, to_rgb, ts = latest
        with self._convert_lock:
            rgb = to_rgb(raw)
        return Frame(image=resize_frame(rgb, self._target_size(rgb.shape[0], rgb.shape[1])), ts=ts, index=-1)

    def latest_ts(self) -> float | None:
        """Timestamp of the newest decoded frame, or None before the first one."""
        latest = self._latest
        return latest[2] if latest is not None else None

    def last_arrival(self) -> float:
        """When the camera last delivered a frame, converted or not (a webcam grabs many it never decodes)."""
        latest = self.latest_ts()
        return max(self._last_frame_at, latest) if latest is not None else self._last_frame_at

    def request_frame(self) -> None:
        """Ask a reader that skips decoding unwanted frames (webcams) to decode its next one."""
        self._frame_requested = True

    def frame_interval(self) -> float | None:
        """Seconds between decoded frames lately (from the measured rate), or None if unknown."""
        fps = self._measured_fps()
        return 1.0 / fps if fps > 0 else None

    def wait_for_frame(self, newer_than: float, timeout: float) -> bool:
        """Block up to ``timeout`` s until a frame newer than ``newer_than`` is decoded; True if one was."""

        def arrived() -> bool:
            latest = self._latest
            return latest is not None and latest[2] > newer_than

        with self._new_frame:
            return self._new_frame.wait_for(arrived, timeout)

    def await_fresh_frame(self) -> None:
        """Wait for the camera's next frame when it is due within a few tens of ms.

        Clip assembly calls this just before inference. Without it a clip ends
        on whatever frame came last, on average half a frame interval old (up
        to a whole one: 33 ms at 30 fps) before the model even starts. Waiting
        for a frame that is about to arrive delays the start by as much, but
        the label then covers everything up to the moment inference began, so
        what a viewer sees is never older. A frame not due soon (a slow or
        stalled camera) is not waited for.
        """
        last, interval = self.latest_ts(), self.frame_interval()
        if last is None or interval is None:
            return
        now = clock.now()
        if now - last < _FRESH_ENOUGH * interval:
            return
        # Due one interval after the camera's last delivery (a webcam delivers
        # frames it does not decode); allow some jitter before giving up on it.
        wait = self.last_arrival() + interval * (1 + _FRAME_JITTER) - now
        if 0 < wait <= _MAX_FRAME_WAIT_S:
            self.request_frame()
            self.wait_for_frame(last, wait)

    def stats(self) -> SourceStats:
        """A consistent-enough copy of the counters (no lock: they are monotone ints)."""
        return SourceStats(
            stream_id=self.stream_id,
            state=self._state,
            reason=self._reason,
            frames_decoded=self._frames_decoded,
            frames_in=self._frames_in,
            frames_skipped=self._frames_skipped,
            fps=self._measured_fps(),
            reconnects=self._reconnects,
            last_error=self._last_error,
        )

    def __repr__(self) -> str:
        state = self._state.value if self._state else "new"
        return f"<{type(self).__name__} {self.stream_id!r} {self.display} {state}>"

    # ------------------------------------------------------- for subclasses

    async def _start_impl(self) -> None:
        """Start producing frames (a thread, a task...)."""
        raise NotImplementedError

    async def _stop_impl(self) -> None:
        """Stop producing frames and release resources; must not return before that is done."""

    def _set_state(self, state: SourceState, reason: str) -> None:
        """Move to ``state`` (any thread); raises :class:`IllegalTransition` if the table forbids it."""
        self._transition(state, reason, expect=None)

    def _set_state_if(self, expect: SourceState, state: SourceState, reason: str) -> bool:
        """Move to ``state`` only if the source is still in ``expect``; True if it moved."""
        return self._transition(state, reason, expect=expect)

    def _end_recording(self, reason: str) -> None:
        """The video stops here (disconnect, stop): a clip being written ends with what it has."""
        if self._encoder is not None:
            self._encoder.break_segment(reason)
        elif self._record_buffer is not None:
            self._record_buffer.end(reason)

    def _begin_connection(self) -> None:
        """Call before every (re)connect: a clip must never span the gap."""
        self._sink.reset()
        self._rate.reset()
        self._conn_index = 0
        self._last_frame_at = clock.now()

    def _keep_latest(self, raw: Any, to_rgb: Callable[[Any], np.ndarray], ts: float) -> None:
        """Remember the newest decoded frame and its timestamp, unconverted (a reference, no copy)."""
        self._latest = (raw, to_rgb, ts)
        self._frame_requested = False
        if self._encoder is not None:
            self._encoder.offer(raw, to_rgb, ts)
        with self._new_frame:
            self._new_frame.notify_all()

    def _frame_wanted(self) -> bool:
        """Whether a snapshot was asked for recently or clip assembly waits for the next frame.

        Readers that can skip decoding (grab-only webcams) decode a frame then,
        even if the ring does not want it; so does a frame the clip encoder wants.
        """
        now = clock.now()
        if self._encoder is not None and self._encoder.wants(now):
            return True  # recording: decode at the encoder's rate
        return self._frame_requested or now - self._preview_asked_at < _PREVIEW_INTEREST_S

    def _admit(self, ts: float, size: tuple[int, int] | None = None) -> bool:
        """Count one decoded frame; True if it should be converted and pushed.

        Cheap on purpose: it runs for every decoded frame, before any colour
        conversion or resize. The first frame of a connection makes the
        source LIVE.
        """
        now = clock.now()
        self._frames_decoded += 1
        self._conn_index += 1
        self._last_frame_at = now
        self._decode_times.append(now)
        if self._state is not SourceState.LIVE:
            shape = f"{size[1]}x{size[0]} " if size else ""
            self._go_live(f"receiving {shape}video from {self.display}")
        if self._rate.allow(ts) and self._sink.wants(ts):
            return True
        self._frames_skipped += 1
        return False

    def _push_decoded(self, raw: Any, to_rgb: Callable[[Any], np.ndarray], ts: float) -> Frame:
        """Convert an admitted decoded frame to RGB (never alongside another thread), then push it."""
        with self._convert_lock:
            rgb = to_rgb(raw)
        return self._push_rgb(rgb, ts)

    def _push_rgb(self, rgb: np.ndarray, ts: float) -> Frame:
        """Resize an admitted RGB frame to model scale once, and push it to the sink."""
        image = resize_frame(rgb, self._target_size(rgb.shape[0], rgb.shape[1]))
        # index counts decoded frames of this connection, so gaps show decimation.
        frame = Frame(image=image, ts=ts, index=self._conn_index - 1)
        self._sink.push(frame)
        self._frames_in += 1
        if self._waiting and self._loop is not None:
            self._call_on_loop(self._wake, frame)
        return frame

    # --------------------------------------------------------------- helpers

    def _go_live(self, reason: str) -> None:
        with self._lock:
            if self._state in (SourceState.CONNECTING, SourceState.RECONNECTING):
                self._transition_locked(SourceState.LIVE, reason)

    def _transition(self, state: SourceState, reason: str, expect: SourceState | None) -> bool:
        with self._lock:
            if expect is not None and self._state is not expect:
                return False
            self._transition_locked(state, reason)
            return True

    def _transition_locked(self, state: SourceState, reason: str) -> None:
        old = self._state
        if state not in TRANSITIONS[old]:
            allowed = ", ".join(sorted(s.value for s in TRANSITIONS[old])) or "nothing (final state)"
            raise IllegalTransition(
                f"source {self.stream_id!r} cannot go from {old.value if old else 'new'} to {state.value}; "
                f"allowed: {allowed}"
            )
        reason = scrub(reason)
        self._state, self._reason = state, reason
        level = logging.WARNING if state in (SourceState.RECONNECTING, SourceState.FAILED) else logging.INFO
        logger.log(level, "source %s: %s (%s)", self.stream_id, state.value, reason)
        status = StreamStatus(
            stream_id=self.stream_id,
            state=state,
            reason=reason,
            ts=clock.now(),
            extra={"kind": self.kind, "source": self.display},
        )
        # Queued under the lock, so callbacks see states in the order they happened.
        # The callback travels with the status: stop() drops the source's own
        # reference (a cycle with its stream) while this one may still be queued.
        on_status = self._on_status
        if on_status is not None:
            self._call_on_loop(self._deliver_status, on_status, status)
        if state in TERMINAL:
            self._call_on_loop(self._end_waiters)

    def _call_on_loop(self, callback: Callable[..., object], *args: object) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            # The loop is closed: the program is shutting down and nobody is listening.
            pass

    def _deliver_status(self, on_status: StatusCallback, status: StreamStatus) -> None:
        try:
            on_status(status)
        except Exception:
            logger.exception("source %s: status callback failed", self.stream_id)

    def _wake(self, frame: Frame) -> None:
        waiters, self._waiters, self._waiting = self._waiters, [], False
        for future in waiters:
            if not future.done():
                future.set_result(frame)

    def _end_waiters(self) -> None:
        waiters, self._waiters, self._waiting = self._waiters, [], False
        for future in waiters:
            if not future.done():
                future.set_exception(EndOfStream(f"{self.stream_id}: {self._reason}"))

    async def _stop_once(self) -> None:
        try:
            await self._stop_impl()
        finally:
            with self._lock:
                # A FAILED source keeps its reason: stopping it must not hide why it failed.
                if self._state not in TERMINAL:
                    self._transition_locked(SourceState.STOPPED, "stopped")
            self._end_waiters()
            if self._encoder is not None:
                await self._encoder.stop()  # flushes and ends its segment ("source_stopped")
            self._release()

    def _release(self) -> None:
        """Drop what a stopped source no longer needs, so it is freed at once, not by the cyclic GC.

        The status callback is the stream's bound method (stream -> source ->
        stream: a cycle), the sink is the stream's ring and the newest decoded
        frame is a full-size PyAV frame (100 MB at 8K). A reader thread that
        could not be joined finds a sink that wants nothing.
        """
        self._on_status = None
        self._sink = _DISCARD
        self._latest = None

    def _target_size(self, height: int, width: int) -> tuple[int, int]:
        size = self._sizes.get((height, width))
        if size is None:
            size = tuple(self._size_for(height, width))  # type: ignore[assignment]
            self._sizes[(height, width)] = size  # type: ignore[assignment]
        return size  # type: ignore[return-value]

    def _measured_fps(self) -> float:
        times = list(self._decode_times)
        now = clock.now()
        recent = [t for t in times if now - t <= _FPS_WINDOW_S]
        if len(recent) < 2:
            return 0.0
        span = recent[-1] - recent[0]
        return (len(recent) - 1) / span if span > 0 else 0.0
