"""The websocket label API on a real uvicorn (in this loop, 127.0.0.1 port 0) with a file-as-camera stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from stream.config import validate_config
from stream.pipeline import Pipeline
from stream.server.ws import SessionLimits
from stream.sources import SourceOptions
from tests.support.models import TINY_LABELS
from tests.support.server import serving, test_config

pytestmark = pytest.mark.slow

FAST = SourceOptions(watchdog_s=2.0, backoff_initial_s=0.2, backoff_max_s=1.0, open_timeout_s=2.0, read_timeout_s=2.0)
EVENTFUL = {"labels": {"enter": 0.05, "exit": 0.01, "smoothing": 0, "update_interval_s": 0.5}}


@contextlib.asynccontextmanager
async def server(recognizer, video, *, streams=("demo",), config=None, **kwargs):
    sources = [{"id": sid, "url": str(video)} for sid in streams]
    cfg = validate_config(test_config(sources, {**EVENTFUL, **(config or {})}))
    async with serving(Pipeline(recognizer, cfg, source_options=FAST), cfg, **kwargs) as srv:
        yield srv


async def recv_json(ws, timeout: float = 5.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def collect(ws, seconds: float) -> list[tuple[float, dict]]:
    out, deadline = [], time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            out.append((time.monotonic(), await recv_json(ws, left)))
        except asyncio.TimeoutError:
            break
    return out


async def test_hello_then_labels_at_the_stride_then_events(recognizer, video):
    """hello first, then labels for the stream about every stride (0.25 s), and label events."""
    async with server(recognizer, video) as srv, connect(srv.ws_url) as ws:
        hello = await recv_json(ws)
        assert hello["type"] == "hello" and hello["protocol"] == 1 and hello["labels"] == 12
        assert [s["id"] for s in hello["streams"]] == ["demo"]
        msgs = await collect(ws, 4.0)
        labels = [(t, m) for t, m in msgs if m["type"] == "labels"]
        assert len(labels) >= 6, [m["type"] for _, m in msgs]
        assert all(m["stream"] == "demo" and m["top_k"] and m["clip_end"] > m["clip_start"] for _, m in labels)
        gaps = np.diff([t for t, _ in labels[1:]])
        assert 0.15 <= float(np.median(gaps)) <= 0.4
        assert abs(labels[-1][1]["ts"] - time.time()) < 2.0  # Unix time, not monotonic
        events = [m for _, m in msgs if m["type"] == "event"]
        assert events and events[0]["event"] in ("start", "update") and events[0]["stream"] == "demo"


async def test_filters_select_streams_kinds_and_scores(recognizer, video):
    """subscribe narrows by stream, kind and min_score, and can be changed again."""
    async with server(recognizer, video, streams=("a", "b")) as srv, connect(srv.ws_url) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"type": "subscribe", "streams": ["b"], "kinds": ["labels"], "min_score": 0.2}))
        msgs = [m for _, m in await collect(ws, 2.5)]
        sub = next(i for i, m in enumerate(msgs) if m["type"] == "subscribed")
        assert msgs[sub]["filter"] == {"streams": ["b"], "labels": None, "kinds": ["labels"], "min_score": 0.2}
        after = msgs[sub + 1 :]
        assert after and all(m["type"] == "labels" and m["stream"] == "b" for m in after)
        assert all(e["score"] >= 0.2 for m in after for e in m["top_k"])
        await ws.send(json.dumps({"type": "subscribe", "kinds": ["events"]}))
        msgs = [m for _, m in await collect(ws, 2.0)]
        sub = next(i for i, m in enumerate(msgs) if m["type"] == "subscribed")
        assert {m["type"] for m in msgs[sub + 1 :]} == {"event"}


async def test_malformed_messages_get_errors_and_the_connection_survives(recognizer, video):
    """Bad JSON, unknown types and wrong field types each get an error; ping still gets pong after."""
    async with server(recognizer, video) as srv, connect(srv.ws_url) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"type": "subscribe", "kinds": ["status"]}))  # quiet: nothing else arrives
        bad = ["{oops", '{"type": "dance"}', '{"type": "subscribe", "streams": 5}', "[]", b"\x00\x01"]
        for text in bad:
            await ws.send(text)
        codes = []
        while len(codes) < len(bad):
            msg = await recv_json(ws)
            if msg["type"] == "error":
                codes.append(msg["code"])
        assert codes == ["bad_json", "unknown_type", "bad_field", "bad_message", "bad_json"]
        await ws.send('{"type": "ping"}')
        while (msg := await recv_json(ws))["type"] != "pong":
            pass


async def test_oversized_message_closes_with_1009(recognizer, video):
    """A client message over 64 KiB is refused by closing with 'message too big' (1009)."""
    async with server(recognizer, video) as srv, connect(srv.ws_url, max_size=None) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"type": "subscribe", "labels": ["x" * 70000]}))
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await recv_json(ws)
        assert info.value.rcvd.code == 1009


async def test_slow_client_does_not_delay_a_fast_one_and_is_closed(recognizer, video):
    """A client that stops reading (tiny TCP buffer) drops its own messages and is closed 1008; others keep the stride."""
    limits = SessionLimits(send_timeout_s=1.0, close_timeout_s=20.0)
    async with server(recognizer, video, streams=("a", "b", "c"), limits=limits, sndbuf=4096) as srv:
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", srv.port))
        slow = await connect(srv.ws_url, sock=raw, max_queue=1, max_size=None)
        fast = await connect(srv.ws_url)
        # Big replies fill the slow client's window at once (a real one just takes longer).
        padding = [f"pad{i:05d}" + "x" * 50 for i in range(900)] + TINY_LABELS
        for _ in range(6):
            await slow.send(json.dumps({"type": "subscribe", "labels": padding}))
        await recv_json(fast)
        msgs = await collect(fast, 4.0)
        times = [t for t, m in msgs if m["type"] == "labels" and m["stream"] == "a"]
        assert len(times) >= 8 and float(np.max(np.diff(times))) < 1.0
        # Now read: the server has given up on us with 1008 and says how much was dropped.
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await asyncio.wait_for(slow.recv(), 25)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008
        assert info.value.rcvd.reason.startswith("too slow:") and "dropped" in info.value.rcvd.reason
        await fast.close()


async def test_origin_is_checked(recognizer, video):
    """A websocket from another site's page is refused with 403; same-origin and no-Origin are accepted."""
    async with server(recognizer, video) as srv:
        with pytest.raises(InvalidStatus) as info:
            await connect(srv.ws_url, origin="http://evil.example")
        assert info.value.response.status_code == 403
        for origin in (f"http://127.0.0.1:{srv.port}", f"http://localhost:{srv.port}", None):
            async with connect(srv.ws_url, origin=origin) as ws:
                assert (await recv_json(ws))["type"] == "hello"


