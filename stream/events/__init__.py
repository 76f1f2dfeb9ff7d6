"""Events that last: the SQLite event store, its hub subscriber and its types.

The hub stays the one place results leave the pipeline; the store is one
more hub subscriber (see :mod:`stream.events.subscriber`).
"""

from __future__ import annotations

from stream.events.store import DB_NAME, EventStore, check_location
from stream.events.subscriber import StoreSubscriber
from stream.events.types import (
    MAX_LIMIT,
    EndReason,
    EventPage,
    EventQuery,
    StoredEvent,
    StoredStream,
    StoreError,
    StoreStats,
    StoreUnreadable,
)

__all__ = [
    "DB_NAME",
    "MAX_LIMIT",
    "EndReason",
    "EventPage",
    "EventQuery",
    "EventStore",
    "StoreError",
    "StoreStats",
    "StoreSubscriber",
    "StoreUnreadable",
    "StoredEvent",
    "StoredStream",
    "check_location",
]
