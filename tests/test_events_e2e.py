"""The real server process and its event store: kill -9 mid-event and restart, API streams back, removals kept, a damaged database."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from tests.support.server import REPO_ROOT, start_server, test_config

pytestmark = pytest.mark.slow

SECRET = "pw-9f3k2"
CONFIG = {
    "labels": {"enter": 0.05, "exit": 0.01, "smoothing": 0, "update_interval_s": 0},
    "server": {"allow_local_sources": True},
}


def _until(fn, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def _events(url: str, **params) -> list[dict]:
    return httpx.get(f"{url}/api/events", params={"limit": 1000, **params}, timeout=10).json()["events"]


def _stream_ids(url: str) -> set[str]:
    return {s["id"] for s in httpx.get(f"{url}/api/streams", timeout=10).json()["streams"]}


def test_kill_9_mid_event_then_restart(tmp_path, tiny_model_dir, video):
    """After SIGKILL mid-event the next start closes it as server_stopped at its last time, keeps the history and brings the API stream back."""
    sources = [{"url": str(video), "id": "cam"}]
    srv = start_server(tmp_path, tiny_model_dir, sources=sources, config=CONFIG)
    try:
        door = {"url": f"rtsp://user:{SECRET}@127.0.0.1:9/x", "id": "door", "max_fps": 5}
        assert httpx.post(f"{srv.url}/api/streams", json=door, timeout=10).status_code == 201
        running = _until(lambda: _events(srv.url, stream="cam", in_progress="true"))
        time.sleep(0.6)  # a few more updates: the kill lands while rows are being rewritten
        before = {e["id"]: e for e in _events(srv.url)}
        srv.proc.kill()
        srv.proc.wait(10)
    finally:
        srv.stop()
    victim = running[0]["id"]

    srv = start_server(tmp_path, tiny_model_dir, sources=sources, config=CONFIG)
    try:
        ev = httpx.get(f"{srv.url}/api/events/{victim.replace(':', '%3A')}", timeout=10).json()
        assert ev["end_reason"] == "server_stopped" and ev["end"] is not None
        assert ev["start"] <= ev["end"] and ev["end"] >= before[victim]["start"]
        after = {e["id"]: e for e in _events(srv.url)}
        assert set(before) <= set(after)  # the history is intact
        assert _stream_ids(srv.url) == {"cam", "door"}
        assert "closed as server_stopped" in srv.logs()
        # The new run's seqs go on after the old ones.
        _until(lambda: [e for e in _events(srv.url, stream="cam") if e["id"] not in before])
        new = [e for e in _events(srv.url, stream="cam") if e["id"] not in before]
        assert min(e["seq"] for e in new) > max(e["seq"] for e in before.values())
        assert httpx.delete(f"{srv.url}/api/streams/door", timeout=10).status_code == 204
        assert srv.stop() == 0  # a clean stop ends the open events as server_stopped
        logs = srv.logs()
    finally:
        srv.stop()
    assert SECRET not in logs

    srv = start_server(tmp_path, tiny_model_dir, sources=sources, config=CONFIG)
    try:
        assert _stream_ids(srv.url) == {"cam"}  # the removal was remembered
        old = [e for e in _events(srv.url) if e["id"] in after or e["id"] in {n["id"] for n in new}]
        assert old and all(e["end"] is not None for e in old)
        assert {e["end_reason"] for e in old} <= {"server_stopped", "score_dropped"}, [e for e in old if e["end_reason"] == "stream_lost"]
        assert "closed as server_stopped" not in srv.logs()  # nothing was left open by the clean stop
    finally:
        srv.stop()
    assert SECRET not in srv.logs()


def test_a_damaged_database_stops_the_server_with_one_line(tmp_path, tiny_model_dir):
    """Random bytes in events.db make `python server.py` exit 2 with one `error:` line that says to move it aside."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "events.db").write_bytes(os.urandom(8192))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(test_config((), {"server": {"data_dir": str(data)}})), encoding="utf-8")
    cmd = [sys.executable, "server.py", "--config", str(config), "--model", str(tiny_model_dir), "--device", "cpu", "--port", "0"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: the event database {data / 'events.db'} is damaged or not a database")
    assert f"mv {data / 'events.db'} {data / 'events.db'}.bad" in lines[0]


def _server(tmp_path, config: dict, *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(test_config((), config)), encoding="utf-8")
    cmd = [sys.executable, "server.py", "--config", str(path), "--device", "cpu", "--port", "0", *args]
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)


def test_an_unusable_data_dir_is_one_line_before_the_model(tmp_path):
    """A data_dir that cannot be created exits 2 with one line about server.data_dir, checked before the model is loaded."""
    (tmp_path / "file").write_text("x")
    proc = _server(tmp_path, {"server": {"data_dir": str(tmp_path / "file" / "data")}}, "--model", str(tmp_path / "no-model"))
    assert proc.returncode == 2
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1 and "server.data_dir" in lines[0] and lines[0].startswith("error: cannot create the data folder"), lines


def test_a_failed_start_leaves_no_data_folder(tmp_path):
    """A start that fails on its model does not create data_dir: a new database is made only once the model loaded."""
    data = tmp_path / "data"
    proc = _server(tmp_path, {"server": {"data_dir": str(data)}}, "--model", str(tmp_path / "no-model"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert not data.exists()


def test_each_server_gets_its_own_data_folder(tmp_path):
    """The helpers' config is a fresh copy each time: a data_dir set for one server never leaks into the next."""
    from tests.support.server import BASE_CONFIG, test_config

    first = test_config()
    first["server"]["data_dir"] = str(tmp_path / "one")
    assert "data_dir" not in test_config()["server"] and "data_dir" not in BASE_CONFIG["server"]
    assert "data_dir" not in test_config((), {"server": {"allow_local_sources": True}})["server"]
