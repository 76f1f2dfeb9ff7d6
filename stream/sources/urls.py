"""Classify a source string (URL, path, webcam) and keep credentials out of sight.

Everything a person or a log sees about a source goes through
:func:`mask_url` (one URL) or :func:`scrub` (any text that may contain URLs,
such as FFmpeg's error messages, which quote the URL they failed on).
"""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from stream.sources.errors import InvalidSource

__all__ = [
    "NETWORK_SCHEMES",
    "SourceKind",
    "SourceSpec",
    "classify",
    "describe_source",
    "mask_url",
    "scrub",
]

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https")
_SCHEMES_HINT = "use rtsp, rtsps, rtmp, http or https, a webcam index, or a video file path"

# scheme://userinfo@ : the greedy userinfo stops at the last '@' before the
# first '/', whitespace or quote, so passwords containing '@' are caught whole.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s'\"<>]*)@")
# Query parameters that commonly carry secrets (camera tokens, signed URLs).
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&](?:password|passwd|pass|pwd|token|access_token|auth|key|api_key|apikey|sig|signature)=)"
    r"(?P<value>[^&#\s'\"]*)",
    re.IGNORECASE,
)
_SCHEME_PREFIX = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*):")


def _mask_userinfo(match: re.Match[str]) -> str:
    userinfo = match.group("userinfo")
    if ":" in userinfo:
        # The user name helps people tell cameras apart; the password never shows.
        return f"{match.group('scheme')}{userinfo.split(':', 1)[0]}:***@"
    # A lone userinfo is often a token (https://TOKEN@host), so hide all of it.
    return f"{match.group('scheme')}***@"


def scrub(text: str) -> str:
    """Mask credentials of every URL inside ``text`` (error messages, log lines)."""
    text = _USERINFO.sub(_mask_userinfo, text)
    return _SECRET_QUERY.sub(lambda m: f"{m.group('key')}***", text)


def mask_url(url: str | int) -> str:
    """``rtsp://user:pass@host/x`` -> ``rtsp://user:***@host/x``; other sources unchanged."""
    return scrub(str(url))


class SourceKind(str, enum.Enum):
    WEBCAM = "webcam"
    NETWORK = "network"
    FILE = "file"
    WEBRTC = "webrtc"


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """What a source string means: its kind, what to open, and how to show it."""

    kind: SourceKind
    target: str | int  # URL for network, absolute path for file, index or device path for webcam
    display: str  # masked, safe for logs and statuses
    scheme: str = ""


def _webcam(value: str | int) -> SourceSpec:
    if isinstance(value, int):
        if value < 0:
            raise InvalidSource(f"webcam index must be 0 or more, got {value}")
        return SourceSpec(SourceKind.WEBCAM, value, f"webcam {value}")
    return SourceSpec(SourceKind.WEBCAM, value, value)


def _network(url: str, scheme: str) -> SourceSpec:
    shown = mask_url(url)
    if any(ch.isspace() for ch in url):
        raise InvalidSource(f"malformed URL {shown!r}: it contains spaces (percent-encode them as %20)")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError as exc:
        raise InvalidSource(f"malformed URL {shown!r}: {scrub(str(exc))}") from None
    if not parts.hostname:
        raise InvalidSource(f"malformed URL {shown!r}: no host; expected {scheme}://host[:port]/path")
    if port == 0:
        raise InvalidSource(f"malformed URL {shown!r}: port 0 is not a port a camera can listen on")
    return SourceSpec(SourceKind.NETWORK, url, shown, scheme)


def _file(path_text: str, shown: str) -> SourceSpec:
    path = Path(path_text).expanduser()
    if not path.exists():
        raise InvalidSource(f"no such file: {shown} (give a video file path, a webcam index or a camera URL)")
    if path.is_dir():
        raise InvalidSource(f"{shown} is a folder, not a video file")
    if not os.access(path, os.R_OK):
        raise InvalidSource(f"cannot read {shown}: permission denied")
    return SourceSpec(SourceKind.FILE, str(path.resolve()), shown, "file")


def classify(source: str | int) -> SourceSpec:
    """Decide what ``source`` is, or raise :class:`InvalidSource` saying why it can never work.

    ``0``, ``"0"`` and ``/dev/videoN`` are webcams; rtsp, rtsps, rtmp, http
    and https URLs are network cameras; an existing path or ``file://`` URL
    is a video file played as a camera. Webcam devices are checked when the
    source opens (a missing one is reported as a FAILED stream).
    """
    if isinstance(source, bool) or not isinstance(source, (str, int)):
        raise InvalidSource(f"a source must be a URL, a path or a webcam index, got {type(source).__name__}")
    if isinstance(source, int):
        return _webcam(source)
    text = source.strip()
    if not text:
        raise InvalidSource(f"empty source: {_SCHEMES_HINT}")
    if text.isdigit():
        return _webcam(int(text))
    if text.startswith("/dev/video"):
        return _webcam(text)
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme in NETWORK_SCHEMES:
            return _network(text, scheme)
        if scheme == "file":
            parts = urlsplit(text)
            if parts.netloc not in ("", "localhost"):
                raise InvalidSource(f"malformed URL {mask_url(text)!r}: file URLs must be local (file:///path)")
            return _file(unquote(parts.path), mask_url(text))
        shown = mask_url(text)
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-]*", scheme):
            raise InvalidSource(f"malformed URL {shown!r}: {_SCHEMES_HINT}")
        raise InvalidSource(f"unsupported scheme {scheme!r} in {shown}: {_SCHEMES_HINT}")
    prefix = _SCHEME_PREFIX.match(text)
    if prefix and prefix.group("scheme").lower() in NETWORK_SCHEMES and not Path(text).exists():
        # "rtsp:/cam" or "rtsp:cam": a URL with a typo, not a file name.
        scheme = prefix.group("scheme").lower()
        raise InvalidSource(f"malformed URL {mask_url(text)!r}: expected {scheme}://host[:port]/path")
    return _file(text, mask_url(text))


def describe_source(source: str | int) -> tuple[str, str]:
    """``(kind, masked_url)`` for display; kind is ``"invalid"`` when the source can never work."""
    try:
        spec = classify(source)
    except InvalidSource:
        return "invalid", mask_url(source) if isinstance(source, (str, int)) else repr(type(source))
    return spec.kind.value, spec.display
