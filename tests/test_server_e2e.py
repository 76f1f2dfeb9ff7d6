"""`python server.py` as a user runs it: start-up errors, a real server with a file camera, tokens, logs, Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.support.server import REPO_ROOT, start_server

pytestmark = pytest.mark.slow

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def run_server(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in ENV.items() if k != "STREAM_TOKEN"}
    return subprocess.run(
        [sys.executable, "server.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def test_bad_config_exits_2_with_one_line(tmp_path, tiny_model_dir):
    """A config with a bad value exits 2 with one line naming the key."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("window:\n  span_s: -1\n")
    proc = run_server("--config", str(cfg), "--model", tiny_model_dir, "--port", "0")
    assert proc.returncode == 2
    assert len(error_lines(proc)) == 1 and "window.span_s" in error_lines(proc)[0]


def test_unknown_model_exits_2_with_one_line(tmp_path):
    """A model folder that does not exist exits 2 with one clear line, no traceback."""
    proc = run_server("--model", str(tmp_path / "no-model"), "--device", "cpu", "--port", "0")
    assert proc.returncode == 2 and len(error_lines(proc)) == 1
    assert "Traceback" not in proc.stderr


def test_port_taken_exits_2_with_one_line(tiny_model_dir):
    """A port already in use exits 2 with 'port N on 127.0.0.1 is in use; pick another with --port'."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = run_server("--model", tiny_model_dir, "--device", "cpu", "--port", str(port))
    assert proc.returncode == 2
    assert error_lines(proc) == [f"error: port {port} on 127.0.0.1 is in use; pick another with --port"]


def test_non_loopback_without_token_refuses_before_binding(tiny_model_dir):
    """--host 0.0.0.0 without a token exits 2 before binding anything or loading the model."""
    t0 = time.monotonic()
    proc = run_server("--host", "0.0.0.0", "--model", tiny_model_dir, "--port", "0")
    assert proc.returncode == 2 and "without a token" in error_lines(proc)[0]
    assert "serving on" not in proc.stdout and time.monotonic() - t0 < 20


def test_real_server_labels_token_masking_and_ctrl_c(tmp_path, tiny_model_dir, video):
    """Token-protected server with a file camera: REST/ws need the token, labels flow, logs hide secrets, Ctrl-C exits 0."""
    token = "s3cret-token"
    srv = start_server(
        tmp_path,
        tiny_model_dir,
        sources=[{"id": "demo", "url": str(video)}],
        extra_args=["--host", "127.0.0.1", "--token", token],
    )
    with srv:
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{srv.url}/api/streams").status_code == 401
        assert httpx.get(f"{srv.url}/api/streams?token={token}").status_code == 200
        resp = httpx.post(f"{srv.url}/api/streams", json={"url": "rtsp://user:secret@127.0.0.1:9/x", "id": "cam"}, headers=auth)
        assert resp.status_code == 201

        async def watch() -> list[dict]:
            async with connect(srv.ws_url, additional_headers=auth) as ws:
                out, deadline = [], time.monotonic() + 3.0
                while time.monotonic() < deadline:
                    out.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
                return out

        msgs = asyncio.run(watch())
        assert msgs[0]["type"] == "hello"
        assert sum(1 for m in msgs if m["type"] == "labels" and m["stream"] == "demo") >= 5
        metrics = httpx.get(f"{srv.url}/metrics", headers=auth).text
        assert 'stream_label_age_seconds_count{stream="demo"}' in metrics
        assert httpx.get(f"{srv.url}/healthz").json()["status"] == "ok"
        t0 = time.monotonic()
        assert srv.stop() == 0
        assert time.monotonic() - t0 < 8
    logs = srv.logs()
    assert "secret" not in logs.replace(token, "<token>") and token not in logs
    assert "Traceback" not in logs
