"""Browser end to end: Debian's Chromium under Playwright drives the page (web/) against a real server.

Loopback only. Screenshots land in test-artifacts/ (desktop, dark, phone,
disconnected) so a person can judge the page without running it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.support.browser import (  # noqa: F401 (server_logs_on_failure: an autouse fixture)
    bars,
    card,
    chromium_session,
    open_page,
    require_browser,
    screenshot,
    server_logs_on_failure,
    wait_for_labels,
)
from tests.support.server import start_server
from tests.support.videos import make_video

pytestmark = [pytest.mark.slow, pytest.mark.browser]

STATES = {"connecting", "live", "reconnecting", "stopped", "failed"}
# Small, quick clips for the tiny model; labels every 0.25 s.
CONFIG = {
    "window": {"span_s": 2, "stride_s": 0.25},
    "labels": {"enter": 0.05, "smoothing": 0},
    "server": {"allow_local_sources": True},
}
# A crash of the server (say a segfault in native code) leaves every thread's stack in its log.
ENV = {"PYTHONFAULTHANDLER": "1"}

require_browser()


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    """A 6 s moving-square clip, looped by the server as a camera."""
    path = tmp_path_factory.mktemp("browser-clips") / "clip.mp4"
    make_video(path, fps=15, seconds=6, width=320, height=240)
    return str(path)


@pytest.fixture(scope="module")
def browser():
    with chromium_session() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir, clip):
    """One server for the tests that do not stop it: a looping file camera called 'demo'."""
    tmp = tmp_path_factory.mktemp("browser-server")
    with start_server(tmp, tiny_model_dir, sources=[{"id": "demo", "url": clip, "loop": True}], config=CONFIG, env=ENV) as proc:
        yield proc


def post_stream(base: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        base + "/api/streams", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


# ---------------------------------------------------------------- tests
def test_page_shows_stream_with_live_bars_and_preview(browser, server):
    """The page shows the stream card, its top-k bars update from live labels, and the MJPEG preview loads."""
    page = open_page(browser, server.url)
    try:
        page.wait_for_selector('#conn[data-state="open"]')
        page.wait_for_selector(card("demo"))
        assert page.text_content(f"{card('demo')} .card-id") == "demo"
        page.wait_for_function(
            "sel => document.querySelector(sel).dataset.state === 'live'", arg=f"{card('demo')} .badge"
        )
        assert "labels" in page.text_content("#model-info")

        wait_for_labels(page, "demo")
        first = bars(page, "demo")
        assert first and all(label and value.endswith("%") for label, value, _ in first if label)
        first_age = page.text_content(f'{card("demo")} [data-role="age"]')
        assert first_age.endswith("ms") or first_age.endswith(" s")
        # Read the DOM again until a later labels message has changed it (stride 0.25 s).
        page.wait_for_function(
            """([sel, before, age]) => {
                const rows = [...document.querySelectorAll(sel + ' .bar')]
                  .map(r => [r.querySelector('.bar-label').textContent,
                             r.querySelector('.bar-value').textContent, r.dataset.score || '']);
                const nowAge = document.querySelector(sel + ' [data-role="age"]').textContent;
                return JSON.stringify(rows) !== before || nowAge !== age;
            }""",
            arg=[card("demo"), json.dumps(first), first_age],
            timeout=15_000,
        )
        # Bar widths follow the scores: the top row's fill is scaled by its score.
        transform = page.eval_on_selector(f"{card('demo')} .bar-fill", "el => el.style.transform")
        assert transform.startswith("scaleX(")

        page.wait_for_function(
            "sel => { const img = document.querySelector(sel); return img && img.complete && img.naturalWidth > 0; }",
            arg=f"{card('demo')} .preview img",
        )
        assert "/api/streams/demo/preview.mjpg" in page.get_attribute(f"{card('demo')} .preview img", "src")
        screenshot(page, "browser-desktop.png")

        dark = open_page(browser, server.url, color_scheme="dark")
        wait_for_labels(dark, "demo")
        dark.wait_for_timeout(1000)
        screenshot(dark, "browser-desktop-dark.png")
        dark.close()
        assert page.errors == []
    finally:
        page.close()


def test_form_adds_streams_shows_errors_and_removes(browser, server, clip):
    """The form adds a stream (card with a state badge), shows the server's own error for a bad URL, and remove deletes it."""
    page = open_page(browser, server.url)
    try:
        page.wait_for_selector('#conn[data-state="open"]')

        # A URL the server refuses: the page shows the server's message, word for word.
        bad = "ftp://127.0.0.1/nothing.mp4"
        status, body = post_stream(server.url, {"url": bad, "id": "probe"})
        assert 400 <= status < 500, body
        page.fill("#add-url", bad)
        page.click("#add-submit")
        page.wait_for_selector("#add-error:not([hidden])")
        assert page.text_content("#add-error-message") == body["error"]["message"]
        assert page.text_content("#add-error-code") == body["error"]["code"]
        assert page.get_attribute("#add-url", "aria-invalid") == "true"
        assert page.query_selector(card("probe")) is None

        # A good one: the card appears with its state.
        page.fill("#add-url", clip)
        page.fill("#add-id", "added")
        page.click("#add-submit")
        page.wait_for_selector(card("added"))
        assert page.is_hidden("#add-error")
        badge = page.text_content(f"{card('added')} .badge")
        assert badge in STATES, badge
        page.wait_for_function(
            "sel => ['live', 'stopped'].includes(document.querySelector(sel).dataset.state)",
            arg=f"{card('added')} .badge",
        )
        assert page.eval_on_selector_all(".card", "cards => cards.length") == 2

        # Remove it (the page asks first).
        page.once("dialog", lambda dialog: dialog.accept())
        page.click(f"{card('added')} [data-role='remove']")
        page.wait_for_selector(card("added"), state="detached")
        with urllib.request.urlopen(server.url + "/api/streams", timeout=10) as response:
            ids = [s["id"] for s in json.loads(response.read())["streams"]]
        assert ids == ["demo"]
        assert page.query_selector(card("demo")) is not None
        assert page.errors == []
    finally:
        page.close()


