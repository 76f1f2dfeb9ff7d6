"""Recording media: the packet buffer, remuxed clips (file, RTSP), encoded clips (WebRTC, webcam), limits, disk errors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from stream import clock
from stream.config import RecordConfig
from stream.events.clips import ClipError, ClipRecorder, ClipResult
from stream.events.encoder import FrameEncoder, encoded_size
from stream.events.files import MediaPaths
from stream.events.packets import CodecInfo, PacketBuffer
from stream.sources import MemorySink, SourceOptions
from stream.sources.file import FileSource
from tests.support.clips import Collected, TapLog, feed_file, make_gop_video, packet, probe, source_packets
from tests.support.sources import half_size, wait_until
from tests.support.videos import frame_index_of, frame_pattern

FPS, GOP = 30, 10  # the test video: a keyframe every third of a second
CODEC = CodecInfo("h264", 64, 48, Fraction(1, 30), None)  # for buffer tests: packets are never muxed
FAST = SourceOptions(watchdog_s=2.0, backoff_initial_s=0.2, backoff_max_s=1.0, open_timeout_s=2.0, read_timeout_s=2.0)


@pytest.fixture(scope="module")
def gop_video(tmp_path_factory) -> Path:
    """2 s of 320x240 H.264 at 30 fps, GOP 10, frames numbered in their colour (frame_index_of)."""
    return make_gop_video(tmp_path_factory.mktemp("rec") / "gop.mp4", fps=FPS, seconds=2.0, gop=GOP)


@pytest.fixture
def paths(tmp_path) -> MediaPaths:
    return MediaPaths(tmp_path / "data")


@pytest.fixture
def recorder(paths):
    rec = ClipRecorder(paths, finish_grace_s=0.5)
    try:
        yield rec
    finally:
        rec.close()


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def result_of(done: Collected, timeout: float = 15.0):
    return await asyncio.to_thread(done.wait, timeout)


# ------------------------------------------------------------------ the buffer


def test_buffer_trims_whole_gops_and_keeps_the_pre_capture() -> None:
    """The kept video reaches keep_s back from the newest packet, from a keyframe, and never more than one GOP beyond."""
    buffer = PacketBuffer(2.0)
    buffer.begin(CODEC)
    for i in range(300):  # 10 s at 30 fps, a keyframe each second, 1000 bytes a packet
        buffer.add(packet(bytes(1000), i, key=i % 30 == 0), i / 30)
        assert buffer.stats()["bytes"] <= (2.0 + 1.0) * 30 * 1000 + 1000
    stats = buffer.stats()
    assert 2.0 <= stats["seconds"] < 3.0 and stats["trimmed_early"] == 0 and stats["dropped"] == 0
    tap = TapLog()
    since = 299 / 30 - 2.0
    buffer.attach(tap, since)
    first = tap.packets[0]
    assert first.keyframe and first.ts <= since < first.ts + 1.0
    assert tap.packets[-1].pts == 299 and len(tap.packets) == stats["packets"]


def test_buffer_max_bytes_trims_early_and_bounds_a_gop_that_never_ends() -> None:
    """max_bytes trims GOPs before keep_s (counted); a single GOP over it is let go, while taps still get every packet."""
    buffer = PacketBuffer(60.0, max_bytes=50_000)
    buffer.begin(CODEC)
    live = TapLog()
    buffer.attach(live, 0.0)
    for i in range(300):
        buffer.add(packet(bytes(1000), i, key=i % 30 == 0), i / 30)
        assert buffer.stats()["bytes"] <= 50_000
    assert buffer.stats()["trimmed_early"] > 0
    for i in range(300, 400):  # no keyframe any more: the last GOP grows past max_bytes
        buffer.add(packet(bytes(1000), i), i / 30)
        assert buffer.stats()["bytes"] <= 50_000
    stats = buffer.stats()
    assert stats["dropped"] > 0 and stats["gops"] == 0
    assert [p.pts for p in live.packets] == list(range(400))


def test_attach_replays_from_the_keyframe_then_follows_until_the_segment_ends() -> None:
    """Replay starts at the keyframe at or before since_ts (else the oldest), live packets follow once, end detaches."""
    buffer = PacketBuffer(10.0)
    buffer.begin(CODEC)
    buffer.add(packet(b"x", -1), -1 / 30)  # before the segment's first keyframe: undecodable, not kept
    for i in range(60):
        buffer.add(packet(b"p%d" % i, i, key=i % 30 == 0), i / 30)
    recent, old = TapLog(), TapLog()
    buffer.attach(recent, 1.5)
    buffer.attach(old, -5.0)
    assert [p.pts for p in recent.packets] == list(range(30, 60))
    assert [p.pts for p in old.packets] == list(range(60))
    buffer.add(packet(b"new", 60), 2.0)
    assert recent.packets[-1].pts == old.packets[-1].pts == 60 and len(recent.packets) == 31
    buffer.end("camera_disconnected")
    assert recent.ended == old.ended == ["camera_disconnected"]
    stats = buffer.stats()
    assert stats["taps"] == 0 and stats["bytes"] == 0 and stats["before_keyframe"] == 1
    buffer.add(packet(b"late", 61, key=True), 2.1)  # outside a segment: ignored
    assert len(recent.packets) == 31 and buffer.stats()["packets"] == 0


def test_a_looping_file_continues_its_segment_with_timestamps_following_on(gop_video) -> None:
    """begin(continues=True) with the same codec keeps the segment and shifts pts past the previous run's end."""
    buffer = PacketBuffer(30.0)
    tap = TapLog()
    feed_file(buffer, gop_video, 0.0)
    buffer.attach(tap, 0.0)
    with av.open(str(gop_video)) as container:
        stream = container.streams.video[0]
        buffer.begin(CodecInfo.from_stream(stream), continues=True)
        for p in container.demux(stream):
            if p.size:
                buffer.add(p, 2.0 + float(p.pts * p.time_base))
    pts = [p.pts for p in tap.packets]
    assert buffer.stats()["segments"] == 1 and tap.ended == []
    assert all(b > a for a, b in zip(pts, pts[1:])) and len(pts) == 2 * 60


