"""The wire format and the security rules as plain functions: no server, no sockets."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from stream import clock
from stream.hub import HubMessage, MessageKind
from stream.server import protocol
from stream.server.protocol import ProtocolError, parse_add_stream, parse_client_message
from stream.server.security import Security, TokenRequired, is_local_source, is_loopback, resolve_token
from stream.types import EventKind, LabelEvent, Prediction, SourceState, StreamStatus


def test_subscribe_parses_into_a_filter():
    """A full subscribe message becomes the hub Filter with the same streams, labels, kinds and score."""
    msg = parse_client_message(
        json.dumps({"type": "subscribe", "streams": ["a"], "labels": ["x"], "kinds": ["events", "status"], "min_score": 0.3})
    )
    assert isinstance(msg, protocol.Subscribe)
    f = msg.filter
    assert f.streams == {"a"} and f.labels == {"x"} and f.min_score == 0.3
    assert f.kinds == {MessageKind.EVENT, MessageKind.STATUS}
    assert protocol.filter_json(f) == {"streams": ["a"], "labels": ["x"], "kinds": ["events", "status"], "min_score": 0.3}


def test_empty_subscribe_means_everything():
    """A bare subscribe resets to all streams, labels and kinds."""
    f = parse_client_message('{"type": "subscribe"}').filter
    assert f.streams is None and f.labels is None and f.kinds == set(MessageKind) and f.min_score == 0


def test_ping_parses():
    """A ping is recognised (the server answers pong)."""
    assert isinstance(parse_client_message(b'{"type": "ping"}'), protocol.Ping)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_message"),
        ('{"streams": []}', "bad_message"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "subscribe", "streams": "cam1"}', "bad_field"),
        ('{"type": "subscribe", "streams": [1]}', "bad_field"),
        ('{"type": "subscribe", "kinds": ["video"]}', "bad_field"),
        ('{"type": "subscribe", "min_score": "high"}', "bad_field"),
        ('{"type": "subscribe", "min_score": 2}', "bad_field"),
        ('{"type": "subscribe", "min_score": true}', "bad_field"),
        ('{"type": "subscribe", "colour": "red"}', "bad_field"),
        (b"\xff\xfe", "bad_json"),
    ],
)
def test_malformed_client_messages_give_a_code(text, code):
    """Each kind of malformed message raises ProtocolError with its own code and a message."""
    with pytest.raises(ProtocolError) as info:
        parse_client_message(text)
    assert info.value.code == code and info.value.message


def test_add_stream_body_parses():
    """A full add-stream body becomes AddStream with validated per-stream label settings."""
    req = parse_add_stream(b'{"url": "rtsp://cam/x", "id": "door", "max_fps": 10, "loop": false, "labels": {"enter": 0.6}}')
    assert req.url == "rtsp://cam/x" and req.id == "door" and req.max_fps == 10.0 and req.loop is False
    assert req.labels.enter == 0.6
    assert parse_add_stream('{"url": 0}').url == 0


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{bad",
        b'"rtsp://x"',
        b"{}",
        b'{"url": ""}',
        b'{"url": true}',
        b'{"url": ["a"]}',
        b'{"url": "rtsp://x/y", "id": "no spaces"}',
        b'{"url": "rtsp://x/y", "max_fps": -1}',
        b'{"url": "rtsp://x/y", "loop": "yes"}',
        b'{"url": "rtsp://x/y", "labels": {"enter": 7}}',
        b'{"url": "rtsp://x/y", "labels": {"nope": 1}}',
        b'{"url": "rtsp://x/y", "extra": 1}',
    ],
)
def test_bad_add_stream_bodies_are_refused(body):
    """Every malformed add-stream body is a ProtocolError (a 400), never a crash."""
    with pytest.raises(ProtocolError) as info:
        parse_add_stream(body)
    assert info.value.message


def test_hub_messages_serialise_with_wall_clock_times():
    """labels, event and status messages carry Unix times, milliseconds and the dropped count."""
    now = clock.now()
    pred = Prediction("cam", now - 2.0, now - 0.1, np.zeros(3, np.float32), (("run", 0.9),), 0.02, now)
    labels = protocol.message_json(HubMessage(MessageKind.LABELS, "cam", pred, dropped=3))
    assert labels["type"] == "labels" and labels["dropped"] == 3 and labels["top_k"] == [{"label": "run", "score": 0.9}]
    assert abs(labels["ts"] - time.time()) < 1.0
    assert labels["inference_ms"] == 20.0 and abs(labels["label_age_ms"] - 100.0) < 0.1
    ev = LabelEvent("cam:1", EventKind.START, "cam", "run", 0.7, 0.8, now, None, now)
    event = protocol.message_json(HubMessage(MessageKind.EVENT, "cam", ev))
    assert event["type"] == "event" and event["event"] == "start" and event["end"] is None
    st = StreamStatus("cam", SourceState.FAILED, "cannot open rtsp://u:secret@h/x", now)
    status = protocol.message_json(HubMessage(MessageKind.STATUS, "cam", st))
    assert status["state"] == "failed" and "secret" not in json.dumps(status)


def test_local_sources_are_told_apart_from_network_urls_by_text_alone():
    """Files, devices and file:// are local; rtsp/http URLs (even malformed ones) are not."""
    for local in (0, "0", "/dev/video0", "/etc/passwd", "clip.mp4", "file:///tmp/x.mp4", "C:video.mp4"):
        assert is_local_source(local), local
    for remote in ("rtsp://cam/x", "https://x/y.m3u8", "RTMP://x/y", "rtsp:cam", "gopher://x"):
        assert not is_local_source(remote), remote


