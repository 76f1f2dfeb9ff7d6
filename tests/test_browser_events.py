"""Browser end to end for stored events: card strips with snapshot thumbnails, the clip player, the history view.

A real server (behind a token, so every thumbnail, clip and REST call must
carry it) starts on a data folder seeded with known events, real H.264 clips
and real JPEGs (tests/support/seed.py); Debian's Chromium drives the page.
Screenshots land in test-artifacts/ (events-*.png).
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from tests.support.browser import (  # noqa: F401 (server_logs_on_failure: an autouse fixture)
    card,
    chromium_session,
    open_page,
    require_browser,
    screenshot,
    server_logs_on_failure,
)
from tests.support.seed import SeedEvent, make_clip, seed_events
from tests.support.server import start_server
from tests.support.videos import make_video

pytestmark = [pytest.mark.slow, pytest.mark.browser]

require_browser()

TOKEN = "events-page-test-token"
CLIP_SECONDS = 3.0
NOW = time.time()
# Cameras that look live but make no events of their own: classified every 60 s, and a label must reach 1.0.
CONFIG = {"window": {"span_s": 2, "stride_s": 60}, "labels": {"enter": 1.0, "exit": 0.5}, "server": {"token": TOKEN}}
PAGE_SIZE = 20  # web/history.js
YARD_LABELS = ["walking the dog", "riding a bike", "jogging"]


def _events() -> list[SeedEvent]:
    events = []
    # door: the newest has everything; then one without a clip, one whose clip file is gone, one without a snapshot.
    special = {6: {"clip": False}, 5: {"clip_file": False}, 4: {"snapshot": False}}
    for n in range(7, 0, -1):
        start = NOW - 120 - (7 - n) * 90
        label = "opening door" if n % 2 else "knocking"
        events.append(SeedEvent(f"door:seed:{n}", "door", label, start, start + 6, 0.5 + n / 20, **special.get(n, {})))
    for n in range(20):
        start = NOW - 150 - n * 70
        events.append(SeedEvent(f"yard:seed:{n}", "yard", YARD_LABELS[n % 3], start, start + 4, 0.4 + (n % 5) / 10))
    # A stream that is gone: its events are history only (no card).
    for n in range(2):
        start = NOW - 86_400 * 2 - n * 600
        events.append(SeedEvent(f"garage:seed:{n}", "garage", "jogging", start, start + 8, 0.7))
    return events


EVENTS = _events()
NEWEST_FIRST = [ev.id for ev in sorted(EVENTS, key=lambda ev: (ev.start, ev.id), reverse=True)]


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def browser():
    with chromium_session() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    """The server with cameras 'door' and 'yard', started on a data folder seeded with EVENTS."""
    tmp = tmp_path_factory.mktemp("events-page")
    camera = make_video(tmp / "camera.mp4", fps=15, seconds=6, width=320, height=240)
    seed_events(tmp / "data", EVENTS, clip=make_clip(tmp / "seed-clip.mp4", seconds=CLIP_SECONDS))
    sources = [{"id": "door", "url": str(camera), "loop": True}, {"id": "yard", "url": str(camera), "loop": True}]
    with start_server(tmp, tiny_model_dir, sources=sources, config=CONFIG) as proc:
        yield proc


def page_for(browser, server, **kwargs):
    """The page with ?token= (the trailing '#' keeps open_page's '/' out of the query)."""
    page = open_page(browser, f"{server.url}/?token={TOKEN}#", **kwargs)
    page.wait_for_selector('#conn[data-state="open"]')
    return page


def get_events(server, **query) -> dict:
    qs = "&".join(f"{k}={urllib.request.quote(str(v))}" for k, v in query.items())
    request = urllib.request.Request(f"{server.url}/api/events?{qs}", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def tile(event_id: str) -> str:
    return f'.recent-item[data-event-id="{event_id}"]'


def row(event_id: str) -> str:
    return f'.history-row[data-event-id="{event_id}"]'


def listed(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector, "els => els.map(el => el.dataset.eventId)")


def wait_for_playing(page) -> dict:
    """Wait until the player's video has decoded frames and advanced; its state as a dict."""
    page.wait_for_function(
        "() => { const v = document.querySelector('#player video'); return v.readyState >= 2 && v.currentTime > 0; }",
        timeout=20_000,
    )
    return page.evaluate(
        "() => { const v = document.querySelector('#player video');"
        " return {duration: v.duration, w: v.videoWidth, h: v.videoHeight, src: v.currentSrc}; }"
    )


# ---------------------------------------------------------------- tests
def test_seeded_store_answers_as_the_page_expects(server):
    """The seeded events come back from the REST API with the flags the page renders from."""
    page = get_events(server, stream="door", limit=10)
    by_id = {ev["id"]: ev for ev in page["events"]}
    assert [ev["id"] for ev in page["events"]] == [i for i in NEWEST_FIRST if i.startswith("door:")]
    assert by_id["door:seed:7"]["has_clip"] and by_id["door:seed:7"]["has_snapshot"]
    assert abs(by_id["door:seed:7"]["clip_duration_s"] - CLIP_SECONDS) < 0.1
    assert not by_id["door:seed:6"]["has_clip"] and not by_id["door:seed:4"]["has_snapshot"]


def test_cards_show_recent_events_with_thumbnails(browser, server):
    """Each card lists its newest stored events: snapshot thumbnails, a placeholder without one, a play mark with a clip."""
    page = page_for(browser, server)
    try:
        door = card("door")
        page.wait_for_selector(f"{door} {tile('door:seed:7')}")
        assert listed(page, f"{door} .recent-item") == [i for i in NEWEST_FIRST if i.startswith("door:")]
        # The yard has 20 stored events; its card shows the newest 8.
        page.wait_for_selector(f"{card('yard')} .recent-item")
        assert listed(page, f"{card('yard')} .recent-item") == [i for i in NEWEST_FIRST if i.startswith("yard:")][:8]

        # Thumbnails are the snapshots scaled to 320 wide by the server (the seeded ones are 320x240 already), asked for with the token and a peak version.
        page.wait_for_function(
            "sel => { const img = document.querySelector(sel); return img && img.complete && img.naturalWidth === 320; }",
            arg=f"{door} {tile('door:seed:7')} img",
        )
        src = page.get_attribute(f"{door} {tile('door:seed:7')} img", "src")
        assert src.startswith("/api/events/door%3Aseed%3A7/snapshot.jpg?v=") and f"token={TOKEN}" in src
        assert "width=320" in src, "a thumbnail, not the full-resolution snapshot"
        assert page.get_attribute(f"{door} {tile('door:seed:7')} img", "loading") == "lazy"
        label = page.text_content(f"{door} {tile('door:seed:7')} .recent-label")
        assert label == "opening door"
        assert page.text_content(f"{door} {tile('door:seed:7')} .recent-meta").endswith("85%")

        # No snapshot: a placeholder, still with a play mark (it has a clip). No clip: no play mark.
        assert page.is_visible(f"{door} {tile('door:seed:4')} .thumb.is-missing")
        assert page.text_content(f"{door} {tile('door:seed:4')} .thumb-note") == "no snapshot"
        assert page.query_selector(f"{door} {tile('door:seed:4')} img") is None
        assert page.query_selector(f"{door} {tile('door:seed:4')} .thumb-play") is not None
        assert page.query_selector(f"{door} {tile('door:seed:6')} .thumb-play") is None
        assert "Play clip: opening door" in page.get_attribute(f"{door} {tile('door:seed:7')} button", "aria-label")
        screenshot(page, "events-cards.png", full_page=True)

        dark = page_for(browser, server, color_scheme="dark")
        dark.wait_for_selector(f"{card('door')} {tile('door:seed:7')} img")
        dark.wait_for_timeout(500)
        screenshot(dark, "events-cards-dark.png", full_page=True)
        dark.close()
        assert page.errors == []
    finally:
        page.close()


def test_phone_width_strip_and_history_do_not_overflow(browser, server):
    """At 375x740 the strips scroll inside their cards and the history rows fit: nothing widens the page."""
    page = page_for(browser, server, width=375, height=740)
    try:
        page.wait_for_selector(f"{card('yard')} .recent-item")
        assert page.evaluate("document.scrollingElement.scrollWidth") <= 375
        screenshot(page, "events-phone-cards.png", full_page=True)
        page.click('.tab[data-view="history"]')
        page.wait_for_selector(".history-row")
        assert page.evaluate("document.scrollingElement.scrollWidth") <= 375
        screenshot(page, "events-phone-history.png", full_page=True)
        assert page.errors == []
    finally:
        page.close()


def test_clicking_an_event_plays_its_clip(browser, server):
    """A tile opens the player: the clip plays, its duration right, previews paused; Escape closes and hands focus back."""
    page = page_for(browser, server)
    try:
        opener = f"{card('door')} {tile('door:seed:7')} button"
        page.wait_for_selector(f"{card('door')} .preview img[src]")
        page.click(opener)
        page.wait_for_selector("#player[open]")
        assert page.text_content("#player-title") == "opening door"
        assert page.text_content("#player [data-role='meta']").startswith("door · ")
        state = wait_for_playing(page)
        assert abs(state["duration"] - CLIP_SECONDS) < 0.25, state
        assert (state["w"], state["h"]) == (320, 240)
        assert "/api/events/door%3Aseed%3A7/clip.mp4" in state["src"] and f"token={TOKEN}" in state["src"]
        assert page.is_hidden("#player [data-role='message']"), page.text_content("#player [data-role='message']")
        focused = page.evaluate("document.activeElement.outerHTML.slice(0, 120)")
        assert page.evaluate("document.activeElement.closest('#player') !== null"), f"focus should be in the player: {focused}"
        # While it plays the MJPEG previews are off (they would hold the browser's connections).
        live = page.eval_on_selector_all(".card .preview img", "imgs => imgs.map(i => i.getAttribute('src')).filter(Boolean)")
        assert live == [], live
        screenshot(page, "events-player.png")

        page.keyboard.press("Escape")
        page.wait_for_selector("#player", state="hidden")
        # The dialog's close event (a task after it hides) lets go of the clip and hands focus back.
        page.wait_for_function("() => !document.querySelector('#player video').getAttribute('src')")
        assert page.evaluate("sel => document.activeElement === document.querySelector(sel)", opener)
        page.wait_for_selector(f"{card('door')} .preview img[src]")  # previews come back

        # The close button works as well as Escape.
        page.click(opener)
        wait_for_playing(page)
        page.click("#player [data-role='close']")
        page.wait_for_selector("#player", state="hidden")
        assert page.errors == []
    finally:
        page.close()


def test_missing_clip_shows_a_message(browser, server):
    """A clip whose file is gone says so in words (from the server's 404), and an event without a clip says it has none."""
    page = page_for(browser, server)
    try:
        page.click(f"{card('door')} {tile('door:seed:5')} button")
        page.wait_for_selector("#player [data-role='message']:not([hidden])")
        text = page.text_content("#player [data-role='message']")
        assert "clip is missing on the server" in text, text
        assert page.is_hidden("#player [data-role='download']")
        # The video lets go of the broken source: its poster (the snapshot) shows, not an endless spinner.
        page.wait_for_function("() => !document.querySelector('#player video').getAttribute('src')")
        assert "/api/events/door%3Aseed%3A5/snapshot.jpg" in page.get_attribute("#player video", "poster")
        screenshot(page, "events-player-missing.png")
        page.keyboard.press("Escape")
        page.wait_for_selector("#player", state="hidden")

        page.click(f"{card('door')} {tile('door:seed:6')} button")
        page.wait_for_selector("#player[open]")
        assert "has no clip" in page.text_content("#player [data-role='message']")
        assert page.evaluate("!document.querySelector('#player video').getAttribute('src')")
        # The snapshot shows instead, as the video's poster.
        assert "/api/events/door%3Aseed%3A6/snapshot.jpg" in page.get_attribute("#player video", "poster")
        page.keyboard.press("Escape")
        assert page.errors == []
    finally:
        page.close()


def test_history_lists_filters_pages_and_plays(browser, server):
    """The history view lists stored events newest first, pages, filters by stream and label, and plays a row's clip."""
    page = page_for(browser, server)
    try:
        page.click('.tab[data-view="history"]')
        page.wait_for_selector("#history-view .history-row")
        assert page.is_hidden("#live-view")
        assert page.get_attribute('.tab[data-view="history"]', "aria-current") == "page"
        assert listed(page, ".history-row") == NEWEST_FIRST[:PAGE_SIZE]
        assert page.text_content("#history-view [data-role='status']") == f"{PAGE_SIZE} events, newest first"
        first = NEWEST_FIRST[0]
        assert page.text_content(f"{row(first)} .history-clip").startswith("▶ 3.0 s")
        screenshot(page, "events-history.png", full_page=True)

        page.click("#history-view [data-role='more']")
        page.wait_for_function("n => document.querySelectorAll('.history-row').length === n", arg=len(EVENTS))
        assert listed(page, ".history-row") == NEWEST_FIRST
        assert page.is_hidden("#history-view [data-role='more']")
        assert page.text_content("#history-view [data-role='status']") == f"{len(EVENTS)} events, all shown"

        def shown_after(action, expected: list[str]) -> None:
            action()
            page.wait_for_function(
                "ids => JSON.stringify([...document.querySelectorAll('.history-row')].map(r => r.dataset.eventId))"
                " === JSON.stringify(ids)",
                arg=expected,
            )

        # A stream that has no card any more is still offered: it came with the stored events.
        shown_after(lambda: page.select_option("#history-stream", "garage"), [i for i in NEWEST_FIRST if i.startswith("garage:")])
        assert all(s == "garage" for s in page.eval_on_selector_all(".history-stream", "els => els.map(e => e.textContent)"))
        shown_after(lambda: page.select_option("#history-stream", "door"), [i for i in NEWEST_FIRST if i.startswith("door:")])
        # Label and stream together, then the label alone over every stream.
        jogging = {ev.id for ev in EVENTS if ev.label == "jogging"}
        def yard_jogging():
            page.select_option("#history-stream", "yard")
            page.fill("#history-label", "jogging")
            page.press("#history-label", "Enter")

        shown_after(yard_jogging, [i for i in NEWEST_FIRST if i in jogging and i.startswith("yard:")])
        shown_after(lambda: page.select_option("#history-stream", ""), [i for i in NEWEST_FIRST if i in jogging])
        shown_after(lambda: (page.fill("#history-label", "no such label"), page.press("#history-label", "Enter")), [])
        assert page.text_content("#history-view [data-role='empty']") == "No stored events match these filters."
        shown_after(lambda: page.fill("#history-label", ""), NEWEST_FIRST[:PAGE_SIZE])

        # A row plays its clip in the same player.
        page.click(f"{row(first)} button")
        state = wait_for_playing(page)
        assert abs(state["duration"] - CLIP_SECONDS) < 0.25, state
        page.keyboard.press("Escape")
        page.wait_for_function("sel => document.activeElement === document.querySelector(sel)", arg=f"{row(first)} button")

        page.click('.tab[data-view="live"]')
        page.wait_for_selector("#live-view", state="visible")
        assert page.is_hidden("#history-view")
        assert page.errors == []
    finally:
        page.close()


@pytest.mark.timeout(240)
def test_live_events_show_snapshots_and_play_clips(browser, tmp_path, tiny_model_dir):
    """A file camera with the tiny model: the recorder's snapshot and then its clip reach the card by themselves, and the clip plays.

    The strip reloads on event and clip messages only, throttled: at most one list request per 1.5 s.
    """
    camera = make_video(tmp_path / "camera.mp4", fps=15, seconds=6, width=320, height=240)
    config = {
        "window": {"span_s": 2, "stride_s": 0.25},
        # Few, long events (hysteresis), so the strip's newest 8 do not churn; clips are cut at 2 s, so one is
        # ready soon even while its event runs.
        "labels": {"enter": 0.2, "exit": 0.1, "smoothing": 0.5},
        "events": {"record": {"pre_capture_s": 1, "post_capture_s": 0.5, "max_clip_s": 2}},
    }
    sources = [{"id": "demo", "url": str(camera), "loop": True}]
    with start_server(tmp_path, tiny_model_dir, sources=sources, config=config) as proc:
        page = open_page(browser, proc.url)
        try:
            loads: list[float] = []
            page.on("request", lambda r: loads.append(time.monotonic()) if "/api/events?" in r.url else None)
            demo = card("demo")
            page.wait_for_selector(f"{demo} .recent-item", timeout=90_000)
            assert all(i.startswith("demo:") for i in listed(page, f"{demo} .recent-item"))
            page.wait_for_function(
                "sel => [...document.querySelectorAll(sel)].some(img => img.complete && img.naturalWidth === 320)",
                arg=f"{demo} .recent-item .thumb img",
                timeout=60_000,
            )
            start = time.monotonic()
            page.wait_for_timeout(6000)
            recent = [t for t in loads if t >= start]
            assert len(recent) <= 5, f"{len(recent)} list requests in 6 s"

            # A clip message marks the tile playable; a click plays the recorder's own MP4.
            played = f"{demo} .recent-item:has(.thumb-play)"
            page.wait_for_selector(played, timeout=60_000)
            event_id = page.get_attribute(played, "data-event-id")
            page.click(f"{played} button")
            state = wait_for_playing(page)
            assert state["duration"] > 0.5 and (state["w"], state["h"]) == (320, 240), state
            assert event_id.replace(":", "%3A") in state["src"]
            screenshot(page, "events-live-player.png")
            page.keyboard.press("Escape")
            assert page.errors == []
        finally:
            page.close()
