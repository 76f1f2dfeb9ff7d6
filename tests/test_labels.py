"""LabelTracker: smoothing, top-k and the start/update/end event state machine."""

from __future__ import annotations

import numpy as np
import pytest

from stream.config import LabelConfig
from stream.labels import LabelTracker
from stream.types import EventKind, Prediction

LABELS = ("run", "jump", "wave", "sit")


def pred(scores, t: float, stream: str = "cam") -> Prediction:
    """A raw prediction published at time ``t`` (clip ending a little earlier)."""
    return Prediction(
        stream_id=stream,
        clip_start=t - 8.5,
        clip_end=t - 0.1,
        probs=np.asarray(scores, dtype=np.float32),
        top_k=(),
        inference_s=0.05,
        published=t,
    )


def tracker(**cfg) -> LabelTracker:
    config = LabelConfig(**({"smoothing": 0.0, "enter": 0.5, "exit": 0.3, "update_interval_s": 2.0} | cfg))
    return LabelTracker("cam", LABELS, config, top_k=2, id_prefix="cam:t")


def summary(events) -> list[tuple]:
    return [(e.kind.value, e.label, round(e.score, 3), round(e.peak_score, 3), e.start, e.end, e.ts) for e in events]


def test_scripted_sequence_hysteresis_rate_limit_and_close():
    """A scripted run of raw scores gives exactly the expected start/update/end events."""
    tr = tracker()
    script = [
        (0.0, 0.4),  # below enter: nothing
        (1.0, 0.5),  # reaches enter (>=): start
        (2.0, 0.9),  # open, but only 1 s since the start: no update
        (3.0, 0.4),  # between exit and enter: still open; 2 s since start: update, peak 0.9
        (4.0, 0.35),  # open, rate limited
        (5.0, 0.3),  # exactly exit is not below it: open; 2 s since last update: update
        (6.0, 0.29),  # below exit: end
        (7.0, 0.45),  # below enter: no new start
        (8.0, 0.6),  # a new occurrence: new id
    ]
    got = []
    for t, score in script:
        _, events = tr.update(pred([score, 0.0, 0.0, 0.0], t))
        got.append(summary(events))
    assert got == [
        [],
        [("start", "run", 0.5, 0.5, 1.0, None, 1.0)],
        [],
        [("update", "run", 0.4, 0.9, 1.0, None, 3.0)],
        [],
        [("update", "run", 0.3, 0.9, 1.0, None, 5.0)],
        [("end", "run", 0.29, 0.9, 1.0, 6.0, 6.0)],
        [],
        [("start", "run", 0.6, 0.6, 8.0, None, 8.0)],
    ]
    ends = tr.close(ts=9.5)
    assert summary(ends) == [("end", "run", 0.6, 0.6, 8.0, 9.5, 9.5)]
    assert tr.open_events == () and tr.close(ts=10.0) == []


def test_event_ids_shared_within_and_unique_across_occurrences():
    """start/update/end of one occurrence share an id; the next occurrence gets a new one."""
    tr = tracker(update_interval_s=0.0)
    ids = []
    for t, score in enumerate([0.9, 0.8, 0.1, 0.9, 0.1]):
        _, events = tr.update(pred([score, 0, 0, 0], float(t)))
        ids += [(e.kind, e.id) for e in events]
    assert [k for k, _ in ids] == [EventKind.START, EventKind.UPDATE, EventKind.END, EventKind.START, EventKind.END]
    assert ids[0][1] == ids[1][1] == ids[2][1] == "cam:t:1"
    assert ids[3][1] == ids[4][1] == "cam:t:2"


def test_default_ids_differ_between_trackers():
    """Two trackers for the same stream (a restart) never produce the same event id."""
    cfg = LabelConfig(smoothing=0.0)
    a = LabelTracker("cam", LABELS, cfg, top_k=1)
    b = LabelTracker("cam", LABELS, cfg, top_k=1)
    (ea,) = a.update(pred([0.9, 0, 0, 0], 1.0))[1]
    (eb,) = b.update(pred([0.9, 0, 0, 0], 1.0))[1]
    assert ea.id != eb.id and ea.id.startswith("cam:")


