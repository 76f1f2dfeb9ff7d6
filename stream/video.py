"""Reading clips out of video files, decoding only the frames that are needed.

Timestamps come from demuxing (cheap: no decoding), clips are chosen with the
same sampling rule as live streams, and the decoder seeks past long stretches
that no clip needs. Frames come out upright (the display matrix applied, as
in the live sources). A damaged stretch costs the frames it holds, not the
rest of the file: packets that do not decode are skipped, and each sampled
frame that could not be decoded is stood in for by its nearest decoded
neighbour, counted in ``DecodedFrames.substituted`` and in a warning.
"""

from __future__ import annotations

import logging
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from stream.model.preprocess import resize_frame
from stream.sampling import sample_indices
from stream.sources._av import av_to_rgb, bound_threads, quarter_turns

__all__ = ["VideoError", "VideoInfo", "DecodedFrames", "open_video", "clip_plan", "read_frames"]

log = logging.getLogger(__name__)

# Seek instead of decoding through when the next needed frame is this far ahead.
_SEEK_AHEAD_S = 2.0
# Probing decodes at most this many packets to learn the frames' rotation.
_ROTATION_PROBE_PACKETS = 16


class VideoError(Exception):
    """A video that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int  # as displayed: after the rotation in the file's display matrix
    height: int
    codec: str
    fps: float
    pts: np.ndarray  # int64 presentation timestamps of every frame, sorted
    keyframes: np.ndarray  # int64 pts of the keyframes (where a seek can land), sorted
    times: np.ndarray  # the same in seconds from the first frame
    time_base: float
    rotation: int = 0  # degrees counter-clockwise applied to every frame (0, 90, 180 or 270)

    @property
    def frames(self) -> int:
        return len(self.pts)

    @property
    def duration_s(self) -> float:
        """First to last frame, plus one frame's duration."""
        return float(self.times[-1]) + (1.0 / self.fps if self.fps > 0 else 0.0)


class DecodedFrames(dict):
    """Frame index -> RGB uint8 (H, W, 3); ``substituted`` lists the indices stood in for by a neighbour."""

    def __init__(self, frames: dict[int, np.ndarray] | None = None, substituted: list[int] | tuple[int, ...] = ()) -> None:
        super().__init__(frames or {})
        self.substituted: tuple[int, ...] = tuple(sorted(substituted))


def _open(path: str) -> av.container.InputContainer:
    p = Path(path)
    if not p.exists():
        raise VideoError(f"{path}: no such file")
    if p.is_dir():
        raise VideoError(f"{path}: is a folder, not a video file")
    _check_regular(path, p.stat().st_mode)
    if p.stat().st_size == 0:
        raise VideoError(f"{path}: is an empty file")
    try:
        return av.open(str(p), mode="r")
    except av.error.EOFError:
        raise VideoError(f"{path}: has no frames (the file ends before any video data)") from None
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: not a readable video ({_ffmpeg_reason(exc)})") from None


