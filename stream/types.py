"""Frozen dataclasses that carry data between pipeline stages.

Every timestamp inside the pipeline is ``time.monotonic()`` seconds, so clocks
never jump under us; :func:`stream.clock.to_wall` turns one into Unix time at
the edge (websocket messages, REST), where people and other programs read it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Frame",
    "Window",
    "Prediction",
    "LabelEvent",
    "EventKind",
    "ClipReady",
    "SourceState",
    "StreamStatus",
]


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame, RGB uint8 (H, W, 3), already at model scale."""

    image: np.ndarray
    ts: float  # monotonic seconds when the frame was captured / arrived
    index: int = 0  # sequence number within the current connection


@dataclass(frozen=True, slots=True)
class Window:
    """A clip ready for the model: T frames sampled over a span of time."""

    stream_id: str
    frames: np.ndarray  # uint8 (T, H, W, 3)
    timestamps: np.ndarray  # float64 (T,), monotonic seconds of each frame
    created: float  # monotonic time the clip was assembled

    @property
    def start(self) -> float:
        return float(self.timestamps[0])

    @property
    def end(self) -> float:
        return float(self.timestamps[-1])


@dataclass(frozen=True, slots=True)
class Prediction:
    """The model's answer for one clip of one stream."""

    stream_id: str
    clip_start: float  # monotonic ts of the first frame in the clip
    clip_end: float  # monotonic ts of the newest frame in the clip
    probs: np.ndarray  # float32 (num_labels,)
    top_k: tuple[tuple[str, float], ...]
    inference_s: float  # time the model spent on the batch this clip was in
    published: float  # monotonic time the result left the scheduler

    @property
    def label_age_s(self) -> float:
        """Time from the newest frame in the clip to publication."""
        return self.published - self.clip_end


class EventKind(str, enum.Enum):
    START = "start"
    UPDATE = "update"
    END = "end"


@dataclass(frozen=True, slots=True)
class LabelEvent:
    """A label's lifecycle on one stream: start, updates, end."""

    id: str
    kind: EventKind
    stream_id: str
    label: str
    score: float
    peak_score: float
    start: float  # monotonic time the label started
    end: float | None  # monotonic time it ended; None while it lasts
    ts: float  # monotonic time of this event
    peak_ts: float | None = None  # monotonic time the smoothed score reached peak_score
    # On an END: why it ended, "score_dropped" (below labels.exit) or, for an event the
    # tracker closed (stream stopped or lost), the tracker's close reason; None otherwise.
    end_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ClipReady:
    """An event's clip is complete on disk (published once, after the event's end)."""

    event_id: str
    stream_id: str
    label: str
    peak_score: float  # the event's peak: filters judge a clip like its event
    start: float  # monotonic time of the clip's first frame
    duration_s: float
    size_bytes: int
    ts: float  # monotonic time the clip was finished
    truncated: str = ""  # why the clip stops before the event's end + post_capture ("" when it does not)


class SourceState(str, enum.Enum):
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """A stream's state change, with the reason in words people can act on."""

    stream_id: str
    state: SourceState
    reason: str = ""
    ts: float = 0.0
    extra: dict = field(default_factory=dict)
