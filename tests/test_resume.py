"""Resume: seq on every event/clip/status message, `since_seq` replay from the event store, and Subscriber / CLI resuming after a lost connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect

from stream import clock
from stream.config import validate_config
from stream.events import DB_NAME, EventStore
from stream.events.replay import ReplayQuery, read_page
from stream.hub import Filter, HubMessage, MessageKind
from stream.pipeline import Pipeline
from stream.server import protocol
from stream.sources import SourceOptions
from stream.subscriber import Subscriber
from stream.types import ClipReady, EventKind, LabelEvent, Prediction, SourceState, StreamStatus
from tests.support.server import REPO_ROOT, serving, start_server, test_config
from tests.support.lines import Lines

FAST = SourceOptions(watchdog_s=2.0, backoff_initial_s=0.2, backoff_max_s=1.0, open_timeout_s=2.0, read_timeout_s=2.0)
# Events all the time: low thresholds, an update every clip (stride 0.25 s).
EVENTFUL = {
    "labels": {"enter": 0.05, "exit": 0.01, "smoothing": 0, "update_interval_s": 0},
    "server": {"allow_local_sources": True},
}


# --------------------------------------------------------------------- helpers
class Relay:
    """A TCP relay on 127.0.0.1 between a client and the server that a test can cut: a real lost connection.

    While cut, open connections are reset and new ones are accepted and closed
    at once (the client's handshake fails), like a network that comes and goes.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.cut_off = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        self._server.close()
        await self._server.wait_closed()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def cut(self) -> None:
        self.cut_off = True
        for writer in list(self._writers):
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


@contextlib.asynccontextmanager
async def eventful_server(recognizer, video, data_dir, *, streams=("cam",)):
    """An in-process server with an event store in data_dir, its streams making events all the time."""
    cfg = validate_config(test_config([{"id": s, "url": str(video)} for s in streams], EVENTFUL))
    store = EventStore.open(data_dir)
    try:
        pipeline = Pipeline(recognizer, cfg, source_options=FAST, store=store)
        async with serving(pipeline, cfg) as srv:
            srv.pipeline = pipeline
            yield srv
    finally:
        await asyncio.to_thread(store.close)


def logged(data_dir, kinds=("event", "clip")) -> list[dict]:
    """Every body in the replay log, in seq order (a read-only connection of its own: the server may be running)."""
    return [body for _, body in logged_peaks(data_dir, kinds)]


def logged_peaks(data_dir, kinds=("event", "clip")) -> list[tuple[float, dict]]:
    """(peak_score column, body) of every log row: clip bodies do not carry the peak their filter judges."""
    conn = sqlite3.connect(f"file:{data_dir / DB_NAME}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT peak_score, body FROM event_log WHERE kind IN (%s) ORDER BY seq" % ",".join("?" * len(kinds)), kinds)
        return [(peak, json.loads(body)) for peak, body in rows]
    finally:
        conn.close()


async def recv_json(ws, timeout: float = 10.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def until_type(ws, kind: str, timeout: float = 15.0) -> tuple[list[dict], dict]:
    """Messages up to and including the first of type ``kind``."""
    seen, deadline = [], time.monotonic() + timeout
    while True:
        msg = await recv_json(ws, max(0.1, deadline - time.monotonic()))
        seen.append(msg)
        if msg["type"] == kind:
            return seen[:-1], msg


async def events_published(pipeline, count: int, timeout: float = 30.0) -> None:
    """Wait until the hub has published ``count`` more messages than now (events come every stride)."""
    target = pipeline.hub.seq + count
    deadline = time.monotonic() + timeout
    while pipeline.hub.seq < target:
        assert time.monotonic() < deadline, "no events in time"
        await asyncio.sleep(0.05)


# --------------------------------------------------------------------- protocol (no I/O)
def test_event_clip_and_status_messages_carry_their_seq_labels_do_not():
    """message_json puts the hub seq on event, clip and status messages; labels have none."""
    now = clock.now()
    ev = LabelEvent("cam:1", EventKind.START, "cam", "run", 0.7, 0.8, now, None, now)
    clip = ClipReady("cam:1", "cam", "run", 0.8, now - 5, 6.0, 1000, now)
    st = StreamStatus("cam", SourceState.LIVE, "ok", now)
    assert protocol.message_json(HubMessage(MessageKind.EVENT, "cam", ev, seq=41))["seq"] == 41
    assert protocol.message_json(HubMessage(MessageKind.CLIP, "cam", clip, seq=42))["seq"] == 42
    assert protocol.message_json(HubMessage(MessageKind.STATUS, "cam", st, seq=43))["seq"] == 43
    pred = Prediction("cam", now - 2, now, np.zeros(2, np.float32), (("run", 0.9),), 0.01, now)
    assert "seq" not in protocol.message_json(HubMessage(MessageKind.LABELS, "cam", pred, seq=44))


@pytest.mark.parametrize(
    "value, says",
    [
        ('"12"', "got a string"),
        ("-1", "between 0 and"),
        ("1.5", "got 1.5"),
        ("true", "got a boolean"),
        ("[3]", "got a list"),
        (str(2**63), "between 0 and"),
    ],
)
def test_bad_since_seq_is_a_clear_bad_field(value, says):
    """since_seq must be a whole number 0..2**63-1; anything else is bad_field saying what it got."""
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.parse_client_message('{"type": "subscribe", "since_seq": %s}' % value)
    assert info.value.code == "bad_field" and "since_seq" in info.value.message and says in info.value.message


def test_since_seq_is_parsed_beside_the_filter():
    """since_seq 0 and null are accepted; a number too long for Python is bad_json, not a crash."""
    assert protocol.parse_client_message('{"type": "subscribe", "since_seq": 0}').since_seq == 0
    assert protocol.parse_client_message('{"type": "subscribe", "since_seq": null}').since_seq is None
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.parse_client_message('{"type": "subscribe", "since_seq": %s}' % ("9" * 5000))
    assert info.value.code == "bad_json"


# --------------------------------------------------------------------- the log and its pages
def _log(seq: int, stream: str, label: str, peak: float, kind: str = "event") -> tuple:
    body = json.dumps({"type": kind, "stream": stream, "label": label, "peak_score": peak, "seq": seq})
    return (seq, f"{stream}:x:{seq}", stream, label, peak, kind, body, 1.7e9 + seq)


def test_replay_pages_apply_filters_in_order(tmp_path):
    """read_page returns log rows after a seq and up to a bound, oldest first, filtered by stream, label, kind and peak."""
    rows = [_log(s, "ab"[s % 2], ("run", "sit")[s % 3 == 0], s / 100, "clip" if s % 5 == 0 else "event") for s in range(1, 60)]
    with EventStore.open(tmp_path) as store:
        for r in rows:
            store.log_message(r)
        store.flush().result(10)
        q = ReplayQuery.of(Filter(streams={"b"}, labels={"run"}, kinds={MessageKind.EVENT}, min_score=0.2), 10, 50)
        got, after = [], 0
        while page := store.read(read_page, q, after, 3):  # small pages: the bound is honoured
            assert len(page) <= 3
            got += page
            after = page[-1][0]
        want = [r for r in rows if 10 < r[0] <= 50 and r[2] == "b" and r[3] == "run" and r[5] == "event" and r[4] >= 0.2]
        assert [seq for seq, _ in got] == [r[0] for r in want] and want
        assert [body for _, body in got] == [r[6] for r in want]
        clips = ReplayQuery.of(Filter(kinds={MessageKind.CLIP}), 0, 100)
        assert {json.loads(b)["type"] for _, b in store.read(read_page, clips, 0, 100)} == {"clip"}
        assert ReplayQuery.of(Filter(kinds={MessageKind.LABELS, MessageKind.STATUS}), 0, 100).empty


def _event(n: int, kind: EventKind = EventKind.UPDATE, stream: str = "cam") -> LabelEvent:
    now = clock.now()
    return LabelEvent(f"{stream}:t:{n // 10}", kind, stream, "run", 0.5, 0.6, now - 1, None, now)


async def test_synced_means_the_log_holds_everything_published(tmp_path):
    """StoreSubscriber.synced() returns only once every event and clip published before it is in the log."""
    from stream.events import StoreSubscriber
    from stream.hub import Hub

    with EventStore.open(tmp_path) as store:
        hub = Hub(first_seq=store.last_seq)
        sub = StoreSubscriber(hub, store)
        sub.start()
        for n in range(200):
            hub.publish_event(_event(n))
        now = clock.now()
        hub.publish_clip(ClipReady("cam:t:0", "cam", "run", 0.6, now - 2, 2.0, 10, now))
        hub.publish_status(StreamStatus("cam", SourceState.LIVE, "ok", now))
        await sub.synced()  # no await in between: the subscriber's task has not run yet
        rows = store.read(read_page, ReplayQuery(0, hub.seq, ("clip", "event")), 0, 1000)
        await sub.stop()
    assert [seq for seq, _ in rows] == list(range(1, 202))
    assert json.loads(rows[-1][1])["type"] == "clip" and json.loads(rows[0][1])["dropped"] == 0


# --------------------------------------------------------------------- the server
@pytest.mark.slow
async def test_subscriber_misses_nothing_across_a_lost_connection(recognizer, video, tmp_path):
    """A Subscriber whose connection is cut for a while gets every event published meanwhile once, in seq order, none repeated."""
    data = tmp_path / "data"
    async with eventful_server(recognizer, video, data) as srv, Relay(srv.port) as relay:
        got: list[dict] = []
        notices: list[str] = []
        sub = Subscriber(relay.ws_url, kinds=["events"], backoff_initial_s=0.2, backoff_max_s=0.5,
                         on_disconnect=lambda why, delay: notices.append(why))  # fmt: skip

        async def read() -> None:
            async for msg in sub:
                got.append(msg)

        def live_after_replay() -> int:
            kinds = [m["type"] for m in got]
            return kinds[kinds.index("replayed") :].count("event") if "replayed" in kinds else 0

        reader = asyncio.create_task(read())
        try:
            await _until(lambda: sum(m["type"] == "event" for m in got) >= 3)
            relay.cut()
            await events_published(srv.pipeline, 8)  # the stream goes on while this client is away
            await asyncio.sleep(1.0)  # and it retries into a relay that drops it
            relay.cut_off = False
            await _until(lambda: live_after_replay() >= 3)
        finally:
            await sub.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        last = sub.last_seq
    assert len(notices) >= 2, notices  # the cut, and at least one reconnect the relay dropped
    kinds = [m["type"] for m in got]
    assert kinds.count("hello") == 2 and kinds.count("replayed") == 1
    first = got[kinds.index("subscribed")]["seq"]
    second_hello = kinds.index("hello", 1)
    seen_before = [m["seq"] for m in got[:second_hello] if m["type"] == "event"]
    resubscribed = got[kinds.index("subscribed", second_hello)]
    replayed = got[kinds.index("replayed")]
    assert resubscribed["since_seq"] == replayed["since_seq"] == seen_before[-1]
    assert replayed["count"] == kinds[kinds.index("subscribed", second_hello) : kinds.index("replayed")].count("event")
    assert replayed["count"] >= 1 and not replayed["gap"]
    events = [m for m in got if m["type"] == "event"]
    seqs = [m["seq"] for m in events]
    assert seqs == sorted(set(seqs)), "out of order or repeated"
    # Exactly the stored events between the first subscribe and the last one delivered.
    stored = [m for m in logged(data, ("event",)) if first < m["seq"] <= last]
    assert [(m["seq"], m["id"], m["event"]) for m in events] == [(m["seq"], m["id"], m["event"]) for m in stored]
    starts = [m["id"] for m in events if m["event"] == "start"]
    assert len(starts) == len(set(starts))


@pytest.mark.slow
async def test_replay_applies_the_filter_and_includes_clips(recognizer, video, tmp_path):
    """subscribe with since_seq replays only the stream, kind and peak score asked for; clips are replayed like events."""
    data = tmp_path / "data"
    async with eventful_server(recognizer, video, data, streams=("a", "b")) as srv:
        await events_published(srv.pipeline, 16)
        await _until(lambda: {m["stream"] for m in logged(data)} == {"a", "b"})
        b_events = [m for m in logged(data) if m["stream"] == "b"]
        ev = max(b_events, key=lambda m: m["peak_score"])
        floor = sorted(m["peak_score"] for m in b_events)[len(b_events) // 2]
        now = clock.now()
        srv.pipeline.hub.publish_clip(ClipReady(ev["id"], "b", ev["label"], ev["peak_score"], now - 3, 3.0, 1234, now))
        srv.pipeline.hub.publish_clip(ClipReady("a:zz:1", "a", ev["label"], 1.0, now - 3, 3.0, 99, now))
        async with connect(srv.ws_url) as ws:
            await recv_json(ws)
            ask = {"type": "subscribe", "since_seq": 0, "streams": ["b"], "kinds": ["events", "clips"], "min_score": floor}
            await ws.send(json.dumps(ask))
            _, subscribed = await until_type(ws, "subscribed")
            assert subscribed["since_seq"] == 0 and subscribed["seq"] > ev["seq"]
            sent, done = await until_type(ws, "replayed")
        upto = done["seq"]
    assert done == {"type": "replayed", "since_seq": 0, "count": len(sent), "seq": upto, "gap": False, "reason": None}
    everything = [(peak, m) for peak, m in logged_peaks(data) if m["seq"] <= upto]
    want = [m for peak, m in everything if m["stream"] == "b" and peak >= floor]
    assert len(want) < sum(m["stream"] == "b" for _, m in everything)  # min_score left some out
    assert [m["seq"] for m in sent] == [m["seq"] for m in want]
    assert sent == want  # the very messages a live client got (dropped: 0)
    clips = [m for m in sent if m["type"] == "clip"]
    assert len(clips) == 1 and clips[0]["event_id"] == ev["id"] and clips[0]["url"].endswith("/clip.mp4")


@pytest.mark.slow
async def test_live_messages_wait_for_a_long_replay_and_are_not_repeated(recognizer, tmp_path):
    """Events published during a 3000-message replay come after `replayed`, in order, once; the replay stops at its seq."""
    from stream.events.subscriber import log_row

    data = tmp_path / "data"
    with EventStore.open(data) as store:
        for n in range(1, 3001):
            store.log_message(log_row(HubMessage(MessageKind.EVENT, "cam", _event(n), seq=n)))
    cfg = validate_config(test_config())
    store = EventStore.open(data)
    try:
        pipeline = Pipeline(recognizer, cfg, source_options=FAST, store=store)
        assert pipeline.hub.seq == 3000  # numbered on from the log
        async with serving(pipeline, cfg) as srv, connect(srv.ws_url) as ws:
            await recv_json(ws)
            await ws.send(json.dumps({"type": "subscribe", "kinds": ["events"], "since_seq": 0}))
            _, subscribed = await until_type(ws, "subscribed")

            async def publish() -> None:
                for n in range(60):
                    pipeline.hub.publish_event(_event(10_000 + n))
                    await asyncio.sleep(0.002)

            publisher = asyncio.create_task(publish())
            replay, done = await until_type(ws, "replayed", timeout=60)
            live = [await recv_json(ws) for _ in range(60)]
            await publisher
    finally:
        await asyncio.to_thread(store.close)
    assert subscribed["seq"] == done["seq"] == 3000
    assert [m["seq"] for m in replay] == list(range(1, 3001)) and done["count"] == 3000
    assert [m["seq"] for m in live] == list(range(3001, 3061))
    assert [m["id"] for m in live] == [f"cam:t:{(10_000 + n) // 10}" for n in range(60)]


@pytest.mark.slow
async def test_bad_since_seq_newer_seq_and_no_store(recognizer, video, tmp_path):
    """A bad since_seq is an error and the connection stays; one newer than the server's is a gap; no store is a gap."""
    async with eventful_server(recognizer, video, tmp_path / "data") as srv, connect(srv.ws_url) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"type": "subscribe", "kinds": ["events"], "since_seq": -5}))
        _, err = await until_type(ws, "error")
        assert err["code"] == "bad_field" and "since_seq" in err["message"]
        await ws.send(json.dumps({"type": "subscribe", "kinds": ["events"], "since_seq": 10**15}))
        _, done = await until_type(ws, "replayed")
        assert done["gap"] and done["count"] == 0 and "newer than this server" in done["reason"]
        _, live = await until_type(ws, "event")  # and live events go on
        assert live["seq"] > done["seq"]
    cfg = validate_config(test_config([{"id": "cam", "url": str(video)}], EVENTFUL))
    async with serving(Pipeline(recognizer, cfg, source_options=FAST), cfg) as srv, connect(srv.ws_url) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"type": "subscribe", "kinds": ["events"], "since_seq": 3}))
        _, done = await until_type(ws, "replayed")
        assert done["gap"] and "no event history" in done["reason"]
        await ws.send('{"type": "ping"}')
        await until_type(ws, "pong")


