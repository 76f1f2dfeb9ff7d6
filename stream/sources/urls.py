"""Classify a source string (URL, path, webcam) and keep credentials out of sight.

Everything a person or a log sees about a source goes through
:func:`mask_url` (one URL) or :func:`scrub` (any text that may contain URLs,
such as FFmpeg's error messages, which quote the URL they failed on).

What is masked: the password of ``scheme://user:password@host`` (the user
name stays, so people can tell cameras apart), all of a lone userinfo
(``https://TOKEN@host``), and the value of every query or fragment parameter
whose name looks secret (``token``, ``sig``, ``X-Amz-Signature``, ...).
When a URL is ambiguous (a password with an unencoded ``/``, ``?``, ``#``,
``@`` or space), more is masked rather than less: the userinfo runs to the
LAST ``@``, which hides a password however it is spelt.
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
_ENCODE_HINT = "percent-encode '/', '?', '#', '@' and ':' in a user name or password (%2F, %3F, %23, %40, %3A)"
MASK = "***"

# Where a URL starts inside text: any "scheme://", and the known camera schemes
# with a slash missing ("rtsp:/cam", "rtsp:user:pass@cam" are typos that still
# carry a password).
_URL_START = re.compile(
    r"\b(?:[A-Za-z][A-Za-z0-9+.\-]*://|(?:rtsps?|rtmps?|https?):/?(?!/))",
    re.IGNORECASE,
)
# A query/fragment parameter whose name looks like it carries a secret
# (camera tokens, signed URLs: X-Amz-Signature, X-Amz-Credential,
# X-Amz-Security-Token, X-Goog-Signature, sig, api_key, session ids).
_SECRET_WORDS = r"token|secret|sig|pass|pwd|key|auth|credential|session|jwt|ticket"
_SECRET_KEY = rf"(?P<key>[?&;#][\w.%\-]*(?:{_SECRET_WORDS})[\w.%\-]*=)"
# In one URL a value runs to the next parameter; in prose also to whitespace,
# less a ':', ',' or ')' that ends the word ("refused by rtsp://cam/x?sig=***: is
# it running?" must keep its colon when scrubbed again).
_SECRET_PARAM_URL = re.compile(_SECRET_KEY + r"(?P<value>[^&#;]*)", re.IGNORECASE)
_SECRET_PARAM_TEXT = re.compile(_SECRET_KEY + r"(?P<value>[^&#;\s]*?)(?=[:,)]*(?:\s|$)|[&#;])", re.IGNORECASE)
# "host:port" with something other than a port after the colon, and no '@':
# a password whose '@' was lost or lies past a space ("rtsp://admin:my pass@cam").
_BROKEN_USERINFO = re.compile(r"(?P<user>[^:/?#\[\]@\s]*):(?!\d*(?:[/?#]|$))")
# A user name is shown only when it cannot be part of a path or query.
_PLAIN_USER = re.compile(r"[^/?#&;=\s]*")
_SPACE = re.compile(r"\s")
_SCHEME_PREFIX = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*):")


def _mask_query(text: str, *, prose: bool) -> str:
    pattern = _SECRET_PARAM_TEXT if prose else _SECRET_PARAM_URL
    return pattern.sub(lambda m: m.group("key") + MASK, text)


def _mask_userinfo(userinfo: str) -> str:
    user, colon, _ = userinfo.partition(":")
    if colon and _PLAIN_USER.fullmatch(user):
        # The user name helps people tell cameras apart; the password never shows.
        return f"{user}:{MASK}"
    # A lone userinfo is often a token (https://TOKEN@host): hide all of it.
    return MASK


def _mask_body(body: str, *, prose: bool) -> str:
    """Mask what follows ``scheme://`` in one URL (``body`` holds nothing after the URL)."""
    at = body.rfind("@")
    if at >= 0:
        return f"{_mask_userinfo(body[:at])}@{_mask_query(body[at + 1 :], prose=prose)}"
    broken = _BROKEN_USERINFO.match(body)
    if broken and not body.startswith("[") and not body.startswith(MASK, broken.end()):
        # Not a host:port, so the part after ':' is (part of) a password: hide the rest.
        return f"{broken.group('user')}:{MASK}"
    return _mask_query(body, prose=prose)


def mask_url(url: str | int) -> str:
    """``rtsp://user:pass@host/x`` -> ``rtsp://user:***@host/x``; other sources unchanged.

    The whole string is one URL, so a password with unencoded ``/``, ``?``,
    ``#``, ``@`` or spaces is still masked whole (the userinfo ends at the
    last ``@``).
    """
    text = str(url)
    start = _URL_START.match(text.lstrip())
    if start is None:
        if "://" in text and "@" in text:
            # Something before "://" that is no scheme, with an '@': may be a password.
            return f"{MASK}@{_mask_query(text.rpartition('@')[2], prose=False)}"
        return _mask_query(text, prose=False)
    lead = len(text) - len(text.lstrip())
    head_end = lead + start.end()
    return text[:head_end] + _mask_body(text[head_end:], prose=False)


