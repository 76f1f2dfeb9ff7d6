"""The OpenAPI schema, made to tell the truth about what the server sends and accepts.

FastAPI generates a schema from the routes, but ours read their bodies
themselves (to bound their size and to refuse unknown fields) and answer
errors with one JSON body of their own, so the generated one is wrong in
ways that mislead clients: it promises 422s that are never sent, omits the
400/401/403/404/409/413/415/503 that are, declares ``/metrics`` JSON and
lets request bodies carry any extra field. :func:`install_openapi` replaces
``app.openapi`` with a function that post-processes the generated schema
once: every documented operation gets exactly the statuses and bodies the
server sends, from the tables below. ``tests/test_openapi.py`` checks the
result against a running server with schemathesis.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from stream.config import RecordConfig
from stream.ids import STREAM_ID_PATTERN

__all__ = ["ERROR_SCHEMA", "build_schema", "install_openapi"]

_REF = "#/components/schemas/"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error the server sends (docs/protocol.md lists the codes).",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "additionalProperties": False,
            "properties": {
                "code": {"type": "string", "description": "A stable slug, e.g. unknown_stream."},
                "message": {"type": "string", "description": "What was wrong and what to do, in words."},
            },
        }
    },
}

# Python's str.strip() (the server's "blank" test) also strips \x1c-\x1f, which JSON Schema's \s does not match.
_NOT_BLANK = r"[^\s\x1c-\x1f]"

_LABELS = {
    "type": "object",
    "description": "Per-stream label event settings (config `labels`); `exit` must not exceed `enter`.",
    "additionalProperties": False,
    "properties": {
        "smoothing": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        "enter": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "exit": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        "update_interval_s": {"type": "number", "minimum": 0, "maximum": 3600},
    },
}

def _record_settings() -> dict[str, Any]:
    """From the config model itself (simple fields only), so the schema cannot drift from what is accepted."""
    schema = RecordConfig.model_json_schema()
    props = {name: {k: v for k, v in prop.items() if k != "title"} for name, prop in schema["properties"].items()}
    return {
        "type": "object",
        "description": "Per-stream recording settings (config `events.record`): clips and snapshots of its events.",
        "additionalProperties": False,
        "properties": props,
    }


_RECORD = _record_settings()

# null is accepted for every optional field but loop (and the offer's type), meaning "not given".
_STREAM_ID = {"type": ["string", "null"], "pattern": STREAM_ID_PATTERN}

_ADD_STREAM = {
    "type": "object",
    "required": ["url"],
    "additionalProperties": False,
    "properties": {
        "url": {
            "description": "An rtsp, rtsps, rtmp, http or https URL; a webcam index or file only with "
            "server.allow_local_sources.",
            "oneOf": [
                {"type": "string", "minLength": 1, "maxLength": 4096, "pattern": _NOT_BLANK},
                {"type": "integer"},
            ],
        },
        "id": {**_STREAM_ID, "description": "Default: derived from the URL."},
        "max_fps": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 240},
        "loop": {"type": "boolean", "description": "Files played as cameras start again at the end."},
        "labels": {"oneOf": [{"$ref": _REF + "LabelSettings"}, {"type": "null"}]},
        "record": {"oneOf": [{"$ref": _REF + "RecordSettings"}, {"type": "null"}]},
    },
    "examples": [
        {
            "url": "rtsp://user:pass@camera.local/stream1",
            "id": "door",
            "max_fps": 15,
            "loop": True,
            "labels": {"smoothing": 0.5, "enter": 0.5, "exit": 0.35, "update_interval_s": 2.0},
            "record": {"pre_capture_s": 10, "post_capture_s": 5},
        }
    ],
}

_OFFER = {
    "type": "object",
    "required": ["sdp"],
    "additionalProperties": False,
    "properties": {
        "sdp": {
            "type": "string",
            "pattern": "^v=0",
            "description": "The browser's pc.localDescription.sdp, unchanged (the server checks much more than this).",
        },
        "type": {"type": "string", "enum": ["offer"]},
        "id": _STREAM_ID,
    },
}

_NUMBER_OR_NULL = {"type": ["number", "null"]}
_TOP_K = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["label", "score"],
        "properties": {"label": {"type": "string"}, "score": {"type": "number"}},
    },
}
_EVENT = {
    "type": "object",
    "required": ["event", "id", "stream", "label", "score", "peak_score", "start", "end", "ts"],
    "properties": {
        "event": {"type": "string", "enum": ["start", "update", "end"]},
        "id": {"type": "string"},
        "stream": {"type": "string"},
        "label": {"type": "string"},
        "score": {"type": "number"},
        "peak_score": {"type": "number"},
        "start": _NUMBER_OR_NULL,
        "end": _NUMBER_OR_NULL,
        "ts": _NUMBER_OR_NULL,
    },
}
_STREAM = {
    "type": "object",
    "required": ["id", "url", "kind", "state", "reason", "figures", "top_k", "open_events"],
    "properties": {
        "id": {"type": "string"},
        "url": {"type": "string", "description": "Credentials masked: rtsp://user:***@host/x"},
        "kind": {"type": "string", "enum": ["network", "file", "webcam", "webrtc", "invalid"]},
        "state": {"type": "string", "enum": ["connecting", "live", "reconnecting", "stopped", "failed"]},
        "reason": {"type": "string"},
        "figures": {"type": "object", "description": "Counters and timings (docs/protocol.md)."},
        "top_k": _TOP_K,
        "open_events": {"type": "array", "items": _EVENT},
        "recording": {
            "description": "Clips and snapshots of its events; null without an event store.",
            "oneOf": [
                {
                    "type": "object",
                    "required": ["state", "reason"],
                    "properties": {"state": {"type": "string", "enum": ["on", "paused", "off"]}, "reason": {"type": "string"}},
                },
                {"type": "null"},
            ],
        },
    },
}

_UNIX_OR_NULL = {"type": ["number", "null"], "description": "Unix seconds; null while unknown or running."}
_STORED_EVENT = {
    "type": "object",
    "description": "One occurrence of a label on a stream, as stored (docs/protocol.md, Events REST API).",
    "required": [
        "id", "stream", "label", "start", "end", "in_progress", "score", "peak_score", "peak_ts",
        "has_clip", "has_snapshot", "end_reason", "seq", "url",
    ],  # fmt: skip
    "properties": {
        "id": {"type": "string"},
        "stream": {"type": "string"},
        "label": {"type": "string"},
        "start": {"type": "number", "description": "Unix seconds."},
        "end": _UNIX_OR_NULL,
        "in_progress": {"type": "boolean"},
        "score": {"type": "number"},
        "peak_score": {"type": "number"},
        "peak_ts": _UNIX_OR_NULL,
        "has_clip": {"type": "boolean"},
        "has_snapshot": {"type": "boolean"},
        "end_reason": {
            "oneOf": [
                {"type": "string", "enum": ["score_dropped", "stream_removed", "stream_lost", "server_stopped"]},
                {"type": "null"},
            ]
        },
        "seq": {"type": "integer", "minimum": 0},
        "url": {"type": "string", "description": "/api/events/<id>"},
        "clip_url": {"type": ["string", "null"], "description": "/api/events/<id>/clip.mp4 once the clip is ready; null before."},
        "clip_duration_s": {"type": ["number", "null"]},
        "snapshot_url": {"type": ["string", "null"], "description": "/api/events/<id>/snapshot.jpg once there is one."},
    },
}

COMPONENTS: dict[str, dict[str, Any]] = {
    "StoredEvent": _STORED_EVENT,
    "EventPage": {
        "type": "object",
        "required": ["events", "next_cursor"],
        "properties": {
            "events": {"type": "array", "items": {"$ref": _REF + "StoredEvent"}},
            "next_cursor": {"type": ["string", "null"], "description": "Pass as ?cursor= for the next page; null on the last."},
        },
    },
    "Error": ERROR_SCHEMA,
    "LabelSettings": _LABELS,
    "RecordSettings": _RECORD,
    "AddStream": _ADD_STREAM,
    "WebRtcOffer": _OFFER,
    "Stream": _STREAM,
    "StreamList": {
        "type": "object",
        "required": ["streams"],
        "properties": {"streams": {"type": "array", "items": {"$ref": _REF + "Stream"}}},
    },
    "Health": {
        "type": "object",
        "required": ["status", "streams"],
        "properties": {"status": {"type": "string", "enum": ["ok"]}, "streams": {"type": "integer", "minimum": 0}},
    },
    "Model": {
        "type": "object",
        "required": ["name", "device", "dtype", "attention", "num_frames", "span_s", "stride_s", "top_k", "labels"],
        "properties": {
            "name": {"type": "string"},
            "device": {"type": "string"},
            "dtype": {"type": "string"},
            "attention": {"type": "string"},
            "num_frames": {"type": "integer"},
            "span_s": {"type": "number"},
            "stride_s": {"type": "number"},
            "top_k": {"type": "integer"},
            "labels": {"type": "array", "items": {"type": "string"}},
        },
    },
    "WebRtcConfig": {
        "type": "object",
        "required": ["ice_servers", "max_streams", "active"],
        "properties": {
            "ice_servers": {
                "type": "array",
                "items": {"type": "object", "required": ["urls"], "properties": {"urls": {"type": "string"}}},
            },
            "max_streams": {"type": "integer", "minimum": 0},
            "active": {"type": "integer", "minimum": 0},
        },
    },
    "WebRtcAnswer": {
        "type": "object",
        "required": ["sdp", "type", "stream"],
        "properties": {
            "sdp": {"type": "string"},
            "type": {"type": "string", "enum": ["answer"]},
            "stream": {"type": "string"},
        },
    },
}

_WHY = {
    400: "Bad request: malformed JSON, a wrong or missing field, a source that can never work, or an HTTP request "
    "the server could not parse, or a bad query parameter (bad_request, bad_cursor).",
    401: "A token is required (`WWW-Authenticate: Bearer`).",
    403: "Refused: a non-localhost Host without a token (bad_host), a cross-site request (cross_site), or a file "
    "or device while server.allow_local_sources is false.",
    404: "Unknown stream or event, or no frame yet.",
    409: "The id is taken, a stream limit is reached, or the event is still running (event_in_progress).",
    413: "The request body is over 64 KiB.",
    415: "The body is not application/json.",
    503: "The server is shutting down, over its connection or preview limit, or the event store cannot answer.",
}

# Statuses every request can get, whatever the route: the connection cap answers 503 before routing.
_ANY = (503,)
# Routes behind the Host check and the token.
_AUTH = (401, 403, *_ANY)
# State-changing routes: the cross-site check (403) comes with them.
_JSON_BODY = (400, 413, 415)


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _REF + ref}}}


_LOCATION = {"Location": {"description": "/api/streams/<id>", "schema": {"type": "string"}}}


def _stream_links(id_from: str) -> dict[str, Any]:
    """OpenAPI links from a created stream to the routes that take its id (clients and schemathesis follow them)."""
    ops = {"GetStream": "get", "RemoveStream": "delete"}
    return {
        name: {"operationRef": "#/paths/~1api~1streams~1{stream_id}/" + method, "parameters": {"stream_id": id_from}}
        for name, method in ops.items()
    }

_WWW_AUTH = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}

# (method, path) -> (success status, success response, error statuses). Every documented operation is here.
_OPERATIONS: dict[tuple[str, str], tuple[int, dict[str, Any], tuple[int, ...]]] = {
    ("get", "/healthz"): (200, {"description": "Alive.", "content": _json("Health")}, _ANY),
    ("get", "/metrics"): (
        200,
        {
            "description": "Prometheus text exposition format (version 0.0.4).",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        _AUTH,
    ),
    ("get", "/api/model"): (200, {"description": "The model.", "content": _json("Model")}, _AUTH),
    ("get", "/api/streams"): (200, {"description": "Every stream.", "content": _json("StreamList")}, _AUTH),
    ("post", "/api/streams"): (
        201,
        {
            "description": "Added (a camera that is down is added too).",
            "content": _json("Stream"),
            "headers": _LOCATION,
            "links": _stream_links("$response.body#/id"),
        },
        (*_JSON_BODY, 409, *_AUTH),
    ),
    ("get", "/api/streams/{stream_id}"): (200, {"description": "The stream.", "content": _json("Stream")}, (404, *_AUTH)),
    ("delete", "/api/streams/{stream_id}"): (204, {"description": "Removed; its open label events end."}, (404, *_AUTH)),
    ("get", "/api/streams/{stream_id}/snapshot.jpg"): (
        200,
        {"description": "The newest frame.", "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
        (404, *_AUTH),
    ),
    ("get", "/api/streams/{stream_id}/preview.mjpg"): (
        200,
        {
            "description": "MJPEG: JPEG parts at up to 5 fps until the client goes away.",
            "content": {"multipart/x-mixed-replace": {"schema": {"type": "string", "format": "binary"}}},
        },
        (404, *_AUTH),
    ),
    ("get", "/api/webrtc/config"): (200, {"description": "ICE servers and caps.", "content": _json("WebRtcConfig")}, _AUTH),
    ("post", "/api/webrtc/offer"): (
        200,
        {
            "description": "The answer; the camera is now a stream.",
            "content": _json("WebRtcAnswer"),
            "links": _stream_links("$response.body#/stream"),
        },
        (*_JSON_BODY, 409, *_AUTH),
    ),
    ("get", "/api/events"): (
        200,
        {"description": "A page of stored events, newest first.", "content": _json("EventPage")},
        (400, *_AUTH),
    ),
    ("get", "/api/events/{event_id}"): (200, {"description": "The event.", "content": _json("StoredEvent")}, (404, *_AUTH)),
    ("get", "/api/events/{event_id}/clip.mp4"): (
        200,
        {
            "description": "The event's clip: H.264 in MP4, timestamps from zero, pre_capture_s before its start to "
            "post_capture_s after its end. Range requests are answered with 206.",
            "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}},
        },
        (404, *_AUTH),
    ),
    ("get", "/api/events/{event_id}/snapshot.jpg"): (
        200,
        {
            "description": "A JPEG of the frame where the event's smoothed score peaked, at the camera's resolution "
            "(with ?width=, scaled down to at most that width).",
            "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
        },
        (400, 404, *_AUTH),
    ),
    ("delete", "/api/events/{event_id}"): (
        204,
        {"description": "Deleted (a finished event; a running one is 409 event_in_progress)."},
        (404, 409, *_AUTH),
    ),
}

_BODIES = {("post", "/api/streams"): "AddStream", ("post", "/api/webrtc/offer"): "WebRtcOffer"}


def _responses(success: int, ok: dict[str, Any], errors: tuple[int, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {str(success): ok}
    for status in sorted(set(errors)):
        entry: dict[str, Any] = {"description": _WHY[status], "content": _json("Error")}
        if status == 401:
            entry["headers"] = _WWW_AUTH
        out[str(status)] = entry
    return out


def _fix_parameters(op: dict[str, Any]) -> None:
    for param in op.get("parameters", ()):
        if param.get("in") == "path" and param.get("name") in ("stream_id", "event_id"):
            # Any non-empty segment reaches the route (unknown ids are 404s); an empty one is another path.
            title = param["name"].replace("_", " ").title()
            param["schema"] = {"type": "string", "minLength": 1, "title": title}
        elif param.get("in") == "query":
            # A query parameter is absent or a value, never JSON null: drop FastAPI's `anyOf [..., null]`.
            schema = param.get("schema", {})
            variants = [v for v in schema.get("anyOf", ()) if v.get("type") != "null"]
            if len(variants) == 1:
                keep = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
                param["schema"] = {**variants[0], **keep}


def _fix_operation(method: str, path: str, op: dict[str, Any]) -> None:
    key = (method, path)
    if key not in _OPERATIONS:
        raise RuntimeError(f"{method.upper()} {path} is not described in stream/server/openapi.py; add it to _OPERATIONS")
    success, ok, errors = _OPERATIONS[key]
    op["responses"] = _responses(success, copy.deepcopy(ok), errors)
    _fix_parameters(op)
    if key in _BODIES:
        op["requestBody"] = {"required": True, "content": _json(_BODIES[key])}


def build_schema(app: FastAPI) -> dict[str, Any]:
    """The generated schema with our statuses, bodies and components; no 422 anywhere."""
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    for path, item in schema.get("paths", {}).items():
        # HEAD works on every GET route (stream/server/methods.py); it goes undocumented, as HTTP implies it.
        item.pop("head", None)
        for method, op in item.items():
            _fix_operation(method, path, op)
    components = schema.setdefault("components", {})
    # FastAPI's HTTPValidationError/ValidationError describe the 422 body we never send.
    components["schemas"] = copy.deepcopy(COMPONENTS)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and so ``/openapi.json``) return :func:`build_schema`, built once."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_schema(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

