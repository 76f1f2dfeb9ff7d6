"""The event store: schema and migrations, damaged files, one row per occurrence, queries, a full queue, crash recovery."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading

import numpy as np
import pytest

from stream.clock import to_wall
from stream.config import LabelConfig
from stream.events import EventQuery, EventStore, StoreError, StoredStream, StoreSubscriber, StoreUnreadable, check_location
from stream.events.schema import SCHEMA_VERSION
from stream.hub import Hub
from stream.labels import LabelTracker
from stream.types import Prediction

LABELS = ("run", "jump", "sit")


def row(id_: str, start: float, *, stream: str = "cam", label: str = "run", end: float | None = None, peak: float = 0.8, seq: int = 1):
    reason = "score_dropped" if end is not None else None
    return (id_, stream, label, start, end, 0.5, peak, start, reason, seq, end if end is not None else start)


def flushed(store: EventStore) -> None:
    store.flush().result(timeout=10)


@pytest.fixture
def store(tmp_path):
    s = EventStore.open(tmp_path / "data")
    yield s
    s.close()


def pred(t: float, probs) -> Prediction:
    return Prediction("cam", t - 2, t, np.asarray(probs, dtype=np.float32), (), 0.01, t)


# --------------------------------------------------------------------- schema and files
def test_new_database_has_the_schema_and_private_permissions(tmp_path):
    """A first open creates data_dir (0700) and events.db (0600) at the newest schema version, WAL mode."""
    data = tmp_path / "new" / "data"
    with EventStore.open(data) as s:
        assert s.last_seq == 0 and s.recovered == 0
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "events.db").stat().st_mode) == 0o600
    conn = sqlite3.connect(data / "events.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"events", "streams", "meta"} <= tables
    conn.close()


def test_migrates_from_an_empty_file_and_from_version_0(tmp_path):
    """A zero-byte events.db and a version-0 database with other tables are both brought to the newest version."""
    empty = tmp_path / "a"
    empty.mkdir()
    (empty / "events.db").write_bytes(b"")
    old = tmp_path / "b"
    old.mkdir()
    conn = sqlite3.connect(old / "events.db")
    conn.execute("CREATE TABLE notes (x)")
    conn.execute("INSERT INTO notes VALUES (1)")
    conn.commit()
    conn.close()
    for folder in (empty, old):
        with EventStore.open(folder) as s:
            s.write_event(row("e1", 100.0))
            flushed(s)
            assert s.get("e1").start == 100.0
        conn = sqlite3.connect(folder / "events.db")
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.close()
    conn = sqlite3.connect(old / "events.db")
    assert conn.execute("SELECT x FROM notes").fetchall() == [(1,)]  # what was there is kept
    conn.close()


def test_a_newer_schema_is_refused(tmp_path):
    """A database from a newer version is a StoreError naming both versions, not a silent downgrade."""
    tmp_path.joinpath("events.db").touch()
    conn = sqlite3.connect(tmp_path / "events.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this server knows"):
        EventStore.open(tmp_path)


@pytest.mark.parametrize("damage", ["random", "truncated"])
def test_a_damaged_file_says_move_it_aside(tmp_path, damage):
    """Random bytes or a truncated database give StoreUnreadable whose one line says to move the file aside."""
    path = tmp_path / "events.db"
    if damage == "random":
        path.write_bytes(os.urandom(64 * 1024))
    else:
        with EventStore.open(tmp_path) as s:
            for i in range(3000):
                s.write_event(row(f"e{i:05d}", float(i), label="x" * 200))
        for extra in ("events.db-wal", "events.db-shm"):
            (tmp_path / extra).unlink(missing_ok=True)
        size = path.stat().st_size
        assert size > 100_000
        with open(path, "r+b") as f:
            f.truncate(size // 2)
    with pytest.raises(StoreUnreadable) as info:
        EventStore.open(tmp_path)
    msg = str(info.value)
    assert "\n" not in msg and "damaged or not a database" in msg
    assert f"mv {path} {path}.bad" in msg and "a new one is created" in msg


def test_a_data_dir_that_cannot_be_made_is_one_clear_error(tmp_path):
    """A data_dir below a plain file is a StoreError naming server.data_dir (no traceback material)."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match=r"cannot create the data folder .*server\.data_dir"):
        EventStore.open(blocker / "data")


def test_check_location_creates_nothing(tmp_path):
    """check_location says whether events.db exists and refuses an unusable place, without creating anything."""
    assert check_location(tmp_path / "a" / "b") is False and not (tmp_path / "a").exists()
    with EventStore.open(tmp_path / "d"):
        pass
    assert check_location(tmp_path / "d") is True
    (tmp_path / "f").write_text("x")
    with pytest.raises(StoreError, match="is not a folder"):
        check_location(tmp_path / "f" / "data")