def test_token_is_required_off_loopback():
    """Loopback needs no token; any other host refuses without one; STREAM_TOKEN counts."""
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    assert resolve_token(None, "127.0.0.1", env={}) is None
    with pytest.raises(TokenRequired, match="token"):
        resolve_token(None, "0.0.0.0", env={})
    assert resolve_token(None, "0.0.0.0", env={"STREAM_TOKEN": "s3cret-token"}) == "s3cret-token"
    with pytest.raises(TokenRequired, match="short"):
        resolve_token("abc", "127.0.0.1", env={})


def test_token_check_accepts_bearer_or_query():
    """A configured token is accepted from the Authorization header or ?token=, nothing else."""
    sec = Security("s3cret-token")
    assert sec.token_ok({"authorization": "Bearer s3cret-token"}, b"")
    assert sec.token_ok({}, b"a=1&token=s3cret-token")
    assert not sec.token_ok({}, b"")
    assert not sec.token_ok({"authorization": "Bearer wrong"}, b"token=wrong")
    assert Security(None).token_ok({}, b"")


def test_origin_rule():
    """No Origin, same origin and listed origins pass; other sites do not."""
    sec = Security(None, ["https://dash.example.org"])
    sec.set_address("127.0.0.1", 8123)
    assert sec.origin_ok(None)
    assert sec.origin_ok("http://127.0.0.1:8123") and sec.origin_ok("http://localhost:8123")
    assert sec.origin_ok("https://dash.example.org/")
    assert not sec.origin_ok("http://evil.example")
    assert not sec.origin_ok("http://localhost:9999")
    assert not sec.origin_ok("null")
    # The page opened by the address the browser used (a LAN IP of a 0.0.0.0 server) is same-origin.
    assert sec.origin_ok("http://192.0.2.7:8123", "192.0.2.7:8123")
    assert not sec.origin_ok("http://evil.example:8123", "192.0.2.7:8123")


def test_host_rule_blocks_dns_rebinding_without_a_token():
    """Without a token only localhost names are served; with one any Host is fine."""
    sec = Security(None)
    sec.set_address("127.0.0.1", 8000)
    assert sec.host_ok("127.0.0.1:8000") and sec.host_ok("localhost:8000") and sec.host_ok("[::1]:8000")
    assert not sec.host_ok("evil.example:8000")
    assert Security("s3cret-token").host_ok("evil.example:8000")
