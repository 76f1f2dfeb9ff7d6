"""Start, freeze, kill and restart the test RTSP server (tests/support/rtsp_server.py) from pytest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from functools import lru_cache
from pathlib import Path

__all__ = ["SYSTEM_PYTHON", "RtspServer", "gst_rtsp_missing"]

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")


@lru_cache(maxsize=1)
def gst_rtsp_missing() -> str | None:
    """None if the system Python can run the server, else why not (for pytest.skip)."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} not found (the RTSP test server runs under the system Python)"
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
        "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
        "assert Gst.ElementFactory.find('x264enc'), 'x264enc missing (gstreamer1.0-plugins-ugly)'; "
        "assert Gst.ElementFactory.find('rtph264pay'), 'rtph264pay missing (gstreamer1.0-plugins-good)'"
    )
    try:
        result = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {SYSTEM_PYTHON}: {exc}"
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
        return (
            "GStreamer RTSP server not usable from the system Python "
            f"(install python3-gi gir1.2-gst-rtsp-server-1.0 and the gstreamer plugins): {last}"
        )
    return None


class RtspServer:
    """One server subprocess on 127.0.0.1; ``start()`` again after ``kill()`` reuses the port."""

    def __init__(self, *, fps: int = 15, width: int = 320, height: int = 240, mount: str = "/test") -> None:
        self.fps, self.width, self.height, self.mount = fps, width, height, mount
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: list[str] = []

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.mount}"

    def url_with(self, userinfo: str) -> str:
        """The same URL with credentials (the test server ignores them)."""
        return f"rtsp://{userinfo}@127.0.0.1:{self.port}{self.mount}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, port: int | None = None, timeout: float = 15.0) -> RtspServer:
        """Start (on ``port``, or the previous port, or a free one) and wait for the port line."""
        if self.running:
            raise RuntimeError("RTSP server already running")
        port = self.port if port is None else port
        cmd = [
            SYSTEM_PYTHON,
            str(SERVER_SCRIPT),
            "--port",
            str(port),
            "--fps",
            str(self.fps),
            "--width",
            str(self.width),
            "--height",
            str(self.height),
            "--mount",
            self.mount,
        ]
        deadline = time.monotonic() + timeout
        while True:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            line = self._first_line(proc, deadline)
            if line.isdigit():
                break
            proc.wait(timeout=5)
            err = "".join(proc.stderr.readlines()) if proc.stderr else ""
            # Restarting on the same port can race the old socket's release.
            if port and time.monotonic() < deadline and "cannot listen" in err:
                time.sleep(0.2)
                continue
            raise RuntimeError(f"RTSP server did not start: {line!r} {err.strip()}")
        self._proc = proc
        self.port = int(line)
        # Drain stderr so a chatty GStreamer cannot block the server on a full pipe.
        threading.Thread(target=self._drain, args=(proc,), daemon=True).start()
        return self

    @staticmethod
    def _first_line(proc: subprocess.Popen[str], deadline: float) -> str:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(proc.stdout.readline() if proc.stdout else ""))
        reader.daemon = True
        reader.start()
        reader.join(max(0.0, deadline - time.monotonic()))
        if not result:
            proc.kill()
            proc.wait()
            raise RuntimeError("RTSP server printed no port in time")
        return result[0].strip()

    def _drain(self, proc: subprocess.Popen[str]) -> None:
        if proc.stderr is None:
            return
        for line in proc.stderr:
            self._stderr.append(line)

    def freeze(self) -> None:
        """SIGSTOP: connections stay open but nothing more is sent (a frozen camera)."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """Kill the server (SIGKILL: like a camera losing power) and reap it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()  # works on a stopped process too
        proc.wait(timeout=10)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.kill()


if __name__ == "__main__":  # manual check: python -m tests.support.rtsp
    reason = gst_rtsp_missing()
    if reason:
        sys.exit(reason)
    with RtspServer() as server:
        print(server.url)
        time.sleep(2)
