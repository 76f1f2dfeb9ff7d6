"""WebRTC ingest: a browser sends its camera, the server answers with aiortc.

Signalling is one HTTP round trip (the page POSTs its offer, we return the
answer with every ICE candidate in it), so no trickle ICE channel is needed.
ICE servers are empty unless configured: nothing is contacted outside the
network the user is on. Each peer connection becomes a normal pipeline
stream (id, state, labels, events) through :class:`TrackSource`; when the
peer goes away (closed, failed, or silent past the watchdog) the stream ends
and everything is freed. A peer whose video never arrives (ICE that never
connects, a junk offer) is closed ``connect_timeout_s`` after its offer, so
offers cannot hold stream slots.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass

from stream.pipeline import Pipeline, StreamExists, UnknownStream
from stream.sources import SourceOptions
from stream.sources.webrtc import TrackSource
from stream.types import SourceState, StreamStatus

__all__ = ["WebRtcError", "WebRtcGateway", "Answer", "limit_host_addresses"]

log = logging.getLogger(__name__)

_MAX_SDP = 64 * 1024
_SEND_AS_IS = "send the offer the browser's RTCPeerConnection made (pc.localDescription.sdp), unchanged"


class WebRtcError(Exception):
    """A refused offer: ``status`` is the HTTP status, ``code`` a slug, the message says why."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Answer:
    sdp: str
    type: str
    stream_id: str


def limit_host_addresses(addresses: list[str]) -> None:
    """Offer only these local addresses as ICE host candidates (aioice offers every interface).

    aioice has no per-connection setting for this, so its module function is
    replaced for the process; an empty list leaves aioice alone.
    """
    if not addresses:
        return
    import aioice.ice

    chosen = list(addresses)
    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=False: [
        a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)
    ]


