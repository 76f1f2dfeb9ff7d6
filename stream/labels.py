"""Per-stream label tracking: smoothed scores, top-k, start/update/end events.

Pure state machine, no I/O (ARCHITECTURE habit 7): feed it predictions,
get back the smoothed prediction and the events it caused. Time comes from
the predictions themselves (``published``), so a scripted sequence gives the
same events every time.

Rules, per label, on the exponentially smoothed score ``s``:

- ``start`` when ``s >= enter`` and the label has no open event;
- ``update`` while open, at most once per ``update_interval_s`` (the start
  counts as the first emission), carrying the current score and running peak;
- ``end`` when ``s < exit``. Between ``exit`` and ``enter`` an open event
  stays open (hysteresis), so a score wobbling around one threshold does not
  flap.

Within one update the events come ends first, then starts, then updates,
each group in label order. Ends first so a client that caps how many labels
it shows frees a slot before a new one takes it; starts before updates so
the newest news is not buried behind routine refreshes.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable, Sequence

import numpy as np

from stream.config import LabelConfig
from stream.types import EventKind, LabelEvent, Prediction

__all__ = ["END_SCORE_DROPPED", "END_STREAM_LOST", "LabelTracker"]

# end_reason values of ENDs (stream.events.EndReason has the full list).
END_SCORE_DROPPED = "score_dropped"
END_STREAM_LOST = "stream_lost"


@dataclasses.dataclass(slots=True)
class _Open:
    """Mutable state of one open occurrence (never leaves this module)."""

    id: str
    index: int
    start: float
    peak: float
    peak_ts: float
    last_emit: float


class LabelTracker:
    """Smooths one stream's predictions and turns them into label events.

    ``id_prefix`` names this tracker's events (``f"{id_prefix}:{n}"``); the
    default adds a random token to the stream id so a restarted stream never
    reuses an id a client may still hold.
    """

    def __init__(
        self,
        stream_id: str,
        labels: Sequence[str],
        config: LabelConfig,
        top_k: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        id_prefix: str | None = None,
    ) -> None:
        if not labels:
            raise ValueError("labels must not be empty")
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        self.stream_id = stream_id
        self.labels = tuple(labels)
        self.config = config
        self.top_k = min(top_k, len(self.labels))
        self._clock = clock
        self._prefix = id_prefix if id_prefix is not None else f"{stream_id}:{secrets.token_hex(4)}"
        self._counter = 0
        self.close_reason = END_STREAM_LOST  # the end_reason close() gives; the pipeline sets it before a deliberate stop
        self._smoothed: np.ndarray | None = None
        self._open: dict[int, _Open] = {}  # label index -> open occurrence

    @property
    def smoothed(self) -> np.ndarray | None:
        """The current smoothed scores (a copy), or None before the first update."""
        return None if self._smoothed is None else self._smoothed.copy()

    @property
    def open_events(self) -> tuple[LabelEvent, ...]:
        """Each open occurrence as an UPDATE with its current score, oldest first.

        Meant for snapshots (a client that joins late learns what is on now).
        """
        scores = self._smoothed
        return tuple(
            self._event(EventKind.UPDATE, occ, float(scores[occ.index]), ts=occ.last_emit)
            for occ in sorted(self._open.values(), key=lambda o: (o.start, o.index))
        )

    def update(self, pred: Prediction) -> tuple[Prediction, list[LabelEvent]]:
        """Fold in one prediction; return it smoothed (probs and top-k) and the events it causes."""
        probs = np.asarray(pred.probs, dtype=np.float64)
        if probs.shape != (len(self.labels),):
            raise ValueError(f"expected {len(self.labels)} probabilities, got shape {probs.shape}")
        if not np.all(np.isfinite(probs)):
            # One NaN would poison the moving average for good: refuse it loudly.
            raise ValueError(f"non-finite probabilities for stream {self.stream_id}")
        a = self.config.smoothing
        if self._smoothed is None:
            # Start from the first observation, not from zeros: zeros would
            # hold every label below `enter` for the first few clips.
            self._smoothed = probs.copy()
        else:
            self._smoothed = a * self._smoothed + (1.0 - a) * probs
        s = self._smoothed
        now = pred.published

        order = np.argsort(-s, kind="stable")[: self.top_k]
        top = tuple((self.labels[i], float(s[i])) for i in order)
        smoothed = dataclasses.replace(pred, probs=s.astype(np.float32), top_k=top)
        return smoothed, self._events(s, now)

    def _events(self, s: np.ndarray, now: float) -> list[LabelEvent]:
        cfg = self.config
        ends: list[LabelEvent] = []
        updates: list[LabelEvent] = []
        for index in sorted(self._open):
            occ = self._open[index]
            score = float(s[index])
            if score > occ.peak:
                occ.peak, occ.peak_ts = score, now
            if score < cfg.exit:
                del self._open[index]
                ends.append(self._event(EventKind.END, occ, score, ts=now, end=now, reason=END_SCORE_DROPPED))
            elif now - occ.last_emit >= cfg.update_interval_s:
                occ.last_emit = now
                updates.append(self._event(EventKind.UPDATE, occ, score, ts=now))
        starts: list[LabelEvent] = []
        for index in np.flatnonzero(s >= cfg.enter).tolist():
            if index in self._open:
                continue
            # A label that ended in this very update may start again only if
            # it is back above enter, which cannot happen in the same update
            # (it just fell below exit <= enter): no double handling needed.
            self._counter += 1
            score = float(s[index])
            occ = _Open(id=f"{self._prefix}:{self._counter}", index=index, start=now, peak=score, peak_ts=now, last_emit=now)
            self._open[index] = occ
            starts.append(self._event(EventKind.START, occ, score, ts=now))
        return ends + starts + updates

    def close(self, ts: float | None = None, reason: str | None = None) -> list[LabelEvent]:
        """End every open event (the stream stopped) and forget the smoothed scores.

        The ENDs carry ``reason`` as their end_reason, default :attr:`close_reason`
        ("stream_lost"; the pipeline sets "stream_removed" or "server_stopped"
        before it stops a stream on purpose). Forgetting the scores means a stream that comes back starts from its first
        new clip rather than from scores of a scene that may have changed.
        """
        now = self._clock() if ts is None else ts
        scores = self._smoothed
        why = reason or self.close_reason
        ends = [
            self._event(EventKind.END, occ, float(scores[index]), ts=now, end=now, reason=why)
            for index, occ in sorted(self._open.items())
        ]
        self._open.clear()
        self._smoothed = None
        return ends

    def _event(
        self, kind: EventKind, occ: _Open, score: float, *, ts: float, end: float | None = None, reason: str | None = None
    ) -> LabelEvent:
        peak_ts = occ.peak_ts if occ.peak >= score else ts
        return LabelEvent(
            id=occ.id,
            kind=kind,
            stream_id=self.stream_id,
            label=self.labels[occ.index],
            score=score,
            peak_score=max(occ.peak, score),
            start=occ.start,
            end=end,
            ts=ts,
            peak_ts=peak_ts,
            end_reason=reason,
        )
