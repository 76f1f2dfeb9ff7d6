"""The PyAV sources on hostile media: too large for ingest.max_pixels; the 403 wording."""

from __future__ import annotations

import av.error
import pytest

from stream.sources._av import classify_av_error, open_video
from stream.sources.errors import FatalSourceError
from tests.support.videos import make_video


# ------------------------------------------------------------ too large


def test_open_refuses_video_over_max_pixels(tmp_path):
    """An H.264 file over max_pixels is refused at open, naming its size, the limit and the setting."""
    video = make_video(tmp_path / "big.mp4", width=320, height=240, seconds=0.2)
    with pytest.raises(FatalSourceError) as exc:
        open_video(str(video), "big.mp4", network=False, max_pixels=200 * 150)
    text = str(exc.value)
    assert "320x240" in text and "ingest.max_pixels = 30000" in text and "h264" in text


def test_open_decodes_mjpeg_over_max_pixels_at_reduced_size(tmp_path):
    """An MJPEG file over max_pixels is decoded at the largest reduced size that fits (here 1/2: 160x120)."""
    video = make_video(tmp_path / "big.mkv", width=320, height=240, seconds=0.2, codec="mjpeg")
    container, stream = open_video(str(video), "big.mkv", network=False, max_pixels=200 * 150)
    try:
        frame = next(container.decode(stream))
        assert (frame.width, frame.height) == (160, 120)
    finally:
        container.close()


def test_open_within_max_pixels_is_full_size(tmp_path):
    """At or under max_pixels the video decodes at full size."""
    video = make_video(tmp_path / "ok.mkv", width=320, height=240, seconds=0.2, codec="mjpeg")
    container, stream = open_video(str(video), "ok.mkv", network=False, max_pixels=320 * 240)
    try:
        frame = next(container.decode(stream))
        assert (frame.width, frame.height) == (320, 240)
    finally:
        container.close()


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
