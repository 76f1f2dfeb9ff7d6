"""The event store: one SQLite file (WAL) under ``server.data_dir``, one writer thread, readers beside it.

Writes never block the event loop or the pipeline: callers put an operation
on a bounded queue and go on; the one writer thread owns the write
connection and commits what it finds in the queue in one transaction. A full
queue refuses the write, counts it and logs once per burst (never silent).
Readers use their own connections on a small executor of their own, so
reads neither wait for the writer (WAL) nor occupy the default thread pool
that stopping the server relies on.

Crash safety comes from SQLite: WAL and a transaction per batch mean a
``kill -9`` loses at most the batch in flight, never the file. At open, rows
a crash left open are closed as ``server_stopped`` at their last known time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from stream.events import queries
from stream.events.files import MediaPaths
from stream.events.schema import migrate
from stream.events.types import EndReason, EventPage, EventQuery, StoreError, StoreStats, StoreUnreadable, StoredEvent, StoredStream

__all__ = ["DB_NAME", "EventStore", "check_location"]

log = logging.getLogger(__name__)

DB_NAME = "events.db"
_T = TypeVar("_T")
_STOP = ("stop", (), None)
_BATCH = 500  # most operations per transaction: bounds how long one commit holds the lock
# After a run that did not stop cleanly (kill -9, power cut), seqs go on this far
# above the highest one stored: the messages of the batch lost in the crash were
# already sent to subscribers with their seqs, and a seq must never mean two
# messages. It exceeds every message that can be in flight unstored (the writer's
# queue plus the store subscription's backlog).
SEQ_GAP_AFTER_CRASH = 1_000_000

_UPSERT = """INSERT INTO events (id, stream, label, start_ts, end_ts, score, peak_score, peak_ts, end_reason, seq, updated)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET end_ts = excluded.end_ts, score = excluded.score, peak_score = excluded.peak_score,
    peak_ts = excluded.peak_ts, end_reason = excluded.end_reason, seq = excluded.seq, updated = excluded.updated"""


_LOG = "INSERT OR REPLACE INTO event_log (seq, event_id, stream, label, peak_score, kind, body, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


def _prune_log(conn: sqlite3.Connection, event_id: str) -> None:
    """Delete an event's replay log, remembering the highest seq removed: a replay from before it has a gap."""
    (top,) = conn.execute("SELECT max(seq) FROM event_log WHERE event_id = ?", (event_id,)).fetchone()
    if top is not None:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('log_pruned_seq', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
            (top,),
        )
    conn.execute("DELETE FROM event_log WHERE event_id = ?", (event_id,))


def _sqlite_error(path: str, exc: sqlite3.Error) -> StoreError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StoreError(f"the event database {path} is in use by another process (another server on the same data_dir?)")
    if isinstance(exc, sqlite3.OperationalError) and "unable to open" in text:
        return StoreError(f"cannot open the event database {path}: check server.data_dir and its permissions")
    return StoreUnreadable(path, text)


def check_location(data_dir: str | Path) -> bool:
    """Whether ``data_dir/events.db`` exists; StoreError now if the folder could not be created later.

    Creates nothing: the server calls it before loading the model, so that a
    start that fails (a wrong --model) leaves no empty data folder behind,
    while an unwritable place is still refused in a moment.
    """
    data_dir = Path(data_dir)
    if (data_dir / DB_NAME).exists():
        return True
    probe = data_dir
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and (not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK)):
        what = "is not a folder" if not probe.is_dir() else "is not writable by this user"
        raise StoreError(f"cannot create the data folder {data_dir} (server.data_dir): {probe} {what}")
    return False


def _prepare_dir(data_dir: Path) -> Path:
    try:
        # 0o700: the database holds camera URLs with their passwords.
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the data folder {data_dir} (server.data_dir): {exc.strerror or exc}") from None
    if not data_dir.is_dir():
        raise StoreError(f"the data folder {data_dir} (server.data_dir) is not a folder")
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise StoreError(f"the data folder {data_dir} (server.data_dir) is not writable by this user")
    path = data_dir / DB_NAME
    try:
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    except OSError as exc:
        raise StoreError(f"cannot write the event database {path}: {exc.strerror or exc}") from None
    return path


