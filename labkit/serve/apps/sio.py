"""The story's socket.io chat server (python-socketio on aiohttp), on its own port.

socket.io's browser client polls over XHR first (its default transports), so unlike a plain
WebSocket it *is* subject to CORS: with no ``cors_allowed_origins`` python-socketio accepts only
same-origin pages, and the cross-port page is blocked — the failure the story reported.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import socketio
from aiohttp import web

from .store import RESPONSE_HEADERS, Store, lesson_headers


def make_app(name: str, store: Store, allowed_origins: Sequence[str] | None) -> web.Application:
    """``allowed_origins`` None: the library's default (same origin only), the story's bug."""
    kwargs: dict[str, Any] = {}
    if allowed_origins is not None:
        kwargs["cors_allowed_origins"] = list(allowed_origins)
    # Our own logger: the library would otherwise add a stderr handler, and anything it printed
    # from the lab thread would land in an unrelated notebook cell.
    log = logging.getLogger(f"labkit.{name}")
    sio = socketio.AsyncServer(async_mode="aiohttp", logger=log, engineio_logger=log, **kwargs)

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen = store.receive(name, request)
        resp: web.StreamResponse = await handler(request)
        seen.status = resp.status
        seen.response = lesson_headers(resp.headers, RESPONSE_HEADERS)
        return resp

    @sio.on("say")  # type: ignore[misc]
    async def say(sid: str, data: Any) -> None:
        text = str((data or {}).get("text", ""))[:2000]
        await sio.emit("message", store.post("general", "sio-user", text))

    app = web.Application(middlewares=[record], client_max_size=64 * 1024)
    sio.attach(app)
    return app
