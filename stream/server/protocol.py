"""The wire format of the server, free of I/O (ARCHITECTURE habit 7).

Parses what clients send (websocket messages, the add-stream request body)
into typed objects or a :class:`ProtocolError`, and turns pipeline objects
(:class:`~stream.hub.HubMessage`, :class:`~stream.live.StreamInfo`, model
info) into the JSON dicts that the websocket and REST both send. Tests feed
it plain data; docs/protocol.md describes the same messages for people.

Every time sent to clients is Unix seconds (:func:`stream.clock.to_wall`);
every URL and reason goes through :func:`stream.sources.scrub` once more, so
a credential can not slip out even if a lower layer forgot to mask it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError

from stream.clock import to_wall
from stream.config import Config, LabelConfig, RecordConfig
from stream.hub import Filter, HubMessage, MessageKind
from stream.ids import STREAM_ID_PATTERN, STREAM_ID_RULE, is_valid_stream_id
from stream.live import StreamInfo
from stream.sources import scrub
from stream.types import ClipReady, LabelEvent, Prediction, StreamStatus

__all__ = [
    "PROTOCOL_VERSION",
    "KIND_NAMES",
    "AddStream",
    "Ping",
    "ProtocolError",
    "Subscribe",
    "error",
    "clip_json",
    "clip_url",
    "snapshot_url",
    "event_json",
    "filter_json",
    "hello",
    "message_json",
    "model_json",
    "parse_add_stream",
    "parse_client_message",
    "stream_json",
]

PROTOCOL_VERSION = 1
STREAM_ID_RE = re.compile(STREAM_ID_PATTERN)  # for the OpenAPI schema; code checks with is_valid_stream_id
MAX_FILTER_ITEMS = 1000  # streams or labels in one filter: bounds the work per published message
MAX_SEQ = 2**63 - 1  # seqs are SQLite integers

# Client-facing kind names <-> hub kinds. "event" is accepted as well as "events" (an easy slip).
KIND_NAMES: dict[str, MessageKind] = {
    "labels": MessageKind.LABELS,
    "events": MessageKind.EVENT,
    "event": MessageKind.EVENT,
    "status": MessageKind.STATUS,
    "clips": MessageKind.CLIP,
    "clip": MessageKind.CLIP,
}
_KIND_OUT = {MessageKind.LABELS: "labels", MessageKind.EVENT: "events", MessageKind.STATUS: "status", MessageKind.CLIP: "clips"}


class ProtocolError(ValueError):
    """A client sent something we cannot use: ``code`` is a stable slug, ``message`` says what to fix."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------- client -> server (websocket)
@dataclass(frozen=True, slots=True)
class Subscribe:
    filter: Filter
    since_seq: int | None = None  # replay stored events and clips after this seq first (resume)


@dataclass(frozen=True, slots=True)
class Ping:
    pass


ClientMessage = Subscribe | Ping


