"""Classifying video files: the whole video, or a timeline of sliding clips."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from stream.model.recognizer import Recognizer
from stream.video import VideoInfo, clip_plan, open_video, read_frames

__all__ = ["ClipResult", "VideoResult", "classify_video"]

# Clips are sent to the model this many at a time.
_BATCH = 4


@dataclass(frozen=True)
class ClipResult:
    start_s: float
    end_s: float
    top_k: list[tuple[str, float]]


@dataclass(frozen=True)
class VideoResult:
    path: str
    info: VideoInfo
    top_k: list[tuple[str, float]]  # scores averaged over the clips
    clips: list[ClipResult] = field(default_factory=list)
    frames_sampled: int = 0  # distinct frames the clips needed
    frames_substituted: int = 0  # of those, how many could not be decoded and were stood in for by a neighbour

    def to_json(self, timeline: bool) -> dict:
        out = {
            "video": self.path,
            "duration_s": round(self.info.duration_s, 3),
            "width": self.info.width,
            "height": self.info.height,
            "fps": round(self.info.fps, 3),
            "clips": len(self.clips),
            "top_k": [{"label": label, "score": round(score, 6)} for label, score in self.top_k],
            # How much of what the model saw is real: a damaged video's stand-ins.
            "frames_sampled": self.frames_sampled,
            "frames_substituted": self.frames_substituted,
        }
        if timeline:
            out["timeline"] = [
                {
                    "start_s": round(c.start_s, 3),
                    "end_s": round(c.end_s, 3),
                    "top_k": [{"label": label, "score": round(score, 6)} for label, score in c.top_k],
                }
                for c in self.clips
            ]
        return out


def classify_video(
    recognizer: Recognizer,
    path: str,
    *,
    span_s: float,
    stride_s: float | None = None,
    top_k: int = 5,
    num_clips: int = 3,
    progress_factory: Callable[[int], Callable[[int], None]] | None = None,
) -> VideoResult:
    """Top-k for a whole video (clips averaged), plus each clip's own top-k."""
    info = open_video(path)
    plan = clip_plan(info, recognizer.num_frames, span_s, stride_s, clips=num_clips)
    needed = np.unique(np.concatenate(plan))
    progress = progress_factory(len(needed)) if progress_factory else None
    frames = read_frames(info, needed, size_for=recognizer.ingest_hw, progress=progress)
    all_probs: list[np.ndarray] = []
    for b in range(0, len(plan), _BATCH):
        batch = [np.stack([frames[int(i)] for i in idx]) for idx in plan[b : b + _BATCH]]
        all_probs.extend(recognizer.probs(batch))
    clips = [
        ClipResult(float(info.times[idx[0]]), float(info.times[idx[-1]]), recognizer.top_k(p, top_k))
        for idx, p in zip(plan, all_probs)
    ]
    mean = np.mean(np.stack(all_probs), axis=0)
    return VideoResult(
        path=path,
        info=info,
        top_k=recognizer.top_k(mean, top_k),
        clips=clips,
        frames_sampled=len(needed),
        frames_substituted=len(frames.substituted),
    )
