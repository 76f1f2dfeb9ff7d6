"""The FastAPI app: REST, the websocket label API, previews, metrics and the web page.

Transport and wiring only: what streams do lives in :mod:`stream.pipeline`,
the wire format in :mod:`stream.server.protocol`, the rules in
:mod:`stream.server.security`. ``create_app(pipeline, config)`` builds it;
its lifespan starts the pipeline and, at shutdown, closes websocket
sessions first, then stops the pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect

from stream.config import Config
from stream.pipeline import Pipeline, StreamExists, UnknownStream
from stream.server import protocol
from stream.server.docs_pages import DOCS_CSP, docs_page
from stream.server.errors import ApiError, error_response, install_error_handlers
from stream.server.events_api import add_event_routes
from stream.server.methods import HeadMiddleware
from stream.server.metrics import CONTENT_TYPE_LATEST, Metrics
from stream.server.openapi import install_openapi
from stream.server.preview import PreviewResponse, PreviewViewers, mjpeg_frames, snapshot_jpeg
from stream.server.security import Security, is_local_source, json_media_type
from stream.server.ws import Session, SessionLimits, Sessions
from stream.sources import InvalidSource, classify, scrub
from stream.webrtc import WebRtcError, WebRtcGateway, limit_host_addresses

__all__ = ["ApiError", "Runtime", "create_app", "MAX_BODY_BYTES", "WEB_DIR"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
WEB_DIR = Path(__file__).resolve().parents[2] / "web"


@dataclass
class Runtime:
    """What the routes share; one per app (kept on ``app.state.runtime``)."""

    pipeline: Pipeline
    config: Config
    security: Security
    sessions: Sessions
    metrics: Metrics
    closing: asyncio.Event
    add_lock: asyncio.Lock
    webrtc: WebRtcGateway


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


_BAD_HOST = "this server only answers to localhost names; set a token to allow others"


def _authorized(request: Request) -> Runtime:
    """Dependency of every API route: Host check (DNS rebinding), cross-site refusal, then the token."""
    rt = _runtime(request)
    headers = request.headers
    if not rt.security.host_ok(headers.get("host")):
        raise ApiError(403, "bad_host", _BAD_HOST)
    # Before the token: a page on another site must not change anything, even on a token-less server.
    if not rt.security.same_site_ok(request.method, headers.get("origin"), headers.get("sec-fetch-site"), headers.get("host")):
        log.warning("refused a cross-site %s %s (Origin %s)", request.method, request.url.path, scrub(headers.get("origin", "none")))
        raise ApiError(
            403,
            "cross_site",
            "a page from another site may not change this server; to allow an Origin, add it to "
            "server.allowed_origins in the config",
        )
    if not rt.security.token_ok(request.headers, request.url.query):
        raise ApiError(
            401,
            "unauthorized",
            "a token is required: send 'Authorization: Bearer <token>' or add ?token=<token> to the URL",
            {"WWW-Authenticate": "Bearer"},
        )
    return rt


async def _read_json_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body of a JSON route, refused with 415 unless it is declared ``application/json``.

    Browsers send text/plain, urlencoded and multipart bodies to any site
    without a CORS preflight; refusing them keeps such "simple" requests from
    ever reaching the JSON parser.
    """
    content_type = request.headers.get("content-type")
    if not json_media_type(content_type):
        got = f"got {content_type.split(';', 1)[0].strip()[:60]!r}" if content_type else "none was sent"
        raise ApiError(415, "unsupported_media_type", f"send the body as JSON with 'Content-Type: application/json' ({got})")
    return await _read_body(request, limit)


async def _read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refusing more than ``limit`` bytes before reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body_too_large", f"the request body is larger than {limit} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "body_too_large", f"the request body is larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # The client went (or stalled and was cut, see http_protocol): nobody reads this answer.
        raise ApiError(400, "incomplete_body", "the connection closed before the request body was complete") from None
    return b"".join(chunks)


