"""HTTP-layer security against real servers: cross-site requests, ids that would break headers, secrets in logs,
header timeouts, connection and preview caps, stalled readers, JSON bodies on uvicorn's own refusals."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import connect

from stream.config import validate_config
from stream.pipeline import Pipeline
from stream.server.http_protocol import HttpLimits, HttpStats, make_protocol
from stream.server.main import bind_socket
from stream.sources import SourceOptions
from tests.support.server import REPO_ROOT, serving, start_server, test_config

pytestmark = pytest.mark.slow

FAST = SourceOptions(watchdog_s=2.0, backoff_initial_s=0.2, backoff_max_s=1.0, open_timeout_s=2.0, read_timeout_s=2.0)
EVIL = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
BODY = '{"url": "rtsp://127.0.0.1:9/x", "id": "evil"}'


# --------------------------------------------------------------------- raw HTTP helpers
def read_response(sock: socket.socket, timeout: float = 20.0) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length from a raw socket: status, headers (lower-case), body."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body[:length]


def read_until_closed(sock: socket.socket, timeout: float = 30.0) -> bytes:
    """Everything the server sends until it closes the connection (bounded generously)."""
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def post_json_raw(port: int, body: bytes) -> bytes:
    return (
        f"POST /api/streams HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def error_code(body: bytes) -> str:
    return json.loads(body)["error"]["code"]


# --------------------------------------------------------------------- one real server process
@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir) -> Iterator:
    """`python server.py` without a token on loopback, one allowed extra Origin."""
    tmp = tmp_path_factory.mktemp("security-server")
    config = {"server": {"allowed_origins": ["http://trusted.example"]}}
    with start_server(tmp, tiny_model_dir, config=config) as proc:
        yield proc


def stream_ids(server) -> list[str]:
    return [s["id"] for s in httpx.get(f"{server.url}/api/streams", timeout=10).json()["streams"]]


@pytest.mark.parametrize(
    "body",
    [
        {"content": BODY, "headers": {**EVIL, "Content-Type": "text/plain;charset=UTF-8"}},
        {"data": {"url": "rtsp://127.0.0.1:9/x", "id": "evil"}, "headers": EVIL},
        {"files": {"url": (None, "rtsp://127.0.0.1:9/x")}, "headers": EVIL},
        {"json": {"url": "rtsp://127.0.0.1:9/x", "id": "evil"}, "headers": EVIL},
        {"content": BODY, "headers": {"Origin": "http://evil.example", "Content-Type": "text/plain"}},
    ],
    ids=["text-plain", "form", "multipart", "json-cross-site", "old-browser"],
)
def test_cross_site_posts_create_nothing(server, body):
    """A page on another site POSTing what browsers send without a preflight gets 403/415 and creates no stream."""
    for path in ("/api/streams", "/api/webrtc/offer"):
        resp = httpx.post(f"{server.url}{path}", timeout=10, **body)
        assert resp.status_code in (403, 415), resp.text
        assert resp.json()["error"]["code"] in ("cross_site", "unsupported_media_type")
    assert "evil" not in stream_ids(server)


def test_same_origin_allowed_origin_and_programs_may_post(server):
    """The page's own JSON POST, an Origin in server.allowed_origins and a curl-like client all work; DELETE too."""
    own = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}
    trusted = {"Origin": "http://trusted.example", "Sec-Fetch-Site": "cross-site"}
    for sid, headers in (("own", own), ("trusted", trusted), ("curl", {})):
        resp = httpx.post(f"{server.url}/api/streams", json={"url": "rtsp://127.0.0.1:9/x", "id": sid}, headers=headers, timeout=10)
        assert resp.status_code == 201, resp.text
    resp = httpx.delete(f"{server.url}/api/streams/own", headers=EVIL, timeout=10)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "cross_site"
    assert "server.allowed_origins" in resp.json()["error"]["message"]
    for sid, headers in (("own", own), ("trusted", trusted), ("curl", {})):
        assert httpx.delete(f"{server.url}/api/streams/{sid}", headers=headers, timeout=10).status_code == 204
    assert not {"own", "trusted", "curl"} & set(stream_ids(server))


