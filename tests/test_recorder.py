"""The recorder with real parts: a file camera's packet buffer, the clip recorder, the store, the hub.

Events are published by hand, with the timestamps the tracker would give
them, so each test knows exactly what its clip must cover.
"""

from __future__ import annotations

import asyncio
import os

import av
import cv2
import numpy as np
import pytest

from stream import clock
from stream.config import RecordConfig
from stream.events import EventStore
from stream.events.files import MediaPaths
from stream.events.packets import PacketBuffer
from stream.events.recorder import Recorder
from stream.events.retention import DiskGuard
from stream.events.subscriber import StoreSubscriber
from stream.hub import Filter, Hub, MessageKind
from stream.sources import MemorySink, SourceOptions
from stream.sources.file import FileSource
from stream.types import EventKind, LabelEvent, Prediction
from tests.support.disk import tmpfs
from tests.support.sources import half_size, wait_until
from tests.support.videos import make_video

W, H = 320, 240
SETTINGS = RecordConfig(pre_capture_s=1.0, post_capture_s=0.5, max_clip_s=30)


def _event(kind: EventKind, eid: str, start: float, score: float, *, end: float | None = None, peak: float | None = None) -> LabelEvent:
    now = clock.now()
    return LabelEvent(eid, kind, "cam", "waving", score, peak if peak is not None else score, start, end, now, now, "score_dropped" if end else None)


def _labels(score: float) -> Prediction:
    now = clock.now()
    return Prediction("cam", now - 1, now, np.zeros(2, np.float32), (("waving", score), ("other", 0.01)), 0.01, now)


class Rig:
    """A file camera recording into a packet buffer, the recorder and the store around it."""

    def __init__(self, tmp_path, data_dir=None, *, disk_check=None, settings: RecordConfig = SETTINGS) -> None:
        self.video = make_video(tmp_path / "cam.mp4", width=W, height=H, fps=30, seconds=3)
        self.store = EventStore.open(data_dir or tmp_path / "data")
        self.hub = Hub()
        self.settings = settings
        self.buffer = PacketBuffer(keep_s=settings.pre_capture_s + 3)
        self.source = FileSource("cam", str(self.video), MemorySink(), half_size, options=SourceOptions(loop=True))
        self.source.set_recording(self.buffer, settings)
        self.clips = self.hub.subscribe(Filter(kinds={MessageKind.CLIP}))
        self.store_sub = StoreSubscriber(self.hub, self.store)
        self.recorder = Recorder(
            self.hub,
            self.store,
            settings_for=lambda sid: self.settings if sid == "cam" else None,
            source_of=lambda sid: self.source if sid == "cam" else None,
            buffer_of=lambda sid: self.buffer if sid == "cam" else None,
            disk_check=disk_check,
        )

    async def __aenter__(self) -> Rig:
        self.store_sub.start()
        self.recorder.start()
        await self.source.start()
        # Enough video for the pre-capture.
        await wait_until(lambda: self.buffer.stats()["seconds"] >= self.settings.pre_capture_s + 0.5, 10, "a buffered second")
        return self

    async def __aexit__(self, *exc) -> None:
        await self.source.stop()
        await self.recorder.stop()
        await self.store_sub.stop()
        self.store.close()

    async def clip(self, timeout: float = 15.0):
        async with asyncio.timeout(timeout):
            return (await self.clips.get()).payload

    async def row(self, eid: str, **expect):
        def matches():
            ev = self.store.get(eid)
            return ev is not None and all(getattr(ev, k) == v for k, v in expect.items())

        await wait_until(matches, 10, f"event {eid} with {expect}")
        return self.store.get(eid)


