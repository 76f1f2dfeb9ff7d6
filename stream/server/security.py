"""Safe by default: tokens, Host and Origin checks, cross-site refusals and limits on API-added sources.

Pure functions plus one small class, so the rules are testable without a
server: the app calls them before doing anything a request asks.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
from urllib.parse import parse_qs

from stream.sources.urls import NETWORK_SCHEMES

__all__ = [
    "SAFE_METHODS",
    "LocalSourceRefused",
    "TokenRequired",
    "Security",
    "is_local_source",
    "is_loopback",
    "check_flag_token",
    "json_media_type",
    "resolve_token",
]

# Methods that change nothing: a cross-site page may cause these (it cannot read the answers).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Sec-Fetch-Site values a browser sends for the page's own requests; "none" = typed by the user.
_OWN_FETCH_SITES = frozenset({"same-origin", "none"})

_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*):")


class TokenRequired(ValueError):
    """Refusing to start: the server would be reachable from other machines without a token."""


class LocalSourceRefused(PermissionError):
    """An API client asked for a file or device while the config does not allow it."""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost': addresses other machines cannot reach."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything, so treat it as exposed


MIN_TOKEN_LENGTH = 8


def check_flag_token(token: str | None) -> None:
    """Raise TokenRequired if ``--token`` was given but is empty or short (before the config is read).

    The config's own check would blame the config file for a value that came
    from the command line.
    """
    if token is None:
        return
    if not token:
        raise TokenRequired("--token is empty: give at least 8 characters (e.g. `openssl rand -hex 16`), or leave it out")
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokenRequired(
            f"--token is too short: use at least {MIN_TOKEN_LENGTH} characters (e.g. `openssl rand -hex 16`)"
        )


def resolve_token(config_token: str | None, host: str, env: dict[str, str] | None = None) -> str | None:
    """The token to require: from the config, else STREAM_TOKEN; raises TokenRequired if exposed without one."""
    env = os.environ if env is None else env
    # An empty STREAM_TOKEN means unset, as shells and service files commonly write it.
    from_env = not config_token and bool(env.get("STREAM_TOKEN"))
    token = config_token or env.get("STREAM_TOKEN") or None
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        where = "STREAM_TOKEN" if from_env else "the token"
        raise TokenRequired(f"{where} is too short: use at least {MIN_TOKEN_LENGTH} characters (e.g. `openssl rand -hex 16`)")
    if token is None and not is_loopback(host):
        raise TokenRequired(
            f"refusing to listen on {host} without a token: other machines could watch your cameras; "
            "set server.token in the config or STREAM_TOKEN in the environment (or use --host 127.0.0.1)"
        )
    return token


def is_local_source(url: str | int) -> bool:
    """True for webcams, devices and files: what API clients may add only with allow_local_sources.

    Decided from the text alone, before anything touches the file system, so
    a refused client cannot learn which files exist.
    """
    if isinstance(url, int):
        return True
    text = url.strip()
    if "://" in text:
        return text.split("://", 1)[0].lower() == "file"
    prefix = _SCHEME.match(text)
    # "rtsp:cam" is a malformed network URL (classify() says so), not a file.
    return not (prefix and prefix.group("scheme").lower() in NETWORK_SCHEMES)


def json_media_type(content_type: str | None) -> bool:
    """True for ``application/json`` (any parameters, e.g. ``; charset=utf-8``).

    Browsers send text/plain, form and multipart bodies cross-site without
    asking first (no CORS preflight); a JSON content type they do not.
    """
    if content_type is None:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


def _host_only(host_header: str) -> str:
    """'Example.org:8000' -> 'example.org'; '[::1]:8000' -> '[::1]'."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Security:
    """The token, Host and Origin rules of one running server."""

    def __init__(self, token: str | None, allowed_origins: list[str] | tuple[str, ...] = ()) -> None:
        self.token = token
        self._allowed = {o.rstrip("/").lower() for o in allowed_origins}
        self._allowed_hosts = {_host_only(o.split("://", 1)[-1]) for o in self._allowed}
        self._bind_host: str | None = None
        self._port: int | None = None

    def set_address(self, host: str, port: int) -> None:
        """Learn where we listen (the port is known only after binding, e.g. with --port 0)."""
        self._bind_host = host.lower()
        self._port = port

    # -------------------------------------------------------------- tokens
    def token_ok(self, headers, query_string: bytes | str) -> bool:
        """True if no token is configured, or the request carries it (Bearer header or ?token=)."""
        if self.token is None:
            return True
        expected = self.token.encode()
        auth = headers.get("authorization") or ""
        if auth[:7].lower() == "bearer " and hmac.compare_digest(auth[7:].strip().encode(), expected):
            return True
        qs = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
        for given in parse_qs(qs).get("token", []):
            if hmac.compare_digest(given.encode(), expected):
                return True
        return False

    # -------------------------------------------------------------- host (DNS rebinding)
    def host_ok(self, host_header: str | None) -> bool:
        """Without a token, only names that mean this machine may reach us.

        A web page on evil.example can re-point its own name at 127.0.0.1
        (DNS rebinding) and then talk to a token-less local server as "same
        origin"; its requests still carry ``Host: evil.example``.
        """
        if self.token is not None or host_header is None:
            return True
        host = _host_only(host_header)
        return host in _LOOPBACK_NAMES or host == self._bind_host or host in self._allowed_hosts

    # -------------------------------------------------------------- cross-site requests
    def same_site_ok(self, method: str, origin: str | None, fetch_site: str | None, host_header: str | None) -> bool:
        """State-changing request rule: refuse what another web site's page made a browser send.

        The same algorithm as Go's net/http CrossOriginProtection: an Origin
        listed in server.allowed_origins passes; else a browser's
        ``Sec-Fetch-Site`` decides (only ``same-origin`` or ``none``); else,
        from older browsers, ``Origin`` must be our own; a request with
        neither header is not from a browser (curl, scripts) and passes.
        A token does not replace this check: a page can make the browser
        send ``?token=`` it learned, or hit a token-less server on loopback.
        """
        if method.upper() in SAFE_METHODS:
            return True
        if origin is not None and origin.strip().rstrip("/").lower() in self._allowed:
            return True
        if fetch_site is not None:
            return fetch_site.strip().lower() in _OWN_FETCH_SITES
        if origin is None:
            return True
        return self.origin_ok(origin, host_header)

    # -------------------------------------------------------------- origin
    def origin_ok(self, origin: str | None, host_header: str | None = None) -> bool:
        """Websocket Origin rule: none (programs), same origin, or listed in server.allowed_origins.

        Browsers always send Origin on websockets and do not apply CORS to
        them, so without this check any web page could read the labels.
        Same origin includes the Host the browser used to reach us, so the
        page works when a server bound to 0.0.0.0 is opened by its LAN
        address (such a server requires a token; a token-less one only
        answers to loopback Host names, see host_ok).
        """
        if origin is None:
            return True
        origin = origin.rstrip("/").lower()
        if origin in self._allowed:
            return True
        if host_header and origin in (f"http://{host_header.strip().lower()}", f"https://{host_header.strip().lower()}"):
            return True
        if self._port is None:
            return False
        names = set(_LOOPBACK_NAMES)
        if self._bind_host and self._bind_host not in ("0.0.0.0", "::"):
            names.add(f"[{self._bind_host}]" if ":" in self._bind_host else self._bind_host)
        return origin in {f"{scheme}://{name}:{self._port}" for name in names for scheme in ("http", "https")}
