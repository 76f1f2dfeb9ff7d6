"""The event database's schema: a version in ``PRAGMA user_version`` and the steps to reach the newest.

Each step moves the schema one version up; :func:`migrate` applies the
missing ones in order inside one transaction, so a crash mid-migration leaves
the old version intact. Add a step at the end, never edit a shipped one.
"""

from __future__ import annotations

import sqlite3

from stream.events.types import StoreError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]

# Times are Unix seconds (REAL). `updated` is the `ts` of the last message
# that changed the row: what crash recovery takes as an open event's end.
_V1 = (
    """CREATE TABLE events (
        id TEXT PRIMARY KEY,
        stream TEXT NOT NULL,
        label TEXT NOT NULL,
        start_ts REAL NOT NULL,
        end_ts REAL,
        score REAL NOT NULL,
        peak_score REAL NOT NULL,
        peak_ts REAL,
        has_clip INTEGER NOT NULL DEFAULT 0,
        has_snapshot INTEGER NOT NULL DEFAULT 0,
        end_reason TEXT,
        seq INTEGER NOT NULL DEFAULT 0,
        updated REAL NOT NULL
    )""",
    # Newest first, by stream, by label: the keyset pages of GET /api/events.
    "CREATE INDEX events_by_start ON events (start_ts DESC, id DESC)",
    "CREATE INDEX events_by_stream ON events (stream, start_ts DESC, id DESC)",
    "CREATE INDEX events_by_label ON events (label, start_ts DESC, id DESC)",
    # Few rows are open: crash recovery and in_progress=true read only those.
    "CREATE INDEX events_open ON events (id) WHERE end_ts IS NULL",
    "CREATE INDEX events_by_seq ON events (seq)",
    """CREATE TABLE streams (
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        max_fps REAL,
        loop INTEGER NOT NULL,
        labels TEXT,
        added REAL NOT NULL
    )""",
    # Key/value facts, e.g. last_seq: the highest hub seq written, kept across restarts.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value)",
)

# v2: what recording and resume need.
_V2 = (
    # Sizes of an event's files, so retention can sum them without touching the disk.
    "ALTER TABLE events ADD COLUMN clip_duration REAL",
    "ALTER TABLE events ADD COLUMN clip_bytes INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE events ADD COLUMN snapshot_bytes INTEGER NOT NULL DEFAULT 0",
    # Retention walks finished events oldest first.
    "CREATE INDEX events_by_end ON events (end_ts) WHERE end_ts IS NOT NULL",
    # Every event and clip message in publish order, for `subscribe` with since_seq:
    # rows are updated in place, the log keeps each start/update/end/clip a
    # client would have seen. `body` is the message as JSON; removed with its event.
    """CREATE TABLE event_log (
        seq INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL,
        stream TEXT NOT NULL,
        label TEXT NOT NULL,
        peak_score REAL NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        ts REAL NOT NULL
    )""",
    "CREATE INDEX event_log_by_event ON event_log (event_id)",
    # A stream's own recording settings (JSON of RecordConfig), like its labels.
    "ALTER TABLE streams ADD COLUMN record TEXT",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, path: str) -> int:
    """Bring the database to SCHEMA_VERSION; returns the version it had. ``conn`` must be in autocommit mode."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the event database {path} has schema version {version}, newer than this server knows "
            f"({SCHEMA_VERSION}): run a newer version, or move the file aside"
        )
    if version == SCHEMA_VERSION:
        return version
    conn.execute("BEGIN IMMEDIATE")
    try:
        for step in MIGRATIONS[version:]:
            for statement in step:
                conn.execute(statement)
        # user_version lives in the database header and is part of this transaction.
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return version
