"""Snapshots: a JPEG of an event's peak frame, encoded and written off the event loop.

One thread grabs the frame, encodes and writes: converting a full-size
frame to RGB (milliseconds for 4K) stays off the loop. Its queue holds one
pending snapshot per event: a newer peak of the same event replaces the
older one before it is taken (only the last peak matters), and a full queue
(many events at once on a slow disk) refuses the newest and counts it. A file is written under its
``.part`` name and renamed, so a reader never gets half a JPEG.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stream.events.clips import DISK_ERRNOS
from stream.events.files import MediaPaths

__all__ = ["SnapshotDone", "SnapshotWriter"]

log = logging.getLogger(__name__)

_JPEG_QUALITY = 90
Grab = Callable[[], "np.ndarray | None"]


@dataclass(frozen=True, slots=True)
class SnapshotDone:
    event_id: str
    stream_id: str
    size_bytes: int  # 0 when it failed
    error: str = ""
    disk: bool = False  # the failure is the disk's (full, read-only, not writable)


class SnapshotWriter:
    def __init__(self, paths: MediaPaths, on_done: Callable[[SnapshotDone], None], *, max_pending: int = 16) -> None:
        self._paths = paths
        self._on_done = on_done
        self._max_pending = max_pending
        self._pending: OrderedDict[str, tuple[str, Grab]] = OrderedDict()
        self._cond = threading.Condition()
        self._closed = False
        self.written = 0
        self.failed = 0
        self.refused = 0  # the queue was full
        self.replaced = 0  # a newer peak of the same event came first
        self._thread = threading.Thread(target=self._run, name="snapshot-writer", daemon=True)
        self._thread.start()

    def submit(self, event_id: str, stream_id: str, grab: Grab) -> bool:
        """Queue a snapshot; ``grab()`` (called on the writer thread) returns the RGB frame, or None. False if refused."""
        with self._cond:
            if self._closed:
                return False
            if event_id in self._pending:
                self.replaced += 1
            elif len(self._pending) >= self._max_pending:
                self.refused += 1
                return False
            self._pending[event_id] = (stream_id, grab)
            self._cond.notify()
        return True

    def discard(self, event_id: str) -> None:
        """Forget a queued snapshot (its event was deleted)."""
        with self._cond:
            self._pending.pop(event_id, None)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return  # closed and drained
                event_id, (stream_id, grab) = self._pending.popitem(last=False)
            try:
                rgb = grab()
            except Exception as exc:  # a conversion bug must not end the writer
                log.exception("snapshot of %s: grabbing the frame failed", event_id)
                rgb, why = None, f"the frame could not be read: {exc}"
            else:
                why = "no frame from the camera yet"
            if rgb is None:
                self.failed += 1
                self._on_done(SnapshotDone(event_id, stream_id, 0, why))
                continue
            self._on_done(self._write(event_id, stream_id, rgb))

    def _write(self, event_id: str, stream_id: str, rgb: np.ndarray) -> SnapshotDone:
        path = self._paths.snapshot(event_id)
        part = MediaPaths.part(path)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
        if not ok:
            self.failed += 1
            return SnapshotDone(event_id, stream_id, 0, "the frame could not be encoded as JPEG")
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write_file(part, jpeg.tobytes())
            os.replace(part, path)
        except OSError as exc:
            self.failed += 1
            _unlink_quietly(part)
            return SnapshotDone(event_id, stream_id, 0, f"cannot write {path}: {exc.strerror or exc}", exc.errno in DISK_ERRNOS)
        self.written += 1
        return SnapshotDone(event_id, stream_id, int(jpeg.size))

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (bounded by ``timeout``), then stop. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("snapshot writer: still writing after %s s; the last snapshots may be missing", timeout)

    def stats(self) -> dict[str, int]:
        return {"written": self.written, "failed": self.failed, "refused": self.refused, "pending": len(self._pending)}


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
