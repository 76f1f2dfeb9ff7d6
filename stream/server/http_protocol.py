"""uvicorn's h11 protocol with the limits it lacks: a header timeout, a connection cap, a stalled-reader timeout.

uvicorn holds a connection that never finishes its request headers for as
long as the client likes (slowloris: 1,500 such connections sat for a
minute), never refuses a connection (``limit_concurrency`` answers 503 only
once a request is complete, and never for websockets), and waits forever
on a client that stops reading a streamed response (an MJPEG preview).
This subclass of :class:`uvicorn.protocols.http.h11_impl.H11Protocol`:

- closes a connection whose request headers are not complete within
  ``header_timeout_s`` of its opening or of the previous response
  (``408 request_timeout`` if it had sent part of a request, silently if
  it sent nothing, like uvicorn's keep-alive timeout), and one whose
  request body stops arriving for as long (a body dripped byte by byte
  would otherwise hold its connection as long as the client likes);
- answers ``503 unavailable`` and closes when ``max_connections`` HTTP and
  websocket connections are already open, before reading anything;
- aborts a connection whose client has not taken any response bytes for
  ``stall_timeout_s`` (the transport's write buffer stayed full): the app's
  send then returns and the preview (or file) ends, freeing its slot;
- answers uvicorn's own refusals (malformed HTTP) with our JSON error body
  instead of plain text.

Counters go to :class:`HttpStats`, which ``/metrics`` reports.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["HttpLimits", "HttpStats", "StreamH11Protocol", "make_protocol", "protocol_for_app"]

log = logging.getLogger(__name__)

_REFUSED_LINGER_S = 2.0  # how long a refused connection may take to read our 503 before it is cut


@dataclass(frozen=True)
class HttpLimits:
    """The per-connection bounds (server.header_timeout_s, server.max_connections, the send timeout)."""

    header_timeout_s: float = 10.0
    max_connections: int = 512
    stall_timeout_s: float = 10.0


class HttpStats:
    """What the protocol refused or cut, for /metrics (one per server; updated on the event loop only)."""

    def __init__(self) -> None:
        self.refused_connections = 0
        self.header_timeouts = 0
        self.body_timeouts = 0
        self.stalled_writes = 0
        self.bad_requests = 0
        self._connections: set | None = None  # uvicorn's own set of open connections (HTTP and websocket)

    @property
    def open_connections(self) -> int:
        return 0 if self._connections is None else len(self._connections)

    def track(self, connections: set) -> None:
        self._connections = connections


def error_bytes(status: int, reason: str, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 response with our JSON error body and ``Connection: close``."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class StreamH11Protocol(H11Protocol):
    """H11Protocol plus the bounds above; ``make_protocol`` binds the limits and the counters."""

    limits: ClassVar[HttpLimits] = HttpLimits()
    stats: ClassVar[HttpStats] = HttpStats()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._got_bytes = False  # since the connection opened or the previous response ended

    # ------------------------------------------------------------ connection
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        full = len(self.connections) >= self.limits.max_connections  # counts websockets too (uvicorn adds them)
        self.stats.track(self.connections)
        super().connection_made(transport)
        if full:
            self._refuse_connection()
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the request of a refused connection is not read
        self._got_bytes = True
        super().data_received(data)
        if self.conn.their_state is h11.SEND_BODY:
            self._arm_body_timer()  # each piece of the body restarts the wait for the next
        elif self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def handle_events(self) -> None:
        try:
            super().handle_events()
        except UnicodeDecodeError:
            # uvicorn decodes the request target as ASCII; h11 lets other bytes through.
            self._cancel_timers()
            self.send_400_response("the request target is not ASCII; percent-encode it")

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._cancel_timers()  # the websocket protocol has its own pings and timeouts
        super().handle_websocket_upgrade(event)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._got_bytes = False
            self._arm_header_timer()  # keep-alive: the next request's headers are due in time too

    # ------------------------------------------------------------ refusals
    def send_400_response(self, msg: str) -> None:
        """uvicorn calls this for a request h11 cannot parse: answer with our JSON body."""
        self.stats.bad_requests += 1
        if msg == "Invalid HTTP request received.":
            msg = "the request is not valid HTTP/1.1 (malformed request line or headers, or headers too large)"
        self._cancel_timers()
        if not self.transport.is_closing():
            self.transport.write(error_bytes(400, "Bad Request", "bad_request", msg))
            self.transport.close()

    def _refuse_connection(self) -> None:
        self._refused = True
        self.stats.refused_connections += 1
        limit = self.limits.max_connections
        log.debug("refusing a connection: %d open (server.max_connections)", limit)
        message = f"the server has {limit} connections open (server.max_connections); try again later"
        self.transport.write(error_bytes(503, "Service Unavailable", "unavailable", message))
        # Half-close so the client reads the answer and closes; a close with its request unread would
        # make the kernel send a reset, which can destroy the answer before it is read.
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._header_timer = self.loop.call_later(_REFUSED_LINGER_S, self.transport.abort)

    def eof_received(self) -> bool | None:
        if self._refused:
            return None  # let the transport close
        return super().eof_received()

    # ------------------------------------------------------------ header timeout
    def _arm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.limits.header_timeout_s, self._header_timeout)

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return
        if self.conn.their_state is not h11.IDLE:
            return  # the headers arrived; the request is being served
        self._cancel_timers()
        if not self._got_bytes:
            self.transport.close()  # an idle connection: nothing to answer
            return
        self.stats.header_timeouts += 1
        log.debug("closing a connection whose request headers took over %.1f s", self.limits.header_timeout_s)
        message = f"the request headers did not arrive within {self.limits.header_timeout_s:g} s (server.header_timeout_s)"
        self.transport.write(error_bytes(408, "Request Timeout", "request_timeout", message))
        self.transport.close()

    # ------------------------------------------------------------ body timeout
    def _arm_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
        self._body_timer = self.loop.call_later(self.limits.header_timeout_s, self._body_timeout)

    def _body_timeout(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return
        if self.flow is not None and self.flow.read_paused:
            self._arm_body_timer()  # we stopped reading (the app is behind), not the client
            return
        self._cancel_timers()
        self.stats.body_timeouts += 1
        log.debug("closing a connection whose request body stalled for %.1f s", self.limits.header_timeout_s)
        if self.cycle is not None and not self.cycle.response_started:
            message = f"the request body stopped arriving for {self.limits.header_timeout_s:g} s (server.header_timeout_s)"
            self.transport.write(error_bytes(408, "Request Timeout", "request_timeout", message))
        # The app's read of the body then ends as a client disconnect; whatever it answers is dropped.
        self.transport.close()

    # ------------------------------------------------------------ stalled readers
    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall_timer is None:
            self._stall_timer = self.loop.call_later(self.limits.stall_timeout_s, self._stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _stalled(self) -> None:
        self._stall_timer = None
        if self.transport.is_closing():
            return
        self.stats.stalled_writes += 1
        log.info("dropping an HTTP client that read nothing for %.0f s", self.limits.stall_timeout_s)
        # abort, not close: close would wait for the full buffer to drain, which is the problem.
        self.transport.abort()

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer, self._stall_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = self._stall_timer = None


def make_protocol(limits: HttpLimits, stats: HttpStats | None = None) -> type[StreamH11Protocol]:
    """A protocol class bound to these limits and counters, for ``uvicorn.Config(http=...)``."""
    attrs = {"limits": limits, "stats": stats if stats is not None else HttpStats()}
    return type("BoundStreamH11Protocol", (StreamH11Protocol,), attrs)


def protocol_for_app(app: Any) -> type[StreamH11Protocol]:
    """The protocol class for one of our apps: limits from its config, counters into its /metrics."""
    rt = getattr(getattr(app, "state", None), "runtime", None)
    if rt is None:  # not one of ours (an embedder's app): the defaults
        return make_protocol(HttpLimits())
    server = rt.config.server
    limits = HttpLimits(
        header_timeout_s=server.header_timeout_s,
        max_connections=server.max_connections,
        # One rule for slow readers: a websocket message not taken in send_timeout_s closes it too.
        stall_timeout_s=rt.sessions.limits.send_timeout_s,
    )
    stats = getattr(rt.metrics, "http", None)
    return make_protocol(limits, stats if isinstance(stats, HttpStats) else None)
