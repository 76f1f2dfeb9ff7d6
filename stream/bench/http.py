"""HTTP: latency of sequential requests on one kept-alive connection, with and without TCP_NODELAY.

The real app (create_app around a pipeline with no streams) runs under the
real ServerRunner in this process, listening on two sockets at once: one
made by ``bind_socket`` (IPPROTO_TCP, so asyncio sets TCP_NODELAY on every
accepted connection) and one made the old way (protocol 0: no TCP_NODELAY).
A client thread sends ``GET /healthz`` on one kept-alive connection to each,
alternating request by request, so both see the same machine load.

Why it matters: uvicorn writes a response's head and body separately; with
Nagle's algorithm the body waits for the ACK of the head, which the client
delays (~40 ms on Linux). Every fetch the web page makes on a reused
connection paid that before the fix.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from stream.bench.common import Section, median, percentile
from stream.bench.context import BenchContext

__all__ = ["run", "measure_keepalive"]

log = logging.getLogger(__name__)

TARGET_RATIO = 0.25  # median with TCP_NODELAY / median without: at least 4x faster
_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _read_response(sock: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the kept-alive connection")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection mid-response")
        body += chunk


def _client(ports: dict[str, int], requests: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per GET on one kept-alive connection per port, interleaved request by request."""
    conns = {name: socket.create_connection(("127.0.0.1", port), timeout=30) for name, port in ports.items()}
    times: dict[str, list[float]] = {name: [] for name in ports}
    try:
        for n in range(warmup + requests):
            for name, sock in conns.items():
                start = time.perf_counter()
                sock.sendall(_REQUEST)  # one write per request: the client's own Nagle never waits
                _read_response(sock)
                if n >= warmup:
                    times[name].append(time.perf_counter() - start)
    finally:
        for sock in conns.values():
            sock.close()
    return times


async def measure_keepalive(recognizer, requests: int, warmup: int = 3) -> dict[str, list[float]]:
    """Serve the real app on a TCP_NODELAY socket and an old-style one; time ``requests`` GETs on each."""
    from stream.config import validate_config
    from stream.pipeline import Pipeline
    from stream.server.app import create_app
    from stream.server.main import ServerRunner, bind_socket

    config = validate_config({"server": {"host": "127.0.0.1"}})
    app = create_app(Pipeline(recognizer, config), config, web_dir=None)
    sockets = {"nodelay": bind_socket("127.0.0.1", 0), "nagle": bind_socket("127.0.0.1", 0, nodelay=False)}
    runner = ServerRunner(app, sockets["nodelay"], log_level="warning", handle_signals=False)
    try:
        async with runner.running(extra_sockets=[sockets["nagle"]], timeout=60):
            ports = {name: sock.getsockname()[1] for name, sock in sockets.items()}
            return await asyncio.to_thread(_client, ports, requests, warmup)
    finally:
        for sock in sockets.values():
            sock.close()


def run(ctx: BenchContext, section: Section) -> None:
    requests = 20 if ctx.options.quick else 200
    # The app needs a recognizer to be built; the int8 + SDPA one is what the model section leaves loaded.
    recognizer = ctx.recognizer("int8", "sdpa")
    times = asyncio.run(measure_keepalive(recognizer, requests))
    ours, old = times["nodelay"], times["nagle"]
    ratio = median(ours) / median(old) if median(old) > 0 else float("nan")
    p99_ratio = percentile(ours, 99) / percentile(old, 99) if percentile(old, 99) > 0 else float("nan")
    section.add(
        f"GET /healthz, kept-alive connection, median of {requests}",
        f"{median(ours) * 1e3:.2f} ms",
        f"{median(old) * 1e3:.2f} ms",
        ratio,
        f"<= {TARGET_RATIO:g}",
        ratio <= TARGET_RATIO,
    )
    section.add("same, p99", f"{percentile(ours, 99) * 1e3:.2f} ms", f"{percentile(old, 99) * 1e3:.2f} ms", p99_ratio)
    section.notes.append(
        "ours: the listening socket from bind_socket (IPPROTO_TCP, TCP_NODELAY on accepted connections); "
        "reference: the same server on a protocol-0 socket, as before the fix (Nagle + delayed ACK)"
    )
    section.metrics.update(
        requests=requests,
        nodelay_ms={"median": median(ours) * 1e3, "p99": percentile(ours, 99) * 1e3},
        nagle_ms={"median": median(old) * 1e3, "p99": percentile(old, 99) * 1e3},
        ratio=ratio,
        p99_ratio=p99_ratio,
    )
