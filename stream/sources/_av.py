"""PyAV helpers shared by the network and file sources: open a video, name its errors."""

from __future__ import annotations

import logging
from typing import Any

import av
import av.error
from av.codec.context import Flags as CodecFlags
import numpy as np

from stream.sources.errors import FatalSourceError, SourceError, TransientSourceError
from stream.sources.urls import scrub

__all__ = ["av_to_rgb", "close_quietly", "open_video", "classify_av_error"]

logger = logging.getLogger(__name__)


def av_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """Full-size RGB uint8 (H, W, 3) of a decoded frame."""
    return frame.to_ndarray(format="rgb24")


def close_quietly(container: Any) -> None:
    """Close a container; a failure to close must not hide the error that made us close it."""
    if container is None:
        return
    try:
        container.close()
    except Exception as exc:  # FFmpeg errors on close are not actionable
        logger.debug("closing %s failed: %s", type(container).__name__, scrub(str(exc)))


def _what(exc: BaseException) -> str:
    """FFmpeg's own words for an error, without the URL it appends (which may hold credentials)."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return scrub(str(text))


def classify_av_error(exc: BaseException, display: str, *, network: bool, reading: bool, timeout_s: float) -> SourceError:
    """Turn a PyAV/FFmpeg exception into a fatal or transient error with an actionable message."""
    if isinstance(exc, SourceError):
        return exc
    what = _what(exc)
    if isinstance(exc, ConnectionRefusedError):
        return TransientSourceError(f"connection refused by {display}: is the camera or server running?")
    if isinstance(exc, (TimeoutError, av.error.ExitError)):
        # ExitError is PyAV's interrupt callback firing: our open/read timeout.
        if reading:
            return TransientSourceError(f"no data from {display} for {timeout_s:g} s (camera frozen or network down)")
        return TransientSourceError(f"no answer from {display} within {timeout_s:g} s")
    if isinstance(exc, av.error.HTTPUnauthorizedError):
        return FatalSourceError(f"{display} refused the credentials ({what}): check the user name and password")
    if isinstance(exc, av.error.HTTPForbiddenError):
        # 403 is not about credentials: the server knows who asks and says no
        # (a path it does not serve, an address it does not allow, or a
        # stream pointed at a server that refuses its own clients).
        return FatalSourceError(
            f"{display} refused access (403 Forbidden): check that the URL is the camera's stream "
            "and that this client may read it"
        )
    if isinstance(exc, av.error.HTTPNotFoundError):
        return TransientSourceError(f"{display} has no such stream ({what}): check the path")
    if isinstance(exc, av.error.HTTPError):
        return TransientSourceError(f"{display} answered with an error ({what})")
    if isinstance(exc, (av.error.DecoderNotFoundError, av.error.PatchWelcomeError)):
        return FatalSourceError(f"unsupported codec in {display}: this FFmpeg build cannot decode it ({what})")
    if isinstance(exc, av.error.ProtocolNotFoundError):
        return FatalSourceError(f"this FFmpeg build cannot open {display} ({what})")
    if isinstance(exc, av.error.InvalidDataError):
        if network:
            # FFmpeg also says this when an RTSP server accepts the TCP
            # connection but never answers (hung), and a server can send junk
            # while it restarts: both are worth another try.
            return TransientSourceError(
                f"{display} did not answer with a video stream FFmpeg can read ({what}): "
                "is the server hung, or not a camera?"
            )
        return FatalSourceError(f"{display} is not a video file FFmpeg can read ({what})")
    if isinstance(exc, FileNotFoundError) and not network:
        return FatalSourceError(f"no such file: {display}")
    if isinstance(exc, PermissionError) and not network:
        return FatalSourceError(f"cannot read {display}: permission denied")
    if isinstance(exc, IsADirectoryError):
        return FatalSourceError(f"{display} is a folder, not a video file")
    if isinstance(exc, EOFError):
        return TransientSourceError(f"{display} ended the stream")
    if isinstance(exc, OSError) and network:
        # FFmpeg reports a failed DNS lookup or an unreachable host as EIO.
        return TransientSourceError(f"cannot reach {display} ({what}: unknown host, network down or stream refused)")
    return TransientSourceError(f"error reading {display}: {what}")


def open_video(
    url: str,
    display: str,
    *,
    network: bool,
    options: dict[str, str] | None = None,
    timeout: tuple[float, float] | None = None,
    low_delay: bool = False,
    max_pixels: int | None = None,
) -> tuple[Any, Any]:
    """Open ``url`` and return ``(container, video_stream)``, or raise Fatal/TransientSourceError.

    ``low_delay`` sets the decoder's LOW_DELAY flag, which also rules out
    frame threading: with FFmpeg's default frame threads an H.264 decoder
    holds back one frame per thread (measured here: first frame out after 3
    packets instead of 1). Live sources want it; files want the throughput.
    """
    try:
        container = av.open(url, mode="r", options=options or {}, timeout=timeout)
    except Exception as exc:
        raise classify_av_error(
            exc, display, network=network, reading=False, timeout_s=timeout[0] if timeout else 0.0
        ) from None
    try:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["no streams"]
            raise FatalSourceError(f"no video stream in {display} (it has {', '.join(kinds)})")
        stream = container.streams.video[0]
        codec = stream.codec_context
        if codec is None or not getattr(codec, "name", None):
            raise FatalSourceError(f"unsupported codec in {display}: this FFmpeg build has no decoder for it")
        stream.thread_type = "AUTO"
        if low_delay:
            codec.flags |= int(CodecFlags.low_delay)
    except BaseException:
        close_quietly(container)
        raise
    return container, stream
