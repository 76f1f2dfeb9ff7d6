"""The read side of the event store: plain functions over a read connection.

WAL lets these run beside the writer; each caller brings its own connection.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from typing import Any

from stream.events.types import EventPage, EventQuery, StoredEvent, StoredStream

__all__ = ["decode_cursor", "encode_cursor", "get_event", "last_seq", "list_streams", "query_events"]

_COLUMNS = "id, stream, label, start_ts, end_ts, score, peak_score, peak_ts, has_clip, has_snapshot, end_reason, seq, clip_duration"


def _event(row: tuple) -> StoredEvent:
    id_, stream, label, start, end, score, peak, peak_ts, clip, snap, reason, seq, duration = row
    return StoredEvent(id_, stream, label, start, end, score, peak, peak_ts, bool(clip), bool(snap), reason, seq, duration)


def encode_cursor(ev: StoredEvent) -> str:
    """Opaque to clients: the (start, id) of the last row of a page, for keyset paging."""
    raw = json.dumps([ev.start, ev.id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """(start, id) from :func:`encode_cursor`; ValueError for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        start, id_ = json.loads(raw)
        if isinstance(start, bool) or not isinstance(start, (int, float)) or not isinstance(id_, str):
            raise TypeError
        return float(start), id_
    except (ValueError, TypeError, UnicodeDecodeError):
        raise ValueError("cursor is not one this server gave out; pass a page's next_cursor unchanged") from None


def query_events(conn: sqlite3.Connection, q: EventQuery) -> EventPage:
    """Newest first (start, then id, both descending), at most ``q.limit``, with the next page's cursor."""
    where: list[str] = []
    args: list[Any] = []
    for column, value in (("stream", q.stream), ("label", q.label)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if q.after is not None:
        where.append("start_ts >= ?")
        args.append(q.after)
    if q.before is not None:
        where.append("start_ts < ?")
        args.append(q.before)
    if q.min_score is not None:
        where.append("peak_score >= ?")
        args.append(q.min_score)
    if q.in_progress is not None:
        where.append("end_ts IS NULL" if q.in_progress else "end_ts IS NOT NULL")
    if q.cursor is not None:
        start, id_ = decode_cursor(q.cursor)
        where.append("(start_ts < ? OR (start_ts = ? AND id < ?))")
        args += [start, start, id_]
    sql = f"SELECT {_COLUMNS} FROM events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY start_ts DESC, id DESC LIMIT ?"
    rows = conn.execute(sql, (*args, q.limit + 1)).fetchall()
    events = tuple(_event(r) for r in rows[: q.limit])
    more = len(rows) > q.limit
    return EventPage(events, encode_cursor(events[-1]) if more else None)


def get_event(conn: sqlite3.Connection, event_id: str) -> StoredEvent | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM events WHERE id = ?", (event_id,)).fetchone()
    return None if row is None else _event(row)


def list_streams(conn: sqlite3.Connection) -> list[StoredStream]:
    """Stored API streams in the order they were added."""
    rows = conn.execute("SELECT id, url, max_fps, loop, labels, record FROM streams ORDER BY added, id").fetchall()
    return [
        StoredStream(id_, json.loads(url), max_fps, bool(loop), json.loads(labels) if labels else None, json.loads(record) if record else None)
        for id_, url, max_fps, loop, labels, record in rows
    ]


def last_seq(conn: sqlite3.Connection) -> int:
    """The highest hub seq ever written (0 for a new database)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
    (top,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
    return max(int(row[0]) if row else 0, int(top))
