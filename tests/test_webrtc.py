"""WebRTC ingest with a real aiortc peer sending a synthetic camera over loopback."""

from __future__ import annotations

import asyncio
import fractions
import gc
import json
import logging
import re
import time

import av
import numpy as np
import pytest

from stream.config import validate_config
from stream.hub import Filter, MessageKind
from stream.pipeline import Pipeline
from stream.types import SourceState
from stream.webrtc import WebRtcError, WebRtcGateway, limit_host_addresses
from tests.support.models import SlowRecognizer

pytestmark = pytest.mark.slow


class SyntheticCamera:
    """A real aiortc video track: a moving square at ``fps``, like a small webcam."""

    def __new__(cls, fps: int = 15, width: int = 320, height: int = 240):
        from aiortc import VideoStreamTrack

        class _Track(VideoStreamTrack):
            def __init__(self):
                super().__init__()
                self.n = 0

            async def recv(self):
                await asyncio.sleep(1 / fps)
                self.n += 1
                img = np.zeros((height, width, 3), np.uint8)
                img[:, :, 2] = 80
                x = (self.n * 6) % (width - 40)
                img[100:140, x : x + 40] = 255
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = self.n * int(90000 / fps)
                frame.time_base = fractions.Fraction(1, 90000)
                return frame

        return _Track()


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """aioice skips 127.0.0.1 when gathering; offer only loopback so no packet leaves the machine."""
    import aioice.ice

    # Re-set to itself so monkeypatch restores the original after the test.
    monkeypatch.setattr(aioice.ice, "get_host_addresses", aioice.ice.get_host_addresses)
    limit_host_addresses(["127.0.0.1"])


async def connect(gateway, track=None, stream_id=None):
    from aiortc import RTCPeerConnection, RTCSessionDescription

    pc = RTCPeerConnection()
    pc.addTrack(track or SyntheticCamera())
    await pc.setLocalDescription(await pc.createOffer())
    try:
        answer = await gateway.accept(pc.localDescription.sdp, "offer", stream_id)
    except Exception:
        await pc.close()
        raise
    await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, answer.type))
    return pc, answer.stream_id


def cfg():
    return validate_config({"window": {"span_s": 2.0, "stride_s": 0.25}})


async def test_browser_like_peer_becomes_a_stream_with_labels_and_ends_on_close(recognizer):
    """The peer's camera becomes a live stream with labels; closing the peer removes the stream."""
    async with Pipeline(recognizer, cfg()) as pipe:
        gateway = WebRtcGateway(pipe, max_streams=2, watchdog_s=3)
        sub = pipe.hub.subscribe(Filter(kinds={MessageKind.LABELS, MessageKind.STATUS}))
        pc, sid = await connect(gateway)
        try:
            labels = None
            deadline = time.monotonic() + 20
            while labels is None and time.monotonic() < deadline:
                msg = await asyncio.wait_for(sub.get(), 20)
                if msg.kind is MessageKind.LABELS and msg.stream_id == sid:
                    labels = msg.payload
            assert labels is not None and labels.top_k
            info = pipe.stream(sid)
            assert info.kind == "webrtc" and info.state is SourceState.LIVE
            assert info.figures.frames_in > 0
        finally:
            await pc.close()
        deadline = time.monotonic() + 8
        while sid in pipe and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert sid not in pipe, "the stream outlived its peer"
        assert gateway.active == 0
        statuses = []
        while (msg := sub.get_nowait()) is not None:
            if msg.kind is MessageKind.STATUS and msg.stream_id == sid:
                statuses.append((msg.payload.state, msg.payload.reason))
        assert statuses[-1] == (SourceState.STOPPED, "removed"), statuses


async def test_label_age_stays_flat_with_a_slow_recognizer(tiny_model_dir):
    """A recognizer slower than the frame rate: the WebRTC stream's label age does not grow."""
    slow = SlowRecognizer.load(tiny_model_dir, device="cpu")
    async with Pipeline(slow, validate_config({"window": {"span_s": 2.0, "stride_s": 0.2}})) as pipe:
        gateway = WebRtcGateway(pipe)
        sub = pipe.hub.subscribe(Filter(kinds={MessageKind.LABELS}))
        pc, sid = await connect(gateway, SyntheticCamera(fps=30))
        try:
            ages = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                msg = await asyncio.wait_for(sub.get(), 10)
                ages.append(msg.payload.label_age_s)
            assert len(ages) >= 8
            half = len(ages) // 2
            assert max(ages) < 2 * SlowRecognizer.delay + 0.6
            assert np.mean(ages[half:]) <= np.mean(ages[:half]) + 0.2
        finally:
            await pc.close()
            await gateway.close_all()