def test_raw_scores_when_smoothing_zero():
    """smoothing=0 returns the raw probs and their top-k, highest first."""
    tr = tracker()
    out, _ = tr.update(pred([0.1, 0.2, 0.6, 0.1], 1.0))
    out, _ = tr.update(pred([0.05, 0.7, 0.15, 0.1], 2.0))
    np.testing.assert_allclose(out.probs, [0.05, 0.7, 0.15, 0.1], rtol=1e-6)
    assert [label for label, _ in out.top_k] == ["jump", "wave"]
    assert out.top_k[0][1] == pytest.approx(0.7)
    assert out.published == 2.0 and out.clip_end == 1.9 and out.stream_id == "cam"


def test_ema_math():
    """The smoothed scores follow s = a*s + (1-a)*p, starting from the first prediction."""
    a = 0.75
    tr = tracker(smoothing=a, enter=0.99, exit=0.5)
    rng = np.random.default_rng(0)
    seq = rng.dirichlet(np.ones(len(LABELS)), size=6).astype(np.float32)
    want = seq[0].astype(np.float64)
    out, _ = tr.update(pred(seq[0], 0.0))
    for t, p in enumerate(seq[1:], start=1):
        want = a * want + (1 - a) * p.astype(np.float64)
        out, _ = tr.update(pred(p, float(t)))
    np.testing.assert_allclose(out.probs, want, rtol=1e-6)
    np.testing.assert_allclose(tr.smoothed, want, rtol=1e-12)
    assert out.probs.dtype == np.float32
    best = np.argsort(-want)[:2]
    assert [label for label, _ in out.top_k] == [LABELS[i] for i in best]


def test_smoothing_delays_start_and_end():
    """With smoothing a single spike does not start an event; a sustained score does."""
    tr = tracker(smoothing=0.5)
    tr.update(pred([0.0, 0, 0, 0], 0.0))
    _, ev = tr.update(pred([0.9, 0, 0, 0], 1.0))  # s = 0.45
    assert ev == []
    _, ev = tr.update(pred([0.9, 0, 0, 0], 2.0))  # s = 0.675
    assert [e.kind for e in ev] == [EventKind.START]
    _, ev = tr.update(pred([0.0, 0, 0, 0], 3.0))  # s = 0.3375 >= exit 0.3
    assert ev == []
    _, ev = tr.update(pred([0.0, 0, 0, 0], 4.0))  # s = 0.169 < exit
    assert [e.kind for e in ev] == [EventKind.END]


def test_multiple_labels_open_and_event_order():
    """Several labels can be open at once; one update lists ends, then starts, then updates."""
    tr = tracker(update_interval_s=1.0)
    _, ev = tr.update(pred([0.6, 0.7, 0.0, 0.0], 0.0))
    assert [(e.kind.value, e.label) for e in ev] == [("start", "run"), ("start", "jump")]
    assert {e.label for e in tr.open_events} == {"run", "jump"}
    _, ev = tr.update(pred([0.1, 0.6, 0.0, 0.8], 1.0))
    assert [(e.kind.value, e.label) for e in ev] == [("end", "run"), ("start", "sit"), ("update", "jump")]
    assert [e.label for e in tr.open_events] == ["jump", "sit"]
    ends = tr.close(ts=2.0)
    assert [(e.kind.value, e.label, e.end) for e in ends] == [("end", "jump", 2.0), ("end", "sit", 2.0)]


def test_close_uses_clock_and_forgets_scores():
    """close() without a time uses the clock, and afterwards smoothing starts from scratch."""
    config = LabelConfig(smoothing=0.5, enter=0.5, exit=0.3)
    tr = LabelTracker("cam", LABELS, config, top_k=1, clock=lambda: 42.0)
    tr.update(pred([0.9, 0, 0, 0], 1.0))
    (end,) = tr.close()
    assert end.end == 42.0 and end.ts == 42.0
    assert tr.smoothed is None
    out, _ = tr.update(pred([0.0, 0.8, 0, 0], 50.0))
    np.testing.assert_allclose(out.probs, [0.0, 0.8, 0, 0], rtol=1e-6)


def test_bad_predictions_rejected():
    """Wrong-length or non-finite probabilities raise instead of corrupting the average."""
    tr = tracker()
    with pytest.raises(ValueError):
        tr.update(pred([0.5, 0.5], 0.0))
    with pytest.raises(ValueError):
        tr.update(pred([np.nan, 0, 0, 0], 0.0))
