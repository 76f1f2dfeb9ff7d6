"""Replay for ``subscribe`` with ``since_seq``: the stored event and clip messages after a seq, in seq order.

The store's hub subscriber appends every event and clip message to
``event_log`` as the very JSON a live client got (see
:mod:`stream.events.subscriber`). A replay reads it back by seq in bounded
pages, with the subscription's filter applied in SQL (stream, label, kind,
peak score: the columns beside the body), so it holds one page at a time
however far back a client resumes. Labels and status are not in the log:
a stale label is worthless, and a status replay would only repeat what the
current status (sent after every subscribe) says.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import AsyncIterator

from stream.events.store import EventStore
from stream.hub import Filter, MessageKind

__all__ = ["LOG_KINDS", "PAGE", "ReplayQuery", "pruned_seq", "read_page", "replay"]

PAGE = 500  # log rows per read: bounds the memory and the reader-thread time of one step
# The hub kinds the log keeps, by the name in its `kind` column.
LOG_KINDS: dict[MessageKind, str] = {MessageKind.EVENT: "event", MessageKind.CLIP: "clip"}
# The meta key the store keeps the highest seq of any log row it deleted in
# (retention, DELETE /api/events/{id}): a replay from below it may miss messages.
PRUNED_KEY = "log_pruned_seq"


@dataclasses.dataclass(frozen=True, slots=True)
class ReplayQuery:
    """Log rows with ``since_seq < seq <= until_seq`` that a subscription's filter lets through."""

    since_seq: int
    until_seq: int
    kinds: tuple[str, ...]
    streams: tuple[str, ...] | None = None
    labels: tuple[str, ...] | None = None
    min_score: float = 0.0

    @classmethod
    def of(cls, f: Filter, since_seq: int, until_seq: int) -> ReplayQuery:
        """The query for hub filter ``f``: the same rules as :meth:`Filter.matches` for events and clips."""
        return cls(
            since_seq=since_seq,
            until_seq=until_seq,
            kinds=tuple(sorted(name for kind, name in LOG_KINDS.items() if kind in f.kinds)),
            streams=tuple(sorted(f.streams)) if f.streams is not None else None,
            labels=tuple(sorted(f.labels)) if f.labels is not None else None,
            min_score=f.min_score,
        )

    @property
    def empty(self) -> bool:
        """True when nothing can match (no replayable kind asked for, or an empty range)."""
        return not self.kinds or self.until_seq <= self.since_seq


def read_page(conn: sqlite3.Connection, q: ReplayQuery, after: int, limit: int = PAGE) -> list[tuple[int, str]]:
    """Up to ``limit`` (seq, body) rows of ``q`` with seq above ``after``, oldest first."""
    # json_each: one parameter per list, whatever its length (filters hold up to 1000 names).
    sql = ["SELECT seq, body FROM event_log WHERE seq > ? AND seq <= ? AND kind IN (SELECT value FROM json_each(?))"]
    args: list = [max(after, q.since_seq), q.until_seq, json.dumps(q.kinds)]
    if q.streams is not None:
        sql.append("AND stream IN (SELECT value FROM json_each(?))")
        args.append(json.dumps(q.streams))
    if q.labels is not None:
        sql.append("AND label IN (SELECT value FROM json_each(?))")
        args.append(json.dumps(q.labels))
    if q.min_score > 0.0:
        sql.append("AND peak_score >= ?")
        args.append(q.min_score)
    sql.append("ORDER BY seq LIMIT ?")
    args.append(limit)
    return conn.execute(" ".join(sql), args).fetchall()


def pruned_seq(conn: sqlite3.Connection) -> int:
    """The highest seq of a log row the store has deleted (0 if none): replays from below it may have holes."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (PRUNED_KEY,)).fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


async def replay(store: EventStore, q: ReplayQuery, *, page: int = PAGE) -> AsyncIterator[tuple[int, str]]:
    """(seq, body) of every row of ``q`` in seq order, read a page at a time on the store's reader threads."""
    if q.empty:
        return
    after = q.since_seq
    while True:
        rows = await store.aread(read_page, q, after, page)
        for row in rows:
            yield row
        if len(rows) < page:
            return
        after = rows[-1][0]
