"""Recording through the real server process: snapshots and clips over REST, the `clip` message, delete, kill -9."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time

import av
import cv2
import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect

from tests.support.server import start_server

pytestmark = pytest.mark.slow

CONFIG = {
    "labels": {"enter": 0.05, "exit": 0.01, "smoothing": 0, "update_interval_s": 0},
    "window": {"span_s": 1, "stride_s": 0.25},
    "events": {"record": {"pre_capture_s": 1, "post_capture_s": 0.5}},
    "server": {"allow_local_sources": True},
}


async def _until(fn, timeout: float = 30.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        value = await fn()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


def _quoted(event_id: str) -> str:
    return event_id.replace(":", "%3A")


async def test_a_running_event_gets_a_snapshot_and_its_clip_is_served_once_the_stream_goes(tmp_path, tiny_model_dir, video):
    srv = start_server(tmp_path, tiny_model_dir, sources=[{"url": str(video), "id": "cam"}], config=CONFIG)
    try:
        async with httpx.AsyncClient(base_url=srv.url, timeout=10) as http, connect(srv.ws_url) as ws:
            await ws.send(json.dumps({"type": "subscribe", "kinds": ["events", "clips"]}))

            async def snapshotted():
                events = (await http.get("/api/events", params={"stream": "cam", "in_progress": "true"})).json()["events"]
                # Running for a while: its clip must hold more than the last moments.
                return next((e for e in events if e["has_snapshot"] and time.time() - e["start"] > 1.5), None)

            event = await _until(snapshotted)
            snap = await http.get(event["snapshot_url"])
            assert snap.status_code == 200 and snap.headers["content-type"] == "image/jpeg"
            image = cv2.imdecode(np.frombuffer(snap.content, np.uint8), cv2.IMREAD_COLOR)
            assert image.shape[:2] == (120, 160), "the camera's own resolution, not the model's"
            thumb = await http.get(event["snapshot_url"], params={"width": 80})
            small = cv2.imdecode(np.frombuffer(thumb.content, np.uint8), cv2.IMREAD_COLOR)
            assert thumb.headers["content-type"] == "image/jpeg" and small.shape[:2] == (60, 80)
            assert (await http.get(event["snapshot_url"], params={"width": 4})).status_code == 400
            early = await http.get(f"/api/events/{_quoted(event['id'])}/clip.mp4")
            assert early.status_code == 404 and early.json()["error"]["code"] == "no_clip"

            # The camera goes away mid-event: its clip is finalized with what was received.
            assert (await http.delete("/api/streams/cam")).status_code == 204
            clips = {}
            async with asyncio.timeout(20):
                while event["id"] not in clips:
                    msg = json.loads(await ws.recv())
                    if msg["type"] == "clip":
                        clips[msg["event_id"]] = msg
            clip_msg = clips[event["id"]]
            assert clip_msg["url"] == f"/api/events/{_quoted(event['id'])}/clip.mp4" and clip_msg["stream"] == "cam"
            assert clip_msg["duration_s"] > 1.5

            stored = (await http.get(event["url"])).json()
            assert stored["has_clip"] and stored["clip_url"] == clip_msg["url"]
            # The random model's scores move: the event may have ended by itself just before the removal.
            if stored["end_reason"] == "stream_removed":
                assert clip_msg["truncated"], "cut at the removal, and it says so"
            else:
                assert stored["end_reason"] == "score_dropped" and not clip_msg["truncated"]
            body = await http.get(clip_msg["url"])
            assert body.status_code == 200 and body.headers["content-type"] == "video/mp4"
            assert len(body.content) == clip_msg["size_bytes"]
            with av.open(io.BytesIO(body.content)) as container:
                stream = container.streams.video[0]
                times = [float(f.time) for f in container.decode(stream)]
            assert stream.codec_context.name == "h264" and times[0] == pytest.approx(0.0, abs=1e-3)
            assert times[-1] == pytest.approx(clip_msg["duration_s"], abs=0.15)
            part = await http.get(clip_msg["url"], headers={"Range": "bytes=0-99"})
            assert part.status_code == 206 and part.content == body.content[:100], "a browser can seek"

            metrics = (await http.get("/metrics")).text
            assert re.search(r"^recorder_clips_written_total [1-9]", metrics, re.M), "the clip is counted"
            assert re.search(r'^stream_packet_buffer_bytes\{stream="cam"\}', metrics, re.M) is None, "a removed stream is not listed"
            assert (await http.delete(event["url"])).status_code == 204
            gone = await http.get(clip_msg["url"])
            assert gone.status_code == 404 and gone.json()["error"]["code"] == "unknown_event"
        media = tmp_path / "data"
        assert not list(media.glob(f"*/{event['id'].replace(':', '~')}.*")), "the files went with the row"
    finally:
        srv.stop()


def test_kill_9_while_a_clip_is_written_leaves_no_part_file_and_the_event_closed(tmp_path, tiny_model_dir, video):
    srv = start_server(tmp_path, tiny_model_dir, sources=[{"url": str(video), "id": "cam"}], config=CONFIG)
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as http:
            for _ in range(300):
                running = http.get("/api/events", params={"in_progress": "true"}).json()["events"]
                if running and list((tmp_path / "data" / "clips").glob("*.part")):
                    break
                time.sleep(0.1)
            else:
                raise AssertionError("no clip being written")
        srv.proc.kill()
        srv.proc.wait(10)
    finally:
        srv.stop()
    victim = running[0]["id"]
    srv = start_server(tmp_path, tiny_model_dir, config=CONFIG)  # no camera: nothing new is written
    try:
        ev = httpx.get(f"{srv.url}/api/events/{_quoted(victim)}", timeout=10).json()
        assert ev["end_reason"] == "server_stopped" and not ev["has_clip"]
        assert not list((tmp_path / "data" / "clips").glob("*.part")), "the unfinished clip was swept at start"
        assert "unfinished clip/snapshot files" in srv.logs()
    finally:
        srv.stop()
