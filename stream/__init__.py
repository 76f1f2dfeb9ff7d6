"""Live video action recognition: cameras in, labels and label events out."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