def _decoded(path) -> tuple[list[float], tuple[int, int], str]:
    """Presentation times (s) of every frame, the frame size and the codec."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [float(f.time) for f in container.decode(stream)]
        return times, (stream.codec_context.width, stream.codec_context.height), stream.codec_context.name


async def test_a_clip_covers_the_event_plus_pre_and_post_capture_and_a_snapshot_shows_its_peak(tmp_path):
    async with Rig(tmp_path) as rig:
        start = clock.now()
        rig.hub.publish_event(_event(EventKind.START, "cam:t:1", start, 0.6))
        await asyncio.sleep(0.6)
        for score in (0.7, 0.9):  # two higher peaks; the second one arrives within the snapshot interval
            rig.hub.publish_labels(_labels(score))
            await asyncio.sleep(0.6)
        end = clock.now()
        rig.hub.publish_event(_event(EventKind.END, "cam:t:1", start, 0.2, end=end, peak=0.9))
        clip = await rig.clip()
        finished_at = clock.now()
        row = await rig.row("cam:t:1", has_clip=True, has_snapshot=True)

    # The end was not held back for the clip: the clip came post_capture_s later.
    assert finished_at - end >= SETTINGS.post_capture_s - 0.05
    assert clip.event_id == "cam:t:1" and clip.stream_id == "cam" and clip.label == "waving" and clip.peak_score == 0.9
    assert clip.truncated == ""
    # It starts on the keyframe at or before start - pre_capture_s (the test video has a keyframe every 250 frames
    # at most, so within its 3 s loop), and reaches end + post_capture_s.
    assert clip.start <= start - SETTINGS.pre_capture_s + 0.05
    assert clip.start + clip.duration_s >= end + SETTINGS.post_capture_s - 0.1
    path = rig.store.media.clip("cam:t:1")
    assert path.is_file() and clip.size_bytes == path.stat().st_size and row.clip_duration == pytest.approx(clip.duration_s, abs=0.01)
    times, size, codec = _decoded(path)
    assert codec == "h264" and size == (W, H)
    assert times[0] == pytest.approx(0.0, abs=1e-3), "clip timestamps start at zero"
    assert times[-1] == pytest.approx(clip.duration_s, abs=0.1)
    assert all(b > a for a, b in zip(times, times[1:])), "frames in order, none twice"
    # The snapshot is a full-resolution JPEG (the ring keeps half size).
    jpeg = cv2.imread(str(rig.store.media.snapshot("cam:t:1")))
    assert jpeg is not None and jpeg.shape[:2] == (H, W)
    assert rig.recorder.stats().snapshots_written >= 2, "one at the start, one or more at higher peaks"
    stats = rig.recorder.stats()
    assert (stats.clips_started, stats.clips_written, stats.clips_failed, stats.clips_active) == (1, 1, 0, 0)
    assert not list(rig.store.media.clips.glob("*.part"))


async def test_a_stream_stopped_mid_event_still_gets_its_clip(tmp_path):
    async with Rig(tmp_path) as rig:
        start = clock.now()
        rig.hub.publish_event(_event(EventKind.START, "cam:t:2", start, 0.6))
        await asyncio.sleep(0.8)
        stopped = clock.now()
        await rig.source.stop()  # the camera goes away before the event ends
        clip = await rig.clip()
        await rig.row("cam:t:2", has_clip=True)
    assert clip.truncated, "the clip says why it stops early"
    assert clip.start + clip.duration_s == pytest.approx(stopped, abs=0.3)
    times, _, _ = _decoded(rig.store.media.clip("cam:t:2"))
    assert times[0] == pytest.approx(0.0, abs=1e-3) and len(times) >= 30


async def test_forget_abandons_a_clip_being_written(tmp_path):
    async with Rig(tmp_path) as rig:
        rig.hub.publish_event(_event(EventKind.START, "cam:t:3", clock.now(), 0.6))
        await wait_until(lambda: rig.recorder.stats().clips_active == 1, 5, "a clip being written")
        rig.recorder.forget("cam:t:3")
        await wait_until(lambda: rig.recorder.stats().clips_active == 0, 5, "the clip abandoned")
        await asyncio.sleep(0.2)
        assert rig.clips.get_nowait() is None, "no clip message for a forgotten event"
    assert not rig.store.media.clip("cam:t:3").exists()
    assert not list(rig.store.media.clips.iterdir()), "no .part left either"


async def test_recording_off_keeps_nothing_but_the_row(tmp_path):
    async with Rig(tmp_path, settings=RecordConfig(clips=False, snapshots=False)) as rig:
        start = clock.now()
        rig.hub.publish_event(_event(EventKind.START, "cam:t:4", start, 0.6))
        rig.hub.publish_event(_event(EventKind.END, "cam:t:4", start, 0.2, end=clock.now(), peak=0.6))
        row = await rig.row("cam:t:4", end_reason="score_dropped")
        await asyncio.sleep(0.3)
        assert rig.recorder.recording("cam").state == "off"
    assert not row.has_clip and not row.has_snapshot
    assert not list(rig.store.media.clips.iterdir()) and not list(rig.store.media.snapshots.iterdir())


async def test_a_full_disk_pauses_recording_for_the_stream_events_are_still_stored_and_it_resumes(tmp_path):
    """A real 2 MiB tmpfs holds the data folder; filling it pauses clips and snapshots, freeing it resumes them."""
    with tmpfs(tmp_path / "disk", size="2m") as disk:
        guard = DiskGuard(MediaPaths(disk), min_free_mb=0.5)
        async with Rig(tmp_path, disk, disk_check=guard.check) as rig:
            # Below min_free_mb, with room left for the database: rows go on being written.
            st = os.statvfs(disk)
            filler = disk / "filler"
            filler.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - (300 << 10)))
            await wait_until(lambda: rig.recorder.recording("cam").state == "paused", 10, "recording paused")
            reason = rig.recorder.recording("cam").reason
            assert "recording paused" in reason and "events.min_free_mb" in reason
            start = clock.now()
            rig.hub.publish_event(_event(EventKind.START, "cam:t:5", start, 0.6))
            rig.hub.publish_event(_event(EventKind.END, "cam:t:5", start, 0.2, end=clock.now(), peak=0.6))
            row = await rig.row("cam:t:5", end_reason="score_dropped")
            assert not row.has_clip and not row.has_snapshot, "nothing recorded while paused"
            assert rig.recorder.stats().clips_started == 0

            os.unlink(filler)
            await wait_until(lambda: rig.recorder.recording("cam").state == "on", 15, "recording resumed")
            start = clock.now()
            rig.hub.publish_event(_event(EventKind.START, "cam:t:6", start, 0.6))
            await asyncio.sleep(0.3)
            rig.hub.publish_event(_event(EventKind.END, "cam:t:6", start, 0.2, end=clock.now(), peak=0.6))
            clip = await rig.clip()
            assert clip.event_id == "cam:t:6"
            assert rig.recorder.stats().clips_started == 1, "only the event after the pause"
            await rig.row("cam:t:6", has_clip=True, has_snapshot=True)


async def test_a_clean_stop_finishes_the_clips_of_open_events(tmp_path):
    """Stopping the recorder while an event runs (server shutdown) still finalizes, marks and announces its clip."""
    async with Rig(tmp_path) as rig:
        rig.hub.publish_event(_event(EventKind.START, "cam:t:7", clock.now(), 0.6))
        await asyncio.sleep(0.8)
        await rig.recorder.stop()  # before the camera stops: the recorder's own shutdown path
        clip = rig.clips.get_nowait()
        assert clip is not None and clip.payload.event_id == "cam:t:7" and clip.payload.truncated
        await rig.row("cam:t:7", has_clip=True)
    times, _, _ = _decoded(rig.store.media.clip("cam:t:7"))
    assert len(times) >= 20 and times[0] == pytest.approx(0.0, abs=1e-3)


async def test_post_capture_is_the_streams_own_even_when_the_stream_is_gone_by_the_end(tmp_path):
    """A removed stream's END arrives after the pipeline forgot the stream: the clip still waits its post_capture_s."""
    async with Rig(tmp_path) as rig:
        start = clock.now()
        rig.hub.publish_event(_event(EventKind.START, "cam:t:8", start, 0.6))
        await asyncio.sleep(0.8)
        rig.settings = None  # what settings_for answers once the pipeline has dropped the stream
        await rig.source.stop()
        end = clock.now()
        rig.hub.publish_event(_event(EventKind.END, "cam:t:8", start, 0.2, end=end, peak=0.6))
        clip = await rig.clip()
    assert clip.truncated == "source_stopped", "the video stopped before end + post_capture_s, and the clip says so"
    assert clip.start + clip.duration_s == pytest.approx(end, abs=0.3)


