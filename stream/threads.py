"""Threads that stages own: torch's per-thread count, and a thread an event loop can await.

torch's intra-op thread count, per OS thread, without side effects on other threads:

``torch.set_num_threads`` does two things: it sets OpenMP's count for the
calling thread only, and it stores a process-wide default that every thread
which first uses torch later starts with. A reader thread calling it with 1
would therefore make an inference thread started after it run on one core
(it did: the int8 model took 1.5 s per clip instead of 0.8). So readers set
only OpenMP's per-thread count, and the inference thread sets its own count
explicitly when it starts.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import threading
from collections.abc import Callable

import torch

__all__ = ["LoopThread", "one_thread_here", "set_threads_here"]

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


class LoopThread:
    """A daemon thread whose end the event loop that started it can await, holding no pool thread.

    Joining a thread from asyncio means ``asyncio.to_thread(thread.join)``,
    which holds one of the default executor's workers (the ones previews and
    snapshots run on) for as long as the thread takes to stop. Instead the
    thread resolves a future on the loop on its way out, and :meth:`join`
    awaits that. Create it on the loop's thread.
    """

    def __init__(self, target: Callable[[], None], *, name: str) -> None:
        self._target = target
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    async def join(self, timeout: float | None = None) -> bool:
        """Wait until the thread has returned; False if it is still running after ``timeout`` seconds."""
        try:
            await asyncio.wait_for(asyncio.shield(self._exited), timeout)
        except asyncio.TimeoutError:
            return False
        self._thread.join()  # it has returned from its target: immediate
        return True

    def _run(self) -> None:
        try:
            self._target()
        finally:
            try:
                self._loop.call_soon_threadsafe(self._set_exited)
            except RuntimeError:  # the loop is closed: nobody waits
                pass

    def _set_exited(self) -> None:
        if not self._exited.done():
            self._exited.set_result(None)
