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
