"""Retention (age, disk cap, orphans; an injected clock, no sleeping for days) and the disk guard on a real tmpfs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import subprocess

import pytest

from stream.config import EventsConfig
from stream.events import EventStore
from stream.events import retention as retention_module
from stream.events.files import MediaPaths
from stream.events.retention import MB, SETTLE_S, DiskGuard, Retention
from tests.support.disk import tmpfs

NOW = 1_900_000_000.0  # the retention clock: a fixed Unix time, days are arithmetic
DAY = 86400.0
CLIP, SNAP = 3000, 1000


@pytest.fixture
def data(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def store(data):
    s = EventStore.open(data)
    yield s
    s.close()


@pytest.fixture
def paths(data, store):
    p = MediaPaths(data)
    p.ensure()
    return p


@contextlib.asynccontextmanager
async def retention(store, paths, **config):
    r = Retention(store, paths, EventsConfig(**config), clock=lambda: NOW)
    try:
        yield r
    finally:
        await r.stop()


def add(store, paths, id_, *, start, end=None, clip=CLIP, snap=SNAP, seq=1):
    """An event as the pipeline and recorder leave it: row, replay log, and its clip and snapshot files."""
    reason = "score_dropped" if end is not None else None
    store.write_event((id_, "cam", "run", start, end, 0.5, 0.8, start, reason, seq, end if end is not None else start))
    store.log_message((seq, id_, "cam", "run", 0.8, "event", "{}", start))
    if clip:
        paths.clip(id_).write_bytes(b"c" * clip)
        store.mark_clip(id_, 1.0, clip)
    if snap:
        paths.snapshot(id_).write_bytes(b"s" * snap)
        store.mark_snapshot(id_, snap)
    store.flush().result(timeout=10)


def ids_in(store) -> set[str]:
    return set(store.read(lambda c: [r[0] for r in c.execute("SELECT id FROM events")]))


def log_ids(store) -> set[str]:
    return set(store.read(lambda c: [r[0] for r in c.execute("SELECT event_id FROM event_log")]))


def files_of(paths, id_) -> tuple[bool, bool]:
    return paths.clip(id_).exists(), paths.snapshot(id_).exists()


# --------------------------------------------------------------------- age
async def test_old_events_go_rows_and_files_together(store, paths):
    """Finished events older than retain_days lose row, log and files; fresh and in-progress ones keep everything."""
    add(store, paths, "cam:a:1", start=NOW - 12 * DAY, end=NOW - 11 * DAY, seq=1)
    add(store, paths, "cam:a:2", start=NOW - 2 * DAY, end=NOW - 1 * DAY, seq=2)
    add(store, paths, "cam:a:3", start=NOW - 20 * DAY, clip=0, seq=3)  # running for 20 days
    async with retention(store, paths, retain_days=10) as r:
        report = await r.run_once()
    assert (report.aged, report.capped, report.orphans, report.error) == (1, 0, 0, None)
    assert report.bytes_freed == CLIP + SNAP
    assert ids_in(store) == log_ids(store) == {"cam:a:2", "cam:a:3"}
    assert files_of(paths, "cam:a:1") == (False, False)
    assert files_of(paths, "cam:a:2") == (True, True)
    assert files_of(paths, "cam:a:3") == (False, True)
    assert report.usage_bytes == CLIP + 2 * SNAP == paths.usage_bytes()
    st = r.stats()
    assert (st.runs, st.failures, st.deleted_aged, st.bytes_freed, st.last_run_ts) == (1, 0, 1, CLIP + SNAP, NOW)


async def test_age_works_in_batches_and_logs_one_line(store, paths, monkeypatch, caplog):
    """More old events than one batch all go in one run, summed up in one log line."""
    monkeypatch.setattr(retention_module, "_BATCH", 2)
    for i in range(5):
        add(store, paths, f"cam:b:{i}", start=NOW - 30 * DAY, end=NOW - 20 * DAY + i, seq=i + 1)
    async with retention(store, paths, retain_days=10) as r:
        with caplog.at_level(logging.INFO, logger="stream.events.retention"):
            report = await r.run_once()
    assert report.aged == 5 and ids_in(store) == set()
    assert paths.usage_bytes() == 0
    lines = [rec.getMessage() for rec in caplog.records]
    assert len(lines) == 1 and "removed 5 events (5 older than events.retain_days = 10" in lines[0], lines


async def test_a_just_ended_event_without_its_clip_is_left_to_the_recorder(store, paths):
    """An event past retain_days that ended moments ago with no clip yet (post-capture running) is kept until it settles."""
    add(store, paths, "cam:c:1", start=NOW - 60, end=NOW - 10, clip=0)
    now = [NOW]
    r = Retention(store, paths, EventsConfig(retain_days=0.0001), clock=lambda: now[0])  # 8.6 s
    try:
        assert (await r.run_once()).aged == 0
        assert ids_in(store) == {"cam:c:1"}
        now[0] += SETTLE_S
        assert (await r.run_once()).aged == 1
    finally:
        await r.stop()
    assert ids_in(store) == set() and files_of(paths, "cam:c:1") == (False, False)


# --------------------------------------------------------------------- disk cap
async def test_disk_cap_removes_oldest_first_until_under(store, paths, monkeypatch):
    """Over max_disk_mb, the events that ended first go (rows and files), in batches, until media fits; running ones stay."""
    monkeypatch.setattr(retention_module, "_BATCH", 2)
    ends = {"cam:d:1": 5, "cam:d:2": 1, "cam:d:3": 4, "cam:d:4": 2, "cam:d:5": 3}  # days ago, not in id order
    for seq, (id_, days) in enumerate(ends.items(), 1):
        add(store, paths, id_, start=NOW - days * DAY - 60, end=NOW - days * DAY, seq=seq)
    add(store, paths, "cam:d:run", start=NOW - 9 * DAY, clip=0, snap=4 * SNAP, seq=9)  # the oldest start, in progress
    total = paths.usage_bytes()
    assert total == 5 * (CLIP + SNAP) + 4 * SNAP
    cap = total - 2 * (CLIP + SNAP) - 1  # two events are not enough: three must go
    async with retention(store, paths, retain_days=10, max_disk_mb=cap / MB) as r:
        report = await r.run_once()
    assert (report.aged, report.capped, report.error) == (0, 3, None)
    assert ids_in(store) == {"cam:d:2", "cam:d:4", "cam:d:run"}  # ended 1 and 2 days ago, and the running one
    assert report.usage_bytes == paths.usage_bytes() == total - 3 * (CLIP + SNAP) <= cap
    assert report.bytes_freed == 3 * (CLIP + SNAP)
    assert files_of(paths, "cam:d:1") == files_of(paths, "cam:d:5") == (False, False)
    assert files_of(paths, "cam:d:run") == (False, True)


async def test_disk_cap_under_the_limit_deletes_nothing(store, paths):
    """Media under max_disk_mb: no event goes, and the usage is measured for /metrics."""
    add(store, paths, "cam:e:1", start=NOW - 2 * DAY, end=NOW - DAY)
    async with retention(store, paths, max_disk_mb=1) as r:
        report = await r.run_once()
    assert (report.deleted, report.usage_bytes) == (0, CLIP + SNAP)
    assert r.stats().usage_bytes == CLIP + SNAP


# --------------------------------------------------------------------- orphans
async def test_orphans_go_part_files_and_live_events_stay(store, paths):
    """Settled files without a row go; .part files, files of rows (running too), fresh files and foreign names stay."""
    add(store, paths, "cam:f:run", start=NOW - DAY, clip=0)
    add(store, paths, "cam:f:done", start=NOW - DAY, end=NOW - DAY + 5)
    orphan_clip, orphan_snap = paths.clip("cam:f:gone"), paths.snapshot("cam:f:gone")
    orphan_clip.write_bytes(b"x" * 700)
    orphan_snap.write_bytes(b"x" * 300)
    part = paths.part(paths.clip("cam:f:run"))  # the recorder is writing the running event's clip
    part.write_bytes(b"p" * 100)
    stray_part = paths.part(paths.clip("cam:f:crashed"))
    stray_part.write_bytes(b"p" * 100)
    fresh = paths.snapshot("cam:f:new")  # its row may not be committed yet
    fresh.write_bytes(b"n" * 10)
    foreign = paths.clips / "notes.txt"
    foreign.write_text("not ours")
    old = NOW - SETTLE_S - 1
    for p in (orphan_clip, orphan_snap, part, stray_part, foreign, paths.clip("cam:f:done"), paths.snapshot("cam:f:run")):
        os.utime(p, (old, old))
    os.utime(fresh, (NOW, NOW))
    async with retention(store, paths) as r:
        report = await r.run_once()
    assert (report.orphans, report.bytes_freed, report.deleted) == (2, 1000, 0)
    assert not orphan_clip.exists() and not orphan_snap.exists()
    assert part.exists() and stray_part.exists() and fresh.exists() and foreign.exists()
    assert files_of(paths, "cam:f:run") == (False, True) and files_of(paths, "cam:f:done") == (True, True)
    assert r.stats().orphans_removed == 2


# --------------------------------------------------------------------- failures
class ClosingPaths(MediaPaths):
    """Media paths whose first removal closes the store: a shutdown racing a run, between its delete and its next read."""

    def __init__(self, data_dir, store):
        super().__init__(data_dir)
        self.store = store

    def remove(self, event_id: str) -> int:
        self.store.close()
        return super().remove(event_id)


async def test_a_store_closed_mid_run_ends_the_run_not_the_task(data, store, monkeypatch, caplog):
    """The store closing between batches ends that run with a logged error; the task goes on and later runs fail softly."""
    monkeypatch.setattr(retention_module, "_BATCH", 1)
    paths = ClosingPaths(data, store)
    paths.ensure()
    for i in range(3):
        add(store, paths, f"cam:g:{i}", start=NOW - 30 * DAY, end=NOW - 20 * DAY + i, seq=i + 1)
    r = Retention(store, paths, EventsConfig(retain_days=1, cleanup_interval_s=0.02), clock=lambda: NOW)
    try:
        with caplog.at_level(logging.WARNING, logger="stream.events.retention"):
            r.start()
            async with asyncio.timeout(10):
                while r.stats().failures < 3:
                    await asyncio.sleep(0.01)
            assert r._task is not None and not r._task.done()
    finally:
        await r.stop()
    st = r.stats()
    assert st.deleted_aged == 1 and st.runs >= 3 and st.last_error == "the event store is closed"
    assert any("the run stopped early" in rec.getMessage() and "removed 1 events" in rec.getMessage() for rec in caplog.records)
    conn = sqlite3.connect(data / "events.db")
    assert {r[0] for r in conn.execute("SELECT id FROM events")} == {"cam:g:1", "cam:g:2"}
    conn.close()
    report = await r.run_once()  # after stop too: a report, not an exception
    assert report.error == "the event store is closed" and report.deleted == 0


async def test_start_runs_soon_and_stop_is_idempotent(store, paths):
    """start() runs the first clean-up within one short interval; stop() twice is fine."""
    add(store, paths, "cam:h:1", start=NOW - 30 * DAY, end=NOW - 20 * DAY)
    r = Retention(store, paths, EventsConfig(retain_days=1, cleanup_interval_s=0.05), clock=lambda: NOW)
    r.start()
    r.start()
    async with asyncio.timeout(10):
        while r.stats().runs < 2:
            await asyncio.sleep(0.01)
    await r.stop()
    await r.stop()
    assert ids_in(store) == set() and r.stats().deleted_aged == 1


# --------------------------------------------------------------------- the disk guard
def test_disk_guard_pauses_on_a_full_tmpfs_and_resumes(tmp_path):
    """On a 1 MiB tmpfs, filling it past min_free_mb gives a reason naming free space and the key; freeing resumes."""
    with tmpfs(tmp_path / "mnt") as mnt:
        paths = MediaPaths(mnt)
        paths.ensure()
        guard = DiskGuard(paths, min_free_mb=0.5)
        assert guard.check() is None
        st = guard.stats()
        assert not st.paused and st.free_bytes > 0.9 * MB
        filler = mnt / "filler"
        filler.write_bytes(b"\0" * (700 * 1024))
        reason = guard.check()
        assert reason is not None and reason.startswith("recording paused: ") and "\n" not in reason
        assert f"MB free on {paths.clips}" in reason and "(events.min_free_mb = 0.5)" in reason
        st = guard.stats()
        assert st.paused and st.reason == reason and st.free_bytes < 0.5 * MB and st.pauses == 1
        with pytest.raises(OSError):  # what the guard saves the recorder from
            (mnt / "more").write_bytes(b"\0" * MB)
        (mnt / "more").unlink(missing_ok=True)
        filler.unlink()
        assert guard.check() is None and not guard.stats().paused and guard.stats().pauses == 1
        assert sorted(os.listdir(paths.clips)) == []  # the probe leaves nothing behind


def test_disk_guard_pauses_on_an_unwritable_folder_and_resumes(tmp_path):
    """A folder recording cannot write (read-only for root, mode 0500 otherwise) gives a reason naming it; fixing it resumes."""
    with contextlib.ExitStack() as stack:
        if os.geteuid() == 0:  # root ignores mode bits: make the file system itself read-only
            mnt = stack.enter_context(tmpfs(tmp_path / "mnt"))
            paths = MediaPaths(mnt)
            paths.ensure()
            guard = DiskGuard(paths, min_free_mb=0)
            assert guard.check() is None
            subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
            try:
                assert guard.check() == f"recording paused: {paths.clips} is on a read-only file system"
            finally:
                subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True)
        else:
            paths = MediaPaths(tmp_path / "data")
            paths.ensure()
            guard = DiskGuard(paths, min_free_mb=0)
            assert guard.check() is None
            paths.clips.chmod(0o500)
            try:
                assert guard.check() == f"recording paused: {paths.clips} is not writable by this user"
            finally:
                paths.clips.chmod(0o700)
        assert guard.stats().pauses == 1
        assert guard.check() is None


def test_disk_guard_recreates_a_removed_media_folder(tmp_path):
    """A media folder deleted while running comes back at the next check instead of pausing recording for good."""
    paths = MediaPaths(tmp_path / "data")
    paths.ensure()
    guard = DiskGuard(paths, min_free_mb=0)
    paths.snapshots.rmdir()
    assert guard.check() is None and paths.snapshots.is_dir()


async def test_disk_cap_with_nothing_deletable_ends_the_run(store, paths, caplog):
    """Over the cap with only a running event's files: the run ends with a warning, deletes nothing, does not spin."""
    add(store, paths, "cam:i:run", start=NOW - DAY, clip=0, snap=5000)
    async with retention(store, paths, max_disk_mb=1000 / MB) as r:
        with caplog.at_level(logging.WARNING, logger="stream.events.retention"):
            report = await asyncio.wait_for(r.run_once(), 10)
    assert (report.deleted, report.error, report.usage_bytes) == (0, None, 5000)
    assert ids_in(store) == {"cam:i:run"}
    assert any("no finished event has files to delete" in rec.getMessage() for rec in caplog.records)
