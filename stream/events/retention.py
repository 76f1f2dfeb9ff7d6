"""Retention and the disk guard: old events go, media stays under its cap, recording pauses on a full disk.

:class:`Retention` runs every ``events.cleanup_interval_s`` and removes, in
this order:

1. finished events whose end is older than ``events.retain_days``;
2. orphan media files, whose event has no row (a crash between a row's
   delete and its files', or a file that came after its event was deleted);
3. while clips and snapshots together exceed ``events.max_disk_mb``, the
   oldest finished events that have media.

Rows go first, then their files: a crash in between leaves orphans, which the
next run removes, never a row pointing at a missing clip. Events in progress
are never deleted (the store refuses them too), and neither is anything a
recorder may still be writing: ``.part`` files are left alone, an event that
ended less than :data:`SETTLE_S` ago without a complete clip is skipped, and
an orphan must be older than that too (its row may not be committed yet).

:class:`DiskGuard` answers, in a few system calls, whether recording may go
on, and if not why, in words a user can act on. Events are stored as rows
whatever it says; the recorder pauses clips and snapshots and asks again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import logging
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from stream.config import EventsConfig
from stream.events.files import PART, MediaPaths, media_name
from stream.events.store import EventStore
from stream.events.types import StoreError

__all__ = ["SETTLE_S", "DiskGuard", "DiskGuardStats", "Retention", "RetentionReport", "RetentionStats"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
MB = 1024 * 1024  # events.max_disk_mb and events.min_free_mb are MiB
_DAY_S = 86400.0
_BATCH = 200  # events per delete: one short transaction in the store's writer, one short pass over the files
_ID_CHUNK = 500  # ids per "which of these have rows" query (below SQLite's bound-variable limit)
# The longest a recorder may still write an event's files after its end
# (post_capture_s is at most 300 s), with a margin for the writer to catch up.
SETTLE_S = 360.0
_FIRST_RUN_S = 10.0  # the first run comes this soon after start (or after one interval, if shorter)
_MEDIA = (("clips", ".mp4"), ("snapshots", ".jpg"))


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What one run removed, and why."""

    aged: int = 0  # events older than events.retain_days
    capped: int = 0  # events removed to get under events.max_disk_mb
    orphans: int = 0  # media files whose event had no row
    bytes_freed: int = 0
    usage_bytes: int | None = None  # clips and snapshots after the run (None if it failed before measuring)
    error: str | None = None  # why the run stopped early; what it did until then is counted above

    @property
    def deleted(self) -> int:
        return self.aged + self.capped


@dataclass(frozen=True, slots=True)
class RetentionStats:
    """Totals since start, for /metrics."""

    runs: int
    failures: int  # runs that stopped on an error
    deleted_aged: int
    deleted_capped: int
    orphans_removed: int
    bytes_freed: int
    usage_bytes: int | None  # clips and snapshots, as last measured
    last_run_ts: float | None  # Unix seconds (the retention clock)
    last_error: str | None


# ------------------------------------------------------------ reads (plain functions over a read connection)
def _aged(conn: sqlite3.Connection, cutoff: float, settled: float, limit: int) -> list[str]:
    rows = conn.execute(
        "SELECT id FROM events WHERE end_ts IS NOT NULL AND end_ts < ? AND (has_clip OR end_ts < ?) ORDER BY end_ts, id LIMIT ?",
        (cutoff, settled, limit),
    ).fetchall()
    return [r[0] for r in rows]


def _oldest_with_media(conn: sqlite3.Connection, settled: float, limit: int) -> list[tuple[str, int]]:
    rows = conn.execute(
        "SELECT id, clip_bytes + snapshot_bytes FROM events WHERE end_ts IS NOT NULL AND (has_clip OR has_snapshot) "
        "AND (has_clip OR end_ts < ?) ORDER BY end_ts, id LIMIT ?",
        (settled, limit),
    ).fetchall()
    return [(r[0], int(r[1])) for r in rows]


