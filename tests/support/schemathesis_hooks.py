"""schemathesis hooks for tests/test_openapi.py (loaded through SCHEMATHESIS_HOOKS by the CLI run).

Generated stream URLs may name any host; the server under test would then
try to reach it. Every case passes ``before_call`` whatever the phase, so
this is where a URL's host becomes 127.0.0.1:9, where nothing listens.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import schemathesis

__all__ = ["on_loopback"]


def on_loopback(body: object) -> None:
    """Point a body's ``url`` (if it has a host part) at 127.0.0.1:9, keeping its scheme, userinfo and path."""
    if not (isinstance(body, dict) and isinstance(body.get("url"), str) and "://" in body["url"]):
        return
    try:
        parts = urlsplit(body["url"])
    except ValueError:
        return  # the server refuses it as well (400 invalid_source), having contacted nothing
    user = parts.netloc.rpartition("@")[0]
    body["url"] = urlunsplit(parts._replace(netloc=f"{user}@127.0.0.1:9" if user else "127.0.0.1:9"))


@schemathesis.hook
def before_call(context, case, kwargs) -> None:
    on_loopback(case.body)
