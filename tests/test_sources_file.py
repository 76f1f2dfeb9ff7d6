"""A file played as a camera, and files that can never work (missing, garbage, audio only)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import numpy as np
import pytest

from stream.sources import InvalidSource, MemorySink, SourceOptions, open_source
from stream.sources.file import FileSource
from stream.types import SourceState
from tests.support.sources import StatusLog, half_size, open_fds, source_threads, wait_until
from tests.support.videos import make_audio_only, make_garbage_file, make_video

FAST = SourceOptions(watchdog_s=2.0, backoff_initial_s=0.2, backoff_max_s=1.0, open_timeout_s=2.0, read_timeout_s=2.0)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    """A 1 s, 30 fps, 320x240 H.264 clip."""
    return str(make_video(tmp_path_factory.mktemp("clips") / "clip.mp4", fps=30, seconds=1.0))


async def test_file_plays_at_native_fps_at_model_scale(clip: str) -> None:
    """Frames arrive at about 30 fps in real time, resized by size_for, with increasing ts."""
    sink = MemorySink(capacity=1000)
    log = StatusLog()
    source = open_source("f", clip, sink, half_size, log, replace(FAST, loop=False))
    await source.start()
    await wait_until(lambda: source.state is SourceState.STOPPED, 5, "end of file")
    frames = sink.frames()
    assert len(frames) == 30
    assert all(f.image.shape == (120, 160, 3) and f.image.dtype == np.uint8 for f in frames)
    ts = np.array([f.ts for f in frames])
    assert np.all(np.diff(ts) > 0)
    # Paced in real time: 30 frames span 29/30 s, each step one frame period.
    assert ts[-1] - ts[0] == pytest.approx(29 / 30, abs=0.02)
    assert np.diff(ts).mean() == pytest.approx(1 / 30, rel=0.05)
    # The content moves: frames differ.
    assert not np.array_equal(frames[0].image, frames[10].image)
    assert log.states == [SourceState.CONNECTING, SourceState.LIVE, SourceState.STOPPED]
    assert source.reason == "end of file"
    await source.stop()
    assert source.state is SourceState.STOPPED  # stop() after the end changes nothing


@pytest.mark.slow
async def test_file_loops_past_the_end_without_resetting_the_sink(clip: str) -> None:
    """With loop=True a 1 s file keeps delivering for 1.6 s, evenly, and the sink is reset only once."""
    sink = MemorySink(capacity=1000)
    source = FileSource("f", clip, sink, half_size, options=FAST)
    fds_before = open_fds()
    await source.start()
    await asyncio.sleep(1.6)
    assert source.state is SourceState.LIVE
    await source.stop()
    frames = sink.frames()
    assert 42 <= len(frames) <= 50
    steps = np.diff([f.ts for f in frames])
    assert steps.max() < 2.5 / 30  # no stall or jump at the loop point
    assert sink.resets == 1
    assert source._passes >= 1
    assert not source_threads()
    assert open_fds() <= fds_before + 2


async def test_file_recv_and_snapshot(clip: str) -> None:
    """recv() returns live frames; snapshot() gives the newest frame at model scale."""
    source = FileSource("f", clip, MemorySink(), half_size, options=FAST)
    async with source:
        first = await asyncio.wait_for(source.recv(), 3)
        second = await asyncio.wait_for(source.recv(), 3)
        assert second.ts > first.ts
        snap = source.snapshot()
        assert snap is not None and snap.shape == (120, 160, 3)
        stats = source.stats()
        assert stats.frames_in >= 2 and stats.frames_decoded >= stats.frames_in
    assert source.state is SourceState.STOPPED
    assert not source_threads()


async def test_sink_decimation_skips_conversion(clip: str, monkeypatch) -> None:
    """Frames the sink does not want are decoded but never converted to RGB."""
    import stream.sources.file as file_module

    conversions = []
    real = file_module.av_to_rgb
    monkeypatch.setattr(file_module, "av_to_rgb", lambda f: conversions.append(1) or real(f))
    sink = MemorySink(capacity=1000, fps=5)
    source = FileSource("f", clip, sink, half_size, options=SourceOptions(loop=False))
    await source.start()
    await wait_until(lambda: source.state is SourceState.STOPPED, 5, "end of file")
    stats = source.stats()
    assert stats.frames_decoded == 30
    assert stats.frames_in == len(sink.frames()) == len(conversions)
    assert 4 <= stats.frames_in <= 6
    assert stats.frames_skipped == 30 - stats.frames_in


@pytest.mark.parametrize("ext,codec", [("avi", "mjpeg"), ("webm", "libvpx-vp9"), ("mkv", "mpeg4")])
async def test_other_containers_and_codecs_play(tmp_path, ext: str, codec: str) -> None:
    """The file source reads what make_video writes in other containers and codecs."""
    path = make_video(tmp_path / f"c.{ext}", fps=30, seconds=0.3, codec=codec)
    sink = MemorySink()
    source = FileSource("f", str(path), sink, half_size, options=SourceOptions(loop=False))
    await source.start()
    await wait_until(lambda: source.state is SourceState.STOPPED, 5, "end of file")
    assert len(sink.frames()) == 9


# ---------------------------------------------------------------- bad files


def test_missing_file_is_invalid_at_once(tmp_path) -> None:
    """A path that does not exist is refused by the factory with the path in the message."""
    with pytest.raises(InvalidSource, match="no such file"):
        open_source("f", str(tmp_path / "nope.mp4"), MemorySink(), half_size)


async def _run_until_final(source, timeout: float = 5.0) -> None:
    await source.start()
    await wait_until(lambda: source.state in (SourceState.FAILED, SourceState.STOPPED), timeout, "a final state")


async def test_garbage_file_fails_with_clear_reason(tmp_path) -> None:
    """Random bytes named .mp4 end FAILED ('not a video file'), with no retries."""
    log = StatusLog()
    source = FileSource("f", str(make_garbage_file(tmp_path / "junk.mp4")), MemorySink(), half_size, log, FAST)
    await _run_until_final(source)
    assert source.state is SourceState.FAILED
    assert "is not a video file FFmpeg can read" in source.reason
    assert source.stats().reconnects == 0
    await source.stop()
    assert source.state is SourceState.FAILED  # stopping keeps the reason visible
    await asyncio.sleep(0.01)
    assert log.states == [SourceState.CONNECTING, SourceState.FAILED]


@pytest.mark.parametrize("ext", ["m4a", "mp2", "wav"])
async def test_audio_only_file_fails_no_video_stream(tmp_path, ext: str) -> None:
    """An audio-only file ends FAILED saying it has no video stream, only audio."""
    source = FileSource("f", str(make_audio_only(tmp_path / f"tone.{ext}")), MemorySink(), half_size, options=FAST)
    await _run_until_final(source)
    assert source.state is SourceState.FAILED
    assert "no video stream" in source.reason and "audio" in source.reason
    await source.stop()


async def test_file_deleted_between_factory_and_start_fails(tmp_path, caplog) -> None:
    """A file that vanished before start() ends FAILED 'no such file', logged once as a warning."""
    path = make_video(tmp_path / "gone.mp4", seconds=0.2)
    source = open_source("f", str(path), MemorySink(), half_size, options=FAST)
    path.unlink()
    with caplog.at_level(logging.WARNING, logger="stream.sources"):
        await _run_until_final(source)
    assert source.state is SourceState.FAILED
    assert source.reason.startswith("no such file")
    assert sum("failed" in r.getMessage() for r in caplog.records) == 1
    await source.stop()



async def test_previews_and_clip_assembly_convert_safely_beside_the_reader(clip: str) -> None:
    """snapshot()/latest_frame() hammered from two threads while the reader converts: no crash, valid images.

    Converting one PyAV frame from two threads at once crashes in swscale; this
    would take the whole test process down without the source's conversion lock.
    """
    import threading

    sink = MemorySink(capacity=1000)
    source = open_source("f", clip, sink, half_size, None, FAST)  # every frame admitted: the reader converts all
    await source.start()
    await wait_until(lambda: source.state is SourceState.LIVE, 5, "live")
    stop = threading.Event()
    shapes: list[tuple[int, ...]] = []

    def hammer() -> None:
        while not stop.is_set():
            for image in (source.snapshot(), getattr(source.latest_frame(), "image", None)):
                if image is not None:
                    shapes.append(image.shape)

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    await asyncio.sleep(2.0)
    stop.set()
    for t in threads:
        t.join()
    await source.stop()
    assert len(shapes) > 50 and set(shapes) == {(120, 160, 3)}
    assert len(sink.frames()) > 30


# ------------------------------------------------- rotated and too-large files


async def test_rotated_file_reaches_the_sink_upright(tmp_path) -> None:
    """A file with a 90-degree display matrix: frames, snapshots and the size in its status are upright."""
    import av

    from stream.sources._av import display_size
    from tests.support.videos import make_halves_video

    path = make_halves_video(tmp_path / "phone.mp4", width=64, height=32, fps=10, seconds=0.5, rotation=90)
    sink = MemorySink(capacity=100)
    statuses = []
    source = FileSource("f", str(path), sink, half_size, statuses.append, options=replace(FAST, loop=False))
    await source.start()
    await wait_until(lambda: source.state is SourceState.STOPPED, 5, "end of file")
    frames = sink.frames()
    assert frames and all(f.image.shape == (32, 16, 3) for f in frames)
    live = [st.reason for st in statuses if st.state is SourceState.LIVE]
    assert live and "receiving 32x64 video" in live[0], live  # width x height as shown, not as stored
    image = frames[0].image.astype(float)
    assert image[-12:].mean() > 200 and image[:12].mean() < 50
    snap = source.snapshot()
    assert snap is not None and snap.shape == (32, 16, 3)
    with av.open(str(path)) as container:
        assert display_size(next(container.decode(video=0))) == (64, 32)


async def test_file_over_max_pixels_fails_naming_the_setting(tmp_path) -> None:
    """An H.264 file larger than max_pixels ends FAILED at once, naming its size and ingest.max_pixels."""
    path = make_video(tmp_path / "big.mp4", width=320, height=240, seconds=0.3)
    source = FileSource("f", str(path), MemorySink(), half_size, options=replace(FAST, max_pixels=200 * 150))
    await _run_until_final(source)
    assert source.state is SourceState.FAILED
    assert "320x240" in source.reason and "ingest.max_pixels" in source.reason
    assert source.stats().reconnects == 0
    await source.stop()


async def test_mjpeg_file_over_max_pixels_plays_at_reduced_size(tmp_path) -> None:
    """An MJPEG file larger than max_pixels plays, decoded at half size, then resized by size_for as usual."""
    path = make_video(tmp_path / "big.avi", width=320, height=240, fps=30, seconds=0.3, codec="mjpeg")
    sink = MemorySink()
    seen: list[tuple[int, int]] = []

    def size_for(height: int, width: int) -> tuple[int, int]:
        seen.append((height, width))
        return half_size(height, width)

    source = FileSource("f", str(path), sink, size_for, options=replace(FAST, loop=False, max_pixels=200 * 150))
    await source.start()
    await wait_until(lambda: source.state is SourceState.STOPPED, 5, "end of file")
    assert len(sink.frames()) == 9
    assert set(seen) == {(120, 160)} and sink.frames()[0].image.shape == (60, 80, 3)
