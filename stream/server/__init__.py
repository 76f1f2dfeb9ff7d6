"""The server: REST, the websocket label API, MJPEG previews and metrics over one asyncio process.

``python server.py`` runs :func:`stream.server.main.main`; embedders call
:func:`stream.server.app.create_app` with their own pipeline. Nothing is
imported here eagerly, so ``import stream.server`` stays cheap.
"""

from __future__ import annotations

__all__: list[str] = []