def test_phone_width_has_no_horizontal_overflow(browser, server):
    """At 375x740 the page is one column and nothing overflows sideways."""
    page = open_page(browser, server.url, width=375, height=740)
    try:
        page.wait_for_selector(card("demo"))
        wait_for_labels(page, "demo")
        # A long id and URL must not widen the page either (the card truncates them).
        status, body = post_stream(
            # Port 9 on loopback: refused at once, so the stream fails without a packet leaving the machine.
            server.url,
            {"url": "rtsp://user:secret@127.0.0.1:9/a-very-long-camera-path/" + "x" * 80, "id": "a-long-stream-name-" + "y" * 20},
        )
        assert status == 201, body
        page.wait_for_selector(card(body["id"]))
        page.wait_for_timeout(500)
        assert page.evaluate("document.scrollingElement.scrollWidth") <= 375
        boxes = page.eval_on_selector_all(".card", "cards => cards.map(c => c.getBoundingClientRect().x)")
        assert len(set(round(x) for x in boxes)) == 1, "cards should stack in one column"
        screenshot(page, "browser-phone.png", full_page=True)
        request = urllib.request.Request(server.url + f"/api/streams/{body['id']}", method="DELETE")
        urllib.request.urlopen(request, timeout=10).close()
        page.wait_for_selector(card(body["id"]), state="detached")
        assert page.errors == []
    finally:
        page.close()


@pytest.mark.timeout(240)
def test_page_shows_disconnect_and_recovers_after_restart(browser, tmp_path, tiny_model_dir, clip):
    """Stopping the server shows 'reconnecting'; restarting it on the same port brings the page back by itself."""
    sources = [{"id": "demo", "url": clip, "loop": True}]
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first = start_server(tmp_path / "first", tiny_model_dir, sources=sources, config=CONFIG, env=ENV)
    port = int(first.url.rsplit(":", 1)[1])
    page = open_page(browser, first.url)
    try:
        page.wait_for_selector('#conn[data-state="open"]')
        wait_for_labels(page, "demo")

        first.stop()
        page.wait_for_selector('#conn[data-state="reconnecting"]')
        page.wait_for_selector("#conn-banner:not([hidden])")
        assert "reconnecting" in page.text_content("#conn").lower()
        screenshot(page, "browser-disconnected.png")

        with start_server(tmp_path / "second", tiny_model_dir, sources=sources, config=CONFIG, env=ENV, port=port) as second:
            assert second.url == first.url
            page.wait_for_selector('#conn[data-state="open"]', timeout=30_000)
            assert page.is_hidden("#conn-banner")
            page.wait_for_selector(card("demo"))
            # Labels flow again and the preview reconnects, with no reload of the page.
            before = json.dumps(bars(page, "demo"))
            page.wait_for_function(
                "([sel, before]) => JSON.stringify([...document.querySelectorAll(sel + ' .bar')].map(r =>"
                " [r.querySelector('.bar-label').textContent, r.querySelector('.bar-value').textContent,"
                " r.dataset.score || ''])) !== before",
                arg=[card("demo"), before],
            )
            page.wait_for_function(
                "sel => { const img = document.querySelector(sel); return img.complete && img.naturalWidth > 0; }",
                arg=f"{card('demo')} .preview img",
            )
        assert page.errors == []
    finally:
        page.close()
        first.stop()
