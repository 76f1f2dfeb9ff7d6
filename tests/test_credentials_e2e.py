"""Credentials end to end: a real server never shows a password or query secret in answers, lists, websockets or logs."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time

import httpx
import pytest
import websockets

from stream.config import validate_config
from stream.pipeline import Pipeline
from stream.sources import SourceOptions
from tests.support.server import serving, test_config

pytestmark = pytest.mark.slow

FAST = SourceOptions(watchdog_s=2.0, backoff_initial_s=0.2, backoff_max_s=1.0, open_timeout_s=2.0, read_timeout_s=2.0)
# Nothing listens on 127.0.0.1:9, so each accepted camera fails to connect and gets a reason quoting its URL.
ACCEPTED = [
    "rtsp://admin:Ab12'Cd34@127.0.0.1:9/x",
    'rtsp://admin:Ef56"Gh78<Ij90>@127.0.0.1:9/x',
    "rtsp://admin:Pa55@Wd66@127.0.0.1:9/x",
    "rtsp://admin:Kk12%40Ll34@127.0.0.1:9/x",
    "http://127.0.0.1:9/live.m3u8?token=Tk9x1&sig=Sg8y2",
    "https://127.0.0.1:9/o.mp4?X-Amz-Credential=Cr3d4&X-Amz-Signature=Am7z3",
]
REFUSED = [
    "rtsp://admin:Kl12?Mn34@127.0.0.1:9/x",
    "rtsp://admin:Op56#Qr78@127.0.0.1:9/x",
    "rtsp://admin:St12/Uv34@127.0.0.1:9/x",
    "rtsp://admin:Wx56 Yz78@127.0.0.1:9/x",
]
# Every 4+ character run of letters and digits of every secret above: none may show anywhere.
SECRETS = ["Ab12", "Cd34", "Ef56", "Gh78", "Ij90", "Pa55", "Wd66", "Kk12", "Ll34", "Tk9x1", "Sg8y2", "Cr3d4", "Am7z3"]
SECRETS += ["Kl12", "Mn34", "Op56", "Qr78", "St12", "Uv34", "Wx56", "Yz78"]


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


async def test_no_secret_in_rest_websocket_or_logs(recognizer, caplog):
    """POST answers (201 and 400), GET /api/streams, the websocket hello and status messages, and logs mask every secret."""
    caplog.set_level(logging.DEBUG)
    cfg = validate_config(test_config((), {"server": {"max_streams": 16}}))
    async with serving(Pipeline(recognizer, cfg, source_options=FAST), cfg) as srv:
        async with httpx.AsyncClient(base_url=srv.url, timeout=20) as http:
            for url in ACCEPTED:
                resp = await http.post("/api/streams", json={"url": url})
                assert resp.status_code == 201, resp.text
                assert leaks(resp.text) == [], resp.text
                assert "***" in resp.json()["url"]
            for url in REFUSED:
                resp = await http.post("/api/streams", json={"url": url})
                assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_source", resp.text
                assert leaks(resp.text) == [], resp.text
                assert re.search(r"admin:\*\*\*@127\.0\.0\.1:9", resp.json()["error"]["message"]), resp.text
            async with websockets.connect(srv.ws_url) as ws:
                hello = await asyncio.wait_for(ws.recv(), 10)
                assert json.loads(hello)["type"] == "hello" and leaks(hello) == []
                await ws.send('{"type": "subscribe", "kinds": ["status"]}')
                # Each camera tries, fails and says why (quoting its URL): every list on the way must be clean.
                tried: set[str] = set()
                deadline = time.monotonic() + 60
                while len(tried) < len(ACCEPTED) and time.monotonic() < deadline:
                    listed = (await http.get("/api/streams")).text
                    assert leaks(listed) == [], listed
                    tried |= {s["id"] for s in json.loads(listed)["streams"] if s["state"] == "reconnecting" and s["reason"]}
                    await asyncio.sleep(0.3)
                assert len(tried) == len(ACCEPTED), listed
                statuses = []
                until = time.monotonic() + 3  # the cameras keep retrying, so read for a while, not until quiet
                while (left := until - time.monotonic()) > 0:
                    try:
                        statuses.append(await asyncio.wait_for(ws.recv(), left))
                    except asyncio.TimeoutError:
                        break
                assert any('"reconnecting"' in m for m in statuses), statuses
                assert leaks("\n".join(statuses)) == [], statuses
    assert leaks(caplog.text) == [], [line for line in caplog.text.splitlines() if leaks(line)][:5]
