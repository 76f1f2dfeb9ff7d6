"""REST API in-process (httpx over ASGI, the app's real lifespan): add, list, detail, remove, every refusal."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.support.server import asgi_api

JSON = {"Content-Type": "application/json"}
CAMERA = "rtsp://user:secret@127.0.0.1:9/x"  # nothing listens on port 9: a camera that is down


api = asgi_api  # an httpx client on a fresh app over ASGI, its real lifespan around the block


def assert_error(resp: httpx.Response, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()["error"]
    assert body["message"] and isinstance(body["message"], str)
    if code is not None:
        assert body["code"] == code, body
    return body


async def test_add_list_detail_remove(recognizer):
    """A stream added by URL is listed, has a detail page with masked URL, and can be removed."""
    async with api(recognizer) as client:
        resp = await client.post("/api/streams", json={"url": CAMERA, "id": "door", "max_fps": 5, "labels": {"enter": 0.6}})
        assert resp.status_code == 201, resp.text
        assert resp.headers["location"] == "/api/streams/door"
        stream = resp.json()
        assert stream["id"] == "door" and stream["kind"] == "network" and stream["url"] == "rtsp://user:***@127.0.0.1:9/x"
        assert set(stream["figures"]) >= {"frames_in", "clips_inferred", "label_age_s", "ring_bytes"}
        listed = (await client.get("/api/streams")).json()["streams"]
        assert [s["id"] for s in listed] == ["door"]
        detail = await client.get("/api/streams/door")
        assert detail.status_code == 200 and detail.json()["state"] in ("connecting", "reconnecting")
        assert (await client.delete("/api/streams/door")).status_code == 204
        assert (await client.get("/api/streams")).json() == {"streams": []}
        assert_error(await client.get("/api/streams/door"), 404, "unknown_stream")


async def test_model_and_health(recognizer):
    """/api/model lists the labels and clip settings; /healthz counts streams."""
    async with api(recognizer) as client:
        model = (await client.get("/api/model")).json()
        assert model["labels"][0] == "action_00" and model["num_frames"] == 8
        assert model["span_s"] == 2 and model["stride_s"] == 0.25 and model["device"] == "cpu"
        assert (await client.get("/healthz")).json() == {"status": "ok", "streams": 0}


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"content": b"{bad json", "headers": JSON}, 400, "bad_json"),
        ({"json": {"id": "x"}}, 400, "bad_request"),
        ({"json": {"url": "rtsp://127.0.0.1:9/x", "id": "bad id!"}}, 400, "bad_request"),
        ({"json": {"url": "gopher://127.0.0.1/x"}}, 400, "invalid_source"),
        ({"json": {"url": "rtsp://"}}, 400, "invalid_source"),
        ({"json": {"url": "/etc/passwd"}}, 403, "local_source_not_allowed"),
        ({"json": {"url": "/no/such/file.mp4"}}, 403, "local_source_not_allowed"),
        ({"json": {"url": 0}}, 403, "local_source_not_allowed"),
        ({"json": {"url": "file:///etc/passwd"}}, 403, "local_source_not_allowed"),
        ({"content": b'{"url": "' + b"a" * 70000 + b'"}', "headers": JSON}, 413, "body_too_large"),
        ({"content": b'{"url": "rtsp://127.0.0.1:9/x"}'}, 415, "unsupported_media_type"),
        ({"content": b'{"url": "rtsp://127.0.0.1:9/x"}', "headers": {"Content-Type": "text/plain;charset=UTF-8"}}, 415, "unsupported_media_type"),
        ({"data": {"url": "rtsp://127.0.0.1:9/x"}}, 415, "unsupported_media_type"),
        ({"files": {"url": (None, "rtsp://127.0.0.1:9/x")}}, 415, "unsupported_media_type"),
    ],
)
async def test_invalid_add_requests_get_the_right_4xx(recognizer, kwargs, status, code):
    """Each invalid add request gets its 4xx and a JSON message, and adds nothing."""
    async with api(recognizer) as client:
        assert_error(await client.post("/api/streams", **kwargs), status, code)
        assert (await client.get("/api/streams")).json() == {"streams": []}


async def test_duplicate_id_and_stream_limit_are_conflicts(recognizer):
    """A taken id is 409 stream_exists; one stream over server.max_streams is 409 stream_limit."""
    async with api(recognizer, server={"max_streams": 2}) as client:
        assert (await client.post("/api/streams", json={"url": CAMERA, "id": "a"})).status_code == 201
        assert_error(await client.post("/api/streams", json={"url": CAMERA, "id": "a"}), 409, "stream_exists")
        assert (await client.post("/api/streams", json={"url": CAMERA})).status_code == 201
        assert_error(await client.post("/api/streams", json={"url": CAMERA, "id": "c"}), 409, "stream_limit")


async def test_unknown_routes_methods_and_streams_are_json_4xx(recognizer):
    """404/405 and unknown streams use the error format; nothing a client sends gives a 500."""
    async with api(recognizer) as client:
        assert_error(await client.get("/api/nothing"), 404)
        assert_error(await client.put("/api/streams"), 405, "method_not_allowed")
        assert_error(await client.delete("/api/streams/ghost"), 404, "unknown_stream")
        assert_error(await client.get("/api/streams/ghost/snapshot.jpg"), 404, "unknown_stream")
        assert_error(await client.get("/api/streams/ghost/preview.mjpg"), 404, "unknown_stream")
        for body in (b"null", b"[]", b'{"url": {"a": 1}}', b'{"url": 1e999}', b"\xff\xfe", b'{"url": "rtsp://h/%zz"}'):
            resp = await client.post("/api/streams", content=body, headers=JSON)
            assert resp.status_code < 500, (body, resp.text)


async def test_local_files_allowed_when_configured(recognizer, video):
    """With server.allow_local_sources a file can be added; a missing one is 400 with the reason."""
    async with api(recognizer, server={"allow_local_sources": True}) as client:
        resp = await client.post("/api/streams", json={"url": str(video), "id": "clip"})
        assert resp.status_code == 201 and resp.json()["kind"] == "file"
        body = assert_error(await client.post("/api/streams", json={"url": "/no/such/file.mp4"}), 400, "invalid_source")
        assert "no such file" in body["message"]


async def test_token_is_required_when_configured(recognizer):
    """With a token, the API answers 401 without it and 200 with Bearer or ?token=; /healthz stays open."""
    async with api(recognizer, token="s3cret-token") as client:
        assert_error(await client.get("/api/streams"), 401, "unauthorized")
        assert_error(await client.get("/api/streams", headers={"Authorization": "Bearer nope"}), 401)
        assert (await client.get("/api/streams", headers={"Authorization": "Bearer s3cret-token"})).status_code == 200
        assert (await client.get("/api/streams?token=s3cret-token")).status_code == 200
        assert_error(await client.get("/metrics"), 401)
        assert (await client.get("/healthz")).status_code == 200


async def test_foreign_host_header_is_refused_without_token(recognizer):
    """A request for another host name (DNS rebinding) is 403 when no token protects the server."""
    async with api(recognizer) as client:
        assert_error(await client.get("/api/streams", headers={"Host": "evil.example"}), 403, "bad_host")


async def test_credentials_never_appear_in_responses(recognizer):
    """The camera password is masked in the add reply, list, detail and metrics."""
    async with api(recognizer) as client:
        await client.post("/api/streams", json={"url": CAMERA, "id": "cam"})
        await asyncio.sleep(0.5)  # let it fail to connect and report why
        for path in ("/api/streams", "/api/streams/cam", "/metrics"):
            text = (await client.get(path)).text
            assert "secret" not in text, path


async def test_file_stream_labels_metrics_and_snapshot(recognizer, video):
    """A config file-as-camera stream gets labels; /metrics has its series; snapshot.jpg is a JPEG."""
    async with api(recognizer, sources=[{"id": "demo", "url": str(video)}]) as client:
        for _ in range(60):
            stream = (await client.get("/api/streams/demo")).json()
            if stream["figures"]["clips_inferred"] >= 2:
                break
            await asyncio.sleep(0.1)
        assert stream["state"] == "live" and stream["top_k"][0]["label"].startswith("action_")
        metrics = (await client.get("/metrics")).text
        assert 'stream_clips_inferred_total{stream="demo"}' in metrics
        assert 'stream_state{state="live",stream="demo"} 1.0' in metrics
        assert 'stream_inference_seconds_count{stream="demo"}' in metrics
        assert 'stream_label_age_seconds_bucket{le="0.5",stream="demo"}' in metrics
        snap = await client.get("/api/streams/demo/snapshot.jpg")
        assert snap.status_code == 200 and snap.content[:2] == b"\xff\xd8"


async def test_json_content_type_parameters_are_accepted(recognizer):
    """'application/json; charset=utf-8' (any case) is JSON: the add succeeds."""
    async with api(recognizer) as client:
        body = b'{"url": "rtsp://127.0.0.1:9/x", "id": "cam"}'
        resp = await client.post("/api/streams", content=body, headers={"Content-Type": "Application/JSON; charset=utf-8"})
        assert resp.status_code == 201, resp.text


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, 403),
        ({"Origin": "http://127.0.0.1:9999", "Sec-Fetch-Site": "same-site"}, 403),  # another port on this machine
        ({"Origin": "http://evil.example"}, 403),  # an older browser: no Sec-Fetch-Site
        ({"Origin": "null"}, 403),  # a sandboxed frame or file:// page
        ({"Origin": "http://127.0.0.1:80", "Sec-Fetch-Site": "same-origin"}, 201),
        ({"Origin": "http://127.0.0.1:80"}, 201),
        ({"Origin": "http://trusted.example", "Sec-Fetch-Site": "cross-site"}, 201),  # in server.allowed_origins
        ({}, 201),  # a program: curl, scripts
    ],
)
async def test_cross_site_state_changes_are_refused(recognizer, headers, status):
    """POSTs from another site's page get 403 cross_site (saying how to allow one); same-origin, allowed and programs work."""
    async with api(recognizer, server={"allowed_origins": ["http://trusted.example"]}) as client:
        resp = await client.post("/api/streams", json={"url": CAMERA, "id": "cam"}, headers=headers)
        if status == 403:
            body = assert_error(resp, 403, "cross_site")
            assert "server.allowed_origins" in body["message"]
            assert (await client.get("/api/streams")).json() == {"streams": []}
        else:
            assert resp.status_code == 201, resp.text


