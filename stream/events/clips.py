"""The clip writer: remuxes packets from a stream's PacketBuffer into an MP4 per event, in one thread.

Nothing is decoded or encoded here: packets are copied into MP4 as they
came (``+faststart``, timestamps from zero). A clip starts on the keyframe
at or before its ``from_ts`` and takes every packet after it until
:meth:`ClipRecorder.finish`'s ``until_ts``, ``max_s`` of video, or the end
of the buffer's segment (the camera dropped, the stream was removed); it is
written under a ``.part`` name and renamed when complete. A clip that got
no packet at all leaves no file behind.

Sources feed packets on their reader threads into one bounded queue; the
writer thread drains it. A full queue drops the packet and cuts that clip
there (``truncated: "recorder_overloaded"``, counted): a clip with a hole
would not decode past it. ``on_done`` runs on the writer thread.
"""

from __future__ import annotations

import collections
import errno
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream import clock
from stream.events.files import MediaPaths
from stream.events.mp4 import Mp4Writer, WriteError
from stream.events.packets import CodecInfo, PacketBuffer, StoredPacket

__all__ = ["ClipError", "ClipRecorder", "ClipResult", "DISK_ERRNOS"]

log = logging.getLogger(__name__)

# A clip that fails with one of these says the data folder is full or not writable.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})
_FINISH_GRACE_S = 2.0  # after until_ts, how long to wait for packets still on their way
_COVER_SLACK_S = 0.1  # a clip whose video reaches this close to until_ts is complete
_BATCH_S = 0.1  # the writer takes packets in batches this often: a wake-up per packet cost more than muxing it


@dataclass(frozen=True, slots=True)
class ClipResult:
    """A finished clip on disk."""

    event_id: str
    path: Path
    duration_s: float  # last packet's end - first packet's start
    size_bytes: int
    first_ts: float  # monotonic time of the first frame (a keyframe at or before from_ts, when the buffer had one)
    truncated: str = ""  # why the clip stops before until_ts ("" when it does not)
    packets: int = 0