@pytest.mark.parametrize("stream_id", ["door\n", "door\r\n", "do\x00or", ".", "..", "door\r\nX-Evil: 1"])
def test_ids_with_control_characters_are_400_and_the_connection_survives(server, stream_id):
    """Ids with CR/LF/NUL or '.'/'..' get a 400 JSON error on a kept-alive connection that still works; no traceback."""
    body = json.dumps({"url": "rtsp://127.0.0.1:9/x", "id": stream_id}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(post_json_raw(server.port, body))
        status, headers, answer = read_response(sock)
        assert status == 400 and error_code(answer) == "bad_request", answer
        assert "location" not in headers
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        status, _, answer = read_response(sock)
        assert status == 200 and json.loads(answer)["status"] == "ok"
    assert not [sid for sid in stream_ids(server) if sid.startswith(("do", "."))]
    assert "Traceback" not in server.logs()


@pytest.mark.parametrize("path", ["/api/streams/door%0d%0aX-Evil:%201/", "/api/streams/%0d%0a/", "/api/nothing%0d%0aX-Evil:%201"])
def test_encoded_crlf_in_a_path_never_reaches_a_header(server, path):
    """A path with encoded CR/LF (the router's trailing-slash redirect echoes the path) adds no header and keeps the connection."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        status, headers, _ = read_response(sock)
        assert status in (307, 404), status
        assert "x-evil" not in headers and "\r" not in headers.get("location", "") and "\n" not in headers.get("location", "")
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        assert read_response(sock)[0] == 200
    assert "Traceback" not in server.logs()


def test_uvicorns_own_400s_are_json(server):
    """Malformed HTTP and a non-ASCII request target get our JSON error body, not uvicorn's plain text."""
    for raw in (b"NONSENSE\r\n\r\n", b"GET /\xff HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            sock.sendall(raw)
            status, headers, body = read_response(sock)
        assert status == 400 and headers["content-type"] == "application/json", (raw, body)
        assert error_code(body) == "bad_request" and json.loads(body)["error"]["message"]
    assert "Traceback" not in server.logs()


def test_empty_or_short_token_flag_names_the_flag(tiny_model_dir):
    """`--token ''` and a short --token exit 2 with one line about the --token flag, not about configs/default.yaml."""
    env = {k: v for k, v in os.environ.items() if k != "STREAM_TOKEN"}
    for value in ("", "short"):
        proc = subprocess.run(
            [sys.executable, "server.py", "--model", tiny_model_dir, "--port", "0", "--token", value],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode == 2 and len(errors) == 1, proc.stderr
        assert "--token" in errors[0] and "default.yaml" not in errors[0], errors


# --------------------------------------------------------------------- secrets in logs
TOKEN = "tok-9f8e7d6c5b4a"
PASSWORDS = ("it'sme99", 'pa"ss<1')


@pytest.mark.parametrize("log_level", ["info", "debug"])
def test_no_secret_in_any_log_line(tmp_path, tiny_model_dir, log_level):
    """At info and debug, the log never shows the token (websocket ?token=, REST ?token=) nor stream passwords."""
    srv = start_server(tmp_path, tiny_model_dir, extra_args=["--token", TOKEN, "--log-level", log_level])
    with srv:
        q = f"?token={TOKEN}"

        async def websocket() -> str:
            async with connect(f"{srv.ws_url}{q}") as ws:
                return json.loads(await asyncio.wait_for(ws.recv(), 20))["type"]

        assert asyncio.run(websocket()) == "hello"
        assert httpx.get(f"{srv.url}/api/streams{q}", timeout=10).status_code == 200
        assert httpx.get(f"{srv.url}/api/streams/nothing{q}&x=1", timeout=10).status_code == 404
        for n, password in enumerate(PASSWORDS):
            url = f"rtsp://admin:{password}@127.0.0.1:9/x"
            resp = httpx.post(f"{srv.url}/api/streams{q}", json={"url": url, "id": f"cam{n}"}, timeout=10)
            assert resp.status_code == 201, resp.text
        time.sleep(1.0)  # the cameras fail to connect and log why, with their (masked) URLs
        for n in range(len(PASSWORDS)):
            assert httpx.delete(f"{srv.url}/api/streams/cam{n}{q}", timeout=10).status_code == 204
    logs = srv.logs()
    if log_level == "debug":
        assert "GET /api/streams" in logs  # the access log is on: the test looks at real request lines
    assert "/ws" in logs  # uvicorn's websocket "[accepted]" line is there, masked
    assert TOKEN not in logs
    for password in PASSWORDS:
        assert password not in logs, password


# --------------------------------------------------------------------- limits (in-process servers)
@contextlib.asynccontextmanager
async def in_process(recognizer, *, sources=(), server=None, limits=None, sndbuf=None):
    cfg = validate_config(test_config(sources, {"server": server or {}}))
    async with serving(Pipeline(recognizer, cfg, source_options=FAST), cfg, limits=limits, sndbuf=sndbuf) as srv:
        yield srv


async def open_raw(port: int, *, rcvbuf: int | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock)


async def test_slow_headers_get_408_and_idle_connections_are_closed(recognizer):
    """Headers not complete within server.header_timeout_s: 408 request_timeout and closed; silent ones closed; prompt ones served."""
    async with in_process(recognizer, server={"header_timeout_s": 0.5}) as srv:
        reader, writer = await open_raw(srv.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # and never the rest
        answer = await asyncio.wait_for(reader.read(), 30)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert error_code(answer.partition(b"\r\n\r\n")[2]) == "request_timeout"
        writer.close()
        idle_reader, idle_writer = await open_raw(srv.port)  # connects, sends nothing
        assert await asyncio.wait_for(idle_reader.read(), 30) == b""
        idle_writer.close()
        async with httpx.AsyncClient(base_url=srv.url, timeout=10) as client:
            assert (await client.get("/healthz")).status_code == 200
            # Only the connection that sent part of a request counts; the silent one was just closed.
            assert "http_header_timeouts_total 1.0" in (await client.get("/metrics")).text


async def test_a_stalled_request_body_gets_408_and_no_traceback(recognizer, caplog):
    """A body that stops arriving for server.header_timeout_s: 408 and closed, counted, no error logged; a prompt one works."""
    async with in_process(recognizer, server={"header_timeout_s": 0.5}) as srv:
        reader, writer = await open_raw(srv.port)
        head = (
            b"POST /api/streams HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 200\r\n\r\n"
        )
        writer.write(head + b'{"url": "rtsp://127.0.0.1:9/x",')  # and never the rest
        answer = await asyncio.wait_for(reader.read(), 30)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert error_code(answer.partition(b"\r\n\r\n")[2]) == "request_timeout"
        writer.close()
        async with httpx.AsyncClient(base_url=srv.url, timeout=10) as client:
            resp = await client.post("/api/streams", json={"url": "rtsp://127.0.0.1:9/x", "id": "ok"})
            assert resp.status_code == 201, resp.text
            metrics = (await client.get("/metrics")).text
            assert "http_body_timeouts_total 1.0" in metrics and "http_header_timeouts_total 0.0" in metrics
            listed = [st["id"] for st in (await client.get("/api/streams")).json()["streams"]]
            assert listed == ["ok"]  # the cut request added nothing
    assert not [r for r in caplog.records if r.levelname == "ERROR"], [r.getMessage() for r in caplog.records]


async def test_connections_over_the_cap_get_503_websockets_count(recognizer):
    """With server.max_connections open (websockets here), one more connection gets 503 JSON; closing one frees a place."""
    async with in_process(recognizer, server={"max_connections": 8}) as srv:
        async with contextlib.AsyncExitStack() as stack:
            sockets = [await stack.enter_async_context(connect(srv.ws_url)) for _ in range(8)]
            assert srv.app.state.runtime.metrics.http.open_connections == 8
            reader, writer = await open_raw(srv.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), 30)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 503 "), answer
            body = json.loads(answer.partition(b"\r\n\r\n")[2])
            assert body["error"]["code"] == "unavailable" and "server.max_connections" in body["error"]["message"]
            await sockets[0].close()
            async with httpx.AsyncClient(base_url=srv.url, timeout=10) as client:
                for _ in range(100):  # the closed websocket leaves the count as its close completes
                    with contextlib.suppress(httpx.HTTPError):
                        resp = await client.get("/metrics")
                        if resp.status_code == 200:
                            break
                    await asyncio.sleep(0.1)
                assert resp.status_code == 200 and "http_refused_connections_total 1.0" in resp.text


async def test_preview_viewers_are_capped_counted_and_freed(recognizer, video):
    """Over server.max_preview_viewers a preview is 503 preview_limit; /metrics counts it; a viewer that leaves frees its slot."""
    sources = [{"id": "demo", "url": str(video)}]
    async with in_process(recognizer, sources=sources, server={"max_preview_viewers": 1}) as srv:
        async with httpx.AsyncClient(base_url=srv.url, timeout=10) as client:
            async with client.stream("GET", "/api/streams/demo/preview.mjpg") as first:
                assert first.status_code == 200
                resp = await client.get("/api/streams/demo/preview.mjpg")
                assert resp.status_code == 503 and resp.json()["error"]["code"] == "preview_limit", resp.text
                assert "server.max_preview_viewers" in resp.json()["error"]["message"]
                metrics = (await client.get("/metrics")).text
                assert "preview_viewers 1.0" in metrics and "preview_refused_total 1.0" in metrics
            for _ in range(100):  # the server notices the disconnect and releases the slot
                if "preview_viewers 0.0" in (await client.get("/metrics")).text:
                    break
                await asyncio.sleep(0.1)
            async with client.stream("GET", "/api/streams/demo/preview.mjpg") as again:
                assert again.status_code == 200


class _NoSignals(uvicorn.Server):
    def capture_signals(self):  # pytest owns the signal handlers
        return contextlib.nullcontext()


async def test_stalled_reader_is_aborted_by_the_protocol():
    """The protocol alone, under uvicorn: a response the client never reads is aborted after stall_timeout_s."""
    finished = asyncio.Event()

    async def firehose(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/octet-stream")]})
        chunk = b"x" * 65536
        try:
            for _ in range(10000):  # 640 MB: far more than any buffer on the way
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            finished.set()

    stats = HttpStats()
    protocol = make_protocol(HttpLimits(header_timeout_s=10, max_connections=8, stall_timeout_s=0.5), stats)
    sock = bind_socket("127.0.0.1", 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    config = uvicorn.Config(firehose, http=protocol, lifespan="off", log_level="warning")
    server = _NoSignals(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        reader, writer = await open_raw(sock.getsockname()[1], rcvbuf=4096)
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await asyncio.wait_for(finished.wait(), 60)  # the app's send returned: the connection was cut
        assert stats.stalled_writes == 1
        writer.close()
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        sock.close()


async def test_accepted_connections_have_tcp_nodelay():
    """bind_socket's listener says IPPROTO_TCP, so asyncio turns on TCP_NODELAY for every accepted connection."""
    sock = bind_socket("127.0.0.1", 0)
    assert sock.proto == socket.IPPROTO_TCP
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport):
            accepted = transport.get_extra_info("socket")
            seen.set_result(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
        assert await asyncio.wait_for(seen, 20) != 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
    old = bind_socket("127.0.0.1", 0, nodelay=False)
    try:
        assert old.proto == 0  # what the bench compares against
    finally:
        old.close()
