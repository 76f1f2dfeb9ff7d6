"""The API's one error format, ``{"error": {"code", "message"}}``, and the handlers that give every refusal it.

Routes raise :class:`ApiError` (or the protocol's ProtocolError); FastAPI's
validation errors, Starlette's 404/405 and our own bugs are answered in the
same shape, so a client parses one body whatever went wrong.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from stream.server import protocol
from stream.server.methods import allowed_methods, request_method
from stream.sources import scrub

__all__ = ["ApiError", "error_response", "install_error_handlers"]

log = logging.getLogger("stream.server.app")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    503: "unavailable",
}


class ApiError(Exception):
    """A client-caused problem: becomes ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    # Never echo the input: it may be a URL with a password in it.
    return scrub(f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid")))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(protocol.ProtocolError)
    async def _protocol_error(request: Request, exc: protocol.ProtocolError) -> JSONResponse:
        return error_response(400, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, "bad_request", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code
        if exc.status_code == 404 and message == "Not Found":
            message = f"nothing at {request.url.path}; the API is under /api (see docs/protocol.md)"
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # Starlette's Allow names only the first route that matched the path (GET, not POST too).
            allow = allowed_methods(request.app, request.scope)
            message = f"{request_method(request.scope)} is not allowed on {request.url.path}; use {', '.join(allow)}"
            headers = {**(headers or {}), "Allow": ", ".join(allow)}
        return error_response(exc.status_code, code, message, headers)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        # Only our own bugs end up here; the pipeline keeps running regardless.
        log.error("error handling %s %s: %s", request.method, request.url.path, scrub(repr(exc)), exc_info=exc)
        return error_response(500, "internal", "internal server error; the server log has the details")
