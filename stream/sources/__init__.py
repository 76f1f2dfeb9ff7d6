"""Sources: cameras, streams and files in; RGB frames at model scale out, into a sink.

``open_source`` picks the class for a URL, path or webcam index and raises
:class:`InvalidSource` at once for anything that can never work, so a bad
config entry is a clear failed stream, not a reconnect loop.
"""

from __future__ import annotations

from stream.sources.backoff import Backoff
from stream.sources.base import (
    TERMINAL,
    TRANSITIONS,
    FrameSink,
    SizeFor,
    Source,
    SourceOptions,
    SourceStats,
    StatusCallback,
)
from stream.sources.errors import (
    EndOfStream,
    FatalSourceError,
    IllegalTransition,
    InvalidSource,
    SourceError,
    TransientSourceError,
)
from stream.sources.sinks import MemorySink
from stream.sources.threaded import ThreadedSource
from stream.sources.urls import SourceKind, SourceSpec, classify, describe_source, mask_url, scrub

__all__ = [
    "Backoff",
    "EndOfStream",
    "FatalSourceError",
    "FrameSink",
    "IllegalTransition",
    "InvalidSource",
    "MemorySink",
    "SizeFor",
    "Source",
    "SourceError",
    "SourceKind",
    "SourceOptions",
    "SourceSpec",
    "SourceStats",
    "StatusCallback",
    "TERMINAL",
    "TRANSITIONS",
    "ThreadedSource",
    "TransientSourceError",
    "classify",
    "describe_source",
    "mask_url",
    "open_source",
    "scrub",
]


def open_source(
    stream_id: str,
    url: str | int,
    sink: FrameSink,
    size_for: SizeFor,
    on_status: StatusCallback | None = None,
    options: SourceOptions | None = None,
) -> Source:
    """Build the source for ``url`` (not started: ``await source.start()``).

    Integers, digit strings and ``/dev/video*`` are webcams; rtsp, rtsps,
    rtmp, http and https URLs are network streams; an existing path or a
    ``file://`` URL is a file played as a camera. Raises
    :class:`InvalidSource` for malformed URLs, unknown schemes and missing
    files, with a message fit to show as the stream's failure.
    """
    spec = classify(url)
    options = options or SourceOptions()
    # Imported here so that using one kind of source does not import the
    # libraries of the others (OpenCV for webcams, PyAV for the rest).
    if spec.kind is SourceKind.WEBCAM:
        from stream.sources.webcam import WebcamSource

        return WebcamSource(stream_id, spec.target, sink, size_for, on_status, options)
    if spec.kind is SourceKind.NETWORK:
        from stream.sources.network import NetworkSource

        return NetworkSource(stream_id, str(spec.target), sink, size_for, on_status, options)
    from stream.sources.file import FileSource

    return FileSource(stream_id, str(spec.target), sink, size_for, on_status, options)
