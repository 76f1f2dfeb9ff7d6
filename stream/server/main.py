"""``python server.py``: read the config, check it is safe, bind, load the model, serve.

The order is chosen so that cheap mistakes fail fast with one line and exit
status 2: a bad config, a missing token for an exposed address, a port
already in use and a damaged event database (or a data_dir that cannot be
written) are all found before the model (seconds) is loaded. The
socket is bound here rather than by uvicorn, so ``--port 0`` works and the
printed address is the real one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import re
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from typing import Any

from stream.config import Config, ConfigError, load_config, validate_config
from stream.logs import install_scrubbing, quiet_libraries
from stream.server.security import TokenRequired, check_flag_token, resolve_token

__all__ = ["ServerRunner", "bind_socket", "build_parser", "main", "parse_source", "serve"]

log = logging.getLogger("stream.server")

EXIT_USAGE = 2
_NAME_PREFIX = re.compile(r"(?P<id>[A-Za-z0-9_][A-Za-z0-9_.-]{0,63})=(?P<url>.+)", re.DOTALL)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python server.py",
        description="Live action recognition server: REST, websocket label API, previews and a web page.",
    )
    p.add_argument("--config", default=None, help="YAML config (default: configs/default.yaml)")
    p.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="[NAME=]SOURCE",
        help="start a stream: 0 or /dev/video0 (webcam), rtsp/http URL, or a video file; repeatable",
    )
    p.add_argument("--model", default=None, help="hub id or local model folder (default: from the config)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--dtype", default=None, help="auto, float32, float16, bfloat16 or int8 (CPU)")
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1; others need a token)")
    p.add_argument("--port", type=int, default=None, help="TCP port (default 8000; 0 = any free port)")
    p.add_argument("--token", default=None, help="API token (or server.token in the config, or STREAM_TOKEN)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="default info")
    return p


def parse_source(text: str) -> dict[str, Any]:
    """``cam=rtsp://...`` -> {"id": "cam", "url": ...}; ``0`` -> {"url": 0}. URLs keep their own '='."""
    match = _NAME_PREFIX.fullmatch(text)
    source: dict[str, Any] = {}
    if match and "://" not in match.group("id"):
        source["id"], text = match.group("id"), match.group("url")
    source["url"] = int(text) if text.isdigit() else text
    return source


def _load(args: argparse.Namespace) -> Config:
    overrides = {
        "model.name": args.model,
        "model.device": args.device,
        "model.dtype": args.dtype,
        "server.host": args.host,
        "server.port": args.port,
        "server.token": args.token,
    }
    cfg = load_config(args.config, overrides)
    if args.source:
        data = cfg.model_dump()
        data["sources"] = [*data["sources"], *(parse_source(s) for s in args.source)]
        cfg = validate_config(data, source="--source")
    return cfg