async def test_foreign_host_gets_bad_host_not_forbidden_origin(recognizer, video):
    """A websocket for another Host name (DNS rebinding) is 403 bad_host with the REST message, not forbidden_origin."""
    async with server(recognizer, video) as srv:
        with pytest.raises(InvalidStatus) as info:
            # The URL's host is what goes in Host; the TCP connection still goes to 127.0.0.1.
            await connect(f"ws://evil.example:{srv.port}/ws", host="127.0.0.1", port=srv.port, origin="http://evil.example")
        response = info.value.response
        assert response.status_code == 403
        error = json.loads(response.body)["error"]
        assert error["code"] == "bad_host" and "localhost names" in error["message"]
        with pytest.raises(InvalidStatus) as info:
            await connect(srv.ws_url, origin="http://evil.example")
        assert json.loads(info.value.response.body)["error"]["code"] == "forbidden_origin"


async def test_websocket_token(recognizer, video):
    """With a token, the websocket needs it (401 without), by ?token= or Bearer header."""
    async with server(recognizer, video, token="s3cret-token") as srv:
        with pytest.raises(InvalidStatus) as info:
            await connect(srv.ws_url)
        assert info.value.response.status_code == 401
        async with connect(srv.ws_url + "?token=s3cret-token") as ws:
            assert (await recv_json(ws))["type"] == "hello"
        async with connect(srv.ws_url, additional_headers={"Authorization": "Bearer s3cret-token"}) as ws:
            assert (await recv_json(ws))["type"] == "hello"


async def test_subscriber_limit_closes_with_1013(recognizer, video):
    """One client over server.max_subscribers is closed with 1013 and a reason; the first keeps working."""
    async with server(recognizer, video, config={"server": {"max_subscribers": 1}}) as srv:
        async with connect(srv.ws_url) as first:
            await recv_json(first)
            async with connect(srv.ws_url) as second:
                with pytest.raises(ConnectionClosed) as info:
                    await recv_json(second)
                assert info.value.rcvd.code == 1013 and "too many subscribers" in info.value.rcvd.reason
            await first.send('{"type": "ping"}')
            while (await recv_json(first))["type"] != "pong":
                pass


async def test_status_messages_mask_credentials(recognizer, video, tmp_path):
    """A camera URL's password never appears in hello, status messages or REST."""
    async with server(recognizer, video, streams=()) as srv, connect(srv.ws_url) as ws:
        await recv_json(ws)
        import httpx

        async with httpx.AsyncClient(base_url=srv.url) as client:
            resp = await client.post("/api/streams", json={"url": "rtsp://user:secret@127.0.0.1:9/x", "id": "cam"})
            assert resp.status_code == 201 and "secret" not in resp.text
        msgs = [m for _, m in await collect(ws, 1.5)]
        assert any(m["type"] == "status" and m["stream"] == "cam" for m in msgs)
        assert "secret" not in json.dumps(msgs)
        async with connect(srv.ws_url) as ws2:
            assert "secret" not in json.dumps(await recv_json(ws2))


async def test_shutdown_closes_sessions_with_1001(recognizer, video):
    """Stopping the server closes websocket clients with 1001 'server shutting down', promptly."""
    ws = None
    async with server(recognizer, video) as srv:
        ws = await connect(srv.ws_url)
        await recv_json(ws)
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 5.0
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await recv_json(ws)
    assert info.value.rcvd.code == 1001