def _lifespan(rt: Runtime):
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await rt.pipeline.start()
        rt.metrics.attach()
        try:
            yield
        finally:
            # Order: sessions get a clean 1001 close, then the pipeline stops (ending open events).
            rt.closing.set()
            await rt.webrtc.close_all()
            await rt.sessions.close_all()
            rt.metrics.detach()
            await rt.pipeline.stop()

    return lifespan


def create_app(
    pipeline: Pipeline,
    config: Config,
    *,
    token: str | None = None,
    limits: SessionLimits | None = None,
    web_dir: Path | None = WEB_DIR,
) -> FastAPI:
    """The app for one pipeline. ``token`` is the resolved token (see security.resolve_token)."""
    server = config.server
    limit_host_addresses(server.ice_host_addresses)
    limits = limits or SessionLimits(max_subscribers=server.max_subscribers)
    sessions = Sessions(limits)
    rt = Runtime(
        pipeline=pipeline,
        config=config,
        security=Security(token, server.allowed_origins),
        sessions=sessions,
        metrics=Metrics(pipeline, PreviewViewers(server.max_preview_viewers)),
        closing=sessions.closing,
        add_lock=asyncio.Lock(),
        webrtc=WebRtcGateway(
            pipeline,
            ice_servers=server.ice_servers,
            max_streams=server.max_webrtc_streams,
            connect_timeout_s=server.webrtc_connect_timeout_s,
        ),
    )
    app = FastAPI(
        title="stream-actions",
        summary="Live video action recognition: streams in, labels and label events out.",
        version="0.1.0",
        lifespan=_lifespan(rt),
        # Our own /openapi.json, /docs and /redoc (in _add_web) sit behind the token and load nothing from CDNs.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        middleware=[Middleware(HeadMiddleware)],
    )
    app.state.runtime = rt
    install_error_handlers(app)
    _add_api_routes(app)
    _add_stream_routes(app)
    if pipeline.store is not None:  # the server always has one; library apps may not
        add_event_routes(app, _authorized)
    _add_webrtc_routes(app)
    _add_websocket(app)
    _add_web(app, web_dir)
    install_openapi(app)
    return app