# -------------------------------------------------------------- remuxed clips


async def test_file_clip_is_a_remux_from_zero_that_covers_the_event(gop_video, recorder, paths) -> None:
    """A file camera's clip: the file's own packets byte for byte, pts from zero, first frame at first_ts, duration to until_ts."""
    sink = MemorySink(capacity=1000)
    buffer = PacketBuffer(3.0)
    source = FileSource("cam", str(gop_video), sink, half_size)
    source.set_recording(buffer)
    done = Collected()
    await source.start()
    try:
        await wait_until(lambda: buffer.stats()["seconds"] >= 1.2, 8, "1.2 s of packets")
        from_ts = clock.now() - 1.0
        recorder.start("cam:1", "cam", buffer, from_ts, 60.0, done)
        await asyncio.sleep(2.2)  # past the 2 s file's loop: the clip goes on across it
        until = clock.now() + 0.3  # finish() may come before until_ts (the recorder calls it at the event's end)
        recorder.finish("cam:1", until)
        result = await result_of(done)
        full = source.latest_full_frame()
    finally:
        await source.stop()
    assert isinstance(result, ClipResult), result
    assert result.truncated == "" and result.path == paths.clip("cam:1")
    assert files_in(paths.clips) == [result.path.name]  # renamed, no .part left
    clip = probe(result.path)
    original = source_packets(gop_video)
    with av.open(str(gop_video)) as container:
        ctx = container.streams.video[0].codec_context
        assert (clip.codec, clip.width, clip.height, clip.profile) == (ctx.name, ctx.width, ctx.height, ctx.profile)
        assert clip.extradata == ctx.extradata
    # No re-encode: every packet is the file's, in order (the file loops, so indices wrap).
    data = [p[0] for p in original]
    start = data.index(clip.packets[0])
    assert original[start][4], "a clip starts on a keyframe"
    assert clip.packets == [data[(start + i) % len(data)] for i in range(len(clip.packets))]
    assert len(clip.packets) > len(data)  # it did cross the loop
    # From zero, starting at most a GOP before from_ts; it lasts until until_ts.
    assert clip.first_pts == 0 and clip.times[0] == 0
    assert from_ts - GOP / FPS - 1e-3 < result.first_ts <= from_ts + 1e-3
    assert clip.duration_s == pytest.approx(result.duration_s, abs=1 / FPS)
    assert result.duration_s == pytest.approx(until - result.first_ts, abs=2 / FPS)
    # Its first frame is the one the camera showed at first_ts.
    shown = min(sink.frames(), key=lambda f: abs(f.ts - result.first_ts))
    assert abs(shown.ts - result.first_ts) < 1e-3
    assert frame_index_of(clip.first_image) == frame_index_of(shown.image)
    # Snapshots get the newest frame at full camera size (the sink's are half size).
    assert full is not None and full[0].shape == (240, 320, 3) and shown.image.shape == (120, 160, 3)