async def test_the_pipeline_tells_subscribers_when_recording_pauses_and_resumes(tmp_path, recognizer, video):
    """On a full tmpfs every recorded stream gets a status with recording paused and the reason; freeing it resumes."""
    from stream.config import validate_config
    from stream.pipeline import Pipeline
    from stream.server.protocol import message_json

    with tmpfs(tmp_path / "disk", size="2m") as disk:
        cfg = validate_config({"events": {"min_free_mb": 0.5}, "server": {"allow_local_sources": True}})
        store = EventStore.open(disk)
        try:
            async with Pipeline(recognizer, cfg, store=store) as pipe:
                statuses = pipe.hub.subscribe(Filter(kinds={MessageKind.STATUS}))
                await pipe.add_stream(str(video), stream_id="cam")

                async def recording_status(state: str):
                    async with asyncio.timeout(15):
                        while True:
                            body = message_json(await statuses.get())
                            if body.get("recording", {}).get("state") == state:
                                return body

                st = os.statvfs(disk)
                filler = disk / "filler"
                filler.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - (300 << 10)))
                paused = await recording_status("paused")
                assert paused["stream"] == "cam" and paused["state"] == "live", "the source's own state is unchanged"
                assert "events.min_free_mb" in paused["recording"]["reason"]
                assert pipe.stream("cam").recording.state == "paused"
                os.unlink(filler)
                resumed = await recording_status("on")
                assert resumed["recording"] == {"state": "on", "reason": ""}
        finally:
            store.close()