def _check_regular(path: str, mode: int) -> None:
    """Refuse what is not a regular file before FFmpeg opens it (a FIFO would block, or be read once)."""
    if stat.S_ISREG(mode):
        return
    if stat.S_ISFIFO(mode):
        raise VideoError(
            f"{path}: is a named pipe (FIFO), not a file: predict reads a video twice and seeks in it, "
            "so save what the pipe carries to a file first and predict on that"
        )
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise VideoError(f"{path}: is a device, not a video file (a camera is a live source: python server.py --source {path})")
    if stat.S_ISSOCK(mode):
        raise VideoError(f"{path}: is a socket, not a video file")
    raise VideoError(f"{path}: is not a regular file")


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
        turns: int | None = None
        try:
            for packet in container.demux(stream):
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is not None and packet.size > 0:
                    pts.append(int(ts))
                    if packet.is_keyframe:
                        keys.append(int(ts))
                if turns is None and len(pts) <= _ROTATION_PROBE_PACKETS:
                    turns = _rotation_of(packet)
        except av.error.FFmpegError as exc:
            if not pts:
                raise VideoError(f"{path}: cannot be read ({_ffmpeg_reason(exc)})") from None
            log.warning("%s: stopped reading at a damaged packet after %d frames", path, len(pts))
        if not pts:
            raise VideoError(f"{path}: the video stream has no frames")
        arr = np.unique(np.asarray(pts, dtype=np.int64))  # sorted; B-frames come out of order
        if fps <= 0 and len(arr) > 1:
            fps = (len(arr) - 1) / ((arr[-1] - arr[0]) * time_base)
        width, height = int(codec.width or 0), int(codec.height or 0)
        turns = turns or 0
        return VideoInfo(
            path=path,
            width=height if turns % 2 else width,
            height=width if turns % 2 else height,
            codec=codec.name,
            fps=fps,
            pts=arr,
            keyframes=np.unique(np.asarray(keys or [arr[0]], dtype=np.int64)),
            times=(arr - arr[0]) * time_base,
            time_base=time_base,
            rotation=turns * 90,
        )
    finally:
        container.close()