# --------------------------------------------------------------------- rows
async def test_an_occurrence_is_one_row_updated_in_place(store):
    """Start, updates and end of one occurrence (through the hub and the store's subscriber) are one row, with peak_ts and the last seq."""
    hub = Hub(first_seq=store.last_seq)
    sub = StoreSubscriber(hub, store)
    sub.start()
    tracker = LabelTracker("cam", LABELS, LabelConfig(enter=0.5, exit=0.3, smoothing=0, update_interval_s=0), 3)
    for t, p in ((10.0, [0.6, 0.2, 0.2]), (11.0, [0.9, 0.05, 0.05]), (12.0, [0.7, 0.2, 0.1]), (13.0, [0.1, 0.1, 0.8])):
        for ev in tracker.update(pred(t, p))[1]:
            hub.publish_event(ev)
    await sub.stop()
    flushed(store)
    page = store.query(EventQuery(label="run"))
    assert len(page.events) == 1
    ev = page.events[0]
    assert ev.start == pytest.approx(to_wall(10.0)) and ev.end == pytest.approx(to_wall(13.0))
    assert ev.peak_score == pytest.approx(0.9) and ev.peak_ts == pytest.approx(to_wall(11.0))
    assert ev.end_reason == "score_dropped" and not ev.in_progress
    sit = store.query(EventQuery(label="sit")).events[0]
    assert sit.in_progress and sit.end_reason is None
    assert ev.seq == hub.seq - 1 and sit.seq == hub.seq  # the run END came just before the sit START


def test_tracker_ends_say_why():
    """A score drop ends with score_dropped; close() ends with the tracker's close_reason (stream_lost unless the pipeline set one)."""
    cfg = LabelConfig(enter=0.5, exit=0.3, smoothing=0, update_interval_s=0)
    tracker = LabelTracker("cam", LABELS, cfg, 3)
    tracker.update(pred(1.0, [0.9, 0.9, 0.1]))
    ends = [e for e in tracker.update(pred(2.0, [0.1, 0.95, 0.1]))[1] if e.kind.value == "end"]
    assert [(e.label, e.end_reason, e.peak_ts) for e in ends] == [("run", "score_dropped", 1.0)]
    (lost,) = tracker.close(3.0)
    assert lost.label == "jump" and lost.end_reason == "stream_lost" and lost.peak_ts == 2.0
    tracker.update(pred(4.0, [0.9, 0.1, 0.1]))
    tracker.close_reason = "server_stopped"
    assert [e.end_reason for e in tracker.close(5.0)] == ["server_stopped"]


async def test_seq_goes_on_across_restarts(tmp_path):
    """The hub of the next start begins after the highest seq stored, statuses included."""
    with EventStore.open(tmp_path) as s:
        s.write_event(row("a", 1.0, seq=7))
        s.note_seq(42)
    with EventStore.open(tmp_path) as s:
        assert s.last_seq == 42
        assert Hub(first_seq=s.last_seq).seq == 42


def test_crash_recovery_closes_open_rows_at_their_last_time(tmp_path):
    """Rows left open by the last run are closed with server_stopped at the ts of their last message."""
    with EventStore.open(tmp_path) as s:
        s.write_event(row("open", 100.0))
        s.write_event(("open", "cam", "run", 100.0, None, 0.6, 0.9, 101.0, None, 3, 104.5))  # an update at 104.5
        s.write_event(row("done", 50.0, end=60.0))
    with EventStore.open(tmp_path) as s:
        assert s.recovered == 1
        ev = s.get("open")
        assert ev.end == 104.5 and ev.end_reason == "server_stopped" and ev.peak_ts == 101.0
        assert s.get("done").end_reason == "score_dropped"


def test_streams_are_stored_and_removed(store):
    """put_stream / delete_stream round-trip with the real URL, options and labels; delete says whether a row went."""
    cam = StoredStream("door", "rtsp://user:secret@127.0.0.1:9/x", 5.0, False, {"enter": 0.6})
    store.put_stream(cam).result(10)
    store.put_stream(StoredStream("usb", 0)).result(10)
    assert store.streams() == [cam, StoredStream("usb", 0)]
    assert "secret" not in repr(cam)
    assert store.delete_stream("door").result(10) is True
    assert store.delete_stream("door").result(10) is False
    assert [s.id for s in store.streams()] == ["usb"]