def _with_rows(conn: sqlite3.Connection, ids: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(ids), _ID_CHUNK):
        chunk = ids[i : i + _ID_CHUNK]
        marks = ",".join("?" * len(chunk))
        found.update(r[0] for r in conn.execute(f"SELECT id FROM events WHERE id IN ({marks})", chunk))
    return found


# ------------------------------------------------------------ files (run on the retention's own thread)
def _settled_media(paths: MediaPaths, older_than: float) -> dict[str, list[tuple[Path, int]]]:
    """Event id -> its complete media files last written before ``older_than``; no .part, nothing foreign."""
    found: dict[str, list[tuple[Path, int]]] = {}
    for attr, ext in _MEDIA:
        folder: Path = getattr(paths, attr)
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        for entry in entries:
            if not entry.name.endswith(ext) or not entry.is_file(follow_symlinks=False):
                continue  # .part files are the recorder's; other names are not ours
            stem = entry.name[: -len(ext)]
            event_id = stem.replace("~", ":")
            try:
                if media_name(event_id) != stem:
                    continue
                st = entry.stat(follow_symlinks=False)
            except (ValueError, FileNotFoundError):
                continue
            if st.st_mtime < older_than:
                found.setdefault(event_id, []).append((Path(entry.path), st.st_size))
    return found


def _unlink_all(files: Iterable[tuple[Path, int]]) -> tuple[int, int]:
    """(files removed, bytes freed); a file that cannot go is logged and left."""
    removed = freed = 0
    for path, size in files:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("retention: could not delete %s: %s", path, exc.strerror or exc)
            continue
        removed += 1
        freed += size
    return removed, freed


