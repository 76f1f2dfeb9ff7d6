"""Logging set-up shared by the command-line entry points."""

from __future__ import annotations

import logging

__all__ = ["quiet_libraries"]


def quiet_libraries() -> None:
    """Silence the hub client's retries, transformers' warnings and its progress bars.

    Offline, the hub client retries and warns at length; our own errors say
    what went wrong once. Loading bars on every start are noise in a server log.
    """
    for noisy in ("huggingface_hub", "transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
