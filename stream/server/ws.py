"""The websocket label API: one :class:`Session` per client, all registered in :class:`Sessions`.

A session greets the client (``hello`` plus the latest status and labels of
every stream), then runs three tasks until one ends:

- the reader parses client messages (``subscribe``, ``ping``) and answers;
  a bad message gets an ``error`` reply and the connection stays open;
- the writer forwards the client's hub subscription, whose bounded queues
  drop for this client alone when it reads slowly (newest labels win), but
  only messages newer than the last ``subscribe`` (its ``seq``);
- the watchdog ends the session when the client falls too far behind
  (the subscription overflowed) or the server shuts down.

A client that cannot take one message within ``send_timeout_s`` (its TCP
window stays shut) or whose event backlog overflowed is closed with 1008
and "too slow: N messages dropped"; nobody else waits for it, because
publishing to the hub never blocks.

Resume (``subscribe`` with ``since_seq``): the live subscription already
exists and keeps queueing while the stored event and clip messages in
(since_seq, seq] are replayed from the event store; the writer is held off
meanwhile and then sends only what is newer than ``seq``, so the client sees
every message once, in seq order. Live messages that arrive during a long
replay wait in the subscription's bounded backlog (an overflow is reported
through ``dropped``, as for any slow client).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import json
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect

from stream.events.replay import ReplayQuery, pruned_seq, replay
from stream.events.types import StoreError
from stream.hub import Filter, Hub, HubMessage, SubscriptionClosed
from stream.pipeline import Pipeline
from stream.server import protocol

__all__ = ["Session", "SessionLimits", "Sessions"]

log = logging.getLogger(__name__)

# Close codes (RFC 6455 and IANA registry).
GOING_AWAY = 1001
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013


@dataclasses.dataclass(frozen=True)
class SessionLimits:
    """How much a websocket client may lag and how many there may be."""

    max_subscribers: int = 64
    send_timeout_s: float = 10.0  # one message not accepted by the client's TCP window for this long: too slow
    close_timeout_s: float = 5.0  # give up on a polite close after this long
    event_backlog: int = 256  # events/status kept for a slow client (labels: newest per stream only)
    max_dropped_in_row: int = 1000  # event/status drops with no read in between before closing
    watchdog_s: float = 0.25


class _End(enum.Enum):
    CLIENT_GONE = "client disconnected"
    TOO_SLOW = "too slow"
    SHUTDOWN = "server shutting down"


class _TooSlow(Exception):
    """The client did not take a message within send_timeout_s."""


class Sessions:
    """The live sessions of one app: counted for the subscriber limit, closed first at shutdown."""

    def __init__(self, limits: SessionLimits) -> None:
        self.limits = limits
        self.closing = asyncio.Event()
        self._active: set[asyncio.Task] = set()

    def __len__(self) -> int:
        return len(self._active)

    def full(self) -> bool:
        return len(self._active) >= self.limits.max_subscribers

    def add(self, task: asyncio.Task) -> None:
        self._active.add(task)

    def discard(self, task: asyncio.Task) -> None:
        self._active.discard(task)

    async def close_all(self, timeout: float = 3.0) -> None:
        """Tell every session to close (1001) and wait for them, briefly: shutdown must not hang on a stuck client."""
        self.closing.set()
        pending = [t for t in self._active if t is not asyncio.current_task()]
        if pending:
            done, not_done = await asyncio.wait(pending, timeout=timeout)
            for task in not_done:
                task.cancel()
            if not_done:
                log.warning("%d websocket session(s) did not close in %.0f s; cancelled", len(not_done), timeout)


class Session:
    """One websocket client from ``hello`` to close."""

    def __init__(self, websocket: WebSocket, pipeline: Pipeline, sessions: Sessions) -> None:
        self.ws = websocket
        self.pipeline = pipeline
        self.hub: Hub = pipeline.hub
        self.sessions = sessions
        self.limits = sessions.limits
        self._send_lock = asyncio.Lock()
        # Held by the writer for each live message and by a subscribe for its whole
        # answer (subscribed, replay, snapshot): live messages never cut into it.
        self._live = asyncio.Lock()
        self._floor = 0  # live messages with a seq at or below this are not sent (older than the subscribe)
        self._held_drops = 0  # `dropped` counts of messages skipped by the floor, passed on with the next one
        self.sub = None

    async def run(self) -> None:
        """Serve the client until it leaves, lags too far or the server closes."""
        if self.sessions.full():
            await self.ws.accept()
            limit = self.limits.max_subscribers
            await self._close(TRY_AGAIN_LATER, f"too many subscribers (at most {limit}); try again later")
            return
        task = asyncio.current_task()
        self.sessions.add(task)
        # Subscribe before the greeting, so nothing published meanwhile is missed.
        self.sub = self.hub.subscribe(
            Filter(), event_backlog=self.limits.event_backlog, max_dropped_in_row=self.limits.max_dropped_in_row
        )
        self._floor = self.hub.seq
        end = _End.CLIENT_GONE
        try:
            await self.ws.accept()
            await self._greet()
            end = await self._serve()
        except _TooSlow:
            end = _End.TOO_SLOW
            await self._close_slow()
        except (WebSocketDisconnect, OSError):
            end = _End.CLIENT_GONE
        except asyncio.CancelledError:
            end = _End.SHUTDOWN
            raise
        except Exception:
            log.exception("websocket session failed")
            await self._close(INTERNAL_ERROR, "internal error; see the server log")
        else:
            if end is _End.TOO_SLOW:
                await self._close_slow()
            elif end is _End.SHUTDOWN:
                await self._close(GOING_AWAY, "server shutting down")
        finally:
            self.sub.close()
            self.sessions.discard(task)

    async def _greet(self) -> None:
        info = self.pipeline.recognizer.info()
        await self._send(protocol.hello(info.name, info.num_labels, self.pipeline.streams()))
        for msg in self.hub.snapshot(self.sub.filter):
            await self._send(protocol.message_json(msg))

    async def _serve(self) -> _End:
        tasks = {
            asyncio.create_task(self._read(), name="ws-read"),
            asyncio.create_task(self._write(), name="ws-write"),
            asyncio.create_task(self._watch(), name="ws-watch"),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        # _TooSlow or a real bug in a task surfaces here (re-raised); run() handles both.
        return next(iter(done)).result()

    # ------------------------------------------------------------ tasks
    async def _read(self) -> _End:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return _End.CLIENT_GONE
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            await self._handle(data)

    async def _handle(self, data: str | bytes) -> None:
        try:
            msg = protocol.parse_client_message(data)
        except protocol.ProtocolError as exc:
            await self._send(protocol.error(exc.code, exc.message))
            return
        if isinstance(msg, protocol.Ping):
            await self._send(protocol.PONG)
        elif isinstance(msg, protocol.Subscribe):
            async with self._live:
                # From here on the subscription queues what the new filter takes; what it
                # queued before (seq <= floor) is either replayed or older than this subscribe.
                self.sub.set_filter(msg.filter)
                self._floor = self.hub.seq
                await self._send(protocol.subscribed(msg.filter, self._floor, msg.since_seq))
                if msg.since_seq is not None:
                    await self._replay(msg.filter, msg.since_seq, self._floor)
                # The current picture under the new filter, so a client need not wait a stride for it.
                for snap in self.hub.snapshot(msg.filter):
                    await self._send(protocol.message_json(snap))

    async def _replay(self, f: Filter, since_seq: int, until_seq: int) -> None:
        """Send the stored event and clip messages in (since_seq, until_seq], then ``replayed``."""
        store = self.pipeline.store
        query = ReplayQuery.of(f, since_seq, until_seq)
        count, gap = 0, None
        if store is None:
            gap = "this server keeps no event history (no event store)"
        elif since_seq > until_seq:
            gap = f"since_seq {since_seq} is newer than this server's latest seq {until_seq} (another or a new event database)"
        elif not query.empty:
            try:
                await self._store_synced()
                async with contextlib.aclosing(replay(store, query)) as rows:
                    async for _, body in rows:
                        await self._send_text(body)
                        count += 1
                pruned = await store.aread(pruned_seq)
                if pruned > since_seq:
                    gap = f"stored messages after seq {since_seq} (up to seq {pruned}) were deleted (retention or DELETE)"
            except StoreError as exc:
                log.warning("websocket replay from seq %s stopped after %s messages: %s", since_seq, count, exc)
                gap = f"the event store could not answer ({exc}); replayed {count} messages"
        await self._send(protocol.replayed(since_seq, count, until_seq, gap))

    async def _store_synced(self) -> None:
        """Wait until everything published so far is in the replay log (the store writes behind the hub)."""
        # The store subscriber is the one that writes the log: it is the one to wait for.
        store_sub = self.pipeline.store_subscriber
        if store_sub is None:
            raise StoreError("the event store is not running")
        await store_sub.synced()

    async def _write(self) -> _End:
        while True:
            try:
                msg = await self.sub.get()
            except SubscriptionClosed:
                return _End.SHUTDOWN
            async with self._live:
                if msg.seq <= self._floor:
                    self._held_drops += msg.dropped
                    continue
                if self._held_drops:
                    msg, self._held_drops = _with_drops(msg, self._held_drops), 0
                await self._send(protocol.message_json(msg))

    async def _watch(self) -> _End:
        while True:
            if self.sub.overflowed:
                return _End.TOO_SLOW
            try:
                await asyncio.wait_for(self.sessions.closing.wait(), self.limits.watchdog_s)
            except asyncio.TimeoutError:
                continue
            return _End.SHUTDOWN

    # ------------------------------------------------------------ sending
    async def _send(self, body: dict) -> None:
        """Send one message; raises _TooSlow if the client's window stays shut for send_timeout_s."""
        await self._send_text(json.dumps(body, separators=(",", ":"), allow_nan=False))

    async def _send_text(self, text: str) -> None:
        try:
            await asyncio.wait_for(self._send_locked(text), self.limits.send_timeout_s)
        except asyncio.TimeoutError:
            raise _TooSlow from None

    async def _send_locked(self, text: str) -> None:
        async with self._send_lock:  # reader replies and writer messages must not interleave
            await self.ws.send_text(text)

    async def _close_slow(self) -> None:
        dropped = self.sub.dropped
        log.warning("closing a websocket client that reads too slowly (%d messages dropped)", dropped)
        await self._close(POLICY_VIOLATION, f"too slow: {dropped} messages dropped")

    async def _close(self, code: int, reason: str) -> None:
        """Close politely; a client whose window stays shut does not hold us longer than close_timeout_s."""
        try:
            await asyncio.wait_for(self.ws.close(code, reason[:120]), self.limits.close_timeout_s)
        except (asyncio.TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
            pass


def _with_drops(msg: HubMessage, extra: int) -> HubMessage:
    return dataclasses.replace(msg, dropped=msg.dropped + extra)
