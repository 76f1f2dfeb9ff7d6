"""The events REST API: list, get and delete stored events, and serve their clips and snapshots.

Registered by :func:`add_event_routes` when the pipeline has an event store
(the server always has one; an app built around a store-less pipeline has no
such routes). Reads run on the store's own reader threads, the delete goes
through its one writer. Errors use the API's one format (ApiError).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, Response

from stream.events import MAX_LIMIT, EventQuery, StoredEvent, StoreError
from stream.events.queries import get_event, query_events
from stream.server.errors import ApiError
from stream.server.protocol import clip_url, snapshot_url

__all__ = ["add_event_routes", "stored_event_json"]


def _unix(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def stored_event_json(ev: StoredEvent) -> dict[str, Any]:
    """A stored event for REST: its fields, times in Unix seconds, and its own URL."""
    return {
        "id": ev.id,
        "stream": ev.stream,
        "label": ev.label,
        "start": _unix(ev.start),
        "end": _unix(ev.end),
        "in_progress": ev.end is None,
        "score": round(float(ev.score), 4),
        "peak_score": round(float(ev.peak_score), 4),
        "peak_ts": _unix(ev.peak_ts),
        "has_clip": ev.has_clip,
        "has_snapshot": ev.has_snapshot,
        "end_reason": ev.end_reason,
        "seq": ev.seq,
        "url": f"/api/events/{quote(ev.id, safe='')}",
        "clip_url": clip_url(ev.id) if ev.has_clip else None,
        "clip_duration_s": _round(ev.clip_duration) if ev.has_clip else None,
        "snapshot_url": snapshot_url(ev.id) if ev.has_snapshot else None,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def thumbnail(path, width: int) -> bytes | None:
    """The JPEG at ``path`` scaled to at most ``width`` pixels wide (unchanged if narrower); None if unreadable."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        return None
    h, w = image.shape[:2]
    if w > width:
        image = cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return jpeg.tobytes() if ok else None


def _unknown(event_id: str) -> ApiError:
    return ApiError(404, "unknown_event", f"no stored event with id {event_id!r}; GET /api/events lists them")


def _unavailable(exc: StoreError) -> ApiError:
    return ApiError(503, "store_unavailable", f"the event store cannot answer now: {exc}")


