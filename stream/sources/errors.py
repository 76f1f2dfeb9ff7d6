"""Exceptions of the sources stage, all in one place.

Two families: errors a caller sees (:class:`InvalidSource` from the factory,
:class:`IllegalTransition`, :class:`EndOfStream` from ``recv()``), and two
internal signals a reader raises to tell its supervisor what to do next
(:class:`FatalSourceError`: give up, FAILED; :class:`TransientSourceError`:
back off and reconnect). Their messages are shown to people as status
reasons, so they must say what happened and what to do, and never carry
credentials (build them with :func:`stream.sources.urls.mask_url`).
"""

from __future__ import annotations

__all__ = [
    "SourceError",
    "InvalidSource",
    "IllegalTransition",
    "EndOfStream",
    "FatalSourceError",
    "TransientSourceError",
]


class SourceError(Exception):
    """Base class of every error raised by stream.sources."""


class InvalidSource(SourceError, ValueError):
    """The URL, path or device can never work: malformed, unknown scheme, missing file."""


class IllegalTransition(SourceError, RuntimeError):
    """A source was asked to move between two states its state machine does not connect."""


class EndOfStream(SourceError):
    """``recv()`` on a source that is stopped or failed: no more frames will come."""


class FatalSourceError(SourceError):
    """Raised inside a reader: retrying cannot help (missing file, no video stream, bad codec)."""


class TransientSourceError(SourceError):
    """Raised inside a reader: the connection broke or stalled; back off and try again."""
