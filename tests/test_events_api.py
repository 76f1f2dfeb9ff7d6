"""The events REST API in-process (every 400/404/409), live events reaching the store, and API streams kept across restarts."""

from __future__ import annotations

import asyncio
import time

from stream.events import EventStore
from tests.support.server import asgi_api

EVENTS = {"labels": {"enter": 0.05, "exit": 0.01, "smoothing": 0}}
CAMERA = {"url": "rtsp://user:secret@127.0.0.1:9/x", "id": "door", "max_fps": 5, "loop": False, "labels": {"enter": 0.6, "exit": 0.3}}


def _row(id_: str, start: float, *, stream: str = "cam", label: str = "run", end: float | None = 1.0e9, peak: float = 0.8):
    reason = "score_dropped" if end is not None else None
    return (id_, stream, label, start, end, 0.5, peak, start, reason, 1, end if end is not None else start)


def _seed(data_dir, rows) -> None:
    with EventStore.open(data_dir) as store:
        for r in rows:
            store.write_event(r)


async def _until(predicate, timeout: float = 15.0, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(step)
    raise AssertionError("condition not met in time")


def _error(resp, status: int, code: str) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()["error"]
    assert body["code"] == code, body
    return body["message"]


async def test_list_get_and_pages(recognizer, tmp_path):
    """GET /api/events lists stored events newest first with filters and an opaque cursor; GET /api/events/{id} returns one."""
    _seed(tmp_path, [_row(f"cam:x:{i}", 1000.0 + i, label="run" if i % 2 else "sit", peak=i / 10) for i in range(7)])
    async with asgi_api(recognizer, data_dir=tmp_path) as client:
        body = (await client.get("/api/events")).json()
        assert [e["id"] for e in body["events"]] == [f"cam:x:{i}" for i in range(6, -1, -1)]
        assert body["next_cursor"] is None
        first = body["events"][0]
        assert first == {
            "id": "cam:x:6", "stream": "cam", "label": "sit", "start": 1006.0, "end": 1.0e9, "in_progress": False,
            "score": 0.5, "peak_score": 0.6, "peak_ts": 1006.0, "has_clip": False, "has_snapshot": False,
            "end_reason": "score_dropped", "seq": 1, "url": "/api/events/cam%3Ax%3A6",
            "clip_url": None, "clip_duration_s": None, "snapshot_url": None,
        }  # fmt: skip
        assert (await client.get(first["url"])).json() == first
        ids, cursor = [], None
        while True:
            page = (await client.get("/api/events", params={"limit": 3, **({"cursor": cursor} if cursor else {})})).json()
            ids += [e["id"] for e in page["events"]]
            if (cursor := page["next_cursor"]) is None:
                break
        assert ids == [e["id"] for e in body["events"]]
        runs = (await client.get("/api/events", params={"label": "run", "min_score": 0.3, "after": 1002, "before": 1006})).json()
        assert [e["id"] for e in runs["events"]] == ["cam:x:5", "cam:x:3"]
        assert (await client.get("/api/events", params={"stream": "other"})).json()["events"] == []
        assert (await client.get("/api/events", params={"in_progress": "true"})).json()["events"] == []


async def test_every_bad_query_is_a_clear_400(recognizer, tmp_path):
    """Bad numbers, limits out of bounds, after later than before, a non-finite time and a forged cursor are 400s that say what is wrong."""
    async with asgi_api(recognizer, data_dir=tmp_path) as client:
        cases = {
            "limit=0": "limit", "limit=1001": "limit", "limit=abc": "limit", "min_score=2": "min_score",
            "after=soon": "after", "before=x": "before", "in_progress=maybe": "in_progress",
        }  # fmt: skip
        for query, name in cases.items():
            assert name in _error(await client.get(f"/api/events?{query}"), 400, "bad_request"), query
        msg = _error(await client.get("/api/events?after=20&before=10"), 400, "bad_request")
        assert "after (20.0) must not be later than before (10.0)" in msg
        assert "finite" in _error(await client.get("/api/events?after=nan"), 400, "bad_request")
        assert "next_cursor" in _error(await client.get("/api/events?cursor=forged"), 400, "bad_cursor")


async def test_unknown_and_running_events(recognizer, tmp_path):
    """Unknown ids are 404 unknown_event; deleting a running event is 409 event_in_progress; a finished one is deleted (204)."""
    _seed(tmp_path, [_row("done", 5.0)])
    async with asgi_api(recognizer, data_dir=tmp_path) as client:
        store = client.app.state.runtime.pipeline.store
        store.write_event(_row("running", 6.0, end=None))
        await asyncio.wrap_future(store.flush())
        _error(await client.get("/api/events/nope"), 404, "unknown_event")
        _error(await client.delete("/api/events/nope"), 404, "unknown_event")
        _error(await client.delete("/api/events/running"), 409, "event_in_progress")
        assert (await client.get("/api/events/running")).json()["in_progress"] is True
        assert (await client.delete("/api/events/done")).status_code == 204
        _error(await client.get("/api/events/done"), 404, "unknown_event")


async def test_no_store_no_event_routes(recognizer):
    """An app around a store-less pipeline (library use) has no events API and writes nothing."""
    async with asgi_api(recognizer) as client:
        assert client.app.state.runtime.pipeline.store is None
        _error(await client.get("/api/events"), 404, "not_found")


async def test_live_events_are_stored_and_end_when_removed(recognizer, video, tmp_path):
    """A file camera's label events appear in GET /api/events while running, and end as stream_removed on DELETE."""
    async with asgi_api(recognizer, data_dir=tmp_path, config=EVENTS, sources=[{"url": str(video), "id": "cam"}]) as client:

        async def running():
            events = (await client.get("/api/events", params={"stream": "cam", "in_progress": "true"})).json()["events"]
            return events

        live = await _until(running)
        assert live[0]["end"] is None and live[0]["peak_ts"] >= live[0]["start"]
        assert (await client.delete("/api/streams/cam")).status_code == 204

        async def ended():
            ev = (await client.get(live[0]["url"])).json()
            return ev if ev["end"] is not None else None

        ev = await _until(ended)
        assert ev["end_reason"] == "stream_removed" and ev["end"] >= ev["start"]
        assert ev["seq"] >= live[0]["seq"]


async def test_api_streams_come_back_and_removals_are_remembered(recognizer, video, tmp_path):
    """A stream added by POST /api/streams is started again by the next start with its settings; a DELETE sticks; config streams are not stored."""
    config_source = [{"url": str(video), "id": "cfg"}]
    async with asgi_api(recognizer, data_dir=tmp_path, sources=config_source) as client:
        assert (await client.post("/api/streams", json=CAMERA)).status_code == 201
        assert (await client.post("/api/streams", json={"url": "rtsp://127.0.0.1:9/y", "id": "yard"})).status_code == 201
    with EventStore.open(tmp_path) as store:
        stored = {s.id: s for s in store.streams()}
    assert set(stored) == {"door", "yard"}
    assert stored["door"].url == CAMERA["url"] and stored["door"].max_fps == 5 and stored["door"].loop is False
    assert stored["door"].labels["enter"] == 0.6
    async with asgi_api(recognizer, data_dir=tmp_path) as client:
        streams = {s["id"]: s for s in (await client.get("/api/streams")).json()["streams"]}
        assert set(streams) == {"door", "yard"}
        assert streams["door"]["url"] == "rtsp://user:***@127.0.0.1:9/x"  # masked as ever
        pipeline = client.app.state.runtime.pipeline
        assert pipeline.live_stream("door").tracker.config.enter == 0.6
        assert (await client.delete("/api/streams/yard")).status_code == 204
    async with asgi_api(recognizer, data_dir=tmp_path) as client:
        assert [s["id"] for s in (await client.get("/api/streams")).json()["streams"]] == ["door"]


async def test_config_wins_over_a_stored_stream_and_max_streams_holds(recognizer, video, tmp_path, caplog):
    """A stored stream whose id a config source takes is not started (warned); restored streams stop at server.max_streams."""
    async with asgi_api(recognizer, data_dir=tmp_path) as client:
        for sid in ("door", "a", "b"):
            body = {**CAMERA, "id": sid}
            assert (await client.post("/api/streams", json=body)).status_code == 201
    sources = [{"url": str(video), "id": "door"}]
    async with asgi_api(recognizer, data_dir=tmp_path, sources=sources, server={"max_streams": 2}) as client:
        streams = {s["id"]: s for s in (await client.get("/api/streams")).json()["streams"]}
        assert set(streams) == {"door", "a"} and streams["door"]["kind"] == "file"
    assert any("config has a stream with that id" in r.getMessage() for r in caplog.records)
    assert any("server.max_streams" in r.getMessage() for r in caplog.records)


async def test_metrics_report_the_store(recognizer, tmp_path):
    """/metrics carries the event store's writes, refusals, errors and queue depth."""
    async with asgi_api(recognizer, data_dir=tmp_path) as client:
        text = (await client.get("/metrics")).text
    for name in ("event_store_writes_total", "event_store_queue_full_total", "event_store_write_errors_total", "event_store_queue_depth"):
        assert name in text, name


async def test_the_schema_documents_the_events_api(recognizer, tmp_path):
    """With a store the OpenAPI schema has the three events operations with exactly the statuses they send, and plain query types."""
    async with asgi_api(recognizer, data_dir=tmp_path) as client:
        paths = (await client.get("/openapi.json")).json()["paths"]
    codes = lambda method, path: set(paths[path][method]["responses"])  # noqa: E731
    assert codes("get", "/api/events") == {"200", "400", "401", "403", "503"}
    assert codes("get", "/api/events/{event_id}") == {"200", "401", "403", "404", "503"}
    assert codes("delete", "/api/events/{event_id}") == {"204", "401", "403", "404", "409", "503"}
    params = {p["name"]: p["schema"] for p in paths["/api/events"]["get"]["parameters"]}
    assert set(params) == {"stream", "label", "after", "before", "min_score", "in_progress", "limit", "cursor"}
    assert params["limit"]["type"] == "integer" and params["limit"]["maximum"] == 1000 and params["limit"]["minimum"] == 1
    assert params["in_progress"]["type"] == "boolean" and "anyOf" not in params["min_score"]


async def test_a_streams_own_record_settings_are_applied_shown_and_kept_across_a_restart(recognizer, tmp_path):
    """POST /api/streams takes `record` (validated like the config); the stream says its recording state; a restart keeps it."""
    async with asgi_api(recognizer, data_dir=tmp_path) as client:
        bad = await client.post("/api/streams", json={"url": "rtsp://127.0.0.1:9/x", "record": {"pre_capture": 3}})
        message = _error(bad, 400, "bad_request")
        assert message.startswith("record.pre_capture: unknown key; use clips, snapshots, pre_capture_s")
        too_long = await client.post("/api/streams", json={"url": "rtsp://127.0.0.1:9/x", "record": {"pre_capture_s": 600}})
        assert _error(too_long, 400, "bad_request").startswith("record.pre_capture_s:")
        off = {"url": "rtsp://127.0.0.1:9/x", "id": "quiet", "record": {"clips": False, "snapshots": False}}
        created = await client.post("/api/streams", json=off)
        assert created.status_code == 201, created.text
        assert created.json()["recording"] == {"state": "off", "reason": "events.record turns clips and snapshots off"}
        on = await client.post("/api/streams", json={"url": "rtsp://127.0.0.1:9/y", "id": "loud", "record": {"pre_capture_s": 2}})
        assert on.json()["recording"] == {"state": "on", "reason": ""}
        assert client.app.state.runtime.pipeline.live_stream("loud").record.pre_capture_s == 2
    async with asgi_api(recognizer, data_dir=tmp_path) as client:
        streams = {s["id"]: s for s in (await client.get("/api/streams")).json()["streams"]}
        assert streams["quiet"]["recording"]["state"] == "off" and streams["loud"]["recording"]["state"] == "on"
        pipeline = client.app.state.runtime.pipeline
        assert pipeline.live_stream("loud").record.pre_capture_s == 2
        assert pipeline.live_stream("quiet").packets is None, "a stream without clips keeps no packets"
