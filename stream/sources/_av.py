"""PyAV helpers shared by the sources and ``predict``: open a video, bound its size, turn it upright, name its errors."""

from __future__ import annotations

import logging
from typing import Any

import av
import av.error
from av.codec.context import Flags as CodecFlags
import numpy as np

from stream.sources.errors import FatalSourceError, SourceError, TransientSourceError
from stream.sources.urls import scrub

__all__ = [
    "av_to_rgb",
    "close_quietly",
    "open_video",
    "classify_av_error",
    "bound_threads",
    "display_size",
    "quarter_turns",
    "LOWRES_CODECS",
]

logger = logging.getLogger(__name__)

# FFmpeg decoders that can decode at 1/2, 1/4 or 1/8 size (their AVCodec
# max_lowres is 3). Others (H.264, HEVC, VP8/9, AV1) silently ignore the
# option, so a too-large video in those codecs is refused instead.
LOWRES_CODECS = frozenset({"mjpeg", "mpeg4", "mpeg1video", "mpeg2video", "h263"})
_MAX_LOWRES = 3

# Above this many pixels per frame the decoder gets fewer threads: FFmpeg's
# frame threading keeps one frame in flight per thread (see BENCHMARKS.md,
# "Large frames", for what a 4K and an 8K stream cost).
_BIG_FRAME_PIXELS = 3840 * 2160
_BIG_FRAME_THREADS = 4


def quarter_turns(frame: Any) -> int:
    """Counter-clockwise quarter turns (0-3) that the frame's display matrix asks for.

    PyAV's ``frame.rotation`` is the display matrix's counter-clockwise angle
    (a phone held upright records ``-90``); angles that are not a multiple of
    90 are rounded to the nearest quarter turn. Mirroring in the matrix is
    not applied (cameras and phones do not write it).
    """
    degrees = getattr(frame, "rotation", 0) or 0
    return int(round(degrees / 90.0)) % 4


def display_size(frame: Any) -> tuple[int, int]:
    """``(height, width)`` of a decoded frame as it is meant to be shown (after its rotation)."""
    if quarter_turns(frame) % 2:
        return int(frame.width), int(frame.height)
    return int(frame.height), int(frame.width)


def av_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """RGB uint8 (H, W, 3) of a decoded frame, full size and upright (its display matrix applied).

    No pre-scaling here, even for very large frames: the one resize to model
    scale is stream.model.preprocess.resize_frame, which matches transformers'
    reference; an swscale pre-scale would change the pixels the model sees.
    Very large video is bounded at open instead (``max_pixels`` in open_video).
    """
    rgb = frame.to_ndarray(format="rgb24")
    turns = quarter_turns(frame)
    if turns:
        # np.rot90 turns counter-clockwise, like the display matrix; copy so
        # the ring and the resize get a plain contiguous array.
        rgb = np.ascontiguousarray(np.rot90(rgb, turns))
    return rgb


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

    ``max_pixels`` bounds the decoded frame size (``ingest.max_pixels``): a
    larger video is decoded at 1/2, 1/4 or 1/8 size where the codec can
    (MJPEG, MPEG-4 Part 2, MPEG-1/2, H.263) and refused with
    FatalSourceError otherwise. Frames above 4K get fewer decoder threads.
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
        lowres = _bound_size(codec, display, max_pixels) if max_pixels is not None else 0
        bound_threads(codec, lowres)
    except BaseException:
        close_quietly(container)
        raise
    return container, stream


def _bound_size(codec: Any, display: str, max_pixels: int) -> int:
    """Make the decoder's frames fit ``max_pixels``: reduced resolution where FFmpeg can, else refuse.

    Returns the lowres factor set (0: full size). The size is the one
    avformat_find_stream_info learned at open (for the inputs we take it
    decodes a frame when the container does not say).
    """
    width, height = int(codec.width or 0), int(codec.height or 0)
    if width <= 0 or height <= 0:
        logger.debug("size of %s unknown at open: ingest.max_pixels not checked", display)
        return 0
    if width * height <= max_pixels:
        return 0
    lowres = _lowres_for(codec.name, width, height, max_pixels)
    if lowres == 0:
        raise FatalSourceError(_too_large(display, codec.name, width, height, max_pixels))
    codec.options = {**(codec.options or {}), "lowres": str(lowres)}
    logger.info(
        "%s is %dx%d, more than ingest.max_pixels (%d): decoding it at 1/%d size",
        display, width, height, max_pixels, 1 << lowres,
    )
    return lowres


def bound_threads(codec: Any, lowres: int = 0) -> None:
    """Fewer decoder threads for frames above 4K.

    Each frame thread holds a frame of its own, so FFmpeg's default (one per
    core, plus one) makes a big-frame stream's memory grow with the machine's
    core count.
    """
    width, height = int(codec.width or 0), int(codec.height or 0)
    if _reduced(width, lowres) * _reduced(height, lowres) > _BIG_FRAME_PIXELS:
        codec.thread_count = _BIG_FRAME_THREADS


def _reduced(size: int, lowres: int) -> int:
    return -(-size // (1 << lowres))  # FFmpeg rounds up (AV_CEIL_RSHIFT)


def _lowres_for(codec_name: str, width: int, height: int, max_pixels: int) -> int:
    """The smallest lowres factor (1-3) that makes the frames fit, or 0 if none does or the codec has none."""
    if codec_name not in LOWRES_CODECS:
        return 0
    for lowres in range(1, _MAX_LOWRES + 1):
        if _reduced(width, lowres) * _reduced(height, lowres) <= max_pixels:
            return lowres
    return 0


def _too_large(display: str, codec_name: str, width: int, height: int, max_pixels: int) -> str:
    frame_mib = width * height * 3 / 2**20  # one RGB copy; the decoder holds several YUV frames
    return (
        f"{display} is {width}x{height} ({width * height / 1e6:.3g} MP, {frame_mib:.3g} MiB per RGB frame), "
        f"more than ingest.max_pixels = {max_pixels} ({max_pixels / 1e6:.3g} MP), and {codec_name} cannot be "
        "decoded at reduced size: send a smaller stream (the camera's sub-stream) or raise ingest.max_pixels"
    )
