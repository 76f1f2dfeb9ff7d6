"""Browser end to end for "Use my camera": Chromium's fake camera streams to the real server over WebRTC.

The WebRTC test runs only inside the private network namespace that
scripts/test.sh makes, where loopback is the only interface. The peers meet on
127.0.0.1: the server offers only that host candidate (server.ice_host_addresses)
and Chromium is allowed loopback candidates (--allow-loopback-in-peer-connection);
the namespace also keeps any other candidate Chromium gathers, or an mDNS query,
from reaching a real network. The camera-error tests open no peer
connection and run anywhere. Screenshot: test-artifacts/browser-webrtc.png.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.support.browser import (  # noqa: F401 (server_logs_on_failure: an autouse fixture)
    card,
    chromium_session,
    open_page,
    require_browser,
    screenshot,
    server_logs_on_failure,
    wait_for_labels,
)
from tests.support.server import start_server

pytestmark = [pytest.mark.slow, pytest.mark.browser]

require_browser()

CONFIG = {
    "window": {"span_s": 2, "stride_s": 0.25},
    "labels": {"enter": 0.05, "smoothing": 0},
    # One camera, so a second shows the server's refusal; peers meet on loopback only.
    "server": {"max_webrtc_streams": 1, "ice_host_addresses": ["127.0.0.1"]},
}
ENV = {"PYTHONFAULTHANDLER": "1"}
LOCAL_CARD = '.card[data-local="camera"]'


def private_network_problem() -> str | None:
    """Why WebRTC must not run here, or None inside scripts/test.sh's private namespace."""
    if os.environ.get("STREAM_TEST_NETNS") != "1":
        return "WebRTC browser test runs only in the private network namespace (bash scripts/test.sh sets STREAM_TEST_NETNS=1)"
    return None