async def test_a_source_stopped_mid_clip_still_finalizes_it(gop_video, recorder) -> None:
    """A stream removed mid-event (its source stopped): the clip is finalized with what arrived, "source_stopped"."""
    buffer = PacketBuffer(3.0)
    source = FileSource("cam", str(gop_video), MemorySink(capacity=10), half_size)
    source.set_recording(buffer)
    done = Collected()
    await source.start()
    try:
        await wait_until(lambda: buffer.stats()["seconds"] >= 0.5, 8, "half a second of packets")
        recorder.start("cam:12", "cam", buffer, clock.now() - 0.5, 60.0, done)
        await asyncio.sleep(0.5)
    finally:
        await source.stop()
    result = await result_of(done)
    assert isinstance(result, ClipResult) and result.truncated == "source_stopped"
    assert result.duration_s >= 0.9 and len(probe(result.path).times) == result.packets


def test_max_s_cuts_the_clip(gop_video, recorder) -> None:
    """A clip longer than max_s ends there, truncated "max_clip_s"."""
    buffer = PacketBuffer(10.0)
    feed_file(buffer, gop_video, 100.0)
    done = Collected()
    recorder.start("cam:2", "cam", buffer, 100.0, 1.0, done)
    result = done.wait()
    assert isinstance(result, ClipResult) and result.truncated == "max_clip_s"
    assert 1.0 - 1.5 / FPS <= result.duration_s <= 1.0 + 1e-6
    assert probe(result.path).duration_s == pytest.approx(result.duration_s, abs=1 / FPS)


def test_cancel_deletes_the_part_file_and_reports_nothing(gop_video, recorder, paths) -> None:
    """cancel() abandons a clip being written: its .part is deleted, no clip appears, on_done is not called."""
    buffer = PacketBuffer(10.0)
    feed_file(buffer, gop_video, 0.0)
    done = Collected()
    recorder.start("cam:3", "cam", buffer, 0.0, 60.0, done)
    part = MediaPaths.part(paths.clip("cam:3"))
    deadline = time.monotonic() + 5
    while not part.exists():
        assert time.monotonic() < deadline, "the clip was never opened"
        time.sleep(0.01)
    recorder.cancel("cam:3")
    deadline = time.monotonic() + 5
    while recorder.active():
        assert time.monotonic() < deadline, "cancel did not end the clip"
        time.sleep(0.01)
    assert files_in(paths.clips) == [] and done.results == []
    assert recorder.stats()["cancelled"] == 1 and buffer.stats()["taps"] == 0


def test_a_clip_with_no_video_is_an_error_and_leaves_no_file(recorder, paths) -> None:
    """No packet at all (the camera is away): ClipError, not a disk error, and no file."""
    buffer = PacketBuffer(5.0)  # between segments: nothing to replay, nothing comes
    done = Collected()
    now = clock.now()
    recorder.start("cam:4", "cam", buffer, now - 1.0, 60.0, done)
    recorder.finish("cam:4", now)
    error = done.wait()
    assert isinstance(error, ClipError) and not error.disk and "no video" in error.reason
    assert error.event_id == "cam:4" and files_in(paths.clips) == []


def test_a_segment_end_finishes_the_clip_with_what_it_has(gop_video, recorder) -> None:
    """The stream's segment ends mid-clip (camera dropped): the clip is finalized, truncated with the reason."""
    buffer = PacketBuffer(10.0)
    feed_file(buffer, gop_video, 0.0, seconds=1.0)
    done = Collected()
    recorder.start("cam:5", "cam", buffer, 0.0, 60.0, done)
    buffer.end("camera_disconnected")
    result = done.wait()
    assert isinstance(result, ClipResult) and result.truncated == "camera_disconnected"
    assert result.duration_s == pytest.approx(1.0 + 1 / FPS, abs=1 / FPS)
    assert len(probe(result.path).times) == result.packets