def test_replay_says_gap_when_the_log_was_pruned(tmp_path):
    """Log rows deleted after since_seq (retention) make the replay say gap: true."""
    from stream.events.replay import pruned_seq

    with EventStore.open(tmp_path) as store:
        store.write_event(("cam:x:5", "cam", "run", 1.0, 2.0, 0.5, 0.8, 1.5, "score_dropped", 5, 2.0))
        store.log_message(_log(5, "cam", "run", 0.8))  # the log row of event cam:x:5
        store.write_event(("cam:x:7", "cam", "run", 1.0, 2.0, 0.5, 0.8, 1.5, "score_dropped", 7, 2.0))
        store.log_message(_log(7, "cam", "run", 0.8))
        store.flush().result(10)
        assert store.read(pruned_seq) == 0
        assert store.delete_events(("cam:x:7",)).result(10) == ("cam:x:7",)
        assert store.read(pruned_seq) == 7
        assert store.delete_event("cam:x:5").result(10) is True
        assert store.read(pruned_seq) == 7, "the high-water mark never goes down"


@pytest.mark.slow
def test_cli_resumes_across_a_server_restart(tmp_path, tiny_model_dir, video):
    """`python -m stream subscribe` across a restart prints every stored event once (the old run's ends replayed), seqs increasing."""
    sources = [{"id": "cam", "url": str(video)}]
    first = start_server(tmp_path, tiny_model_dir, sources=sources, config=EVENTFUL)
    cmd = [sys.executable, "-m", "stream", "subscribe", first.ws_url, "--kind", "events"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = None
    try:
        lines = Lines(proc.stdout)
        assert len(lines.wait_for(4, 40)) >= 4, "no events from the first run"
        first.stop()  # its subscribers are closed before the pipeline ends the open events (server_stopped)
        second = start_server(tmp_path, tiny_model_dir, sources=sources, config=EVENTFUL, port=first.port)
        count = len(lines.lines)
        lines.wait_for(count + 4, 40)
        time.sleep(0.5)
        stored = httpx.get(f"{second.url}/api/events", params={"limit": 1000}, timeout=10).json()["events"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        first.stop()
        if second is not None:
            second.stop()
    msgs = [json.loads(line) for line in lines.lines]
    seqs = [m["seq"] for m in msgs]
    assert seqs == sorted(set(seqs)), "out of order or repeated"
    assert "replayed" in err and "Traceback" not in err
    # Every occurrence of the first run that the subscriber saw start was seen to end, exactly once.
    ended_old = {e["id"]: e for e in stored if e["end_reason"] == "server_stopped"}
    assert ended_old, "the first run left no event for its stop to end"
    ends = [m for m in msgs if m["event"] == "end"]
    for ev_id in {m["id"] for m in msgs if m["event"] == "start"} & set(ended_old):
        assert [m["id"] for m in ends].count(ev_id) == 1, ev_id
    assert [m["seq"] for m in msgs if m["id"] in ended_old and m["event"] == "end"]  # replayed, not seen live


async def _until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
