"""Sources whose reader blocks (FFmpeg, OpenCV): one supervised reader thread each.

The thread connects, reads, and on a break reconnects with backoff; a
watchdog on the event loop notices a camera that froze without closing, and
an open stuck where no timeout reaches. Stopping waits for the thread
without holding an executor thread: the reader resolves a future on the
loop as it exits.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, ClassVar

from stream import clock
from stream.sources.backoff import Backoff
from stream.sources.base import TERMINAL, Source
from stream.sources.errors import FatalSourceError, SourceError, TransientSourceError
from stream.sources.urls import scrub
from stream.threads import LoopThread, one_thread_here
from stream.types import SourceState

__all__ = ["ThreadedSource"]

logger = logging.getLogger(__name__)

# An open that overruns open_timeout_s + read_timeout_s by this much is stuck
# where no timeout reaches.
_OPEN_GRACE_S = 1.0
_STUCK_PREFIX = "still opening"


class ThreadedSource(Source):
    """A source whose reader blocks (FFmpeg, OpenCV): one supervised thread per source.

    The thread loops: connect, read until the stream ends or breaks, then
    RECONNECTING, wait (exponential backoff with jitter), reset the sink,
    try again. :class:`FatalSourceError` ends it in FAILED. Subclasses
    implement :meth:`_connect`, :meth:`_read` and :meth:`_disconnect`, and
    call :meth:`_check_watchdog` after every packet or grab.

    A no-frame watchdog also runs on the event loop: if a LIVE source sees no
    frame for ``watchdog_s`` (a camera that froze without closing its
    connection, a read stuck where FFmpeg cannot interrupt it), it reports
    RECONNECTING at once and the reader drops that connection as soon as it
    gets control back.
    """

    watchdog_enabled: ClassVar[bool] = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stop_event = threading.Event()
        self._stalled = threading.Event()
        # stop() awaits the reader's end on the loop (LoopThread): joining it in a
        # pool thread would hold a default-executor worker, which previews share.
        self._thread: LoopThread | None = None
        self._watchdog_handle: asyncio.TimerHandle | None = None
        self._live_since: float | None = None
        self._opening_since: float | None = None  # set while _connect() runs, for the open deadline

    # ------------------------------------------------------------ interface

    def _connect(self) -> None:
        """Open the camera; raise Fatal/TransientSourceError."""
        raise NotImplementedError

    def _read(self) -> None:
        """Read frames until the stream ends (return) or breaks (raise); return early once stopping."""
        raise NotImplementedError

    def _disconnect(self) -> None:
        """Release what :meth:`_connect` opened. Must not raise; called from the reader thread only."""
        raise NotImplementedError

    def _on_end_of_stream(self) -> bool:
        """The stream ended normally: True to finish (state already set), else raise to reconnect."""
        raise TransientSourceError(f"{self.display} ended the stream")

    def _classify(self, exc: Exception) -> SourceError:
        """Map an unexpected library error to fatal or transient (default: transient)."""
        return TransientSourceError(f"error reading {self.display}: {scrub(str(exc))}")

    # ---------------------------------------------------------- supervision

    @property
    def stopping(self) -> bool:
        return self._stop_event.is_set()

    async def _start_impl(self) -> None:
        self._thread = LoopThread(self._run, name=f"source-{self.stream_id}")
        self._thread.start()
        self._schedule_watchdog()

    async def _stop_impl(self) -> None:
        self._stop_event.set()
        if self._watchdog_handle is not None:
            self._watchdog_handle.cancel()
            self._watchdog_handle = None
        thread = self._thread
        if thread is None:
            return
        # A reader blocked inside FFmpeg returns within its read timeout (the
        # interrupt callback); closing the container from here instead would
        # free it under the reader's feet.
        limit = self.options.open_timeout_s + self.options.read_timeout_s + 2.0
        if await thread.join(limit):
            self._thread = None
        else:
            logger.warning("source %s: reader thread still busy %.0f s after stop; leaving it", self.stream_id, limit)

    def _check_watchdog(self) -> None:
        """Raise if the loop-side watchdog fired or no frame came for ``watchdog_s``."""
        if self._stalled.is_set():
            raise TransientSourceError(self._stall_reason())
        if clock.now() - self._last_frame_at > self.options.watchdog_s:
            raise TransientSourceError(self._stall_reason())

    def _stall_reason(self) -> str:
        return (
            f"no frames from {self.display} for {self.options.watchdog_s:g} s "
            "(camera frozen or network down)"
        )

    def _begin_connection(self) -> None:
        super()._begin_connection()
        self._stalled.clear()
        self._live_since = None

    def _go_live(self, reason: str) -> None:
        if self._stalled.is_set():
            return  # this connection is being dropped; LIVE again only after a fresh one
        self._live_since = clock.now()
        super()._go_live(reason)

    def _run(self) -> None:
        # The reader's only torch work is the ingest resize, no faster on two
        # threads; with torch's default team the idle OpenMP workers spin after
        # each resize beside FFmpeg's decoder threads (a 720p file's ingest:
        # 351 ms with them, 311 ms without, 215 ms decoding alone).
        one_thread_here()
        options = self.options
        backoff = Backoff(options.backoff_initial_s, options.backoff_max_s)
        while not self._stop_event.is_set():
            self._begin_connection()
            error = ""
            try:
                self._opening_since = clock.now()
                try:
                    self._connect()
                finally:
                    self._opening_since = None
                if self._stop_event.is_set():
                    break
                # The watchdog counts from here, not from the start of the
                # open: probing can take a second, and with fflags=nobuffer
                # the probed packets are dropped, so the first picture waits
                # for the next keyframe (up to a GOP).
                self._last_frame_at = clock.now()
                self._read()
                if self._stop_event.is_set():
                    break
                if self._on_end_of_stream():
                    break
            except FatalSourceError as exc:
                self._last_error = str(exc)
                self._set_state_unless_stopping(SourceState.FAILED, str(exc))
                break
            except TransientSourceError as exc:
                error = str(exc)
            except Exception as exc:
                # A library error nobody mapped yet, or a bug downstream (sink,
                # size_for): log it once per attempt, keep the camera alive.
                logger.exception("source %s: unexpected error", self.stream_id)
                classified = self._classify(exc)
                if isinstance(classified, FatalSourceError):
                    self._last_error = str(classified)
                    self._set_state_unless_stopping(SourceState.FAILED, str(classified))
                    break
                error = str(classified)
            finally:
                self._disconnect()
                self._end_recording(self._gap_reason())
            if self._stop_event.is_set():
                break
            # A connection that stayed up longer than the longest wait was
            # healthy: the next failure is a new incident, start quick again.
            if self._live_since is not None and clock.now() - self._live_since >= options.backoff_max_s:
                backoff.reset()
            delay = backoff.next()
            self._reconnects += 1
            self._last_error = scrub(error)
            self._set_state_unless_stopping(SourceState.RECONNECTING, f"{error}; retrying in {delay:.1f} s")
            if self._stop_event.wait(delay):
                break

    def _gap_reason(self) -> str:
        """Why the video stopped, as a clip cut short says it."""
        if self._stop_event.is_set() or self._state is SourceState.STOPPED:
            return "source_stopped"
        return "source_failed" if self._state is SourceState.FAILED else "camera_disconnected"

    def _set_state_unless_stopping(self, state: SourceState, reason: str) -> None:
        with self._lock:
            if self._stop_event.is_set() or self._state in TERMINAL:
                return
            self._transition_locked(state, reason)

    def _schedule_watchdog(self) -> None:
        loop = self._loop
        if loop is None or self._stop_event.is_set():
            return
        interval = min(1.0, self.options.watchdog_s / 4, self.options.open_timeout_s / 4)
        self._watchdog_handle = loop.call_later(interval, self._watchdog_tick)

    def _watchdog_tick(self) -> None:
        if self._stop_event.is_set() or self._state in TERMINAL:
            return
        now = clock.now()
        if (
            self.watchdog_enabled
            and self._state is SourceState.LIVE
            and now - self._last_frame_at > self.options.watchdog_s
        ):
            self._stalled.set()
            self._set_state_if(SourceState.LIVE, SourceState.RECONNECTING, f"{self._stall_reason()}; reconnecting")
        self._check_open_deadline(now)
        self._schedule_watchdog()

    def _check_open_deadline(self, now: float) -> None:
        """Report an open stuck past its deadline (a call no timeout reaches, e.g. a device that never answers).

        The reader cannot be interrupted there, so it is told nothing: the
        status says what is wrong, and the reader carries on (or retries)
        whenever the call returns.
        """
        since = self._opening_since
        # Opening may read for a while after connecting (probing a live stream).
        limit = self.options.open_timeout_s + self.options.read_timeout_s + _OPEN_GRACE_S
        if since is None or now - since <= limit or self._state not in (SourceState.CONNECTING, SourceState.RECONNECTING):
            return
        if self._reason.startswith(_STUCK_PREFIX):
            return  # already said
        self._set_state_unless_stopping(
            SourceState.RECONNECTING,
            f"{_STUCK_PREFIX} {self.display} for more than {limit:g} s: is the device or its writer answering?",
        )