class ClipError(Exception):
    """A clip that could not be written. ``disk``: the data folder is full or not writable."""

    def __init__(self, reason: str, *, disk: bool = False, event_id: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.disk = disk
        self.event_id = event_id


OnDone = Callable[[ClipResult | ClipError], None]


class _Clip:
    """One clip's state; touched by the writer thread, except the flags set under the recorder's lock."""

    def __init__(self, event_id: str, stream_id: str, buffer: PacketBuffer, from_ts: float, max_s: float, on_done: OnDone, path: Path) -> None:
        self.event_id, self.stream_id, self.buffer = event_id, stream_id, buffer
        self.from_ts, self.max_s, self.on_done = from_ts, max_s, on_done
        self.path, self.part = path, MediaPaths.part(path)
        self.tap: _Tap | None = None
        # Set under the recorder's lock:
        self.until_ts: float | None = None
        self.deadline: float | None = None
        self.cancelled = False
        self.overflowed = False
        self.refused = ""  # start() could not take it
        self.pending = 0  # its items queued or being written: what ends a clip waits for them
        self.done = False
        self.file: Mp4Writer | None = None  # the writer thread's, from the first keyframe on


class _Tap:
    """What a clip attaches to its buffer: hands packets to the recorder's queue."""

    __slots__ = ("_recorder", "_clip")

    def __init__(self, recorder: ClipRecorder, clip: _Clip) -> None:
        self._recorder, self._clip = recorder, clip

    def on_packets(self, codec: CodecInfo, packets: Sequence[StoredPacket]) -> None:
        self._recorder._enqueue(self._clip, codec, packets)

    def on_end(self, reason: str) -> None:
        self._recorder._enqueue(self._clip, None, reason)


class ClipRecorder:
    """Writes event clips from packet buffers, one thread for all streams.

    ``max_queue`` bounds the packets waiting for the writer (a replay of
    the pre-capture counts every packet in it); ``max_clips`` bounds the
    clips being written at once.
    """

    def __init__(self, paths: MediaPaths, *, max_queue: int = 8192, max_clips: int = 64, finish_grace_s: float = _FINISH_GRACE_S) -> None:
        if max_queue < 1 or max_clips < 1:
            raise ValueError(f"ClipRecorder needs max_queue and max_clips >= 1, got {max_queue} and {max_clips}")
        self._paths = paths
        self._max_queue = max_queue
        self._max_clips = max_clips
        self._grace = finish_grace_s
        self._cond = threading.Condition()
        self._items: collections.deque[tuple[_Clip, CodecInfo | None, Any]] = collections.deque()
        self._queued = 0  # packets in _items
        self._clips: dict[str, _Clip] = {}
        self._attention = False  # a clip's flags changed: the writer looks at every clip
        self._closing = False
        self._counts = collections.Counter()
        self._thread = threading.Thread(target=self._run, name="clip-recorder", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public

    def start(
        self, event_id: str, stream_id: str, buffer: PacketBuffer, from_ts: float, max_s: float, on_done: OnDone
    ) -> None:
        """Begin a clip from the keyframe at or before ``from_ts``; ``on_done`` gets its ClipResult or ClipError.

        After :meth:`close`, ``on_done`` is called at once, on this thread, with a ClipError.
        """
        if not max_s > 0:
            raise ValueError(f"max_s must be > 0, got {max_s!r}")
        clip = _Clip(event_id, stream_id, buffer, from_ts, max_s, on_done, self._paths.clip(event_id))
        with self._cond:
            if self._closing:
                closed = True
            else:
                closed = False
                if event_id in self._clips:
                    raise ValueError(f"a clip for event {event_id!r} is already being written")
                self._clips[event_id] = clip
                self._counts["started"] += 1
                self._wake_locked()  # from waiting for nothing to taking batches
                if len(self._clips) > self._max_clips:
                    clip.refused = f"more than {self._max_clips} clips being written at once"
                    return
        if closed:
            self._deliver(clip, ClipError("the clip recorder is closed", event_id=event_id))
            return
        clip.tap = _Tap(self, clip)
        buffer.attach(clip.tap, from_ts)

    def finish(self, event_id: str, until_ts: float) -> None:
        """Write the packets up to ``until_ts`` (monotonic), then close and rename the clip.

        May be called before ``until_ts`` (the clip then ends exactly there)
        or after it (packets written meanwhile stay in). If no packet past
        ``until_ts`` comes within the grace time, the clip ends with what it has.
        """
        with self._cond:
            clip = self._clips.get(event_id)
            if clip is None or clip.until_ts is not None:
                return
            clip.until_ts = until_ts
            clip.deadline = max(clock.now(), until_ts) + self._grace
            self._wake_locked()

    def cancel(self, event_id: str) -> None:
        """Abandon the clip and delete its ``.part`` file; its ``on_done`` is not called."""
        with self._cond:
            clip = self._clips.get(event_id)
            if clip is not None:
                clip.cancelled = True
                self._wake_locked()

    def active(self) -> int:
        """Clips started and not yet done."""
        with self._cond:
            return len(self._clips)

    def close(self, timeout: float = 10.0) -> None:
        """Finish every open clip with what it has (``truncated: "server_stopped"``) and stop the thread."""
        with self._cond:
            self._closing = True
            self._wake_locked()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("clip recorder: still writing %.0f s after close; leaving it", timeout)

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "active": len(self._clips),
                "queued_packets": self._queued,
                "max_queue": self._max_queue,
                **{k: self._counts[k] for k in ("started", "written", "failed", "cancelled", "overloaded", "dropped_packets", "packets_written", "bytes_written")},
            }

    # ---------------------------------------------------------- source threads

    def _enqueue(self, clip: _Clip, codec: CodecInfo | None, payload: Sequence[StoredPacket] | str) -> None:
        with self._cond:
            if clip.done or clip.cancelled or clip.overflowed:
                return
            if codec is not None:
                if self._queued + len(payload) > self._max_queue:
                    clip.overflowed = True
                    self._counts["dropped_packets"] += len(payload)
                    self._wake_locked()
                    return
                self._queued += len(payload)
            self._items.append((clip, codec, payload))
            clip.pending += 1
            if self._queued > self._max_queue // 2:
                self._cond.notify()  # do not wait for the batch

    def _wake_locked(self) -> None:
        self._attention = True
        self._cond.notify()

    # ------------------------------------------------------------ writer thread

    def _run(self) -> None:
        while True:
            with self._cond:
                if not (self._attention or self._closing or self._queued > self._max_queue // 2):
                    self._cond.wait(self._wait_s())
                items, self._items = self._items, collections.deque()
                self._queued = 0
                self._attention = False
                closing = self._closing
            for clip, codec, payload in items:
                self._guarded(clip, self._process, clip, codec, payload)
            with self._cond:
                for clip, _, _ in items:
                    clip.pending -= 1
            for clip in list(self._clips.values()):
                self._guarded(clip, self._service, clip, closing)
            if closing:
                with self._cond:
                    if not self._items and not self._clips:
                        return

    def _wait_s(self) -> float | None:
        """Until the next batch (while clips are open) or the nearest finish deadline; None: until woken."""
        now = clock.now()
        waits = [c.deadline - now for c in self._clips.values() if c.deadline is not None]
        if self._clips:
            waits.append(_BATCH_S)
        return max(0.0, min(waits)) if waits else None

    def _guarded(self, clip: _Clip, fn: Callable[..., None], *args: Any) -> None:
        """Run one step for a clip; a bug fails that clip, never the thread."""
        try:
            fn(*args)
        except Exception as exc:
            log.exception("clip recorder: clip %s failed", clip.event_id)
            self._fail(clip, ClipError(f"clip writer error: {exc}", event_id=clip.event_id))

    def _process(self, clip: _Clip, codec: CodecInfo | None, payload: Any) -> None:
        if clip.done or clip.cancelled:
            return
        if codec is None:
            self._finalize(clip, "" if self._covered(clip) else payload)
            return
        for packet in payload:
            self._write(clip, codec, packet)
            if clip.done:
                return

    def _service(self, clip: _Clip, closing: bool) -> None:
        if clip.done:
            return
        if clip.cancelled:
            self._abandon(clip)
        elif clip.refused:
            self._fail(clip, ClipError(clip.refused, event_id=clip.event_id))
        elif clip.pending:
            return  # its packets come first
        elif clip.overflowed:
            self._counts["overloaded"] += 1
            self._finalize(clip, "recorder_overloaded")
        elif closing:
            self._finalize(clip, "" if self._covered(clip) else "server_stopped")
        elif clip.deadline is not None and clock.now() >= clip.deadline:
            # No packet past until_ts came in time: the camera stalled; keep what arrived.
            self._finalize(clip, "" if self._covered(clip) else "source_stalled")

    def _covered(self, clip: _Clip) -> bool:
        end = clip.file.end_ts if clip.file is not None else float("-inf")
        return clip.until_ts is not None and end >= clip.until_ts - _COVER_SLACK_S

    def _write(self, clip: _Clip, codec: CodecInfo, packet: StoredPacket) -> None:
        if clip.until_ts is not None and packet.ts > clip.until_ts:
            self._finalize(clip, "")
            return
        if clip.file is None:
            if not packet.keyframe:
                return  # cannot start a clip here; the replay always starts on a keyframe
            try:
                self._paths.ensure()
                clip.file = Mp4Writer(clip.part, codec, packet)
            except ValueError as exc:  # a codec MP4 cannot hold
                self._fail(clip, ClipError(str(exc), event_id=clip.event_id))
                return
            except WriteError as exc:
                self._fail(clip, _io_error(clip, exc))
                return
        elif packet.ts - clip.file.first_ts >= clip.max_s:
            self._finalize(clip, "max_clip_s")
            return
        try:
            clip.file.write(packet)
        except WriteError as exc:
            self._fail(clip, _io_error(clip, exc))

    def _finalize(self, clip: _Clip, truncated: str) -> None:
        file = clip.file
        if file is None:
            why = f"the stream ended ({truncated})" if truncated else "no video arrived"
            self._fail(clip, ClipError(f"no video for the clip: {why}", event_id=clip.event_id))
            return
        self._release(clip)
        try:
            size = file.close(clip.path)
        except WriteError as exc:
            self._report(clip, _io_error(clip, exc))
            return
        self._counts["written"] += 1
        self._counts["packets_written"] += file.packets
        self._counts["bytes_written"] += size
        self._deliver(clip, ClipResult(clip.event_id, clip.path, file.duration_s, size, file.first_ts, truncated, file.packets))

    def _fail(self, clip: _Clip, error: ClipError) -> None:
        if clip.done:
            return
        self._release(clip)
        if clip.file is not None:
            clip.file.discard()
        self._report(clip, error)

    def _report(self, clip: _Clip, error: ClipError) -> None:
        self._counts["failed"] += 1
        log.log(logging.WARNING if error.disk else logging.INFO, "clip %s not written: %s", clip.event_id, error.reason)
        self._deliver(clip, error)

    def _abandon(self, clip: _Clip) -> None:
        self._release(clip)
        if clip.file is not None:
            clip.file.discard()
        self._counts["cancelled"] += 1

    def _release(self, clip: _Clip) -> None:
        """Mark done, forget it, detach its tap (never under our lock: the buffer's lock comes first)."""
        with self._cond:
            clip.done = True
            if self._clips.get(clip.event_id) is clip:
                del self._clips[clip.event_id]
        if clip.tap is not None:
            clip.buffer.detach(clip.tap)

    @staticmethod
    def _deliver(clip: _Clip, result: ClipResult | ClipError) -> None:
        try:
            clip.on_done(result)
        except Exception:
            log.exception("clip %s: on_done failed", clip.event_id)


def _io_error(clip: _Clip, exc: BaseException) -> ClipError:
    code = getattr(exc, "errno", None)
    what = getattr(exc, "strerror", None) or str(exc)
    return ClipError(f"cannot write {clip.part.name}: {what}", disk=code in DISK_ERRNOS, event_id=clip.event_id)
