"""What the event store keeps and hands out, and the errors it raises.

Times are Unix seconds (``stream.clock.to_wall``): rows outlive the process
whose monotonic clock made them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "EndReason",
    "EventPage",
    "EventQuery",
    "StoreError",
    "StoreStats",
    "StoreUnreadable",
    "StoredEvent",
    "StoredStream",
    "MAX_LIMIT",
]

MAX_LIMIT = 1000


class EndReason(str, enum.Enum):
    """Why a stored event ended (``end_reason``)."""

    SCORE_DROPPED = "score_dropped"  # the normal end: the smoothed score fell below labels.exit
    STREAM_REMOVED = "stream_removed"  # the stream was removed (DELETE /api/streams/{id})
    STREAM_LOST = "stream_lost"  # the camera dropped, froze or failed
    SERVER_STOPPED = "server_stopped"  # the server shut down, or crashed (closed at the next start)


class StoreError(Exception):
    """The event store cannot do what was asked; the message says why in one line."""


class StoreUnreadable(StoreError):
    """The database file is damaged or not a database."""

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        super().__init__(
            f"the event database {path} is damaged or not a database ({detail}): move it aside "
            f"(mv {path} {path}.bad) and start again; a new one is created"
        )


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One occurrence of a label on a stream, as stored (one row, updated in place)."""

    id: str
    stream: str
    label: str
    start: float
    end: float | None
    score: float
    peak_score: float
    peak_ts: float | None
    has_clip: bool
    has_snapshot: bool
    end_reason: str | None
    seq: int  # hub seq of the last message that changed this row
    clip_duration: float | None = None  # seconds, once the clip is complete

    @property
    def in_progress(self) -> bool:
        return self.end is None


@dataclass(frozen=True, slots=True)
class StoredStream:
    """A stream added through the API, kept so it comes back after a restart.

    ``url`` is the real URL, credentials included (it must reconnect): never
    log or show it unmasked.
    """

    id: str
    url: str | int
    max_fps: float | None = None
    loop: bool = True
    labels: dict[str, Any] | None = None
    record: dict[str, Any] | None = None  # its own RecordConfig, if it has one

    def __repr__(self) -> str:  # a repr in a log line must not carry the password
        from stream.sources.urls import mask_url

        return f"StoredStream(id={self.id!r}, url={mask_url(self.url)!r})"


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Filters of ``GET /api/events``; ``cursor`` is a page's ``next_cursor``."""

    stream: str | None = None
    label: str | None = None
    after: float | None = None  # started at or after (Unix seconds)
    before: float | None = None  # started before
    min_score: float | None = None  # peak score at least
    in_progress: bool | None = None
    limit: int = 100
    cursor: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {self.limit}")
        if self.after is not None and self.before is not None and self.after > self.before:
            raise ValueError(f"after ({self.after}) must not be later than before ({self.before})")


@dataclass(frozen=True, slots=True)
class EventPage:
    events: tuple[StoredEvent, ...]
    next_cursor: str | None  # None on the last page


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Figures for /metrics."""

    written: int  # write operations committed
    queue_full: int  # writes refused because the writer's queue was full
    write_errors: int  # writes that failed in SQLite
    queue_depth: int
    subscription_dropped: int = 0  # hub messages the store's subscription lost (an error)
    extra: dict[str, Any] = field(default_factory=dict)