def test_a_full_queue_cuts_the_clip_and_counts_the_drops(gop_video, paths) -> None:
    """While the writer is busy, packets beyond max_queue are dropped (counted) and that clip ends where its video did."""
    recorder = ClipRecorder(paths, max_queue=20, finish_grace_s=0.5)
    release = threading.Event()
    try:
        first = PacketBuffer(10.0)
        feed_file(first, gop_video, 0.0, seconds=0.5)
        recorder.start("cam:6", "cam", first, 0.0, 60.0, lambda result: release.wait(10))  # holds the writer
        first.end("source_stopped")
        time.sleep(0.2)
        second = PacketBuffer(10.0)
        done = Collected()
        recorder.start("cam:7", "cam", second, 0.0, 60.0, done)
        feed_file(second, gop_video, 0.0)  # 60 packets into a queue of 20
        release.set()
        result = done.wait()
        assert isinstance(result, ClipResult) and result.truncated == "recorder_overloaded"
        assert 0 < result.packets <= 20
        stats = recorder.stats()
        assert stats["dropped_packets"] > 0 and stats["overloaded"] == 1
    finally:
        release.set()
        recorder.close()


@contextlib.contextmanager
def small_disk(folder: Path, kind: str):
    """A 1 MiB tmpfs at ``folder``: "full" (filled up) or "readonly"; without root, a folder made unwritable."""
    folder.mkdir()
    if os.geteuid() != 0:
        if kind == "full":
            pytest.skip("a full disk needs root (mount -t tmpfs)")
        folder.chmod(0o500)
        try:
            yield
        finally:
            folder.chmod(0o700)
        return
    options = "size=1m" + (",ro" if kind == "readonly" else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True)
    try:
        if kind == "full":
            with open(folder / "filler", "wb") as filler, contextlib.suppress(OSError):
                filler.write(bytes(1 << 20))
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("kind", ["full", "readonly"])
def test_a_full_or_unwritable_disk_is_a_disk_clip_error(gop_video, tmp_path, kind) -> None:
    """ENOSPC / EROFS / EACCES: ClipError with disk=True, and no partial file left behind."""
    disk = tmp_path / "disk"
    with small_disk(disk, kind):
        paths = MediaPaths(disk / "data")
        recorder = ClipRecorder(paths, finish_grace_s=0.5)
        try:
            buffer = PacketBuffer(10.0)
            feed_file(buffer, gop_video, 0.0)
            done = Collected()
            recorder.start("cam:8", "cam", buffer, 0.0, 60.0, done)
            recorder.finish("cam:8", 1.0)
            error = done.wait()
        finally:
            recorder.close()
        assert isinstance(error, ClipError) and error.disk, error
        assert files_in(paths.clips) == []


@pytest.mark.slow
@pytest.mark.rtsp
async def test_rtsp_camera_killed_mid_clip_still_gives_a_clip_that_decodes(rtsp_camera, recorder) -> None:
    """A real RTSP camera killed mid-clip: the clip is finalized ("camera_disconnected"), from zero, every frame decodes."""
    from stream.sources.network import NetworkSource

    buffer = PacketBuffer(3.0)
    source = NetworkSource("cam", rtsp_camera.url, MemorySink(100), half_size, None, FAST)
    source.set_recording(buffer)
    done = Collected()
    await source.start()
    try:
        await wait_until(lambda: buffer.stats()["seconds"] >= 1.2, 15, "a second of packets")
        from_ts = clock.now() - 0.5
        recorder.start("cam:9", "cam", buffer, from_ts, 60.0, done)
        await asyncio.sleep(1.5)
        rtsp_camera.kill()
        result = await result_of(done)
    finally:
        await source.stop()
    assert isinstance(result, ClipResult), result
    assert result.truncated == "camera_disconnected"
    clip = probe(result.path)
    assert (clip.codec, clip.width, clip.height) == ("h264", 320, 240)
    assert clip.first_pts == 0 and clip.times[0] == 0
    assert from_ts - 1.0 - 0.1 <= result.first_ts <= from_ts  # the camera's GOP is 1 s
    assert result.duration_s >= 1.5 and len(clip.times) >= 1.5 * 15
    assert clip.duration_s == pytest.approx(result.duration_s, abs=0.1)