# --------------------------------------------------------------------- REST
def _add_api_routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["ops"])
    async def healthz(request: Request) -> dict[str, Any]:
        """Liveness: answers while the event loop runs."""
        return {"status": "ok", "streams": len(_runtime(request).pipeline)}

    @app.get("/metrics", tags=["ops"])
    async def metrics(rt: Runtime = Depends(_authorized)) -> Response:
        """Prometheus text format: per-stream counters, states and latency histograms."""
        return Response(rt.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/model", tags=["model"])
    async def model(rt: Runtime = Depends(_authorized)) -> dict[str, Any]:
        """The model's name, device, dtype, clip settings and label list."""
        recognizer = rt.pipeline.recognizer
        return protocol.model_json(recognizer.info(), rt.config, recognizer.labels)


def _add_stream_routes(app: FastAPI) -> None:
    @app.get("/api/streams", tags=["streams"])
    async def list_streams(rt: Runtime = Depends(_authorized)) -> dict[str, Any]:
        """Every stream with its state, figures, current top-k and open label events."""
        return {"streams": [protocol.stream_json(info) for info in rt.pipeline.streams()]}

    # Its body, statuses and their schemas are documented in stream/server/openapi.py.
    @app.post("/api/streams", status_code=201, tags=["streams"])
    async def add_stream(request: Request, rt: Runtime = Depends(_authorized)) -> JSONResponse:
        """Add a stream by URL (or a device/file if the config allows local sources)."""
        req = protocol.parse_add_stream(await _read_json_body(request))
        _check_source(rt, req.url)
        async with rt.add_lock:  # the limit check and the add are one step
            if req.id is not None and req.id in rt.pipeline:
                raise ApiError(409, "stream_exists", f"a stream with id {req.id!r} already exists; remove it first or pick another id")
            if len(rt.pipeline) >= rt.config.server.max_streams:
                limit = rt.config.server.max_streams
                raise ApiError(409, "stream_limit", f"the server runs at most {limit} streams (server.max_streams); remove one first")
            try:
                # persist: API streams come back after a restart (config and WebRTC ones do not).
                info = await rt.pipeline.add_stream(
                    req.url, stream_id=req.id, max_fps=req.max_fps, loop=req.loop, labels=req.labels, record=req.record, persist=True
                )
            except StreamExists as exc:
                raise ApiError(409, "stream_exists", str(exc)) from None
            except ValueError as exc:
                raise ApiError(400, "bad_request", scrub(str(exc))) from None
            except RuntimeError as exc:  # the pipeline is shutting down
                raise ApiError(503, "unavailable", str(exc)) from None
        # Quoted although ids are checked: a header must never carry a raw client string (CR/LF).
        location = f"/api/streams/{quote(info.id, safe='')}"
        return JSONResponse(protocol.stream_json(info), status_code=201, headers={"Location": location})

    @app.get("/api/streams/{stream_id}", tags=["streams"])
    async def get_stream(stream_id: str, rt: Runtime = Depends(_authorized)) -> dict[str, Any]:
        """One stream's detail."""
        return protocol.stream_json(_known(rt, stream_id, rt.pipeline.stream))

    @app.delete("/api/streams/{stream_id}", status_code=204, tags=["streams"])
    async def remove_stream(stream_id: str, rt: Runtime = Depends(_authorized)) -> Response:
        """Stop a stream; its open label events end, and an API stream is not started again after a restart."""
        try:
            await rt.pipeline.remove_stream(stream_id)
        except UnknownStream:
            raise _unknown(stream_id) from None
        rt.metrics.forget(stream_id)
        return Response(status_code=204)

    @app.get("/api/streams/{stream_id}/snapshot.jpg", tags=["preview"])
    async def snapshot(stream_id: str, rt: Runtime = Depends(_authorized)) -> Response:
        """The newest frame as one JPEG."""
        jpeg = await asyncio.to_thread(_known, rt, stream_id, lambda sid: snapshot_jpeg(rt.pipeline, sid))
        if jpeg is None:
            raise ApiError(404, "no_frame", f"stream {stream_id!r} has no frame yet; try again when it is live")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/api/streams/{stream_id}/preview.mjpg", tags=["preview"])
    async def preview(stream_id: str, rt: Runtime = Depends(_authorized)) -> StreamingResponse:
        """MJPEG (multipart/x-mixed-replace) of the stream at up to 5 fps, encoded only while read."""
        _known(rt, stream_id, rt.pipeline.stream)
        viewers = rt.metrics.previews
        if not viewers.try_join():
            raise ApiError(
                503,
                "preview_limit",
                f"{viewers.limit} previews are being watched already (server.max_preview_viewers); "
                "close one or try again later",
                {"Retry-After": "5"},
            )
        return PreviewResponse(
            mjpeg_frames(rt.pipeline, stream_id, rt.closing),
            viewers,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


def _add_webrtc_routes(app: FastAPI) -> None:
    @app.get("/api/webrtc/config", tags=["webrtc"])
    async def webrtc_config(rt: Runtime = Depends(_authorized)) -> dict[str, Any]:
        """ICE servers for the page's RTCPeerConnection (empty unless configured) and the stream cap."""
        return {
            "ice_servers": [{"urls": url} for url in rt.config.server.ice_servers],
            "max_streams": rt.config.server.max_webrtc_streams,
            "active": rt.webrtc.active,
        }

    @app.post("/api/webrtc/offer", tags=["webrtc"])
    async def webrtc_offer(request: Request, rt: Runtime = Depends(_authorized)) -> dict[str, Any]:
        """Answer a browser's offer ({"sdp", "type": "offer", "id"?}); its camera becomes a stream."""
        offer = protocol.parse_webrtc_offer(await _read_json_body(request))
        if rt.closing.is_set():
            raise ApiError(503, "unavailable", "the server is shutting down")
        async with rt.add_lock:
            if len(rt.pipeline) >= rt.config.server.max_streams:
                limit = rt.config.server.max_streams
                raise ApiError(409, "stream_limit", f"the server runs at most {limit} streams (server.max_streams); remove one first")
            try:
                answer = await rt.webrtc.accept(offer.sdp, offer.type, offer.id)
            except WebRtcError as exc:
                raise ApiError(exc.status, exc.code, exc.message) from None
        return {"sdp": answer.sdp, "type": answer.type, "stream": answer.stream_id}


def _unknown(stream_id: str) -> ApiError:
    return ApiError(404, "unknown_stream", f"no stream with id {stream_id!r}; GET /api/streams lists them")


def _known(rt: Runtime, stream_id: str, getter):
    try:
        return getter(stream_id)
    except UnknownStream:
        raise _unknown(stream_id) from None


def _check_source(rt: Runtime, url: str | int) -> None:
    """API clients may add network URLs; files and devices only if the config says so."""
    if is_local_source(url) and not rt.config.server.allow_local_sources:
        raise ApiError(
            403,
            "local_source_not_allowed",
            "files and devices cannot be added through the API on this server; use an rtsp, rtsps, rtmp, http "
            "or https URL (or set server.allow_local_sources: true in the config)",
        )
    try:
        classify(url)
    except InvalidSource as exc:
        raise ApiError(400, "invalid_source", scrub(str(exc))) from None


# --------------------------------------------------------------------- websocket
def _add_websocket(app: FastAPI) -> None:
    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        rt: Runtime = websocket.app.state.runtime
        sec = rt.security
        host = websocket.headers.get("host")
        if not sec.host_ok(host):
            await _deny(websocket, 403, "bad_host", _BAD_HOST)
            return
        if not sec.origin_ok(websocket.headers.get("origin"), host):
            log.warning("websocket refused: Origin %s not allowed", scrub(websocket.headers.get("origin", "")))
            await _deny(websocket, 403, "forbidden_origin", "this Origin may not connect; add it to server.allowed_origins")
            return
        if not sec.token_ok(websocket.headers, websocket.scope.get("query_string", b"")):
            await _deny(websocket, 401, "unauthorized", "a token is required: add ?token=<token> or an Authorization header")
            return
        if rt.closing.is_set():
            await _deny(websocket, 503, "unavailable", "the server is shutting down")
            return
        await Session(websocket, rt.pipeline, rt.sessions).run()


async def _deny(websocket: WebSocket, status: int, code: str, message: str) -> None:
    """Refuse the handshake with an HTTP status and our JSON error body (plain 403 if unsupported)."""
    try:
        await websocket.send_denial_response(error_response(status, code, message))
    except RuntimeError:
        await websocket.close(1008)


# --------------------------------------------------------------------- web page
def _add_web(app: FastAPI, web_dir: Path | None) -> None:
    index = web_dir / "index.html" if web_dir is not None else None

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        if index is None or not index.is_file():
            raise ApiError(404, "no_web_page", "the web page is not installed (web/index.html); the API is under /api")
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    _add_docs(app)

    if web_dir is not None:
        # check_dir=False: the page may be installed after the server starts; missing files are 404s.
        app.mount("/static", StaticFiles(directory=web_dir, check_dir=False), name="static")


def _add_docs(app: FastAPI) -> None:
    """/openapi.json always, /docs and /redoc with server.api_docs; all under the token like the API."""

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_json(request: Request, rt: Runtime = Depends(_authorized)) -> JSONResponse:
        return JSONResponse(request.app.openapi())

    if not _runtime_config(app).server.api_docs:
        return  # no route: /docs and /redoc are plain 404s

    @app.get("/docs", include_in_schema=False)
    async def swagger(rt: Runtime = Depends(_authorized)) -> HTMLResponse:
        return HTMLResponse(docs_page("swagger", f"{app.title} API"), headers=_DOCS_HEADERS)

    @app.get("/redoc", include_in_schema=False)
    async def redoc(rt: Runtime = Depends(_authorized)) -> HTMLResponse:
        return HTMLResponse(docs_page("redoc", f"{app.title} API"), headers=_DOCS_HEADERS)


_DOCS_HEADERS = {"Cache-Control": "no-cache", "Content-Security-Policy": DOCS_CSP}


def _runtime_config(app: FastAPI) -> Config:
    return app.state.runtime.config
