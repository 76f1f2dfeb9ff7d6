"""Model loading, device preprocessing and inference."""

from __future__ import annotations

from stream.model.loading import ModelUnavailableError
from stream.model.preprocess import Preprocessing
from stream.model.recognizer import Recognizer

__all__ = ["ModelUnavailableError", "Preprocessing", "Recognizer"]