def _describe(exc: BaseException) -> str:
    """An exception in words: some of aiortc's have an empty ``str()`` (a bare assert)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _parse_offer(sdp: str):
    """Parse the SDP before any peer exists, and refuse what aiortc would only trip over later."""
    from aiortc.sdp import SessionDescription

    try:
        parsed = SessionDescription.parse(sdp)
    except Exception as exc:  # the parser raises ValueError, AssertionError, IndexError ...
        reason = f"the offer's SDP could not be parsed ({_describe(exc)}); {_SEND_AS_IS}"
        raise WebRtcError(400, "bad_offer", reason) from None
    if not any(media.kind == "video" for media in parsed.media):
        raise WebRtcError(400, "no_video", "the offer has no video track: add the camera track before creating the offer")
    for media in parsed.media:
        if media.kind not in ("audio", "video", "application"):
            continue
        if media.dtls is None or not media.dtls.fingerprints:
            # Without DTLS the answer would be accepted and the peer fail later, inside aiortc's own task.
            raise WebRtcError(
                400, "bad_offer", f"the offer's {media.kind} section has no DTLS a=fingerprint and a=setup; {_SEND_AS_IS}"
            )
        if not media.ice.usernameFragment or not media.ice.password:
            reason = f"the offer's {media.kind} section has no a=ice-ufrag and a=ice-pwd; {_SEND_AS_IS}"
            raise WebRtcError(400, "bad_offer", reason)
    return parsed


class WebRtcGateway:
    """Turns offers into answers and peer connections into pipeline streams."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        ice_servers: list[str] | None = None,
        max_streams: int = 4,
        watchdog_s: float = 5.0,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.pipeline = pipeline
        self.connect_timeout_s = connect_timeout_s
        self.ice_servers = list(ice_servers or [])
        self.max_streams = max_streams
        self.options = SourceOptions(watchdog_s=watchdog_s)
        self._peers: dict[str, object] = {}  # stream id -> RTCPeerConnection
        self._closing: dict[str, asyncio.Task] = {}  # stream id -> the one close in progress
        self._deadlines: dict[str, asyncio.Task] = {}  # stream id -> its connect-timeout task
        self._tasks: set[asyncio.Task] = set()  # every task this gateway started, until it ends
        self._lock = asyncio.Lock()

    @property
    def active(self) -> int:
        return len(self._peers)

    def _configuration(self):
        from aiortc import RTCConfiguration, RTCIceServer

        return RTCConfiguration(iceServers=[RTCIceServer(urls=url) for url in self.ice_servers])

    @staticmethod
    def _check_offer(sdp: object, kind: object) -> str:
        if kind != "offer":
            raise WebRtcError(400, "bad_offer", f"expected an SDP of type 'offer', got type {kind!r}")
        if not isinstance(sdp, str) or not sdp.startswith("v=0"):
            raise WebRtcError(400, "bad_offer", "the offer's 'sdp' must be a session description starting with 'v=0'")
        if len(sdp) > _MAX_SDP:
            raise WebRtcError(413, "offer_too_large", f"the offer is larger than {_MAX_SDP} bytes")
        _parse_offer(sdp)
        return sdp

    async def accept(self, sdp: object, kind: object = "offer", stream_id: str | None = None) -> Answer:
        """Answer an offer and start a stream for its video track."""
        from aiortc import RTCPeerConnection, RTCSessionDescription

        offer_sdp = self._check_offer(sdp, kind)
        async with self._lock:
            if len(self._peers) >= self.max_streams:
                raise WebRtcError(
                    409, "webrtc_limit", f"{self.max_streams} browser cameras are already streaming; stop one and try again"
                )
            sid = stream_id or f"webrtc-{secrets.token_hex(3)}"
            if sid in self.pipeline or sid in self._peers:
                raise WebRtcError(409, "stream_exists", f"a stream with id {sid!r} already exists")
            pc = RTCPeerConnection(self._configuration())
            self._peers[sid] = pc
            # The clock starts with the peer: whatever stalls below (or a junk offer's ICE), it is freed in time.
            live = asyncio.Event()  # set on the stream's first LIVE status: video arrived
            self._deadlines[sid] = self._spawn(self._connect_deadline(sid, live), f"webrtc-deadline:{sid}")
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:  # aiortc raises ValueError and others for bad SDP
            if sid not in self._peers:
                raise await self._closed_meanwhile(sid) from None
            await self._forget(sid)
            raise WebRtcError(400, "bad_offer", f"the offer could not be used ({_describe(exc)}); {_SEND_AS_IS}") from None
        track = next(
            (t.receiver.track for t in pc.getTransceivers() if t.kind == "video" and t.receiver.track is not None), None
        )
        if track is None:
            await self._forget(sid)
            raise WebRtcError(400, "no_video", "the offer has no video track the server can receive")

        @pc.on("connectionstatechange")
        async def _on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.close(sid, f"browser connection {pc.connectionState}")

        try:
            await self.pipeline.add_source(self._factory(sid, track, live), stream_id=sid, kind="webrtc", url="browser camera")
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)  # aiortc gathers every candidate before returning
        except StreamExists as exc:
            await self._forget(sid)
            raise WebRtcError(409, "stream_exists", str(exc)) from None
        except Exception as exc:
            if sid not in self._peers:
                raise await self._closed_meanwhile(sid) from None
            await self.close(sid, "answer failed")
            raise WebRtcError(400, "bad_offer", f"could not answer the offer ({_describe(exc)}); {_SEND_AS_IS}") from None
        if sid not in self._peers:
            raise await self._closed_meanwhile(sid)
        log.info("webrtc stream %s answered (%d active)", sid, len(self._peers))
        return Answer(pc.localDescription.sdp, pc.localDescription.type, sid)

    def _factory(self, sid: str, track, live: asyncio.Event):
        """The pipeline's source factory: a TrackSource whose statuses also drive this gateway."""

        def factory(sink, size_for, on_status):
            def status_then_cleanup(status: StreamStatus) -> None:
                on_status(status)
                if status.state is SourceState.LIVE:
                    live.set()  # video arrived: the connect deadline is met
                elif status.state in (SourceState.STOPPED, SourceState.FAILED, SourceState.RECONNECTING):
                    # A browser does not come back on its own: a silent or closed peer ends the stream.
                    self._spawn(self.close(sid, status.reason), f"webrtc-close:{sid}")

            return TrackSource(sid, track, sink, size_for, status_then_cleanup, self.options)

        return factory

    async def _closed_meanwhile(self, sid: str) -> WebRtcError:
        """The peer was closed while we answered (its deadline, or shutdown): drop what was built; the error to raise."""
        if sid in self.pipeline:
            try:
                await self.pipeline.remove_stream(sid, "closed before its offer was answered")
            except UnknownStream:
                pass
        reason = "the offer was closed before it could be answered (server busy or shutting down); try again"
        return WebRtcError(503, "unavailable", reason)

    def _spawn(self, coro, name: str) -> asyncio.Task:
        """Start a task this gateway keeps until it ends (close_all awaits them); its errors are logged."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("webrtc task %s failed", task.get_name(), exc_info=task.exception())

    async def _connect_deadline(self, sid: str, live: asyncio.Event) -> None:
        """Close the peer if no video arrives within connect_timeout_s of its offer (ICE never connected)."""
        try:
            await asyncio.wait_for(live.wait(), self.connect_timeout_s)
        except asyncio.TimeoutError:
            if self._deadlines.get(sid) is asyncio.current_task():
                del self._deadlines[sid]  # so the close below does not cancel this very task
            reason = f"no video from the browser within {self.connect_timeout_s:g} s of its offer (ICE did not connect?)"
            log.warning("webrtc stream %s: %s", sid, reason)
            await self.close(sid, reason)
        finally:
            if self._deadlines.get(sid) is asyncio.current_task():
                del self._deadlines[sid]

    async def _forget(self, sid: str) -> None:
        deadline = self._deadlines.pop(sid, None)
        if deadline is not None:
            deadline.cancel()  # never this very task: a firing deadline takes itself out first
        pc = self._peers.pop(sid, None)
        if pc is not None:
            try:
                await pc.close()  # stops ICE and DTLS, so none of aiortc's tasks is left running
            except Exception:
                log.exception("webrtc stream %s: closing the peer connection failed", sid)

    async def close(self, sid: str, reason: str = "closed") -> None:
        """End one browser stream: close the peer and remove the stream (idempotent; callers share one close)."""
        closing = self._closing.get(sid)
        if closing is None:
            if sid not in self._peers:
                return
            closing = self._closing[sid] = self._spawn(self._close_once(sid, reason), f"webrtc-close-once:{sid}")
        # Shielded: a caller that is cancelled (a deadline, a shutdown) does not leave the peer half closed.
        await asyncio.shield(closing)

    async def _close_once(self, sid: str, reason: str) -> None:
        try:
            await self._forget(sid)
            if sid in self.pipeline:
                try:
                    await self.pipeline.remove_stream(sid, reason)
                except UnknownStream:
                    pass  # removed meanwhile (DELETE /api/streams/{id})
            log.info("webrtc stream %s closed: %s", sid, reason)
        finally:
            self._closing.pop(sid, None)

    async def close_all(self) -> None:
        """At shutdown: close every peer, then wait for every task this gateway started."""
        await asyncio.gather(*(self.close(sid, "server shutting down") for sid in list(self._peers)))
        for task in list(self._deadlines.values()):
            task.cancel()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
