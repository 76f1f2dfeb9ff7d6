"""InferenceScheduler: one per device; batches the freshest clip of each stream.

Streams *offer* a clip every stride. An offer is a callable that assembles
the clip when the batch starts, so a clip that waited for the model is still
built from the newest frames. At most one offer per stream waits; a newer one
replaces it and the replaced one is counted as a drop ("freshest wins"). The
waiting streams are served least-recently-served first, so under overload
every stream gets labels in turn and the age of a label stays bounded by
about one batch time plus one stride, however long the overload lasts.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from stream.model.recognizer import Recognizer
from stream.threads import LoopThread, set_threads_here
from stream.types import Prediction, Window

__all__ = ["InferenceScheduler", "SchedulerStats", "ClipSource"]

log = logging.getLogger(__name__)

ClipSource = Callable[[], Window | None]
ResultCallback = Callable[[Prediction], None]


@dataclass(frozen=True)
class SchedulerStats:
    batches: int
    clips: int
    dropped: int  # offers replaced by a newer one before they ran
    errors: int
    last_batch_size: int
    last_inference_s: float


@dataclass
class _StreamSlot:
    on_result: ResultCallback
    pending: ClipSource | None = None
    offered_at: float = 0.0
    last_served: float = float("-inf")
    offered: int = 0
    inferred: int = 0
    dropped: int = 0


class InferenceScheduler:
    """Owns the inference thread for one recognizer (one device)."""

    def __init__(self, recognizer: Recognizer, *, top_k: int = 5, max_batch: int = 8, max_wait_ms: float = 10.0) -> None:
        self.recognizer = recognizer
        self.top_k = top_k
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self._slots: dict[str, _StreamSlot] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        # stop() awaits its end on the loop rather than joining in a default-executor thread (which previews share).
        self._thread: LoopThread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batches = self._clips = self._dropped = self._errors = 0
        self._last_batch_size = 0
        self._last_inference_s = 0.0
        # torch's thread count is per OS thread; the inference thread takes the
        # creating thread's (what the user or server set), whatever other
        # threads did to torch's default in between (see stream.threads).
        self._torch_threads = torch.get_num_threads()

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the inference thread; results are delivered on the calling event loop."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._thread = LoopThread(self._run, name="inference")
        self._thread.start()

    async def stop(self) -> None:
        """Cancel waiting offers and join the thread (idempotent)."""
        self._stop.set()
        with self._cond:
            for slot in self._slots.values():
                slot.pending = None
            self._cond.notify_all()
        if self._thread is not None:
            # A batch in flight finishes first: inference cannot be interrupted.
            await self._thread.join()
            self._thread = None

    async def __aenter__(self) -> "InferenceScheduler":
        self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # ------------------------------------------------------------ streams
    def register(self, stream_id: str, on_result: ResultCallback) -> None:
        with self._cond:
            if stream_id in self._slots:
                raise ValueError(f"stream {stream_id!r} is already registered")
            self._slots[stream_id] = _StreamSlot(on_result)

    def unregister(self, stream_id: str) -> None:
        """Forget a stream; a clip of it already running is discarded when it finishes."""
        with self._cond:
            self._slots.pop(stream_id, None)

    def offer(self, stream_id: str, clip: ClipSource) -> None:
        """Offer a stream's next clip; replaces (and counts) one still waiting."""
        with self._cond:
            slot = self._slots.get(stream_id)
            if slot is None:
                raise KeyError(f"stream {stream_id!r} is not registered")
            if slot.pending is not None:
                slot.dropped += 1
                self._dropped += 1
            slot.pending = clip
            slot.offered += 1
            slot.offered_at = time.monotonic()
            self._cond.notify()

    def stream_counts(self, stream_id: str) -> tuple[int, int, int]:
        """(offered, inferred, dropped) for one stream."""
        with self._cond:
            slot = self._slots.get(stream_id)
            return (slot.offered, slot.inferred, slot.dropped) if slot else (0, 0, 0)

    def stats(self) -> SchedulerStats:
        with self._cond:
            return SchedulerStats(
                self._batches, self._clips, self._dropped, self._errors, self._last_batch_size, self._last_inference_s
            )

    # ------------------------------------------------------------ the thread
    def _take_batch(self) -> list[tuple[str, ClipSource]]:
        """Wait for offers, give others up to max_wait to join, take the least recently served."""
        with self._cond:
            while not self._stop.is_set() and not any(s.pending for s in self._slots.values()):
                self._cond.wait(timeout=0.5)
            if self._stop.is_set():
                return []
            deadline = time.monotonic() + self.max_wait_s
            while not self._stop.is_set():
                waiting = sum(1 for s in self._slots.values() if s.pending)
                remaining = deadline - time.monotonic()
                if waiting >= self.max_batch or remaining <= 0:
                    break
                self._cond.wait(timeout=remaining)
            ready = [(sid, s) for sid, s in self._slots.items() if s.pending is not None]
            ready.sort(key=lambda item: (item[1].last_served, item[1].offered_at))
            batch = []
            now = time.monotonic()
            for sid, slot in ready[: self.max_batch]:
                batch.append((sid, slot.pending))
                slot.pending = None
                slot.last_served = now
            return batch

    def _run(self) -> None:
        set_threads_here(self._torch_threads)
        while not self._stop.is_set():
            # One call per batch: its locals (the offers, which are bound
            # methods of their streams, the clips, the results) die when it
            # returns. Kept in this loop they would hold the last batch's
            # streams and frames alive while the thread waits for the next.
            if not self._serve_one():
                return

    def _serve_one(self) -> bool:
        """Take, assemble, infer and route one batch; False once results can no longer be delivered."""
        batch = self._take_batch()
        windows = self._assemble(batch) if batch else []
        if not windows:
            return True
        routes = self._infer(windows)
        loop = self._loop
        if loop is None or loop.is_closed():
            return True
        for callback, pred in routes:
            try:
                loop.call_soon_threadsafe(callback, pred)
            except RuntimeError:  # the loop closed while we were running
                return False
        return True

    def _assemble(self, batch: list[tuple[str, ClipSource]]) -> list[Window]:
        windows: list[Window] = []
        for sid, take in batch:
            try:
                window = take()
            except Exception:
                log.exception("assembling a clip for stream %s failed", sid)
                window = None
            if window is not None:
                windows.append(window)
        return windows

    def _infer(self, windows: list[Window]) -> list[tuple[ResultCallback, Prediction]]:
        """Run the model on one batch; (callback, prediction) for each clip whose stream is still here."""
        t0 = time.perf_counter()
        try:
            probs = self.recognizer.probs([w.frames for w in windows])
        except Exception as exc:
            with self._cond:
                self._errors += 1
                first = self._errors == 1
            log.error("inference failed for a batch of %d clips: %s", len(windows), exc, exc_info=first)
            return []
        elapsed = time.perf_counter() - t0
        published = time.monotonic()
        with self._cond:
            self._batches += 1
            self._clips += len(windows)
            self._last_batch_size = len(windows)
            self._last_inference_s = elapsed
            routes = []
            for window, p in zip(windows, probs):
                slot = self._slots.get(window.stream_id)
                if slot is None:
                    continue  # removed while its clip was running
                slot.inferred += 1
                routes.append((slot.on_result, self._prediction(window, p, elapsed, published)))
        return routes

    def _prediction(self, window: Window, probs: np.ndarray, elapsed: float, published: float) -> Prediction:
        return Prediction(
            stream_id=window.stream_id,
            clip_start=window.start,
            clip_end=window.end,
            probs=probs.astype(np.float32, copy=False),
            top_k=tuple(self.recognizer.top_k(probs, self.top_k)),
            inference_s=elapsed,
            published=published,
        )