class EventStore:
    """Open with :meth:`open`; :meth:`close` drains the writer (bounded) and closes. Thread-safe."""

    def __init__(self, path: Path, conn: sqlite3.Connection, *, queue_size: int, recovered: int, last_seq: int) -> None:
        self.path = path
        self.media = MediaPaths(path.parent)  # the events' clips and snapshots, beside the database
        self.recovered = recovered  # open rows closed as server_stopped at this open
        self.last_seq = last_seq  # highest hub seq stored before this start
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._queue_size = queue_size
        self._closed = False
        self._written = 0
        self._queue_full = 0
        self._full_in_burst = 0
        self._write_errors = 0
        self._subscription_dropped = 0
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._read_lock = threading.Lock()
        self._readers = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="event-store-read")
        self._writer = threading.Thread(target=self._run, args=(conn,), name="event-store-writer", daemon=True)
        self._writer.start()

    # ------------------------------------------------------------ opening
    @classmethod
    def open(cls, data_dir: str | Path, *, queue_size: int = 10_000, busy_timeout_s: float = 5.0) -> EventStore:
        """Open (or create) ``data_dir/events.db``; StoreUnreadable if damaged, StoreError for other trouble."""
        path = _prepare_dir(Path(data_dir))
        shown = str(path)
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s)
        except sqlite3.Error as exc:
            raise _sqlite_error(shown, exc) from None
        try:
            os.chmod(path, 0o600)
            (check,) = conn.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise StoreUnreadable(shown, f"integrity check: {check}")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"the event database {shown} cannot use WAL mode (got {mode}); put data_dir on a local disk")
            # NORMAL with WAL: a power cut may lose the last commits, never the database.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            migrate(conn, shown)
            recovered = conn.execute(
                "UPDATE events SET end_ts = updated, end_reason = ? WHERE end_ts IS NULL", (EndReason.SERVER_STOPPED.value,)
            ).rowcount
            last_seq = queries.last_seq(conn)
            clean = conn.execute("SELECT value FROM meta WHERE key = 'clean_stop'").fetchone()
            if clean is not None and not int(clean[0]):
                last_seq += SEQ_GAP_AFTER_CRASH
                log.warning("event store: the last run did not stop cleanly; seqs go on from %s", last_seq)
            # Cleared now, set again by close(): still 0 at the next open means a crash.
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('clean_stop', 0)")
        except sqlite3.Error as exc:
            conn.close()
            raise _sqlite_error(shown, exc) from None
        except BaseException:
            conn.close()
            raise
        if recovered:
            log.warning("event store: %s events left open by the last run were closed as server_stopped", recovered)
        return cls(path, conn, queue_size=queue_size, recovered=recovered, last_seq=last_seq)

    # ------------------------------------------------------------ writes (any thread, never block)
    def _submit(self, kind: str, args: tuple, want_result: bool = False) -> concurrent.futures.Future | None:
        fut: concurrent.futures.Future | None = concurrent.futures.Future() if want_result else None
        if self._closed:
            err = StoreError("the event store is closed")
            if fut is None:
                raise err
            fut.set_exception(err)
            return fut
        try:
            self._queue.put_nowait((kind, args, fut))
        except queue.Full:
            self._queue_full += 1
            self._full_in_burst += 1
            if self._full_in_burst == 1:  # once per burst, not once per write
                log.error(
                    "event store: the write queue is full (%s operations); writes are refused and counted "
                    "(event_store_queue_full in /metrics) until the disk keeps up",
                    self._queue_size,
                )
            if fut is not None:
                fut.set_exception(StoreError("the event store is overloaded; try again"))
            return fut
        if self._full_in_burst:
            log.warning("event store: writing again; %s writes were refused while the queue was full", self._full_in_burst)
            self._full_in_burst = 0
        return fut

    def write_event(self, row: tuple) -> None:
        """Insert or update one occurrence: (id, stream, label, start, end, score, peak, peak_ts, end_reason, seq, ts)."""
        self._submit("event", row)

    def note_seq(self, seq: int) -> None:
        """Remember a hub seq that changed no row (a status), so seqs stay monotonic across restarts."""
        self._submit("seq", (seq,))

    def log_message(self, row: tuple) -> None:
        """Append one event or clip message to the replay log: (seq, event_id, stream, label, peak_score, kind, body, ts)."""
        self._submit("log", row)

    def mark_clip(self, event_id: str, duration_s: float, size_bytes: int) -> concurrent.futures.Future:
        """Record that an event's clip is complete; resolves to False if the event is gone (deleted meanwhile)."""
        return self._submit("mark_clip", (duration_s, size_bytes, event_id), want_result=True)

    def mark_snapshot(self, event_id: str, size_bytes: int) -> concurrent.futures.Future:
        """Record that an event has a snapshot (or a newer one); resolves to False if the event is gone."""
        return self._submit("mark_snapshot", (size_bytes, event_id), want_result=True)

    def delete_events(self, event_ids: tuple[str, ...]) -> concurrent.futures.Future:
        """Delete finished events and their log (retention); resolves to the ids deleted. Files are the caller's."""
        return self._submit("delete_events", (tuple(event_ids),), want_result=True)

    def put_stream(self, stream: StoredStream) -> concurrent.futures.Future:
        labels = json.dumps(stream.labels) if stream.labels is not None else None
        record = json.dumps(stream.record) if stream.record is not None else None
        args = (stream.id, json.dumps(stream.url), stream.max_fps, int(stream.loop), labels, record, time.time())
        return self._submit("put_stream", args, want_result=True)

    def delete_stream(self, stream_id: str) -> concurrent.futures.Future:
        return self._submit("delete_stream", (stream_id,), want_result=True)

    def delete_event(self, event_id: str) -> concurrent.futures.Future:
        """Resolves to True if a finished event was deleted (running events are kept)."""
        return self._submit("delete_event", (event_id,), want_result=True)

    def flush(self) -> concurrent.futures.Future:
        """Resolves once everything queued before it is committed."""
        return self._submit("sync", (), want_result=True)

    def report_subscription_drop(self, count: int) -> None:
        self._subscription_dropped += count

    # ------------------------------------------------------------ the writer thread
    def _run(self, conn: sqlite3.Connection) -> None:
        max_seq = self.last_seq
        try:
            while True:
                batch = [self._queue.get()]
                while len(batch) < _BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                max_seq = self._write(conn, batch, max_seq)
                if any(op is _STOP for op in batch):
                    break
        finally:
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.warning("event store: final checkpoint failed: %s", exc)
            conn.close()

    def _write(self, conn: sqlite3.Connection, batch: list, max_seq: int) -> int:
        results: list[tuple[concurrent.futures.Future | None, Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for kind, args, fut in batch:
                try:
                    value = self._apply(conn, kind, args)
                    if kind == "event":
                        max_seq = max(max_seq, args[9])
                    elif kind in ("seq", "log"):
                        max_seq = max(max_seq, args[0])
                    results.append((fut, value, None))
                except sqlite3.Error as exc:
                    self._write_errors += 1
                    log.error("event store: a %s write failed: %s", kind, exc)
                    results.append((fut, None, StoreError(f"the event store could not write: {exc}")))
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?)", (max_seq,))
            conn.execute("COMMIT")
            self._written += len(batch)
        except sqlite3.Error as exc:
            self._write_errors += len(batch)
            log.error("event store: a transaction of %s writes failed: %s", len(batch), exc)
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            results = [(fut, None, StoreError(f"the event store could not write: {exc}")) for _, _, fut in batch]
        for fut, value, error in results:
            if fut is not None and not fut.done():
                fut.set_exception(error) if error is not None else fut.set_result(value)
        return max_seq

    @staticmethod
    def _apply(conn: sqlite3.Connection, kind: str, args: tuple) -> Any:
        if kind == "event":
            conn.execute(_UPSERT, args)
        elif kind == "put_stream":
            conn.execute("INSERT OR REPLACE INTO streams (id, url, max_fps, loop, labels, record, added) VALUES (?, ?, ?, ?, ?, ?, ?)", args)
        elif kind == "delete_stream":
            return conn.execute("DELETE FROM streams WHERE id = ?", args).rowcount > 0
        elif kind == "delete_event":
            deleted = conn.execute("DELETE FROM events WHERE id = ? AND end_ts IS NOT NULL", args).rowcount > 0
            if deleted:
                _prune_log(conn, args[0])
            return deleted
        elif kind == "log":
            conn.execute(_LOG, args)
        elif kind == "mark_clip":
            return conn.execute("UPDATE events SET has_clip = 1, clip_duration = ?, clip_bytes = ? WHERE id = ?", args).rowcount > 0
        elif kind == "mark_snapshot":
            return conn.execute("UPDATE events SET has_snapshot = 1, snapshot_bytes = ? WHERE id = ?", args).rowcount > 0
        elif kind == "delete_events":
            deleted = []
            for event_id in args[0]:
                if conn.execute("DELETE FROM events WHERE id = ? AND end_ts IS NOT NULL", (event_id,)).rowcount:
                    _prune_log(conn, event_id)
                    deleted.append(event_id)
            return tuple(deleted)
        elif kind == "stop":
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('clean_stop', 1)")
        return None  # "seq", "sync": nothing to write but the seq

    # ------------------------------------------------------------ reads
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreError("the event store is closed")
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._read_lock:
                self._read_conns.append(conn)
        return conn

    def read(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(connection, *args)`` on this thread's read connection."""
        try:
            return fn(self._conn(), *args)
        except sqlite3.Error as exc:
            raise StoreError(f"the event store could not read: {exc}") from None

    async def aread(self, fn: Callable[..., _T], *args: Any) -> _T:
        """:meth:`read` on the store's own reader threads (not the default pool)."""
        return await asyncio.get_running_loop().run_in_executor(self._readers, self.read, fn, *args)

    def query(self, q: EventQuery) -> EventPage:
        return self.read(queries.query_events, q)

    def get(self, event_id: str) -> StoredEvent | None:
        return self.read(queries.get_event, event_id)

    def streams(self) -> list[StoredStream]:
        return self.read(queries.list_streams)

    # ------------------------------------------------------------ figures and closing
    def stats(self) -> StoreStats:
        return StoreStats(
            written=self._written,
            queue_full=self._queue_full,
            write_errors=self._write_errors,
            queue_depth=self._queue.qsize(),
            subscription_dropped=self._subscription_dropped,
        )

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, timeout: float = 10.0) -> None:
        """Let the writer commit what is queued (at most ``timeout`` s), then close everything. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.error("event store: the write queue did not drain in %s s; %s writes are lost", timeout, self._queue.qsize())
        self._writer.join(timeout)
        if self._writer.is_alive():
            log.error("event store: the writer did not finish in %s s; its last writes may be lost", timeout)
        self._readers.shutdown(wait=True, cancel_futures=True)
        with self._read_lock:
            for conn in self._read_conns:
                conn.close()
            self._read_conns.clear()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