def _decode_json(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError("bad_json", f"not valid JSON: {exc}") from None
    except ValueError:  # Python refuses to read an integer of more than 4300 digits
        raise ProtocolError("bad_json", "not valid JSON: a number has too many digits") from None
    except RecursionError:
        raise ProtocolError("bad_json", "not valid JSON: nested too deeply") from None


def _string_list(msg: dict, key: str) -> frozenset[str] | None:
    value = msg.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProtocolError("bad_field", f"'{key}' must be a list of strings or null, got {_type_name(value)}")
    if len(value) > MAX_FILTER_ITEMS:
        raise ProtocolError("bad_field", f"'{key}' has {len(value)} entries; at most {MAX_FILTER_ITEMS} are allowed")
    return frozenset(value)


def _kinds(msg: dict) -> frozenset[MessageKind]:
    value = msg.get("kinds")
    if value is None:
        return frozenset(MessageKind)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProtocolError("bad_field", f"'kinds' must be a list of strings, got {_type_name(value)}")
    unknown = [v for v in value if v not in KIND_NAMES]
    if unknown:
        raise ProtocolError("bad_field", f"unknown kind {unknown[0]!r} in 'kinds': use labels, events, clips or status")
    return frozenset(KIND_NAMES[v] for v in value)


def _min_score(msg: dict) -> float:
    value = msg.get("min_score", 0.0)
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError("bad_field", f"'min_score' must be a number between 0 and 1, got {_type_name(value)}")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ProtocolError("bad_field", f"'min_score' must be between 0 and 1, got {value}")
    return float(value)


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


def _since_seq(msg: dict) -> int | None:
    value = msg.get("since_seq")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        got = value if isinstance(value, float) else _type_name(value)
        raise ProtocolError("bad_field", f"'since_seq' must be a whole number (the seq of the last message you got), got {got}")
    if not 0 <= value <= MAX_SEQ:
        got = value if value < 0 else "a larger number"
        raise ProtocolError("bad_field", f"'since_seq' must be between 0 and {MAX_SEQ}, got {got}")
    return value


_SUBSCRIBE_KEYS = {"type", "streams", "labels", "kinds", "min_score", "since_seq"}


def parse_client_message(text: str | bytes) -> ClientMessage:
    """One websocket message from a client, or :class:`ProtocolError` saying what is wrong with it."""
    msg = _decode_json(text)
    if not isinstance(msg, dict):
        raise ProtocolError("bad_message", f"a message must be a JSON object with a 'type', got {_type_name(msg)}")
    kind = msg.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad_message", "a message needs a string 'type': 'subscribe' or 'ping'")
    if kind == "ping":
        return Ping()
    if kind != "subscribe":
        shown = kind if len(kind) <= 40 else kind[:40] + "..."
        raise ProtocolError("unknown_type", f"unknown message type {shown!r}: use 'subscribe' or 'ping'")
    extra = sorted(set(msg) - _SUBSCRIBE_KEYS)
    if extra:
        raise ProtocolError("bad_field", f"unknown field {extra[0][:40]!r} in subscribe: use streams, labels, kinds, min_score, since_seq")
    return Subscribe(
        Filter(
            streams=_string_list(msg, "streams"),
            labels=_string_list(msg, "labels"),
            kinds=_kinds(msg),
            min_score=_min_score(msg),
        ),
        since_seq=_since_seq(msg),
    )


# --------------------------------------------------------------------- client -> server (REST)
@dataclass(frozen=True, slots=True)
class AddStream:
    url: str | int
    id: str | None = None
    max_fps: float | None = None
    loop: bool = True
    labels: LabelConfig | None = None
    record: RecordConfig | None = None


_ADD_KEYS = {"url", "id", "max_fps", "loop", "labels", "record"}


def parse_add_stream(body: bytes | str) -> AddStream:
    """The body of ``POST /api/streams``; every problem is a ProtocolError (a 400)."""
    data = _decode_json(body) if body else None
    if not isinstance(data, dict):
        raise ProtocolError("bad_request", 'the body must be a JSON object like {"url": "rtsp://camera/stream"}')
    extra = sorted(set(data) - _ADD_KEYS)
    if extra:
        raise ProtocolError("bad_request", f"unknown field {extra[0][:40]!r}: use url, id, max_fps, loop, labels, record")
    if "url" not in data:
        raise ProtocolError("bad_request", "'url' is required: a camera URL (rtsp://, http://, ...) or a webcam index")
    url = data["url"]
    if isinstance(url, bool) or not isinstance(url, (str, int)) or (isinstance(url, str) and not url.strip()):
        raise ProtocolError("bad_request", f"'url' must be a non-empty string or a webcam index, got {_type_name(url)}")
    if isinstance(url, str) and len(url) > 4096:
        raise ProtocolError("bad_request", "'url' is longer than 4096 characters")
    stream_id = data.get("id")
    if stream_id is not None and not is_valid_stream_id(stream_id):
        raise ProtocolError("bad_request", f"'id' must be {STREAM_ID_RULE}")
    max_fps = data.get("max_fps")
    if max_fps is not None:
        if isinstance(max_fps, bool) or not isinstance(max_fps, (int, float)) or not (0 < max_fps <= 240):
            raise ProtocolError("bad_request", "'max_fps' must be a number above 0 and at most 240")
        max_fps = float(max_fps)
    loop = data.get("loop", True)
    if not isinstance(loop, bool):
        raise ProtocolError("bad_request", f"'loop' must be true or false, got {_type_name(loop)}")
    return AddStream(
        url=url, id=stream_id, max_fps=max_fps, loop=loop, labels=_labels(data.get("labels")), record=_record(data.get("record"))
    )


@dataclass(frozen=True, slots=True)
class WebRtcOffer:
    sdp: str
    type: str
    id: str | None


def parse_webrtc_offer(body: bytes | str) -> WebRtcOffer:
    """The body of ``POST /api/webrtc/offer``: ``{"sdp": "...", "type": "offer", "id"?: "..."}``."""
    data = _decode_json(body) if body else None
    if not isinstance(data, dict):
        raise ProtocolError("bad_offer", 'the body must be a JSON object like {"sdp": "v=0...", "type": "offer"}')
    extra = sorted(set(data) - {"sdp", "type", "id"})
    if extra:
        raise ProtocolError("bad_offer", f"unknown field {extra[0][:40]!r}: use sdp, type, id")
    sdp, kind = data.get("sdp"), data.get("type", "offer")
    if not isinstance(sdp, str) or not sdp.strip():
        raise ProtocolError("bad_offer", "'sdp' must be the offer's session description (pc.localDescription.sdp)")
    if kind != "offer":
        raise ProtocolError("bad_offer", f"'type' must be 'offer', got {kind!r}")
    stream_id = data.get("id")
    if stream_id is not None and not is_valid_stream_id(stream_id):
        raise ProtocolError("bad_offer", f"'id' must be {STREAM_ID_RULE}")
    return WebRtcOffer(sdp=sdp, type=kind, id=stream_id)


def _settings(value: Any, key: str, model: type, keys: str) -> Any:
    """A settings object of the body (``labels``, ``record``) validated by its config model, or None."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError("bad_request", f"'{key}' must be an object, got {_type_name(value)}")
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        why = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            why = f"unknown key; use {keys}"
        raise ProtocolError("bad_request", f"{key}.{where}: {why}") from None


def _labels(value: Any) -> LabelConfig | None:
    return _settings(value, "labels", LabelConfig, "smoothing, enter, exit, update_interval_s")


def _record(value: Any) -> RecordConfig | None:
    return _settings(value, "record", RecordConfig, ", ".join(RecordConfig.model_fields))


# --------------------------------------------------------------------- server -> client
def _wall(mono: float | None) -> float | None:
    return None if mono is None else round(to_wall(mono), 3)


def _top_k(top_k) -> list[dict[str, Any]]:
    return [{"label": label, "score": round(float(score), 4)} for label, score in top_k]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 2)


def event_json(ev: LabelEvent) -> dict[str, Any]:
    """A label event as the websocket's ``event`` message (without ``type`` and ``dropped``)."""
    return {
        "event": ev.kind.value,
        "id": ev.id,
        "stream": ev.stream_id,
        "label": ev.label,
        "score": round(float(ev.score), 4),
        "peak_score": round(float(ev.peak_score), 4),
        "start": _wall(ev.start),
        "end": _wall(ev.end),
        "ts": _wall(ev.ts),
    }


def _labels_json(p: Prediction) -> dict[str, Any]:
    return {
        "stream": p.stream_id,
        "clip_start": _wall(p.clip_start),
        "clip_end": _wall(p.clip_end),
        "top_k": _top_k(p.top_k),
        "inference_ms": _ms(p.inference_s),
        "label_age_ms": _ms(p.label_age_s),
        "ts": _wall(p.published),
    }


def _status_json(st: StreamStatus) -> dict[str, Any]:
    body = {"stream": st.stream_id, "state": st.state.value, "reason": scrub(st.reason), "ts": _wall(st.ts)}
    if "recording" in st.extra:  # recording paused or resumed (the source's state is unchanged)
        body["recording"] = st.extra["recording"]
    return body


def clip_url(event_id: str) -> str:
    """Where an event's clip is served (relative to the server)."""
    return f"/api/events/{quote(event_id, safe='')}/clip.mp4"


def snapshot_url(event_id: str) -> str:
    return f"/api/events/{quote(event_id, safe='')}/snapshot.jpg"


def clip_json(clip: ClipReady) -> dict[str, Any]:
    """A finished clip as the websocket's ``clip`` message (without ``type`` and ``dropped``)."""
    return {
        "event_id": clip.event_id,
        "stream": clip.stream_id,
        "label": clip.label,
        "url": clip_url(clip.event_id),
        "duration_s": round(float(clip.duration_s), 3),
        "size_bytes": int(clip.size_bytes),
        "start": _wall(clip.start),
        "truncated": clip.truncated or None,
        "ts": _wall(clip.ts),
    }


def message_json(msg: HubMessage) -> dict[str, Any]:
    """A hub message as a websocket message: ``labels``, ``event``, ``clip`` or ``status``.

    Events, clips and status carry the hub's ``seq`` (what ``since_seq`` resumes
    from); labels do not: they are never replayed, a stale label is worthless.
    """
    if msg.kind is MessageKind.LABELS:
        body = {"type": "labels", **_labels_json(msg.payload)}
    elif msg.kind is MessageKind.EVENT:
        body = {"type": "event", **event_json(msg.payload)}
    elif msg.kind is MessageKind.CLIP:
        body = {"type": "clip", **clip_json(msg.payload)}
    else:
        body = {"type": "status", **_status_json(msg.payload)}
    body["dropped"] = msg.dropped
    if msg.kind is not MessageKind.LABELS:
        body["seq"] = msg.seq
    return body


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def stream_json(info: StreamInfo) -> dict[str, Any]:
    """A stream for REST and ``hello``: state, figures, current top-k and open events."""
    f = info.figures
    return {
        "id": info.id,
        "url": scrub(info.url),
        "kind": info.kind,
        "state": info.state.value,
        "reason": scrub(info.reason),
        "figures": {
            "frames_in": f.frames_in,
            "frames_decoded": f.frames_decoded,
            "frames_dropped": f.frames_dropped,
            "clips_inferred": f.clips_inferred,
            "clips_dropped": f.clips_dropped,
            "ingest_fps": f.ingest_fps,
            "label_age_s": _round(f.label_age_s),
            "label_age_p95_s": _round(f.label_age_p95_s),
            "inference_s": _round(f.inference_s),
            "reconnects": f.reconnects,
            "last_error": f.last_error,
            "ring_bytes": f.ring_bytes,
            "ring_frames": f.ring_frames,
        },
        "top_k": _top_k(info.top_k),
        "open_events": [event_json(ev) for ev in info.open_events],
        # Clips and snapshots: "on", "paused" (disk full or not writable: reason says why) or "off".
        "recording": None if info.recording is None else {"state": info.recording.state, "reason": info.recording.reason},
    }


def model_json(info: Any, config: Config, labels: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``GET /api/model``: what runs, how clips are taken, and every label it knows."""
    return {
        "name": info.name,
        "device": info.device,
        "dtype": info.dtype,
        "attention": info.attention,
        "num_frames": info.num_frames,
        "span_s": config.window.span_s,
        "stride_s": config.window.stride_s,
        "top_k": config.top_k,
        "labels": list(labels),
    }


def filter_json(f: Filter) -> dict[str, Any]:
    return {
        "streams": sorted(f.streams) if f.streams is not None else None,
        "labels": sorted(f.labels) if f.labels is not None else None,
        "kinds": sorted(_KIND_OUT[k] for k in f.kinds),
        "min_score": f.min_score,
    }


def hello(model_name: str, num_labels: int, streams: list[StreamInfo]) -> dict[str, Any]:
    return {
        "type": "hello",
        "protocol": PROTOCOL_VERSION,
        "model": model_name,
        "labels": num_labels,
        "streams": [stream_json(s) for s in streams],
    }


def subscribed(f: Filter, seq: int, since_seq: int | None = None) -> dict[str, Any]:
    """The answer to ``subscribe``: live messages from now on have a seq above ``seq``."""
    return {"type": "subscribed", "filter": filter_json(f), "seq": seq, "since_seq": since_seq}


def replayed(since_seq: int, count: int, seq: int, gap: str | None = None) -> dict[str, Any]:
    """The end of a replay: ``count`` stored messages in (since_seq, seq] were sent; ``gap`` says why some may be missing."""
    return {"type": "replayed", "since_seq": since_seq, "count": count, "seq": seq, "gap": gap is not None, "reason": gap}


def error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


PONG: dict[str, Any] = {"type": "pong"}

__all__ += ["ClientMessage", "MAX_SEQ", "PONG", "replayed", "subscribed", "WebRtcOffer", "parse_webrtc_offer"]
