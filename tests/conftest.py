"""Shared fixtures: a tiny random TimeSformer saved like a real checkpoint, test videos made with PyAV."""

from __future__ import annotations

import os

# Tests never reach the hub: everything loads from folders made here.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

from tests.support.models import TINY_LABELS, save_tiny_timesformer  # noqa: E402,F401


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A tiny random TimesformerForVideoClassification + its preprocessor config in a temp folder."""
    path = tmp_path_factory.mktemp("tiny-timesformer")
    save_tiny_timesformer(path)
    return str(path)


@pytest.fixture(scope="session")
def recognizer(tiny_model_dir):
    """The tiny model loaded through the real loading code (dtype auto: the CPU int8 path)."""
    from stream.model import Recognizer

    return Recognizer.load(tiny_model_dir, device="cpu")


@pytest.fixture(scope="session")
def video(tmp_path_factory):
    """A 3 s, 15 fps, 160x120 H.264 clip to play as a camera."""
    from tests.support.videos import make_video

    return make_video(tmp_path_factory.mktemp("v") / "clip.mp4", fps=15, seconds=3, width=160, height=120)


@pytest.fixture
def rtsp_camera():
    """A live RTSP camera (GStreamer) on 127.0.0.1, port 0, killed after the test; skips if GStreamer is missing."""
    from tests.support.rtsp import RtspServer, gst_rtsp_missing

    missing = gst_rtsp_missing()  # checked here, not at import: it runs the system Python
    if missing:
        pytest.skip(missing)
    srv = RtspServer(fps=15).start()
    try:
        yield srv
    finally:
        srv.kill()