def _url_end(text: str, start: int, limit: int) -> int:
    """Where the URL whose body begins at ``start`` ends in prose: the next whitespace, at most ``limit``."""
    space = _SPACE.search(text, start, limit)
    end = space.start() if space else limit
    broken = _BROKEN_USERINFO.match(text, start, end)
    if "@" in text[start:end] or broken is None or text.startswith(MASK, broken.end()):
        return end  # a plain URL, or one masked already
    # "rtsp://admin:my pass@cam": the password went past a space; the userinfo
    # then runs to the last '@' on this line (masking too much beats leaking).
    line_end = text.find("\n", start, limit)
    at = text.rfind("@", start, line_end if line_end >= 0 else limit)
    if at < 0:
        return end
    space = _SPACE.search(text, at, limit)
    return space.start() if space else limit


def scrub(text: str) -> str:
    """Mask credentials of every URL inside ``text`` (error messages, log lines), and secret query values."""
    starts = list(_URL_START.finditer(text))
    if not starts:
        return _mask_query(text, prose=True)
    out: list[str] = []
    pos = 0
    for i, match in enumerate(starts):
        if match.start() < pos:
            continue  # inside a URL already masked (a longer userinfo swallowed it)
        limit = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        end = _url_end(text, match.end(), max(limit, match.end()))
        out.append(_mask_query(text[pos : match.end()], prose=True))
        out.append(_mask_body(text[match.end() : end], prose=True))
        pos = end
    out.append(_mask_query(text[pos:], prose=True))
    return "".join(out)


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


def _split(url: str, shown: str):
    """``urlsplit`` and its port, with our own words on failure.

    The parser's messages quote the netloc (a password with an unencoded
    '/', '?' or '#' ends up in "Port could not be cast ... 'pa'"), so they are
    never passed on.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        raise InvalidSource(
            f"malformed URL {shown!r}: unbalanced '[' or ']' (write an IPv6 host as [::1]); {_ENCODE_HINT}"
        ) from None
    try:
        port = parts.port
    except ValueError:
        raise InvalidSource(
            f"malformed URL {shown!r}: the port is not a number from 1 to 65535; "
            f"if the password is the problem, {_ENCODE_HINT}"
        ) from None
    return parts, port


def _network(url: str, scheme: str) -> SourceSpec:
    shown = mask_url(url)
    if any(ch.isspace() for ch in url):
        raise InvalidSource(f"malformed URL {shown!r}: it contains spaces or other whitespace (percent-encode a space as %20)")
    parts, port = _split(url, shown)
    if "@" in url[url.index("://") + 3 + len(parts.netloc) :]:
        # The parser ended the host early: a user name or password has an
        # unencoded '/', '?' or '#', and FFmpeg would dial the wrong host.
        raise InvalidSource(f"malformed URL {shown!r}: '@' after the host; {_ENCODE_HINT}")
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


def _file_url(text: str) -> SourceSpec:
    shown = mask_url(text)
    parts, _ = _split(text, shown)
    if parts.netloc not in ("", "localhost"):
        raise InvalidSource(f"malformed URL {shown!r}: file URLs must be local (file:///path)")
    return _file(unquote(parts.path), shown)


def _with_scheme(text: str) -> SourceSpec:
    scheme = text.split("://", 1)[0].lower()
    if scheme in NETWORK_SCHEMES:
        return _network(text, scheme)
    if scheme == "file":
        return _file_url(text)
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-]*", scheme):
        # Not quoted: what stands before "://" is no scheme and may well be a password.
        raise InvalidSource(f"malformed URL: the text before '://' is not a scheme; {_SCHEMES_HINT}")
    raise InvalidSource(f"unsupported scheme {scheme!r} in {mask_url(text)}: {_SCHEMES_HINT}")


def classify(source: str | int) -> SourceSpec:
    """Decide what ``source`` is, or raise :class:`InvalidSource` saying why it can never work.

    ``0``, ``"0"`` and ``/dev/videoN`` are webcams; rtsp, rtsps, rtmp, http
    and https URLs are network cameras; an existing path or ``file://`` URL
    is a video file played as a camera. Webcam devices are checked when the
    source opens (a missing one is reported as a FAILED stream). Messages
    show the URL only masked.
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
        return _with_scheme(text)
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
