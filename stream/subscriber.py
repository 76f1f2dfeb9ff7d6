"""Subscribe to a server's label API from a program or a terminal.

From Python::

    async with Subscriber("ws://127.0.0.1:8000/ws", streams=["door"], kinds=["events"]) as sub:
        async for msg in sub:
            print(msg["type"], msg)

From a shell (one JSON object per line, reconnecting when the server restarts)::

    python -m stream subscribe ws://127.0.0.1:8000/ws --stream door --kind events

Reconnects resume: the subscriber remembers the seq of the last event, clip
or status it delivered (:attr:`Subscriber.last_seq`) and subscribes again
with ``since_seq``, so the server replays the events and clips it missed
before the live ones; none is lost or repeated, whatever the outage lasted
(as long as the server's history still holds it: a ``replayed`` message
with ``gap: true`` says when it does not).

Built on the ``websockets`` client library; the messages are those of
docs/protocol.md, as plain dicts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["DEFAULT_URL", "Subscriber", "SubscriberError", "add_parser", "main"]

log = logging.getLogger(__name__)

DEFAULT_URL = "ws://127.0.0.1:8000/ws"
_KINDS = ("labels", "events", "clips", "status")
_SEQ_TYPES = ("event", "clip", "status")  # the messages that carry a seq to resume from
_MAX_SEQ = 2**63 - 1  # what the server accepts (stream.server.protocol.MAX_SEQ; not imported: it pulls in the pipeline)


def _shown(url: str) -> str:
    """The URL for a message, with ?token= and credentials masked."""
    # Imported here: the subscriber is a light client and stream.sources pulls in the pipeline.
    from stream.sources.urls import mask_url

    return mask_url(url)


class SubscriberError(RuntimeError):
    """A problem that retrying cannot fix (bad URL, refused token or Origin)."""


class Subscriber:
    """An async iterator of server messages (dicts) that reconnects with backoff and resumes.

    After every (re)connect it sends the filter again, so a restarted server
    keeps the same subscription, with ``since_seq`` = :attr:`last_seq` once it
    has one, so what was published meanwhile is replayed first. ``since_seq``
    starts the first connection from a stored point too. ``hello``,
    ``subscribed``, ``replayed`` and ``error`` messages are yielded as well;
    check ``msg["type"]``.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        streams: Iterable[str] | None = None,
        labels: Iterable[str] | None = None,
        kinds: Iterable[str] | None = None,
        min_score: float = 0.0,
        token: str | None = None,
        reconnect: bool = True,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 5.0,
        on_disconnect: Callable[[str, float], None] | None = None,
        since_seq: int | None = None,
    ) -> None:
        whole = isinstance(since_seq, int) and not isinstance(since_seq, bool)
        if since_seq is not None and not (whole and 0 <= since_seq <= _MAX_SEQ):
            raise ValueError(f"since_seq must be a whole number from 0 to {_MAX_SEQ}, got {since_seq!r}")
        self.url = url
        self.filter: dict[str, Any] = {
            "type": "subscribe",
            "streams": list(streams) if streams else None,
            "labels": list(labels) if labels else None,
            "kinds": list(kinds) if kinds else list(_KINDS),
            "min_score": min_score,
        }
        self.token = token
        self.reconnect = reconnect
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.on_disconnect = on_disconnect
        # Where a reconnect resumes: the seq of the last event, clip or status delivered,
        # or the position the server named in `subscribed`/`replayed`. None: from now.
        self.last_seq: int | None = since_seq
        self._ws = None
        self._filtered = False
        self._resuming = False  # this connection asked for a replay; `replayed` ends it
        self._closed = False

    async def __aenter__(self) -> Subscriber:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        if self._ws is not None:
            await self._ws.close()
            self._ws = None

    def __aiter__(self) -> Subscriber:
        return self

    async def __anext__(self) -> dict[str, Any]:
        from websockets.exceptions import ConnectionClosed

        delay = self.backoff_initial_s
        while not self._closed:
            try:
                if self._ws is None:
                    await self._connect()
                    delay = self.backoff_initial_s
                msg = json.loads(await self._ws.recv())
                kind = msg.get("type")
                if kind == "subscribed":
                    self._filtered = True
                    if not self._resuming:
                        self.last_seq = msg.get("seq", self.last_seq)
                elif kind == "replayed":
                    # The server's position now: what comes next is live. Assigned, not
                    # max()ed: a server with a new database numbers from lower again.
                    self._resuming = False
                    self.last_seq = msg.get("seq", self.last_seq)
                elif not self._filtered and kind in ("labels", *_SEQ_TYPES):
                    continue  # sent before our filter took effect: not what was asked for
                elif kind in _SEQ_TYPES and isinstance(msg.get("seq"), int):
                    # max(): the current status sent after a subscribe is an older message again.
                    self.last_seq = msg["seq"] if self.last_seq is None else max(self.last_seq, msg["seq"])
                return msg
            except (ConnectionClosed, OSError, asyncio.TimeoutError) as exc:
                self._ws = None
                if not self.reconnect:
                    raise StopAsyncIteration from exc
                why = _describe(exc)
                if self.on_disconnect is not None:
                    self.on_disconnect(why, delay)
                else:
                    log.warning("%s; reconnecting in %.1f s", why, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max_s)
        raise StopAsyncIteration

    async def _connect(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        try:
            ws = await connect(self.url, additional_headers=headers, open_timeout=10, max_size=4 * 1024 * 1024)
        except InvalidURI as exc:
            raise SubscriberError(f"not a websocket URL: {_shown(self.url)} (expected ws://host:port/ws)") from exc
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                hint = "check --token" if status == 401 else "the server refused this client"
                raise SubscriberError(f"{_shown(self.url)}: HTTP {status} ({hint})") from exc
            raise OSError(f"server answered HTTP {status}") from exc
        except InvalidHandshake as exc:  # e.g. the connection dropped mid-handshake: worth retrying
            raise OSError(f"no websocket handshake ({exc})") from exc
        request = self.filter if self.last_seq is None else {**self.filter, "since_seq": self.last_seq}
        await ws.send(json.dumps(request))
        self._ws = ws
        self._filtered = False
        self._resuming = self.last_seq is not None


def _describe(exc: BaseException) -> str:
    from websockets.exceptions import ConnectionClosed

    if isinstance(exc, ConnectionClosed):
        rcvd = exc.rcvd
        if rcvd is not None:
            return f"server closed the connection ({rcvd.code} {rcvd.reason})".replace(" )", ")")
        return "connection lost"
    return f"cannot connect: {exc.strerror or exc}" if isinstance(exc, OSError) else f"cannot connect: {exc}"


# --------------------------------------------------------------------- CLI
def _min_score(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _since_seq(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= _MAX_SEQ:
        raise argparse.ArgumentTypeError(f"must be from 0 to {_MAX_SEQ}, got {text}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``subscribe`` command of ``python -m stream`` (stream.cli calls this)."""
    p = sub.add_parser(
        "subscribe",
        help="print a server's labels and events as JSON lines",
        description="Print labels, label events, clips and stream status from a running server, one JSON object "
        "per line. After a reconnect it resumes where it stopped: missed events and clips are replayed first.",
    )
    p.add_argument("url", nargs="?", default=DEFAULT_URL, help=f"websocket URL (default {DEFAULT_URL})")
    p.add_argument("--stream", action="append", default=[], metavar="ID", help="only this stream (repeatable)")
    p.add_argument("--label", action="append", default=[], metavar="LABEL", help="only this label (repeatable)")
    p.add_argument("--kind", action="append", default=[], choices=_KINDS, help="only these kinds (repeatable)")
    p.add_argument("--min-score", type=_min_score, default=0.0, help="drop labels and events below this score")
    p.add_argument(
        "--since-seq",
        type=_since_seq,
        default=None,
        metavar="N",
        help="first replay the stored events and clips after seq N (the 'seq' of a line printed before)",
    )
    p.add_argument("--token", default=None, help="API token (default: STREAM_TOKEN)")
    p.set_defaults(func=_cmd_subscribe)


def _note(text: str) -> None:
    print(f"subscribe: {text}", file=sys.stderr, flush=True)


def _resume_note(sub: Subscriber) -> str:
    return "" if sub.last_seq is None else f", then resuming after seq {sub.last_seq}"


async def _print_messages(args: argparse.Namespace) -> int:
    sub = Subscriber(
        args.url,
        streams=args.stream or None,
        labels=args.label or None,
        kinds=args.kind or None,
        min_score=args.min_score,
        token=args.token or os.environ.get("STREAM_TOKEN"),
        on_disconnect=lambda why, delay: _note(f"{why}; reconnecting in {delay:.1f} s{_resume_note(sub)}"),
        since_seq=args.since_seq,
    )
    async with sub:
        async for msg in sub:
            kind = msg.get("type")
            if kind == "hello":
                _note(f"connected to {args.url} (model {msg.get('model')}, {len(msg.get('streams', []))} streams)")
            elif kind == "error":
                _note(f"server says: {msg.get('message')}")
            elif kind == "replayed":
                _note(f"replayed {msg.get('count')} stored messages after seq {msg.get('since_seq')}")
                if msg.get("gap"):
                    _note(f"warning: events may be missing: {msg.get('reason')}")
            elif kind in ("labels", *_SEQ_TYPES):
                print(json.dumps(msg, separators=(",", ":")), flush=True)
    return 0


def _cmd_subscribe(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_print_messages(args))
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how people stop a subscriber: not an error
    except SubscriberError as exc:
        _note(f"error: {exc}")
        return 2
    except BrokenPipeError:
        # `... | head`: the reader left; exit quietly without a traceback at shutdown.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def main(argv: list[str] | None = None) -> int:
    from stream.cli import main as cli_main

    return cli_main(["subscribe", *(argv or [])])
