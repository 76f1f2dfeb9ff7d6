"""HTTP methods done right: HEAD answers like GET, and a 405 lists every method the path allows.

FastAPI's routes answer only the methods they were declared with, so HEAD
on a GET route is a 405, and Starlette's router builds a 405's ``Allow``
from the first route whose path matched (``GET`` for ``/api/streams``,
which also takes ``POST``). :class:`HeadMiddleware` routes HEAD as GET and
ends the response right after its headers (a streaming route such as
``preview.mjpg`` would otherwise keep encoding frames nobody reads);
:func:`allowed_methods` is what the 405 handler puts in ``Allow``.

HEAD is not added to the routes themselves: FastAPI would then document a
HEAD operation per GET route, with a clashing operation id.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HeadMiddleware", "allowed_methods", "request_method"]

_HEAD = "stream.head"  # scope key: this GET is really a HEAD


def request_method(scope: Scope) -> str:
    """The method the client sent (HEAD for a HEAD that the middleware routes as GET)."""
    return "HEAD" if scope.get(_HEAD) else scope["method"]


def allowed_methods(app, scope: Scope) -> list[str]:
    """Every method some route takes on this request's path, HEAD wherever GET is, sorted (for ``Allow``)."""
    probe = {**scope, "type": "http"}
    methods: set[str] = set()
    for route in app.router.routes:
        if isinstance(route, Route) and route.methods and route.matches(probe)[0] is not Match.NONE:
            methods |= route.methods
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


class HeadMiddleware:
    """HEAD is GET without the body: route it as GET, send the headers and an empty body, then stop the route.

    uvicorn already drops the bytes of a HEAD response (it reads its own
    scope, which still says HEAD); what it cannot do is stop a streaming
    route, which would run, holding the connection, until the client left.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        finished = asyncio.Event()

        async def head_send(message: Message) -> None:
            if finished.is_set():
                return
            if message["type"] == "http.response.start":
                await send(message)
            elif message["type"] == "http.response.body":
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                finished.set()

        route = asyncio.ensure_future(self.app({**scope, "method": "GET", _HEAD: True}, receive, head_send))
        waiter = asyncio.ensure_future(finished.wait())
        try:
            await asyncio.wait({route, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if not route.done():
                route.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await route
        if not route.cancelled():
            route.result()  # re-raise what the route raised, as without this middleware
