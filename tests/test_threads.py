"""torch thread counts per OS thread: readers get one without changing anyone else's."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
import torch

from stream.model import Recognizer
from stream.scheduler import InferenceScheduler
from stream.threads import one_thread_here
from stream.types import Window


def in_thread(fn):
    out = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join()
    return out[0]


@pytest.fixture
def three_threads():
    """The main thread (and torch's default for new threads) at 3, restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(before)


def test_one_thread_here_is_local_to_the_calling_thread(three_threads):
    def reader():
        assert one_thread_here()
        # A resize and a matmul, as a reader would run: still one thread after them.
        x = torch.zeros(1, 3, 72, 128, dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
        torch.nn.functional.interpolate(x, size=(22, 40), mode="bilinear", antialias=True)
        torch.ones(64, 64) @ torch.ones(64, 64)
        return torch.get_num_threads()

    assert in_thread(reader) == 1
    assert torch.get_num_threads() == three_threads  # the main thread is untouched
    assert in_thread(torch.get_num_threads) == three_threads  # and so are threads started later


class CountingRecognizer(Recognizer):
    """Records the torch thread count its inference thread runs with."""

    seen: list[int]

    def probs(self, clips):
        self.seen.append(torch.get_num_threads())
        return super().probs(clips)


async def test_inference_thread_keeps_its_creators_count(tiny_model_dir, three_threads):
    """Even after another thread changed torch's default for new threads, inference runs on the creator's count."""
    base = Recognizer.load(tiny_model_dir, device="cpu")
    rec = CountingRecognizer(base.model, base.preprocessing, name="tiny", num_frames=base.num_frames)
    rec.seen = []
    scheduler = InferenceScheduler(rec, max_wait_ms=0)
    in_thread(lambda: torch.set_num_threads(1))  # what a careless reader would do: default for new threads is now 1
    assert in_thread(torch.get_num_threads) == 1
    done = threading.Event()
    async with scheduler:
        scheduler.register("a", lambda prediction: done.set())
        frames = np.zeros((base.num_frames, 36, 36, 3), np.uint8)
        scheduler.offer("a", lambda: Window("a", frames, np.arange(base.num_frames, dtype=np.float64), 0.0))
        for _ in range(100):
            if done.is_set():
                break
            await asyncio.sleep(0.05)
    assert rec.seen == [three_threads]
