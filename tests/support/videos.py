"""Test videos made at test time with PyAV: moving content, several containers and codecs.

``make_video`` writes a bright square moving over a gradient, so every frame
differs from the one before (tests can tell frames apart and see motion).
Containers come from the file extension: .mp4, .mov, .mkv, .avi, .webm.
Codecs this PyAV build can encode: libx264, mpeg4, libvpx (VP8),
libvpx-vp9, mjpeg (also libsvtav1, not used here).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from stream.bench.media import encode_frames

__all__ = [
    "CODECS",
    "frame_pattern",
    "make_video",
    "make_garbage_file",
    "make_audio_only",
    "frame_index_of",
    "damage_file",
    "make_halves_video",
]

# Codecs tests may ask for, with the pixel format each one needs.
CODECS = {
    "libx264": "yuv420p",
    "h264": "yuv420p",
    "mpeg4": "yuv420p",
    "libvpx": "yuv420p",
    "vp8": "yuv420p",
    "libvpx-vp9": "yuv420p",
    "vp9": "yuv420p",
    "mjpeg": "yuvj420p",
}
_ALIASES = {"vp8": "libvpx", "vp9": "libvpx-vp9", "h264": "libx264"}


def frame_pattern(index: int, width: int, height: int, pattern: str = "moving") -> np.ndarray:
    """RGB uint8 (H, W, 3) for frame ``index``.

    ``moving``: a horizontal gradient with a white square whose x position
    advances 4 px per frame and whose row band encodes nothing else.
    ``solid``: a flat colour whose red channel counts frames (mod 256),
    handy to read a frame number back after lossy coding.
    """
    if pattern == "solid":
        image = np.empty((height, width, 3), dtype=np.uint8)
        image[..., 0] = (index * 8) % 256
        image[..., 1] = 128
        image[..., 2] = 255 - (index * 8) % 256
        return image
    if pattern != "moving":
        raise ValueError(f"unknown pattern {pattern!r}: use 'moving' or 'solid'")
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[..., 0] = x[None, :].astype(np.uint8)
    image[..., 1] = y[:, None].astype(np.uint8)
    image[..., 2] = 96
    side = max(8, min(width, height) // 4)
    left = (index * 4) % max(1, width - side)
    top = (height - side) // 2
    image[top : top + side, left : left + side] = 255
    return image


def frame_index_of(image: np.ndarray) -> int:
    """Read back the frame number of a ``solid`` frame (nearest multiple, mod 32)."""
    red = float(np.median(image[..., 0]))
    return int(round(red / 8)) % 32


def make_video(
    path: str | Path,
    *,
    width: int = 320,
    height: int = 240,
    fps: int | float = 30,
    seconds: float = 2.0,
    codec: str = "libx264",
    pix_fmt: str | None = None,
    pattern: str = "moving",
) -> Path:
    """Write a video to ``path`` (container from the extension) and return the path.

    ``pix_fmt`` defaults to what the codec needs (yuvj420p for mjpeg,
    yuv420p otherwise). Frames get exact pts (1/fps time base), so a reader
    can pace them.
    """
    path = Path(path)
    codec = _ALIASES.get(codec, codec)
    if pix_fmt is None:
        pix_fmt = CODECS.get(codec, "yuv420p")
    rate = Fraction(fps).limit_denominator(1001)
    count = max(1, int(round(seconds * float(rate))))
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width = width
        stream.height = height
        stream.pix_fmt = pix_fmt
        # Do not set stream.time_base: the muxer picks its own (mp4: 1/15360)
        # and PyAV rescales from the frames' time base below; forcing it
        # garbles the rate (mp4 read back 225 fps) and breaks mpeg4.
        if codec == "libx264":
            # No B-frame lookahead surprises, small files, fast at test time.
            stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        elif codec in ("libvpx", "libvpx-vp9"):
            stream.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
            stream.bit_rate = 500_000
        encode_frames(container, stream, (frame_pattern(i, width, height, pattern) for i in range(count)), rate)
    return path


def make_garbage_file(path: str | Path, size: int = 64 * 1024, seed: int = 0) -> Path:
    """Random bytes with a video-like name: FFmpeg must refuse it."""
    path = Path(path)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def make_audio_only(path: str | Path, *, seconds: float = 1.0, rate: int = 44100) -> Path:
    """An audio-only file (a sine tone); codec from the extension: .m4a aac, .mp2 mp2, .wav pcm."""
    path = Path(path)
    codec = {".m4a": "aac", ".mp4": "aac", ".mp2": "mp2", ".wav": "pcm_s16le"}.get(path.suffix.lower())
    if codec is None:
        raise ValueError(f"make_audio_only: use .m4a, .mp2 or .wav, not {path.suffix!r}")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        fmt = "s16" if codec in ("pcm_s16le", "mp2") else "fltp"
        samples = 1152 if codec == "mp2" else 1024
        total = int(seconds * rate)
        t0 = 0
        while t0 < total:
            t = (np.arange(t0, t0 + samples) / rate).astype(np.float32)
            wave = 0.3 * np.sin(2 * np.pi * 440 * t)
            data = (wave * 32767).astype(np.int16)[None, :] if fmt == "s16" else wave[None, :]
            frame = av.AudioFrame.from_ndarray(data, format=fmt, layout="mono")
            frame.sample_rate = rate
            frame.pts = t0
            for packet in stream.encode(frame):
                container.mux(packet)
            t0 += samples
        for packet in stream.encode():
            container.mux(packet)
    return path


def damage_file(path: str | Path, fraction: float = 0.10, seed: int = 0) -> Path:
    """Overwrite ``fraction`` of the file's bytes, in the middle, with random bytes (in place)."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    count = int(len(data) * fraction)
    start = (len(data) - count) // 2
    data[start : start + count] = np.random.default_rng(seed).integers(0, 256, count, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def make_halves_video(
    path: str | Path,
    *,
    width: int = 64,
    height: int = 32,
    fps: int = 10,
    seconds: float = 1.0,
    rotation: int = 0,
    codec: str = "libx264",
    white: str = "left",
) -> Path:
    """Frames whose ``white`` half (left, top or bottom) is white and the rest black, with ``rotation`` in the display matrix.

    ``rotation`` is counter-clockwise degrees, as PyAV's ``VideoFrame.rotation``
    reads it back (a phone held upright writes -90). Turned upright, a 90
    degree video has its white half at the bottom, -90 at the top.
    """
    path = Path(path)
    codec = _ALIASES.get(codec, codec)
    image = np.zeros((height, width, 3), dtype=np.uint8)
    halves = {"left": np.s_[:, : width // 2], "top": np.s_[: height // 2], "bottom": np.s_[height // 2 :]}
    if white not in halves:
        raise ValueError(f"make_halves_video: white must be one of {', '.join(halves)}, not {white!r}")
    image[halves[white]] = 255
    rate = Fraction(fps)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, CODECS.get(codec, "yuv420p")
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        if rotation:
            stream.set_display_rotation(rotation)
        encode_frames(container, stream, (image for _ in range(max(1, int(round(seconds * fps))))), rate)
    return path