async def test_cross_site_delete_and_webrtc_offer_are_refused(recognizer):
    """DELETE and the WebRTC offer refuse cross-site pages too; a cross-site GET (which changes nothing) still answers."""
    evil = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
    async with api(recognizer) as client:
        assert (await client.post("/api/streams", json={"url": CAMERA, "id": "cam"})).status_code == 201
        assert_error(await client.delete("/api/streams/cam", headers=evil), 403, "cross_site")
        assert_error(await client.post("/api/webrtc/offer", json={"sdp": "v=0", "type": "offer"}, headers=evil), 403, "cross_site")
        offer = {"content": b'{"sdp": "v=0", "type": "offer"}', "headers": {"Content-Type": "text/plain"}}
        assert_error(await client.post("/api/webrtc/offer", **offer), 415, "unsupported_media_type")
        assert (await client.get("/api/streams", headers=evil)).status_code == 200
        assert [s["id"] for s in (await client.get("/api/streams")).json()["streams"]] == ["cam"]
        assert (await client.delete("/api/streams/cam")).status_code == 204


async def test_location_header_is_the_quoted_id(recognizer):
    """The Location of a new stream is /api/streams/<id>, and an id with '.' stays one path segment."""
    async with api(recognizer) as client:
        resp = await client.post("/api/streams", json={"url": CAMERA, "id": "door.1"})
        assert resp.status_code == 201 and resp.headers["location"] == "/api/streams/door.1"

