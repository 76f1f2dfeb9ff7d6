"""Logging set-up shared by the command-line entry points, and secret scrubbing for every log record.

Scrubbing happens where records are made (a LogRecord factory), not in a
handler filter: uvicorn installs handlers of its own on ``uvicorn`` and
``uvicorn.access`` that do not propagate to the root logger, so a filter on
the root handlers never sees the access log (``"GET /ws?token=..."``) nor
the websocket "[accepted]" lines, which carry the token in their URL.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable, Iterable

__all__ = ["install_scrubbing", "quiet_libraries", "scrub_record"]

_MASK = "***"
_lock = threading.Lock()
_secrets: set[str] = set()
_installed: Callable[..., logging.LogRecord] | None = None


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


def _clean(text: str) -> str:
    from stream.sources import scrub

    for secret in _secrets:
        text = text.replace(secret, _MASK)
    return scrub(text)


def _clean_arg(arg: object) -> object:
    return _clean(arg) if isinstance(arg, str) else arg


def scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    """Mask URL credentials, secret query parameters and registered secrets in one record, in place.

    String arguments are scrubbed one by one and kept as arguments, because
    some formatters read them (uvicorn's access formatter unpacks
    ``record.args``); a secret that only shows once formatted (inside an
    object's repr) makes the record collapse into its scrubbed message.
    """
    if isinstance(record.msg, str):
        record.msg = _clean(record.msg)
    if isinstance(record.args, tuple) and record.args:
        record.args = tuple(_clean_arg(a) for a in record.args)
    elif isinstance(record.args, dict):
        record.args = {k: _clean_arg(v) for k, v in record.args.items()}
    if record.args and record.name != "uvicorn.access":
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it for logging's own error report
            message = None
        cleaned = _clean(message) if message is not None else None
        if cleaned != message:
            record.msg, record.args = cleaned, None
    if record.exc_info and not record.exc_text:
        # Formatted now, while we can scrub it: the formatter reuses exc_text as it is.
        record.exc_text = _clean("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
    if record.stack_info:
        record.stack_info = _clean(record.stack_info)
    return record


def install_scrubbing(secrets: Iterable[str | None] = ()) -> None:
    """Scrub every log record of this process from now on, whatever logger or handler it goes to.

    ``secrets`` (the API token) are masked wherever they appear, not only
    after ``?token=``. Idempotent: calling again only adds secrets.
    """
    global _installed
    with _lock:
        _secrets.update(s for s in secrets if s)
        if _installed is not None and logging.getLogRecordFactory() is _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args, **kwargs) -> logging.LogRecord:
            return scrub_record(previous(*args, **kwargs))

        _installed = factory
        logging.setLogRecordFactory(factory)