def bind_socket(host: str, port: int, *, nodelay: bool = True) -> socket.socket:
    """A listening TCP socket; raises OSError (EADDRINUSE etc.) for the caller to explain.

    Created with ``IPPROTO_TCP`` (not protocol 0): accepted sockets inherit
    the listener's protocol number, and asyncio turns TCP_NODELAY on only for
    sockets whose ``proto`` says TCP. Without it Nagle's algorithm and the
    client's delayed ACK add ~40 ms to every request on a kept-alive
    connection. ``nodelay=False`` rebuilds that old socket (for the bench).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP if nodelay else 0)
    try:
        # Lets a restarted server take the port while old connections sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Linux also copies TCP_NODELAY from the listener to accepted sockets: set it either way.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if nodelay else 0)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def _bind_message(exc: OSError, host: str, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is in use; pick another with --port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}: this machine has no such address; use --host 127.0.0.1 or 0.0.0.0"
    if exc.errno == errno.EACCES:
        return f"no permission to listen on port {port}; use a port above 1023"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


class ServerRunner:
    """uvicorn.Server with our shutdown order and quiet signal handling.

    On Ctrl-C or SIGTERM: stop accepting, close websocket sessions (1001)
    and previews, then let uvicorn finish requests and run the app's lifespan
    shutdown (which stops the pipeline).
    """

    def __init__(self, app, sock: socket.socket, *, log_level: str = "info", handle_signals: bool = True) -> None:
        import uvicorn

        from stream.server.http_protocol import protocol_for_app

        config = uvicorn.Config(
            app,
            # Header timeout, connection cap, stalled-reader timeout and JSON error bodies (see http_protocol).
            http=protocol_for_app(app),
            ws="websockets-sansio",
            lifespan="on",
            log_level=log_level,
            ws_max_size=64 * 1024,
            ws_ping_interval=20.0,
            ws_ping_timeout=20.0,
            # Compressing every label message for every client costs CPU the model needs.
            ws_per_message_deflate=False,
            timeout_graceful_shutdown=3,
            access_log=log_level == "debug",
            server_header=False,
        )
        runner = self

        class _Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self):
                # uvicorn re-raises the signal after shutdown (a KeyboardInterrupt or a
                # kill by SIGTERM); we have shut down cleanly, so exit 0 instead.
                if not handle_signals or threading.current_thread() is not threading.main_thread():
                    yield
                    return
                handled = (signal.SIGINT, signal.SIGTERM)
                original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
                try:
                    yield
                finally:
                    for sig, handler in original.items():
                        signal.signal(sig, handler)

            async def startup(self, sockets=None):
                await super().startup(sockets=sockets)
                if not self.should_exit:  # the app's startup (the pipeline) may have failed
                    runner.started.set()

            async def shutdown(self, sockets=None):
                for server in self.servers:
                    server.close()  # stop accepting first
                await runner.close_sessions()
                await super().shutdown(sockets=sockets)

        self.app = app
        self.sock = sock
        self.server = _Server(config)
        self.started = asyncio.Event()

    async def close_sessions(self) -> None:
        rt = getattr(self.app.state, "runtime", None)
        if rt is not None:
            rt.closing.set()  # previews end, new websockets are refused
            await rt.sessions.close_all()

    async def serve(self) -> None:
        await self.server.serve(sockets=[self.sock])

    def stop(self) -> None:
        self.server.should_exit = True

    @contextlib.asynccontextmanager
    async def running(self, *, extra_sockets: Sequence[socket.socket] = (), timeout: float = 30.0):
        """Serve in the current event loop for the block (tests, the bench); stopped and awaited at its end.

        Raises RuntimeError if the server has not started within ``timeout``
        seconds. The sockets stay the caller's to close.
        """
        task = asyncio.create_task(self.server.serve(sockets=[self.sock, *extra_sockets]))
        try:
            started = asyncio.create_task(self.started.wait())
            done, _ = await asyncio.wait({task, started}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if started not in done:
                started.cancel()
                raise RuntimeError("the in-process server did not start")
            yield self
        finally:
            self.stop()
            await asyncio.wait_for(task, 15)


async def serve(app, sock: socket.socket, *, log_level: str = "info", on_started=None) -> bool:
    """Serve until Ctrl-C/SIGTERM; False if the app failed to start."""
    runner = ServerRunner(app, sock, log_level=log_level)

    async def announce() -> None:
        await runner.started.wait()
        if on_started is not None:
            on_started()

    waiter = asyncio.create_task(announce())
    try:
        await runner.serve()
    finally:
        waiter.cancel()
    return runner.started.is_set()


def _setup_logging(level: str) -> None:
    # Every record is scrubbed where it is made, whichever logger and handler (uvicorn's own too).
    install_scrubbing()
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    quiet_libraries()


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_level)
    try:
        # Before the config: its own check would blame the config file for the flag's value.
        check_flag_token(args.token)
    except TokenRequired as exc:
        return _fail(str(exc))
    if args.token:
        install_scrubbing([args.token])
    try:
        cfg = _load(args)
    except ConfigError as exc:
        return _fail(str(exc))
    host, port = cfg.server.host, cfg.server.port
    try:
        token = resolve_token(cfg.server.token, host)
    except TokenRequired as exc:
        return _fail(str(exc))
    install_scrubbing([token])
    try:
        sock = bind_socket(host, port)
    except OSError as exc:
        return _fail(_bind_message(exc, host, port))
    try:
        return _run(cfg, token, sock, args.log_level)
    finally:
        sock.close()


def _run(cfg: Config, token: str | None, sock: socket.socket, log_level: str) -> int:
    from stream.events import EventStore, StoreError, check_location

    data_dir = cfg.server.data_dir
    store = None
    try:
        # The event store before the model: a damaged database or an unwritable
        # data_dir is one line and exit 2 in a moment, not after seconds of loading.
        # A database that does not exist yet is created once the model has loaded,
        # so a start that fails (a wrong --model) leaves no empty data folder behind.
        try:
            if check_location(data_dir):
                store = EventStore.open(data_dir)
        except StoreError as exc:
            return _fail(str(exc))
        # Heavy imports (torch, transformers) only once the cheap checks passed.
        from stream.model import ModelUnavailableError, Recognizer

        try:
            recognizer = Recognizer.from_config(cfg)
        except ModelUnavailableError as exc:
            return _fail(str(exc))
        if store is None:
            try:
                store = EventStore.open(data_dir)
            except StoreError as exc:
                return _fail(str(exc))
        return _serve_app(cfg, token, sock, log_level, recognizer, store)
    finally:
        if store is not None:
            # After the pipeline stopped (it ended the open events): the writer drains, the file closes.
            store.close()


def _serve_app(cfg: Config, token: str | None, sock: socket.socket, log_level: str, recognizer, store) -> int:
    from stream.pipeline import Pipeline
    from stream.server.app import create_app

    app = create_app(Pipeline(recognizer, cfg, store=store), cfg, token=token)
    bound_port = sock.getsockname()[1]
    app.state.runtime.security.set_address(cfg.server.host, bound_port)
    url = _url(cfg.server.host, bound_port)

    def announce() -> None:
        note = " (token required)" if token else ""
        # One line people (and tests) read: the address to open.
        print(f"serving on {url}{note}", flush=True)

    try:
        started = asyncio.run(serve(app, sock, log_level=log_level, on_started=announce))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130
    if not started:
        return _fail("the server could not start; the log above says why")
    log.info("stopped")
    return 0
