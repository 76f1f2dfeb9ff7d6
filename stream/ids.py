"""The one rule for stream ids, shared by the config, the REST API, WebRTC offers and the pipeline.

An id ends up in URLs (``/api/streams/{id}``), in the ``Location`` header and
in log lines, so it is checked with ``fullmatch``: ``re.match`` with ``$``
accepts a trailing newline (``"door\\n"``), which then breaks the HTTP
response. It may not start with ``.`` or ``-``: ``.`` and ``..`` are path
segments that browsers and proxies rewrite, so such a stream could never be
addressed (or removed) by its URL.
"""

from __future__ import annotations

import re

__all__ = ["STREAM_ID_PATTERN", "STREAM_ID_RULE", "is_valid_stream_id"]

# Anchored for JSON Schema and pydantic (whose regex engines have no trailing-newline quirk).
STREAM_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
STREAM_ID_RULE = "1-64 letters, digits, '_', '-' or '.', starting with a letter, digit or '_'"

_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


def is_valid_stream_id(value: object) -> bool:
    """True if ``value`` is a string that is a whole, valid stream id."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None
