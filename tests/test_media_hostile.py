"""The PyAV sources' words for hostile answers: an HTTP 403 is not a credentials problem."""

from __future__ import annotations

import av.error

from stream.sources._av import classify_av_error
from stream.sources.errors import FatalSourceError


# ------------------------------------------------------------ HTTP wording


def _http_error(cls: type, text: str) -> Exception:
    """The exception PyAV raises for an HTTP error status, as FFmpeg words it."""
    return cls(-1, text, "http://cam.example/stream")


def test_http_403_is_not_called_a_credentials_problem():
    """403 says 'refused access (403 Forbidden)' with what to check; 401 keeps the credentials message."""
    forbidden = classify_av_error(
        _http_error(av.error.HTTPForbiddenError, "Server returned 403 Forbidden (access denied)"), "cam", network=True, reading=False, timeout_s=5
    )
    unauthorized = classify_av_error(
        _http_error(av.error.HTTPUnauthorizedError, "Server returned 401 Unauthorized (authorization failed)"), "cam", network=True, reading=False, timeout_s=5
    )
    assert "refused access (403 Forbidden)" in str(forbidden) and "credentials" not in str(forbidden)
    assert "refused the credentials" in str(unauthorized)
    assert isinstance(forbidden, FatalSourceError) and isinstance(unauthorized, FatalSourceError)