async def test_cap_and_malformed_offers_are_refused(recognizer):
    """Past the cap: 409; not an offer, garbage SDP, audio-only: 400 with a reason."""
    async with Pipeline(recognizer, cfg()) as pipe:
        gateway = WebRtcGateway(pipe, max_streams=1)
        for sdp, kind, code in [
            ("v=0\r\n", "answer", "bad_offer"),
            ("hello", "offer", "bad_offer"),
            ("v=0\r\nm=video not-a-port\r\n", "offer", "bad_offer"),
            (None, "offer", "bad_offer"),
            ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n", "offer", "no_video"),
        ]:
            with pytest.raises(WebRtcError) as err:
                await gateway.accept(sdp, kind)
            assert err.value.status == 400 and err.value.code == code
            # aiortc's parser fails with a bare AssertionError: the reason must still say something.
            assert re.search(r"\w", err.value.message.rsplit(":", 1)[-1]), err.value.message
        assert gateway.active == 0 and len(pipe) == 0  # refused offers leave nothing behind
        pc, _ = await connect(gateway)
        try:
            with pytest.raises(WebRtcError) as err:
                await connect(gateway)
            assert err.value.status == 409 and "already streaming" in err.value.message
        finally:
            await pc.close()
            await gateway.close_all()
        assert gateway.active == 0 and len(pipe) == 0


async def test_signalling_over_http_with_token_and_errors(recognizer):
    """POST /api/webrtc/offer answers, the stream shows in REST and the websocket; bad offers and no token get 4xx."""
    import httpx
    import websockets
    from aiortc import RTCPeerConnection, RTCSessionDescription

    from tests.support.server import serving

    cfg = validate_config(
        {"window": {"span_s": 2.0, "stride_s": 0.25}, "server": {"max_webrtc_streams": 1, "ice_host_addresses": ["127.0.0.1"]}}
    )
    token = "s3cret-token"
    auth = {"Authorization": f"Bearer {token}"}
    async with serving(Pipeline(recognizer, cfg), cfg, token=token) as srv:
        async with httpx.AsyncClient(base_url=srv.url, timeout=20) as http:
            pc = RTCPeerConnection()
            pc.addTrack(SyntheticCamera())
            await pc.setLocalDescription(await pc.createOffer())
            offer = {"sdp": pc.localDescription.sdp, "type": "offer", "id": "laptop"}
            assert (await http.post("/api/webrtc/offer", json=offer)).status_code == 401
            bad = await http.post("/api/webrtc/offer", json={"sdp": "", "type": "offer"}, headers=auth)
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_offer"
            as_json = {**auth, "Content-Type": "application/json"}
            assert (await http.post("/api/webrtc/offer", content=b"{nope", headers=as_json)).status_code == 400
            resp = await http.post("/api/webrtc/offer", json=offer, headers=auth)
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["stream"] == "laptop" and body["type"] == "answer"
            await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], body["type"]))
            try:
                async with websockets.connect(f"{srv.ws_url}?token={token}") as ws:
                    await ws.send('{"type": "subscribe", "streams": ["laptop"], "kinds": ["labels"]}')
                    deadline = time.monotonic() + 20
                    got = None
                    while got is None and time.monotonic() < deadline:
                        msg = json.loads(await asyncio.wait_for(ws.recv(), 20))
                        if msg["type"] == "labels":
                            got = msg
                    assert got is not None and got["stream"] == "laptop"
                listed = (await http.get("/api/streams/laptop", headers=auth)).json()
                assert listed["kind"] == "webrtc" and listed["state"] == "live"
                over = await http.post("/api/webrtc/offer", json={**offer, "id": "second"}, headers=auth)
                assert over.status_code == 409 and over.json()["error"]["code"] == "webrtc_limit"
            finally:
                await pc.close()
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                if (await http.get("/api/streams/laptop", headers=auth)).status_code == 404:
                    break
                await asyncio.sleep(0.2)
            assert (await http.get("/api/streams/laptop", headers=auth)).status_code == 404