def write_y4m(path: Path, *, width: int = 320, height: int = 240, fps: int = 15, seconds: float = 3.0) -> None:
    """A Y4M clip written by hand: a bright square sweeping over a dark, tinted background."""
    frames = int(fps * seconds)
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        u = np.full((height // 2, width // 2), 150, np.uint8).tobytes()
        v = np.full((height // 2, width // 2), 110, np.uint8).tobytes()
        for n in range(frames):
            y = np.full((height, width), 40, np.uint8)
            x = int(n * (width - 60) / frames)
            y[90:150, x : x + 60] = 235
            out.write(b"FRAME\n" + y.tobytes() + u + v)


@pytest.fixture
def private_network() -> None:
    """Skip (before any browser or server starts) unless the private network namespace is there."""
    problem = private_network_problem()
    if problem:
        pytest.skip(problem)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Chromium whose fake camera plays the generated clip, with the permission prompt auto-accepted."""
    clip = tmp_path_factory.mktemp("webrtc-clip") / "clip.y4m"
    write_y4m(clip)
    media_args = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={clip}",
        "--allow-loopback-in-peer-connection",  # the server offers only 127.0.0.1
    ]
    with chromium_session(media_args) as chromium:
        yield chromium


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    """A server with no streams of its own and room for one browser camera."""
    with start_server(tmp_path_factory.mktemp("webrtc-server"), tiny_model_dir, config=CONFIG, env=ENV) as proc:
        yield proc


def streams(base: str) -> dict[str, dict]:
    with urllib.request.urlopen(base + "/api/streams", timeout=10) as response:
        return {s["id"]: s for s in json.loads(response.read())["streams"]}


def wait_until(predicate, timeout: float, what: str):
    """Poll ``predicate`` every 0.2 s; return its first truthy value or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def start_camera(page) -> str:
    """Press "Use my camera", wait for the page's own card, and return its stream id."""
    assert page.text_content("#camera-toggle") == "Use my camera"
    page.click("#camera-toggle")
    page.wait_for_selector(LOCAL_CARD)
    return page.get_attribute(LOCAL_CARD, "data-stream")


# ---------------------------------------------------------------- tests
@pytest.mark.timeout(180)
def test_my_camera_gets_labels_and_stopping_or_closing_removes_it(private_network, browser, server):
    """'Use my camera' streams to the server, shows live labels beside a playing local video; stop or close ends it."""
    page = open_page(browser, server.url)
    other = None
    try:
        page.wait_for_selector('#conn[data-state="open"]')
        started = time.monotonic()
        sid = start_camera(page)
        wait_for_labels(page, sid, timeout=20_000)
        print(f"labels for {sid} after {time.monotonic() - started:.1f} s")
        assert page.text_content(f"{card(sid)} .bar-label")
        assert page.text_content(f"{card(sid)} .bar-value").endswith("%")
        listed = wait_until(lambda: streams(server.url).get(sid), 5, f"{sid} in /api/streams")
        assert listed["kind"] == "webrtc" and listed["state"] == "live", listed
        assert page.get_attribute(f"{card(sid)} .badge", "data-state") == "live"

        # The preview is the local camera itself (no MJPEG request), and it plays.
        assert page.is_hidden(f"{card(sid)} .preview img")
        assert page.get_attribute(f"{card(sid)} .preview img", "src") is None
        page.wait_for_function(
            "sel => { const v = document.querySelector(sel); return v && v.videoWidth > 0 && !v.paused && v.readyState >= 2; }",
            arg=f"{card(sid)} .preview video",
        )
        assert page.eval_on_selector(f"{card(sid)} .preview video", "v => v.muted && v.playsInline && v.srcObject !== null")
        t0 = page.eval_on_selector(f"{card(sid)} .preview video", "v => v.currentTime")
        page.wait_for_function(
            "([sel, t0]) => document.querySelector(sel).currentTime > t0", arg=[f"{card(sid)} .preview video", t0]
        )
        assert page.text_content("#camera-toggle") == "Stop camera"
        page.wait_for_timeout(500)
        screenshot(page, "browser-webrtc.png")

        # Past the cap (1): a second tab's camera gets the server's refusal, in words.
        other = open_page(browser, server.url)
        other.wait_for_selector('#conn[data-state="open"]')
        other.click("#camera-toggle")
        other.wait_for_selector("#camera-error:not([hidden])")
        assert other.text_content("#camera-error-code") == "webrtc_limit"
        message = other.text_content("#camera-error-message")
        assert message.startswith("The server refused the camera: ") and "already streaming" in message, message
        assert other.query_selector(LOCAL_CARD) is None
        assert other.text_content("#camera-toggle") == "Use my camera"
        screenshot(other, "browser-webrtc-limit.png")
        assert other.errors == []
        other.close()
        other = None

        # Stop: the page hangs up and stops the camera; the server removes the stream, and the card goes.
        page.click("#camera-toggle")
        stopped = time.monotonic()
        assert page.eval_on_selector_all(".preview video", "vs => vs.every(v => v.srcObject === null)")
        wait_until(lambda: sid not in streams(server.url), 8, f"{sid} to leave /api/streams after Stop camera")
        print(f"stream removed {time.monotonic() - stopped:.1f} s after Stop camera")
        page.wait_for_selector(card(sid), state="detached", timeout=5_000)
        assert page.text_content("#camera-toggle") == "Use my camera"
        assert page.is_hidden("#camera-error")

        # Again, then close the page: the stream goes too.
        sid2 = start_camera(page)
        assert sid2 != sid
        wait_until(lambda: streams(server.url).get(sid2, {}).get("state") == "live", 20, f"{sid2} live")
        assert page.errors == []
        page.close()
        closed = time.monotonic()
        wait_until(lambda: sid2 not in streams(server.url), 10, f"{sid2} to leave /api/streams after the page closed")
        print(f"stream removed {time.monotonic() - closed:.1f} s after the page closed")
    finally:
        if other is not None:
            other.close()
        if not page.is_closed():
            page.close()


DENY = """
navigator.mediaDevices.getUserMedia = () =>
  Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
"""
NO_CAMERA = """
navigator.mediaDevices.getUserMedia = () =>
  Promise.reject(new DOMException('Requested device not found', 'NotFoundError'));
"""
INSECURE = "Object.defineProperty(Navigator.prototype, 'mediaDevices', { get: () => undefined });"


@pytest.mark.parametrize(
    ("script", "code", "words"),
    [
        (DENY, "NotAllowedError", ["permission was denied", "allow this site"]),
        (NO_CAMERA, "NotFoundError", ["no camera was found"]),
        (INSECURE, "insecure_context", ["https://", "localhost"]),
    ],
    ids=["denied", "no-camera", "insecure-context"],
)
def test_camera_problems_get_a_clear_message(browser, server, script, code, words):
    """Permission denied, no camera, or an insecure page: a clear message, no stream, no WebRTC request."""
    page = open_page(browser, server.url, init_script=script)
    webrtc_requests = []
    page.on("request", lambda r: webrtc_requests.append(r.url) if "/api/webrtc/" in r.url else None)
    try:
        page.wait_for_selector('#conn[data-state="open"]')
        page.click("#camera-toggle")
        page.wait_for_selector("#camera-error:not([hidden])")
        message = page.text_content("#camera-error-message").lower()
        for word in words:
            assert word in message, message
        assert page.text_content("#camera-error-code") == code
        assert page.text_content("#camera-toggle") == "Use my camera"
        assert page.query_selector(LOCAL_CARD) is None
        assert webrtc_requests == []
        assert streams(server.url) == {}
        if code == "NotAllowedError":
            screenshot(page, "browser-webrtc-denied.png")
        assert page.errors == []
    finally:
        page.close()
