"""torch's intra-op thread count, per OS thread, without side effects on other threads.

``torch.set_num_threads`` does two things: it sets OpenMP's count for the
calling thread only, and it stores a process-wide default that every thread
which first uses torch later starts with. A reader thread calling it with 1
would therefore make an inference thread started after it run on one core
(it did: the int8 model took 1.5 s per clip instead of 0.8). So readers set
only OpenMP's per-thread count, and the inference thread sets its own count
explicitly when it starts.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable

import torch

__all__ = ["one_thread_here", "set_threads_here"]

log = logging.getLogger(__name__)


def one_thread_here() -> bool:
    """Make torch ops of the calling thread use one intra-op thread; True if it took effect.

    Leaves torch's process-wide default alone, so threads started later get
    the usual count. Without an OpenMP runtime to call (a torch build on
    another parallel backend) this does nothing and returns False.
    """
    torch.get_num_threads()  # torch's lazy per-thread init runs now, not later over our setting
    omp_set = _omp_set_num_threads()
    if omp_set is None:
        return False
    omp_set(1)
    return torch.get_num_threads() == 1


def set_threads_here(count: int) -> None:
    """Give the calling thread ``count`` intra-op threads (and make that the default for new threads)."""
    if count > 0 and torch.get_num_threads() != count:
        torch.set_num_threads(count)


def _omp_set_num_threads() -> Callable[[int], None] | None:
    try:
        fn = ctypes.CDLL(None).omp_set_num_threads  # libgomp/libiomp, loaded by torch
    except (OSError, AttributeError):
        log.debug("no OpenMP runtime visible; reader threads keep torch's default thread count")
        return None
    fn.argtypes = (ctypes.c_int,)
    fn.restype = None
    return fn