def _rotation_of(packet: av.Packet) -> int | None:
    """Quarter turns of the first frame this packet decodes to, or None if it gives none yet.

    The display matrix is stream side data that FFmpeg copies onto every
    decoded frame; PyAV shows it only on frames, so probing decodes one.
    """
    try:
        frames = packet.decode()
    except av.error.FFmpegError:
        return None  # a damaged first packet: try the next one
    return quarter_turns(frames[0]) if frames else None


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
) -> DecodedFrames:
    """Decode the frames at these indices (RGB uint8, upright, resized by ``size_for``), seeking where it pays.

    ``progress(1)`` is called once for each frame that was itself decoded; a
    frame that could not be (a damaged stretch) is stood in for by the
    nearest decoded frame and listed in the result's ``substituted``.
    """
    wanted = sorted(set(int(i) for i in indices))
    picker = _Picker(info, wanted, size_for, progress)
    container = _open(info.path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        bound_threads(stream.codec_context)  # an 8K file would otherwise hold a frame per core
        for frame in _decode_needed(container, stream, info, wanted):
            if picker.offer(frame):
                break
    finally:
        container.close()
    frames = picker.finish()
    if frames.substituted:
        share = len(frames.substituted) / len(wanted)
        log.warning(
            "%s: %d of %d sampled frames (%.0f%%) could not be decoded and were replaced by their "
            "nearest decoded neighbour (a damaged video: the labels may be wrong)",
            info.path, len(frames.substituted), len(wanted), 100 * share,
        )
    return frames


class _Picker:
    """Keeps the wanted frames out of a decoded sequence, and stands in for the ones it never sees.

    A wanted frame that the decoder passes without producing (its packet was
    damaged) gets the nearer of the decoded frames on either side of it.
    """

    def __init__(self, info: VideoInfo, wanted: list[int], size_for, progress) -> None:
        self._pts = info.pts
        self._wanted = wanted
        self._size_for = size_for
        self._progress = progress
        self._next = 0  # position in wanted of the first frame not yet kept or stood in for
        self._prev: av.VideoFrame | None = None  # the last decoded frame, unconverted
        self._last_rgb: tuple[av.VideoFrame, np.ndarray] | None = None
        self._out: dict[int, np.ndarray] = {}
        self._substituted: list[int] = []
        self.path = info.path

    def offer(self, frame: av.VideoFrame) -> bool:
        """Take one decoded frame (in presentation order); True once every wanted frame is settled."""
        pts = frame.pts
        while self._next < len(self._wanted) and self._pts[self._wanted[self._next]] < pts:
            index = self._wanted[self._next]
            if index not in self._out:
                self._stand_in(index, frame)
            self._next += 1
        if self._next < len(self._wanted) and self._pts[self._wanted[self._next]] == pts:
            self._out[self._wanted[self._next]] = self._convert(frame)
            self._next += 1
            if self._progress is not None:
                self._progress(1)
        self._prev = frame
        return self._next >= len(self._wanted)

    def finish(self) -> DecodedFrames:
        """The frames; those never reached (the file ends early) get the last decoded one."""
        if not self._out and self._prev is None:
            raise VideoError(f"{self.path}: no frame could be decoded (unsupported or damaged video)")
        for index in self._wanted[self._next :]:
            if index not in self._out:
                self._stand_in(index, None)
        return DecodedFrames(self._out, self._substituted)

    def _stand_in(self, index: int, after: av.VideoFrame | None) -> None:
        before = self._prev
        target = int(self._pts[index])
        if before is None or (after is not None and after.pts - target < target - before.pts):
            source = after
        else:
            source = before
        self._out[index] = self._convert(source)
        self._substituted.append(index)

    def _convert(self, frame: av.VideoFrame) -> np.ndarray:
        # The frame before a damaged stretch may stand in for several: convert it once.
        if self._last_rgb is not None and self._last_rgb[0] is frame:
            return self._last_rgb[1]
        rgb = av_to_rgb(frame)
        if self._size_for is not None:
            rgb = resize_frame(rgb, self._size_for(rgb.shape[0], rgb.shape[1]))
        self._last_rgb = (frame, rgb)
        return rgb


def _decode_needed(container, stream, info: VideoInfo, wanted: list[int]) -> Iterator[av.VideoFrame]:
    """Decoded frames in order, seeking over long stretches that no clip needs.

    A seek lands on the keyframe at or before its target, so we seek only when
    that keyframe lies ahead of where the decoder already is: every seek makes
    progress, and a video with one keyframe is simply decoded through. A
    damaged container (demuxing fails) resumes at the next keyframe.
    """
    ahead = _SEEK_AHEAD_S / info.time_base  # in pts units
    pos: int | None = None
    k = 0

    def keyframe_before(i: int) -> int:
        j = int(np.searchsorted(info.keyframes, info.pts[i], side="right")) - 1
        return int(info.keyframes[max(j, 0)])

    resume_at: int | None = None  # a keyframe to go on from after damage
    passed = int(info.pts[0])  # damage was met at or after this pts: each resume must go past it
    while k < len(wanted):
        key = keyframe_before(wanted[k]) if resume_at is None else resume_at
        if resume_at is not None or key > (pos if pos is not None else info.pts[0]) + (ahead if pos is not None else 0):
            _seek(container, stream, key)
        resume_at = None
        try:
            for frame in _decoded_packets(container, stream):
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
        except av.error.FFmpegError as exc:
            passed = max(passed, pos if pos is not None else passed)
            resume_at = _next_keyframe(info, passed)
            if resume_at is None:
                log.warning("%s: reading stopped at damage near the end (%s)", info.path, _ffmpeg_reason(exc))
                return
            log.info("%s: damaged data (%s), resuming at the next keyframe", info.path, _ffmpeg_reason(exc))
            passed = resume_at


def _decoded_packets(container, stream) -> Iterator[av.VideoFrame]:
    """Frames of the demuxed packets, skipping packets that do not decode.

    ``container.decode`` would end at the first damaged packet; the decoder
    itself recovers at the next frame it can decode (H.264 at the next
    keyframe or recovery point), so one bad packet costs a frame or a GOP.
    """
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            continue
        yield from frames


def _next_keyframe(info: VideoInfo, pts: int) -> int | None:
    """The first keyframe after ``pts``, or None if there is none."""
    after = info.keyframes[info.keyframes > pts]
    return int(after[0]) if len(after) else None


def _seek(container, stream, key: int) -> None:
    try:
        container.seek(key, stream=stream, backward=True, any_frame=False)
    except av.error.FFmpegError as exc:
        # Decoding on from where we are is slower but still right.
        log.debug("seek to %d failed (%s): decoding through", key, _ffmpeg_reason(exc))