# -------------------------------------------------------------- encoded clips


def test_encoded_size_keeps_aspect_even_and_at_most_max_height() -> None:
    """Frames are encoded at most max_height tall, aspect kept, even sides (yuv420p)."""
    assert encoded_size(1920, 1080, 720) == (1280, 720)
    assert encoded_size(640, 480, 720) == (640, 480)
    assert encoded_size(641, 361, 1000) == (640, 360)
    assert encoded_size(1080, 1920, 480) == (270, 480)


async def test_encoder_takes_encode_fps_keeps_the_newest_and_counts_drops() -> None:
    """At most fps frames are taken; a busy encoder encodes only the newest (drops counted); stop ends the segment."""
    buffer = PacketBuffer(10.0)
    tap = TapLog()
    buffer.attach(tap, 0.0)  # between segments: gets the encoder's first one
    lock = threading.Lock()
    encoder = FrameEncoder(buffer, fps=10, max_height=120, convert_lock=lock, name="t")
    encoder.start()
    try:
        # PyAV frames (not arrays) convert under the source's lock: holding it keeps the encoder
        # thread waiting on its first frame while the others pile into its one slot.
        def frame(i):
            return av.VideoFrame.from_ndarray(frame_pattern(i, 320, 240), format="rgb24")

        with lock:
            assert encoder.offer(frame(0), lambda x: x, 0.0)
            assert not encoder.offer(frame(1), lambda x: x, 0.05)  # too soon for 10 fps
            for i in range(1, 6):
                assert encoder.offer(frame(i), lambda x: x, i * 0.1)
        await wait_until(lambda: encoder.frames_encoded + encoder.dropped == 6, 5, "every frame encoded or dropped")
    finally:
        await encoder.stop()
    stats = encoder.stats()
    assert stats["frames_taken"] == 6 and stats["dropped"] >= 4 and stats["size"] == (160, 120)
    assert tap.packets[0].keyframe and tap.packets[-1].ts == pytest.approx(0.5)  # the newest frame was the one kept
    assert tap.ended == ["source_stopped"] and buffer.stats()["segments"] == 1


@pytest.mark.slow
async def test_webrtc_peer_gives_an_encoded_h264_clip(recorder, monkeypatch) -> None:
    """An aiortc peer's camera through TrackSource: encoded at encode_fps and encode_max_height, an H.264 clip from zero."""
    import aioice.ice
    from aiortc import RTCConfiguration, RTCPeerConnection

    from stream.sources.webrtc import TrackSource
    from stream.webrtc import limit_host_addresses
    from tests.test_webrtc import SyntheticCamera

    monkeypatch.setattr(aioice.ice, "get_host_addresses", aioice.ice.get_host_addresses)  # restored after the test
    limit_host_addresses(["127.0.0.1"])
    config = RTCConfiguration(iceServers=[])
    sender, receiver = RTCPeerConnection(config), RTCPeerConnection(config)
    arrived: asyncio.Future = asyncio.get_running_loop().create_future()
    receiver.on("track", lambda track: arrived.done() or arrived.set_result(track))
    sender.addTrack(SyntheticCamera(fps=30, width=640, height=480))
    buffer = PacketBuffer(3.0)
    done = Collected()
    source = None
    try:
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
        track = await asyncio.wait_for(arrived, 10)
        source = TrackSource("rtc", track, MemorySink(100), half_size)
        source.set_recording(buffer, RecordConfig(encode_fps=10, encode_max_height=240))
        await source.start()
        await wait_until(lambda: buffer.stats()["seconds"] >= 2.0, 15, "2 s encoded")
        from_ts = clock.now() - 1.0
        recorder.start("rtc:1", "rtc", buffer, from_ts, 60.0, done)
        await asyncio.sleep(1.5)
        until = clock.now()
        recorder.finish("rtc:1", until)
        result = await result_of(done)
    finally:
        if source is not None:
            await source.stop()
        await sender.close()
        await receiver.close()
    assert isinstance(result, ClipResult), result
    assert result.truncated == ""
    clip = probe(result.path)
    assert (clip.codec, clip.pix_fmt, clip.width, clip.height) == ("h264", "yuv420p", 320, 240)
    assert clip.first_pts == 0 and clip.times[0] == 0
    assert result.first_ts <= from_ts and result.duration_s >= until - from_ts - 0.2
    assert len(clip.times) / result.duration_s <= 10.5  # encode_fps
    assert clip.duration_s == pytest.approx(result.duration_s, abs=0.15)


