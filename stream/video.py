"""Reading clips out of video files, decoding only the frames that are needed.

Timestamps come from demuxing (cheap: no decoding), clips are chosen with the
same sampling rule as live streams, and the decoder seeks past long stretches
that no clip needs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from stream.model.preprocess import resize_frame
from stream.sampling import sample_indices

__all__ = ["VideoError", "VideoInfo", "open_video", "clip_plan", "read_frames"]

log = logging.getLogger(__name__)

# Seek instead of decoding through when the next needed frame is this far ahead.
_SEEK_AHEAD_S = 2.0


class VideoError(Exception):
    """A video that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int
    height: int
    codec: str
    fps: float
    pts: np.ndarray  # int64 presentation timestamps of every frame, sorted
    keyframes: np.ndarray  # int64 pts of the keyframes (where a seek can land), sorted
    times: np.ndarray  # the same in seconds from the first frame
    time_base: float

    @property
    def frames(self) -> int:
        return len(self.pts)

    @property
    def duration_s(self) -> float:
        """First to last frame, plus one frame's duration."""
        return float(self.times[-1]) + (1.0 / self.fps if self.fps > 0 else 0.0)


def _open(path: str) -> av.container.InputContainer:
    p = Path(path)
    if not p.exists():
        raise VideoError(f"{path}: no such file")
    if p.is_dir():
        raise VideoError(f"{path}: is a folder, not a video file")
    if p.stat().st_size == 0:
        raise VideoError(f"{path}: is an empty file")
    try:
        return av.open(str(p), mode="r")
    except av.error.EOFError:
        raise VideoError(f"{path}: has no frames (the file ends before any video data)") from None
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: not a readable video ({_ffmpeg_reason(exc)})") from None


def _ffmpeg_reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc).splitlines()[0]


def open_video(path: str) -> VideoInfo:
    """Probe a file: its size, codec and every frame's timestamp (by demuxing, not decoding)."""
    container = _open(path)
    try:
        if not container.streams.video:
            raise VideoError(f"{path}: has no video stream (audio-only or not a video)")
        stream = container.streams.video[0]
        codec = stream.codec_context
        if codec is None or not codec.name:
            raise VideoError(f"{path}: video codec cannot be decoded by this FFmpeg build")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        time_base = float(stream.time_base) if stream.time_base else (1.0 / fps if fps else 1.0)
        pts: list[int] = []
        keys: list[int] = []
        try:
            for packet in container.demux(stream):
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is not None and packet.size > 0:
                    pts.append(int(ts))
                    if packet.is_keyframe:
                        keys.append(int(ts))
        except av.error.FFmpegError as exc:
            if not pts:
                raise VideoError(f"{path}: cannot be read ({_ffmpeg_reason(exc)})") from None
            log.warning("%s: stopped reading at a damaged packet after %d frames", path, len(pts))
        if not pts:
            raise VideoError(f"{path}: the video stream has no frames")
        arr = np.unique(np.asarray(pts, dtype=np.int64))  # sorted; B-frames come out of order
        if fps <= 0 and len(arr) > 1:
            fps = (len(arr) - 1) / ((arr[-1] - arr[0]) * time_base)
        return VideoInfo(
            path=path,
            width=int(codec.width or 0),
            height=int(codec.height or 0),
            codec=codec.name,
            fps=fps,
            pts=arr,
            keyframes=np.unique(np.asarray(keys or [arr[0]], dtype=np.int64)),
            times=(arr - arr[0]) * time_base,
            time_base=time_base,
        )
    finally:
        container.close()


def clip_plan(info: VideoInfo, num_frames: int, span_s: float, stride_s: float | None, clips: int = 3) -> list[np.ndarray]:
    """Frame indices of each clip to classify.

    With no stride: ``clips`` clips of ``span_s`` spread evenly over the video
    (one clip over the whole of a video shorter than the span), the way the
    checkpoint was evaluated. With a stride: sliding clips every ``stride_s``.
    """
    times = info.times
    total = float(times[-1])
    if total <= span_s:
        ends = [total]
    elif stride_s is None:
        ends = list(np.linspace(span_s, total, clips)) if clips > 1 else [total]
    else:
        ends = list(np.arange(span_s, total + 1e-9, stride_s))
        if total - ends[-1] > stride_s / 2:
            ends.append(total)
    return [sample_indices(times, float(end), span_s, num_frames) for end in ends]


def read_frames(
    info: VideoInfo,
    indices: np.ndarray,
    size_for: Callable[[int, int], tuple[int, int]] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[int, np.ndarray]:
    """Decode the frames at these indices (RGB uint8, resized by ``size_for``), seeking where it pays."""
    wanted = sorted(set(int(i) for i in indices))
    by_pts = {int(info.pts[i]): i for i in wanted}
    out: dict[int, np.ndarray] = {}
    container = _open(info.path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in _decode_needed(container, stream, info, wanted):
            i = by_pts.get(frame.pts) if frame.pts is not None else None
            if i is None or i in out:
                continue
            rgb = frame.to_ndarray(format="rgb24")
            if size_for is not None:
                rgb = resize_frame(rgb, size_for(rgb.shape[0], rgb.shape[1]))
            out[i] = rgb
            if progress is not None:
                progress(1)
            if len(out) == len(wanted):
                break
    except av.error.FFmpegError as exc:
        if not out:
            raise VideoError(f"{info.path}: cannot decode the video ({_ffmpeg_reason(exc)})") from None
        log.warning("%s: decoding stopped early (%s)", info.path, _ffmpeg_reason(exc))
    finally:
        container.close()
    missing = [i for i in wanted if i not in out]
    if missing:
        if not out:
            raise VideoError(f"{info.path}: no frame could be decoded (unsupported or damaged video)")
        # A damaged frame is stood in for by its nearest decoded neighbour.
        have = np.array(sorted(out))
        for i in missing:
            out[i] = out[int(have[np.abs(have - i).argmin()])]
    return out


def _decode_needed(container, stream, info: VideoInfo, wanted: list[int]) -> Iterator[av.VideoFrame]:
    """Decoded frames in order, seeking over long stretches that no clip needs.

    A seek lands on the keyframe at or before its target, so we seek only when
    that keyframe lies ahead of where the decoder already is: every seek makes
    progress, and a video with one keyframe is simply decoded through.
    """
    ahead = _SEEK_AHEAD_S / info.time_base  # in pts units
    pos: int | None = None
    k = 0

    def keyframe_before(i: int) -> int:
        j = int(np.searchsorted(info.keyframes, info.pts[i], side="right")) - 1
        return int(info.keyframes[max(j, 0)])

    while k < len(wanted):
        key = keyframe_before(wanted[k])
        if key > (pos if pos is not None else info.pts[0]) + (ahead if pos is not None else 0):
            container.seek(key, stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            pos = frame.pts
            yield frame
            while k < len(wanted) and info.pts[wanted[k]] <= pos:
                k += 1
            if k < len(wanted) and keyframe_before(wanted[k]) > pos + ahead:
                break  # the next needed frame is far ahead: seek to it
        else:
            return  # end of the stream
