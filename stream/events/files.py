"""Where an event's clip and snapshot live under ``server.data_dir``, and how they are written safely.

Names come from the event id, never from a client: ids are checked against
the characters event ids are made of (stream ids plus ``:``), and ``:`` is
written as ``~`` (a character stream ids cannot hold, so two ids never share
a file). Files are written under a ``.part`` name and renamed when complete:
a reader (the REST API, a browser) never sees half a clip, and a crash leaves
only ``.part`` files, which :meth:`MediaPaths.sweep_parts` removes at start.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

__all__ = ["MediaPaths", "media_name"]

log = logging.getLogger(__name__)

_EVENT_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}$")
PART = ".part"


def media_name(event_id: str) -> str:
    """The file stem for an event id; ValueError for an id no tracker makes."""
    if not _EVENT_ID.fullmatch(event_id) or ".." in event_id:
        raise ValueError(f"not an event id: {event_id[:40]!r}")
    return event_id.replace(":", "~")


class MediaPaths:
    """``data_dir/clips/<id>.mp4`` and ``data_dir/snapshots/<id>.jpg``."""

    def __init__(self, data_dir: str | Path) -> None:
        self.root = Path(data_dir)
        self.clips = self.root / "clips"
        self.snapshots = self.root / "snapshots"

    def ensure(self) -> None:
        """Create the media folders (mode 0700, like the data folder: clips show what cameras saw)."""
        for folder in (self.clips, self.snapshots):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def clip(self, event_id: str) -> Path:
        return self.clips / f"{media_name(event_id)}.mp4"

    def snapshot(self, event_id: str) -> Path:
        return self.snapshots / f"{media_name(event_id)}.jpg"

    @staticmethod
    def part(path: Path) -> Path:
        """The temporary name a file is written under until it is complete."""
        return path.with_name(path.name + PART)

    def remove(self, event_id: str) -> int:
        """Delete an event's files (complete or partial); returns the bytes freed. Missing files are fine."""
        freed = 0
        for path in (self.clip(event_id), self.snapshot(event_id)):
            for candidate in (path, self.part(path)):
                try:
                    size = candidate.stat().st_size
                    candidate.unlink()
                    freed += size
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    log.warning("could not delete %s: %s", candidate, exc.strerror or exc)
        return freed

    def sweep_parts(self) -> int:
        """Delete ``.part`` files a crash left behind; returns how many."""
        removed = 0
        for folder in (self.clips, self.snapshots):
            try:
                entries = list(os.scandir(folder))
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.name.endswith(PART) and entry.is_file(follow_symlinks=False):
                    try:
                        os.unlink(entry.path)
                        removed += 1
                    except OSError as exc:
                        log.warning("could not delete %s: %s", entry.path, exc.strerror or exc)
        return removed

    def usage_bytes(self) -> int:
        """Bytes of every file in the media folders (what ``events.max_disk_mb`` bounds)."""
        total = 0
        for folder in (self.clips, self.snapshots):
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
        return total