class Retention:
    """The periodic clean-up of one store and its media folder. ``clock`` gives Unix seconds."""

    def __init__(self, store: EventStore, paths: MediaPaths, config: EventsConfig, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._paths = paths
        self._config = config
        self._clock = clock
        self._lock = asyncio.Lock()  # one run at a time (the task's and a caller's)
        self._task: asyncio.Task | None = None
        # File work gets a thread of its own: not the default pool, which stopping the server relies on.
        self._files: concurrent.futures.ThreadPoolExecutor | None = None
        self._runs = self._failures = 0
        self._aged = self._capped = self._orphans = self._freed = 0
        self._usage: int | None = None
        self._last_run: float | None = None
        self._last_error: str | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Run every ``cleanup_interval_s``, the first time soon after now. Idempotent."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="retention")

    async def stop(self) -> None:
        """Cancel the task (a run in flight stops between steps) and let the file thread go. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        files, self._files = self._files, None
        if files is not None:
            files.shutdown(wait=False, cancel_futures=True)  # its current job is one short pass over files

    async def _loop(self) -> None:
        delay = min(_FIRST_RUN_S, self._config.cleanup_interval_s)
        while True:
            await asyncio.sleep(delay)
            await self.run_once()  # never raises but CancelledError
            delay = self._config.cleanup_interval_s

    # ------------------------------------------------------------ one run
    async def run_once(self) -> RetentionReport:
        """One clean-up; failures end the run early, are logged and counted, never raised."""
        async with self._lock:
            counts = {"aged": 0, "capped": 0, "orphans": 0, "bytes_freed": 0}
            now = self._clock()
            usage: int | None = None
            error: str | None = None
            try:
                if self._store.closed:
                    raise StoreError("the event store is closed")
                await self._remove_aged(now, counts)
                await self._remove_orphans(now, counts)
                usage = await self._enforce_cap(now, counts)
            except Exception as exc:  # a closed store, a vanished folder: the next run tries again
                # A store closed mid-run fails as its executor's RuntimeError: say what happened instead.
                error = "the event store is closed" if self._store.closed else (str(exc) or type(exc).__name__)
            report = RetentionReport(**counts, usage_bytes=usage, error=error)
            self._account(report, now)
            return report

    async def _remove_aged(self, now: float, counts: dict[str, int]) -> None:
        cutoff = now - self._config.retain_days * _DAY_S
        while True:
            ids = await self._store.aread(_aged, cutoff, now - SETTLE_S, _BATCH)
            deleted = await self._delete(ids, counts, "aged") if ids else 0
            if deleted == 0 or len(ids) < _BATCH:
                return

    async def _remove_orphans(self, now: float, counts: dict[str, int]) -> None:
        files = await self._in_thread(_settled_media, self._paths, now - SETTLE_S)
        if not files:
            return
        kept = await self._store.aread(_with_rows, list(files))
        orphans = [f for event_id, group in files.items() if event_id not in kept for f in group]
        if orphans:
            removed, freed = await self._in_thread(_unlink_all, orphans)
            counts["orphans"] += removed
            counts["bytes_freed"] += freed

    async def _enforce_cap(self, now: float, counts: dict[str, int]) -> int:
        """Delete the oldest events with media while usage exceeds the cap; returns the usage after."""
        usage = await self._in_thread(self._paths.usage_bytes)
        if self._config.max_disk_mb is None:
            return usage
        cap = int(self._config.max_disk_mb * MB)
        while usage > cap:
            candidates = await self._store.aread(_oldest_with_media, now - SETTLE_S, _BATCH)
            picked: list[str] = []
            expected = 0
            for event_id, size in candidates:  # as few as the rows say will do, at most one batch
                picked.append(event_id)
                expected += size
                if expected >= usage - cap:
                    break
            before = counts["bytes_freed"]
            if not picked or await self._delete(picked, counts, "capped") == 0:
                log.warning(
                    "retention: media use %s MB is over events.max_disk_mb = %g, but no finished event has files to delete",
                    _mb(usage),
                    self._config.max_disk_mb,
                )
                break
            freed = counts["bytes_freed"] - before
            if freed == 0:  # rows said files, the disk had none: stop rather than delete history for nothing
                log.warning("retention: the oldest events' files were already gone; media use is still %s MB", _mb(usage))
                break
            usage -= freed
        return await self._in_thread(self._paths.usage_bytes)

    async def _delete(self, ids: list[str], counts: dict[str, int], why: str) -> int:
        """Rows first (the store keeps events in progress), then the files of the rows it deleted."""
        deleted = await asyncio.wrap_future(self._store.delete_events(tuple(ids)))
        if deleted:
            counts[why] += len(deleted)
            counts["bytes_freed"] += await self._in_thread(lambda: sum(self._paths.remove(i) for i in deleted))
        return len(deleted)

    async def _in_thread(self, fn: Callable[..., _T], *args: object) -> _T:
        if self._files is None:
            self._files = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="retention-files")
        return await asyncio.get_running_loop().run_in_executor(self._files, fn, *args)

    def _account(self, report: RetentionReport, now: float) -> None:
        self._runs += 1
        self._last_run = now
        self._aged += report.aged
        self._capped += report.capped
        self._orphans += report.orphans
        self._freed += report.bytes_freed
        if report.usage_bytes is not None:
            self._usage = report.usage_bytes
        self._last_error = report.error
        done = (
            f"{report.deleted} events ({report.aged} older than events.retain_days = {self._config.retain_days:g}, "
            f"{report.capped} over events.max_disk_mb), {report.orphans} orphan files, {_mb(report.bytes_freed)} MB freed"
        )
        if report.error is not None:
            self._failures += 1
            log.warning("retention: the run stopped early: %s; removed %s", report.error, done)
        elif report.deleted or report.orphans:
            log.info("retention: removed %s; media now %s MB", done, _mb(report.usage_bytes or 0))
        else:
            log.debug("retention: nothing to remove; media %s MB", _mb(report.usage_bytes or 0))

    def stats(self) -> RetentionStats:
        return RetentionStats(
            runs=self._runs,
            failures=self._failures,
            deleted_aged=self._aged,
            deleted_capped=self._capped,
            orphans_removed=self._orphans,
            bytes_freed=self._freed,
            usage_bytes=self._usage,
            last_run_ts=self._last_run,
            last_error=self._last_error,
        )


def _mb(n: int) -> str:
    return f"{n / MB:.1f}" if n < 10 * MB else f"{n / MB:.0f}"


# ------------------------------------------------------------ the disk guard
@dataclass(frozen=True, slots=True)
class DiskGuardStats:
    """For /metrics, as of the check :meth:`DiskGuard.stats` just made."""

    free_bytes: int | None  # the least free space of the media folders (None: could not be measured)
    paused: bool
    reason: str | None
    pauses: int  # times recording went from allowed to paused


_PROBLEMS = {
    errno.EROFS: "is on a read-only file system",
    errno.EACCES: "is not writable by this user",
    errno.EPERM: "is not writable by this user",
    errno.ENOSPC: "is on a full disk",
    errno.EDQUOT: "is over its disk quota",
}


class DiskGuard:
    """Whether clips and snapshots can be written now: free space (statvfs), permissions, one probe file.

    :meth:`check` takes a few system calls per media folder, cheap enough for
    every event start. The probe is created with a ``.part`` name, so a crash
    between its creation and removal leaves nothing the next start's sweep
    does not remove.
    """

    def __init__(self, paths: MediaPaths, min_free_mb: float) -> None:
        self._paths = paths
        self._min_free = int(min_free_mb * MB)
        self._min_free_mb = min_free_mb
        self._free: int | None = None
        self._reason: str | None = None
        self._pauses = 0

    def check(self) -> str | None:
        """None when recording may go on; else "recording paused: ..." saying what to fix. Any thread."""
        reason: str | None = None
        least: int | None = None
        for folder in (self._paths.clips, self._paths.snapshots):
            problem, free = self._check_folder(folder)
            if free is not None:
                least = free if least is None else min(least, free)
            if problem is not None and reason is None:
                reason = f"recording paused: {problem}"
        if reason is not None and self._reason is None:
            self._pauses += 1
        self._free, self._reason = least, reason
        return reason

    def _check_folder(self, folder: Path) -> tuple[str | None, int | None]:
        try:
            st = os.statvfs(folder)
        except FileNotFoundError:
            try:  # removed while running: the same folders start-up makes
                self._paths.ensure()
                st = os.statvfs(folder)
            except OSError as exc:
                return f"{folder} is missing and cannot be created: {exc.strerror or exc}", None
        except OSError as exc:
            return f"{folder} cannot be checked: {exc.strerror or exc}", None
        free = st.f_bavail * st.f_frsize
        if st.f_flag & os.ST_RDONLY:
            return f"{folder} {_PROBLEMS[errno.EROFS]}", free
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"{folder} {_PROBLEMS[errno.EACCES]}", free
        if free < self._min_free or free == 0:
            return f"{_mb(free)} MB free on {folder} (events.min_free_mb = {self._min_free_mb:g})", free
        if st.f_files and st.f_favail == 0:  # f_files 0: the file system does not count inodes
            return f"no free inodes on {folder}: delete files there or raise the file system's inode limit", free
        try:  # what permissions alone do not show: ACLs, root squash on NFS, an immutable folder
            fd, probe = tempfile.mkstemp(prefix=".disk-guard-", suffix=PART, dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            problem = _PROBLEMS.get(exc.errno)
            return (f"{folder} {problem}" if problem else f"cannot write in {folder}: {exc.strerror or exc}"), free
        return None, free

    def stats(self) -> DiskGuardStats:
        """Checks now (a few system calls), so a scrape of /metrics sees the present."""
        self.check()
        return DiskGuardStats(free_bytes=self._free, paused=self._reason is not None, reason=self._reason, pauses=self._pauses)
