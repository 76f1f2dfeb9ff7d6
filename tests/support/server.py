"""Run the real server for tests: as a subprocess (``start_server``) or in the test's own loop (``serving``).

``start_server`` is what end-to-end and browser tests use: it runs
``python server.py`` with a YAML config written to ``tmp_path``, the tiny
model and ``--port 0`` (or a given port, to restart on the same one), and
waits for the ``serving on http://...`` line. ``serving`` builds the app
around a pipeline in-process and runs uvicorn on a port-0 socket in the
current event loop: no subprocess, no model reload, much faster.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["REPO_ROOT", "ServerProcess", "InProcessServer", "asgi_api", "start_server", "serving", "test_config"]

REPO_ROOT = Path(__file__).resolve().parents[2]
_SERVING = re.compile(r"serving on (http://127\.0\.0\.1:(\d+))/")
_counter = itertools.count()

# Small and quick: clips of 2 s every 0.25 s.
BASE_CONFIG: dict[str, Any] = {"window": {"span_s": 2, "stride_s": 0.25}, "server": {"host": "127.0.0.1"}}


def _merge(base: dict, extra: Mapping) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) else value
    return out


def test_config(sources: Iterable[Mapping] = (), config: Mapping | None = None) -> dict[str, Any]:
    """The config dict the helpers use: BASE_CONFIG + sources + ``config`` merged in (a deep copy: callers may change it)."""
    data = _merge(copy.deepcopy(BASE_CONFIG), {"sources": [dict(s) for s in sources]})
    return _merge(data, config or {})


test_config.__test__ = False  # not a test, whatever pytest thinks of the name


class ServerProcess:
    """A running ``python server.py``; stop() it (or use ``with``) to reap it."""

    def __init__(self, proc: subprocess.Popen, log_path: Path, port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/ws"
        self._log_path = log_path

    def logs(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        return self._log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT (like Ctrl-C), then SIGKILL after ``timeout``; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(
    tmp_path: Path,
    model_dir: str | Path,
    *,
    sources: Iterable[Mapping] = (),
    config: Mapping | None = None,
    extra_args: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
    port: int = 0,
    timeout: float = 60,
) -> ServerProcess:
    """Start ``server.py`` on 127.0.0.1 and wait until it serves; raises RuntimeError with its logs if it does not."""
    n = next(_counter)
    tmp_path = Path(tmp_path)
    config_path = tmp_path / f"server-{n}.yaml"
    data = test_config(sources, config)
    # Never ./data in the repo: the event store goes under the test's tmp_path unless the test names one.
    # A new dict: data["server"] may be BASE_CONFIG's own, and setting data_dir in it once made every
    # later server of the session share the first one's database.
    data["server"] = {"data_dir": str(tmp_path / "data"), **data["server"]}
    config_path.write_text(yaml.safe_dump(data), encoding="utf-8")
    log_path = tmp_path / f"server-{n}.log"
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    full_env.update(env or {})
    cmd = [
        sys.executable, "server.py", "--config", str(config_path), "--model", str(model_dir),
        "--device", "cpu", "--port", str(port), *extra_args,
    ]  # fmt: skip
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=full_env, stdout=log_file, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = _SERVING.search(log_path.read_text(encoding="utf-8", errors="replace"))
        if match:
            return ServerProcess(proc, log_path, int(match.group(2)))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    server = ServerProcess(proc, log_path, port)
    server.stop(timeout=5)
    raise RuntimeError(f"server did not start (exit {proc.returncode}):\n{server.logs()[-3000:]}")


class InProcessServer:
    """The app served by uvicorn in the current loop; ``url``/``ws_url`` like ServerProcess."""

    def __init__(self, app, port: int) -> None:
        self.app = app
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/ws"


@contextlib.asynccontextmanager
async def serving(
    pipeline, config, *, token: str | None = None, limits=None, log_level: str = "warning", sndbuf: int | None = None
):
    """Serve ``create_app(pipeline, config)`` on 127.0.0.1:0 in this loop; the app's lifespan starts the pipeline.

    ``sndbuf`` shrinks the kernel send buffer of accepted connections (Linux
    inherits it from the listening socket), so slow-client tests need
    kilobytes, not megabytes, of backlog to see flow control.
    """
    from stream.server.app import create_app
    from stream.server.main import ServerRunner, bind_socket

    app = create_app(pipeline, config, token=token, limits=limits)
    sock = bind_socket("127.0.0.1", 0)
    if sndbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    port = sock.getsockname()[1]
    app.state.runtime.security.set_address("127.0.0.1", port)
    runner = ServerRunner(app, sock, log_level=log_level, handle_signals=False)
    try:
        async with runner.running(timeout=30):
            yield InProcessServer(app, port)
    finally:
        sock.close()


@contextlib.asynccontextmanager
async def asgi_api(
    recognizer,
    *,
    sources: Iterable[Mapping] = (),
    server: Mapping | None = None,
    token: str | None = None,
    data_dir: str | Path | None = None,
    config: Mapping | None = None,
):
    """An httpx client on a fresh app over ASGI (no socket); the app's real lifespan runs around the block.

    Sources get short timeouts, so a camera that is down retries quickly. The
    client's ``app`` attribute is the app, for tests that look inside. With
    ``data_dir`` the pipeline gets an event store there (closed after the
    block, so a second ``asgi_api`` on it sees what the first wrote), and the
    events API with it; ``config`` is merged into the test config.
    """
    import asyncio

    import httpx

    from stream.config import validate_config
    from stream.pipeline import Pipeline
    from stream.server.app import create_app
    from stream.sources import SourceOptions

    fast = SourceOptions(watchdog_s=2.0, backoff_initial_s=0.2, backoff_max_s=1.0, open_timeout_s=2.0, read_timeout_s=2.0)
    cfg = validate_config(_merge(test_config(sources, {"server": dict(server or {})}), config or {}))
    store = None
    if data_dir is not None:
        from stream.events import EventStore

        store = EventStore.open(data_dir)
    try:
        app = create_app(Pipeline(recognizer, cfg, source_options=fast, store=store), cfg, token=token)
        app.state.runtime.security.set_address("127.0.0.1", 80)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                client.app = app
                yield client
    finally:
        if store is not None:
            await asyncio.to_thread(store.close)