async def test_webcam_decodes_at_encode_fps_while_recording() -> None:
    """A grab-only webcam retrieves frames at encode_fps while recording (the ring wants far fewer), and they are encoded."""
    from stream.sources.webcam import WebcamSource
    from tests.test_sources_webcam import FakeCapture

    fake = FakeCapture(fps=60)
    buffer = PacketBuffer(5.0)
    source = WebcamSource("cam", 0, MemorySink(fps=1), half_size, options=FAST, capture_factory=lambda device: fake)
    source.set_recording(buffer, RecordConfig(encode_fps=10))
    await source.start()
    try:
        await asyncio.sleep(2.0)
        retrieved = fake.retrieved
        full = source.latest_full_frame()
    finally:
        await source.stop()
    encoder = source._encoder.stats()
    assert 12 <= retrieved <= 2.0 * (10 + 1) + 3  # ~10 a second, not the camera's 60
    assert encoder["frames_encoded"] >= 10 and encoder["size"] == (64, 48)
    assert buffer.stats()["segments"] == 1 and not buffer.stats()["recording"]  # stop ended it
    assert full is not None and full[0].shape == (48, 64, 3) and np.all(full[0][..., 0] == 255)  # RGB, full size


@pytest.mark.slow
@pytest.mark.browser
def test_clips_play_in_chromium(gop_video, tmp_path) -> None:
    """A remuxed and an encoded clip both play in headless Chromium: play() resolves, duration and size as written."""
    from tests.support.browser import chromium_session, require_browser

    require_browser()
    paths = MediaPaths(tmp_path / "data")
    recorder = ClipRecorder(paths, finish_grace_s=0.5)
    try:
        remuxed = Collected()
        buffer = PacketBuffer(10.0)
        feed_file(buffer, gop_video, 0.0)
        recorder.start("cam:10", "cam", buffer, 0.0, 60.0, remuxed)
        buffer.end("source_stopped")
        encoded = asyncio.run(_encoded_clip(recorder))
        clips = [remuxed.wait(), encoded]
    finally:
        recorder.close()
    assert all(isinstance(c, ClipResult) for c in clips), clips
    page_file = tmp_path / "play.html"
    page_file.write_text("".join(f'<video id="v{i}" muted src="{c.path.as_uri()}"></video>' for i, c in enumerate(clips)))
    with chromium_session() as chromium:
        page = chromium.new_page()
        page.goto(page_file.as_uri())
        played = page.evaluate(
            """async (n) => {
                const out = [];
                for (let i = 0; i < n; i++) {
                    const v = document.getElementById('v' + i);
                    await v.play();
                    out.push([v.duration, v.videoWidth, v.videoHeight]);
                }
                return out;
            }""",
            len(clips),
        )
    assert played[0][1:] == [320, 240] and played[1][1:] == [320, 240]
    for (duration, _, _), clip in zip(played, clips):
        assert duration == pytest.approx(clip.duration_s, abs=0.05)


async def _encoded_clip(recorder: ClipRecorder) -> ClipResult:
    """Two seconds of frames through a FrameEncoder (frame times made up), then a clip of all of them."""
    buffer = PacketBuffer(10.0)
    encoder = FrameEncoder(buffer, fps=10, max_height=240, name="chromium")
    encoder.start()
    for i in range(20):
        encoder.offer(av.VideoFrame.from_ndarray(frame_pattern(i, 640, 480), format="rgb24"), lambda f: f.to_ndarray(format="rgb24"), i * 0.1)
        await wait_until(lambda: encoder.frames_encoded > i, 5, "the frame encoded")
    done = Collected()
    recorder.start("cam:11", "cam", buffer, 0.0, 60.0, done)
    await encoder.stop()
    return await result_of(done)
