"""A tiny live RTSP camera for tests: GStreamer's gst-rtsp-server on 127.0.0.1.

Run it with the *system* Python (Debian's python3-gi and gst-rtsp-server
typelibs are not in our virtual environment)::

    /usr/bin/python3 tests/support/rtsp_server.py --port 0

It serves one shared live H.264 stream at ``rtsp://127.0.0.1:PORT/test`` and
prints the bound port, alone, on the first line of stdout, so a test can start
it on port 0 and read back the port it got. Start it again with ``--port PORT``
to simulate a camera that comes back; SIGSTOP it to simulate one that freezes
without closing its connections.

Why these pipeline settings: ``is-live`` makes the source pace itself in real
time like a camera; ``sliced-threads=false`` because with sliced threads
FFmpeg emits a stale extra frame at every keyframe; a short ``key-int-max`` so
a client that (re)connects gets a picture within a second; ``shared`` media so
every client sees the same live stream, like a real camera.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

__all__ = ["PIPELINE", "main"]

PIPELINE = (
    "( videotestsrc is-live=true pattern={pattern} "
    "! video/x-raw,width={width},height={height},framerate={fps}/1 "
    "! x264enc tune=zerolatency threads=1 sliced-threads=false key-int-max={fps} "
    "! rtph264pay name=pay0 pt=96 )"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (keep tests on loopback)")
    parser.add_argument("--mount", default="/test")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--pattern", default="ball")
    args = parser.parse_args(argv)

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))  # "0" lets the kernel pick a free port
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        PIPELINE.format(pattern=args.pattern, width=args.width, height=args.height, fps=args.fps)
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on {args.host}:{args.port}", file=sys.stderr, flush=True)
        return 1
    # Only after attach() is the socket bound, so only now is the real port known.
    print(server.get_bound_port(), flush=True)

    loop = GLib.MainLoop()
    # SIGTERM/SIGINT end the main loop cleanly (GLib handles them on its thread).
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