def _time(name: str, value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ApiError(400, "bad_request", f"{name} must be a finite number of Unix seconds")
    return value


def add_event_routes(app: FastAPI, authorized) -> None:
    """The routes, behind ``authorized`` (the API's Host/cross-site/token dependency)."""

    def store_of(request: Request):
        return request.app.state.runtime.pipeline.store

    @app.get("/api/events", tags=["events"])
    async def list_events(
        request: Request,
        stream: str | None = Query(None, min_length=1, max_length=200, description="Only this stream's events."),
        label: str | None = Query(None, min_length=1, max_length=200, description="Only this label's events."),
        after: float | None = Query(None, description="Started at or after this Unix time."),
        before: float | None = Query(None, description="Started before this Unix time."),
        min_score: float | None = Query(None, ge=0, le=1, description="Peak score at least this."),
        in_progress: bool | None = Query(None, description="true: only running events; false: only ended ones."),
        limit: int = Query(100, ge=1, le=MAX_LIMIT, description=f"Events per page, at most {MAX_LIMIT}."),
        cursor: str | None = Query(None, min_length=1, max_length=1000, description="A page's next_cursor."),
        rt: Any = Depends(authorized),
    ) -> dict[str, Any]:
        """Stored events, newest first (by start time, then id), a page at a time."""
        try:
            q = EventQuery(stream, label, _time("after", after), _time("before", before), min_score, in_progress, limit, cursor)
        except ValueError as exc:
            raise ApiError(400, "bad_request", str(exc)) from None
        try:
            page = await store_of(request).aread(query_events, q)
        except ValueError as exc:  # a cursor that is not ours
            raise ApiError(400, "bad_cursor", str(exc)) from None
        except StoreError as exc:
            raise _unavailable(exc) from None
        return {"events": [stored_event_json(ev) for ev in page.events], "next_cursor": page.next_cursor}

    @app.get("/api/events/{event_id}", tags=["events"])
    async def get_stored_event(event_id: str, request: Request, rt: Any = Depends(authorized)) -> dict[str, Any]:
        """One stored event."""
        try:
            ev = await store_of(request).aread(get_event, event_id)
        except StoreError as exc:
            raise _unavailable(exc) from None
        if ev is None:
            raise _unknown(event_id)
        return stored_event_json(ev)

    @app.delete("/api/events/{event_id}", status_code=204, tags=["events"])
    async def delete_event(event_id: str, request: Request, rt: Any = Depends(authorized)) -> Response:
        """Delete a finished event; a running one is refused with 409 (it would be written again)."""
        store = store_of(request)
        try:
            ev = await store.aread(get_event, event_id)
            if ev is None:
                raise _unknown(event_id)
            if ev.in_progress:
                raise ApiError(409, "event_in_progress", f"event {event_id!r} is still running; delete it once it has ended")
            deleted = await asyncio.wrap_future(store.delete_event(event_id))
        except StoreError as exc:
            raise _unavailable(exc) from None
        if not deleted:  # deleted meanwhile by another request
            raise _unknown(event_id)
        recorder = getattr(request.app.state.runtime.pipeline, "recorder", None)
        if recorder is not None:
            recorder.forget(event_id)  # a clip still being written (post-capture) is abandoned
        await asyncio.to_thread(store.media.remove, event_id)
        return Response(status_code=204)

    async def media_file(request: Request, event_id: str, what: str):
        store = store_of(request)
        try:
            ev = await store.aread(get_event, event_id)
        except StoreError as exc:
            raise _unavailable(exc) from None
        if ev is None:
            raise _unknown(event_id)
        ready = ev.has_clip if what == "clip" else ev.has_snapshot
        path = store.media.clip(ev.id) if what == "clip" else store.media.snapshot(ev.id)
        if not ready or not path.is_file():
            if what == "clip":
                hint = "it is written after the event ends plus post_capture_s" if ev.in_progress or not ev.has_clip else "its file was removed"
                raise ApiError(404, "no_clip", f"event {event_id!r} has no clip yet: {hint}; a 'clip' websocket message says when it is ready")
            raise ApiError(404, "no_snapshot", f"event {event_id!r} has no snapshot (yet): one is taken when the event starts and at its peak")
        return path

    @app.get("/api/events/{event_id}/clip.mp4", tags=["events"], response_class=FileResponse)
    async def get_clip(event_id: str, request: Request, rt: Any = Depends(authorized)) -> FileResponse:
        """The event's clip (H.264 MP4, from pre_capture_s before its start to post_capture_s after its end). Range requests work."""
        path = await media_file(request, event_id, "clip")
        return FileResponse(path, media_type="video/mp4", headers={"Cache-Control": "private, max-age=3600"})

    # Thumbnails are scaled on request (a few per page view), at most two at once: a 4K JPEG takes tens of ms.
    thumbnails = asyncio.Semaphore(2)

    @app.get("/api/events/{event_id}/snapshot.jpg", tags=["events"], response_class=FileResponse)
    async def get_snapshot(
        event_id: str,
        request: Request,
        width: int | None = Query(None, ge=16, le=3840, description="Scale down to at most this width (a thumbnail)."),
        rt: Any = Depends(authorized),
    ) -> Response:
        """A JPEG of the frame where the event's smoothed score peaked (full camera resolution; replaced while it runs)."""
        path = await media_file(request, event_id, "snapshot")
        headers = {"Cache-Control": "no-cache"}
        if width is None:
            return FileResponse(path, media_type="image/jpeg", headers=headers)
        async with thumbnails:
            jpeg = await asyncio.to_thread(thumbnail, path, width)
        if jpeg is None:
            raise ApiError(404, "no_snapshot", f"event {event_id!r} has no readable snapshot")
        return Response(jpeg, media_type="image/jpeg", headers=headers)