async def junk_offer():
    """A real offer (video m-line, DTLS fingerprint) from a peer that never applies the answer, so ICE never runs."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(SyntheticCamera())
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


async def test_junk_offers_are_freed_after_the_connect_timeout(recognizer, caplog):
    """Offers whose ICE never connects fill max_webrtc_streams, then are closed and freed after connect_timeout_s."""
    import httpx

    from tests.support.server import serving

    cfg = validate_config(
        {
            "window": {"span_s": 2.0, "stride_s": 0.25},
            "server": {"max_webrtc_streams": 4, "webrtc_connect_timeout_s": 1, "ice_host_addresses": ["127.0.0.1"]},
        }
    )
    caplog.set_level(logging.INFO)
    peers = []
    try:
        async with serving(Pipeline(recognizer, cfg), cfg) as srv:
            async with httpx.AsyncClient(base_url=srv.url, timeout=20) as http:
                for n in range(4):
                    pc, sdp = await junk_offer()
                    peers.append(pc)
                    resp = await http.post("/api/webrtc/offer", json={"sdp": sdp, "type": "offer", "id": f"junk{n}"})
                    assert resp.status_code == 200, resp.text
                pc, sdp = await junk_offer()
                peers.append(pc)
                offer = {"sdp": sdp, "type": "offer", "id": "camera"}
                full = await http.post("/api/webrtc/offer", json=offer)
                assert full.status_code == 409 and full.json()["error"]["code"] == "webrtc_limit"
                # The timeout is 1 s; a busy machine gets 30 s before this counts as "never freed".
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    active = (await http.get("/api/webrtc/config")).json()["active"]
                    listed = (await http.get("/api/streams")).json()["streams"]
                    if active == 0 and not listed:
                        break
                    await asyncio.sleep(0.2)
                assert (active, listed) == (0, []), "junk offers still hold their slots"
                resp = await http.post("/api/webrtc/offer", json=offer)
                assert resp.status_code == 200, resp.text
    finally:
        for pc in peers:
            await pc.close()
    gc.collect()
    await asyncio.sleep(0)
    assert "no video from the browser within 1 s of its offer" in caplog.text
    assert "never retrieved" not in caplog.text and "webrtc task" not in caplog.text


async def test_offers_without_dtls_fingerprint_are_refused_before_any_peer_exists(recognizer):
    """No a=fingerprint (session or media level): 400 bad_offer naming it; a session-level fingerprint is fine."""
    async with Pipeline(recognizer, cfg()) as pipe:
        gateway = WebRtcGateway(pipe, max_streams=2, connect_timeout_s=1)
        pc, sdp = await junk_offer()
        try:
            fingerprints = "".join(re.findall(r"^a=fingerprint:.*\r\n", sdp, re.MULTILINE))
            assert fingerprints
            without = re.sub(r"^a=fingerprint:.*\r\n", "", sdp, flags=re.MULTILINE)
            for bad in (without, re.sub(r"^a=setup:.*\r\n", "", sdp, flags=re.MULTILINE)):
                with pytest.raises(WebRtcError) as err:
                    await gateway.accept(bad, "offer")
                assert (err.value.status, err.value.code) == (400, "bad_offer")
                assert "a=fingerprint" in err.value.message
                assert gateway.active == 0 and len(pipe) == 0
            # Chromium may put the fingerprint once for the session instead of per m-line.
            head, media = without.split("m=", 1)
            session_level = head + fingerprints + "m=" + media
            answer = await gateway.accept(session_level, "offer")
            assert answer.stream_id in pipe
        finally:
            await pc.close()
            await gateway.close_all()
        assert gateway.active == 0 and len(pipe) == 0


async def test_close_all_cancels_the_connect_timers(recognizer):
    """Shutdown closes pending peers at once and leaves no connect-timeout task behind."""
    async with Pipeline(recognizer, cfg()) as pipe:
        gateway = WebRtcGateway(pipe, max_streams=3, connect_timeout_s=120)
        peers = [await junk_offer() for _ in range(3)]
        try:
            for _, sdp in peers:
                await gateway.accept(sdp, "offer")
            assert gateway.active == 3 and len(pipe) == 3
            assert sum(t.get_name().startswith("webrtc-deadline:") for t in asyncio.all_tasks()) == 3
            await asyncio.wait_for(gateway.close_all(), 30)
            assert gateway.active == 0 and len(pipe) == 0
            left = [t for t in asyncio.all_tasks() if t.get_name().startswith("webrtc-") and not t.done()]
            assert left == []
        finally:
            for pc, _ in peers:
                await pc.close()


async def test_a_deadline_during_the_answer_leaves_nothing_behind(recognizer):
    """A connect timeout shorter than answering itself: 503, and no peer, stream or task is left."""
    async with Pipeline(recognizer, cfg()) as pipe:
        gateway = WebRtcGateway(pipe, max_streams=1, connect_timeout_s=0.001)
        pc, sdp = await junk_offer()
        try:
            with pytest.raises(WebRtcError) as err:
                await gateway.accept(sdp, "offer", "hasty")
            assert (err.value.status, err.value.code) == (503, "unavailable") and "try again" in err.value.message
            assert gateway.active == 0 and "hasty" not in pipe
            await asyncio.wait_for(gateway.close_all(), 30)
            assert [t for t in asyncio.all_tasks() if t.get_name().startswith("webrtc-") and not t.done()] == []
        finally:
            await pc.close()
