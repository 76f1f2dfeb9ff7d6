"""Browser: the API docs (/docs, /redoc) render in Chromium under the token, and load nothing from any other origin."""

from __future__ import annotations

import httpx
import pytest

from tests.support.browser import chromium_session, require_browser
from tests.support.server import start_server

pytestmark = [pytest.mark.slow, pytest.mark.browser]

TOKEN = "browser-docs-token"
require_browser()


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    """A token server with server.api_docs on."""
    tmp = tmp_path_factory.mktemp("docs-server")
    with start_server(tmp, tiny_model_dir, config={"server": {"api_docs": True, "token": TOKEN}}) as proc:
        yield proc


@pytest.fixture(scope="module")
def browser():
    with chromium_session() as chromium:
        yield chromium


def _visit(browser, url: str):
    """A page at ``url`` that records every URL it requests and every uncaught error."""
    page = browser.new_page()
    page.requested, page.blocked, page.errors = [], [], []
    page.on("request", lambda r: page.requested.append(r.url))
    # Chromium reports a request that the Content-Security-Policy refused as failed with "csp": never sent.
    page.on("requestfailed", lambda r: page.blocked.append(r.url) if "csp" in (r.failure or "") else None)
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.set_default_timeout(30_000)
    page.goto(url)
    return page


def _foreign(page, origin: str) -> list[str]:
    """URLs sent to another origin (data: URLs are inline, blob: ones the page's own, CSP-blocked ones never sent)."""
    own = (origin + "/", f"blob:{origin}/", "data:")
    return [url for url in page.requested if not url.startswith(own) and url not in page.blocked]


def _operation_count(server) -> int:
    """How many operations the server's own schema documents."""
    schema = httpx.get(f"{server.url}/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).json()
    methods = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
    return sum(1 for item in schema["paths"].values() for method in item if method in methods)


def test_swagger_ui_works_under_the_token_offline(browser, server):
    """/docs?token= renders every operation from vendored files, and "Try it out" reaches the API with the token."""
    page = _visit(browser, f"{server.url}/docs?token={TOKEN}")
    try:
        page.wait_for_selector(".opblock")
        assert page.locator(".opblock").count() == _operation_count(server)  # every documented operation
        block = page.locator(".opblock", has=page.locator("[data-path='/api/streams']")).first
        block.locator(".opblock-summary").click()
        page.locator("button.try-out__btn").click()
        page.locator("button.execute").click()
        status = page.locator(".live-responses-table tr.response td.response-col_status").first
        status.wait_for()
        assert status.inner_text().strip() == "200"  # the Bearer header went with it: no 401
        assert _foreign(page, server.url) == []
        assert page.errors == []
    finally:
        page.close()


def test_redoc_works_under_the_token_offline(browser, server):
    """/redoc?token= renders the schema from the vendored bundle, loading nothing from elsewhere."""
    page = _visit(browser, f"{server.url}/redoc?token={TOKEN}")
    try:
        page.get_by_text("/api/webrtc/offer").first.wait_for(state="attached")
        assert _foreign(page, server.url) == []
        assert page.errors == []
    finally:
        page.close()
