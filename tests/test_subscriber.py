"""The subscriber: the importable async iterator, and `python -m stream subscribe` across a server restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from stream.config import validate_config
from stream.pipeline import Pipeline
from stream.sources import SourceOptions
from stream.subscriber import Subscriber
from tests.support.server import REPO_ROOT, serving, start_server, test_config
from tests.support.lines import Lines

pytestmark = pytest.mark.slow

FAST = SourceOptions(watchdog_s=2.0, backoff_initial_s=0.2, backoff_max_s=1.0, open_timeout_s=2.0, read_timeout_s=2.0)


async def test_async_iterator_yields_filtered_messages(recognizer, video):
    """Subscriber(url, streams=..., kinds=...) yields hello, subscribed, then only that stream's labels."""
    cfg = validate_config(test_config([{"id": "a", "url": str(video)}, {"id": "b", "url": str(video)}]))
    pipeline = Pipeline(recognizer, cfg, source_options=FAST)
    async with serving(pipeline, cfg) as srv:
        seen = []
        async with Subscriber(srv.ws_url, streams=["b"], kinds=["labels"]) as sub:
            async for msg in sub:
                seen.append(msg)
                if sum(m["type"] == "labels" for m in seen) >= 3:
                    break
    kinds = [m["type"] for m in seen]
    assert kinds[0] == "hello" and "subscribed" in kinds
    after = seen[kinds.index("subscribed") + 1 :]
    assert after and all(m["type"] == "labels" and m["stream"] == "b" for m in after)


def test_cli_prints_json_lines_and_survives_a_restart(tmp_path, tiny_model_dir, video):
    """`python -m stream subscribe` prints JSON lines, reconnects after a restart on the same port, exits 0 on Ctrl-C."""
    sources = [{"id": "demo", "url": str(video)}]
    first = start_server(tmp_path, tiny_model_dir, sources=sources)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "stream", "subscribe", first.ws_url, "--stream", "demo", "--kind", "labels"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out = Lines(proc.stdout)
        lines = out.wait_for(3, 30)
        assert len(lines) >= 3, proc.stderr.read() if proc.poll() is not None else lines
        msgs = [json.loads(line) for line in lines]
        assert all(m["type"] == "labels" and m["stream"] == "demo" for m in msgs)
        first.stop()
        before = len(out.lines)
        time.sleep(1.0)  # the subscriber notices and starts retrying
        second = start_server(tmp_path, tiny_model_dir, sources=sources, port=first.port)
        with second:
            lines = out.wait_for(before + 3, 40)
            assert len(lines) >= before + 3, "no labels after the restart"
            assert json.loads(lines[-1])["type"] == "labels"
            proc.send_signal(signal.SIGINT)
            assert proc.wait(10) == 0
        err = proc.stderr.read()
        assert "reconnecting" in err and "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        first.stop()


async def test_refusal_messages_mask_the_token_in_the_url(recognizer):
    """A server refusing the subscriber (401) is reported with ?token= masked in the URL it names."""
    from stream.subscriber import SubscriberError

    cfg = validate_config(test_config())
    async with serving(Pipeline(recognizer, cfg, source_options=FAST), cfg, token="right-token-123") as srv:
        sub = Subscriber(f"{srv.ws_url}?token=wrong-token-456", reconnect=False)
        with pytest.raises(SubscriberError) as err:
            await sub.__anext__()
        await sub.close()
    assert "HTTP 401" in str(err.value) and "wrong-token-456" not in str(err.value)