# --------------------------------------------------------------------- queries
def test_filters_newest_first_and_keyset_pages(store):
    """Filters by stream, label, time, score and state; newest first by start then id; cursors page through without overlap."""
    for i in range(25):
        store.write_event(row(f"e{i:02d}", 1000.0 + i // 2, stream="a" if i % 2 else "b", label="run" if i % 3 else "jump", end=2000.0 if i < 20 else None, peak=i / 25))
    flushed(store)
    everything = store.query(EventQuery(limit=1000)).events
    assert [e.id for e in everything] == sorted((f"e{i:02d}" for i in range(25)), key=lambda x: (1000 + int(x[1:]) // 2, x), reverse=True)
    seen, cursor = [], None
    while True:
        page = store.query(EventQuery(limit=4, cursor=cursor))
        seen += [e.id for e in page.events]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [e.id for e in everything]
    assert {e.stream for e in store.query(EventQuery(stream="a")).events} == {"a"}
    assert {e.label for e in store.query(EventQuery(label="jump")).events} == {"jump"}
    window = store.query(EventQuery(after=1003.0, before=1005.0)).events
    assert {e.start for e in window} == {1003.0, 1004.0}
    assert all(e.peak_score >= 0.5 for e in store.query(EventQuery(min_score=0.5)).events)
    assert {e.id for e in store.query(EventQuery(in_progress=True)).events} == {f"e{i}" for i in range(20, 25)}
    assert len(store.query(EventQuery(in_progress=False, limit=1000)).events) == 20
    assert store.query(EventQuery(stream="nobody")).next_cursor is None


def test_query_bounds_and_bad_cursors(store):
    """limit outside 1..1000, after later than before and a forged cursor are ValueErrors with a clear message."""
    for bad in (0, 1001):
        with pytest.raises(ValueError, match="limit must be between 1 and 1000"):
            EventQuery(limit=bad)
    with pytest.raises(ValueError, match="must not be later than before"):
        EventQuery(after=10, before=5)
    for cursor in ("nonsense", "W10", "WzEsMl0"):  # not base64 json, [], [1, 2]
        with pytest.raises(ValueError, match="next_cursor"):
            store.query(EventQuery(cursor=cursor))


# --------------------------------------------------------------------- the writer
def test_a_full_queue_is_counted_and_logged_once_per_burst(tmp_path, caplog):
    """With the writer stuck behind a lock, refused writes are counted in stats and logged once, and writing resumes."""
    s = EventStore.open(tmp_path, queue_size=5, busy_timeout_s=30)
    blocker = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the writer's next transaction waits for this
    try:
        s.write_event(row("first", 1.0))
        deadline = threading.Event()
        while s.stats().queue_depth and not deadline.wait(0.01):
            pass  # the writer took it and is now waiting for the lock
        with caplog.at_level(logging.ERROR, logger="stream.events.store"):
            for i in range(5 + 20):
                s.write_event(row(f"e{i}", 2.0 + i))
        assert s.stats().queue_full == 20 and s.stats().queue_depth == 5
        assert sum("write queue is full" in r.getMessage() for r in caplog.records) == 1
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    while s.stats().queue_depth:
        threading.Event().wait(0.01)
    flushed(s)
    assert s.get("e4") is not None and s.get("e5") is None
    assert s.stats().written >= 6
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.write_event(row("late", 9.0))


async def test_a_subscription_overflow_is_an_error_counted_and_logged(store, caplog):
    """If the store's hub subscription ever overflows, the lost messages are counted in stats and logged as an error."""
    hub = Hub()
    sub = StoreSubscriber(hub, store, backlog=2)  # not started: nothing reads while we publish
    tracker = LabelTracker("cam", LABELS, LabelConfig(enter=0.5, exit=0.3, smoothing=0, update_interval_s=0), 3)
    for t in range(5):
        for ev in tracker.update(pred(float(t), [0.9, 0.05, 0.05]))[1]:
            hub.publish_event(ev)
    with caplog.at_level(logging.ERROR, logger="stream.events.subscriber"):
        await sub.stop()
    assert sub.dropped == 3 and store.stats().subscription_dropped == 3
    assert any("lost 3 messages" in r.getMessage() for r in caplog.records)


def test_seqs_jump_after_a_run_that_did_not_stop_cleanly(tmp_path):
    """A crash may lose the last batch, whose seqs subscribers already saw: the next run numbers on well above them."""
    import shutil

    from stream.events.store import SEQ_GAP_AFTER_CRASH

    live, crashed = tmp_path / "live", tmp_path / "crashed"
    store = EventStore.open(live)
    try:
        store.write_event(("cam:x:1", "cam", "run", 1.0, None, 0.5, 0.5, 1.0, None, 7, 1.0))
        store.flush().result(10)
        # The files as a kill -9 would leave them now: database and WAL, no clean stop written.
        crashed.mkdir()
        for name in os.listdir(live):
            shutil.copy(live / name, crashed / name)
    finally:
        store.close()
    with EventStore.open(live) as clean:
        assert clean.last_seq == 7, "a clean stop: seqs go on from the highest stored"
    with EventStore.open(crashed) as after_crash:
        assert after_crash.last_seq == 7 + SEQ_GAP_AFTER_CRASH
        assert after_crash.recovered == 1
