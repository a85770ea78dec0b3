"""Serving an aiohttp app on a socket labkit bound, with the time limits aiohttp leaves out.

aiohttp bounds idle keep-alive connections but not a client that trickles its request headers
forever (slowloris): one such client per connection slot starves a workshop room. Each connection
here must deliver its first complete header block within ``HEADER_TIMEOUT`` seconds, its TLS
handshake within ``TLS_HANDSHAKE_TIMEOUT`` and each request body within ``BODY_TIMEOUT``;
otherwise it is closed. A body announced over the app's limit is refused (413) before it is read.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import Any

from aiohttp import web

log = logging.getLogger("labkit.serving")

HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 10.0  # the whole body, once the headers are in
TLS_HANDSHAKE_TIMEOUT = 10.0
SHUTDOWN_TIMEOUT = 0.5  # browsers keep connections open; in-flight requests get this long


class _HeaderDeadline:
    """Wraps aiohttp's per-connection protocol; closes the connection if the first request's
    headers are not complete in time. Every protocol method is passed through unchanged."""

    def __init__(self, inner: Any, timeout: float) -> None:
        self._inner, self._timeout = inner, timeout
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._timer = asyncio.get_running_loop().call_later(self._timeout, self._expire)
        self._inner.connection_made(transport)

    def _expire(self) -> None:
        self._timer = None
        if self._transport is not None and not self._transport.is_closing():
            log.info("closing a connection that sent no complete request headers in %.0f s",
                     self._timeout)
            self._transport.abort()  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self._timer is not None:
            # Headers end at the first blank line; keep 3 bytes in case it straddles reads.
            if b"\r\n\r\n" in self._tail + data:
                self._timer.cancel()
                self._timer = None
            self._tail = data[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> Any:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


@web.middleware
async def http1_only(request: web.Request, handler: Any) -> web.StreamResponse:
    """RFC 9112 §3: a request line is method, target *and* version. aiohttp's parser takes
    'GET /' as HTTP/0.9 and serves it; refuse that (400) and versions it does not speak (505)."""
    if request.version < (1, 0):
        return web.Response(status=400, text="a request line needs its HTTP version\n")
    if request.version >= (2, 0):
        return web.Response(status=505, text="HTTP version not supported\n")
    return await handler(request)


@web.middleware
async def body_deadline(request: web.Request, handler: Any) -> web.StreamResponse:
    """A request body must arrive whole within ``BODY_TIMEOUT`` (like its headers), and one
    announced over the app's size limit is refused at once, before a byte of it is read: a
    client announcing 100 kB and sending 3 bytes must not hold a connection (and its memory)
    for ever."""
    limit = getattr(request, "_client_max_size", 1024 * 1024)  # web.Application(client_max_size)
    length = request.content_length
    if length is not None and length > limit:
        return web.Response(status=413, text=f"the body may be at most {limit} bytes\n",
                            headers={"Connection": "close"})
    if not request.body_exists or request.headers.get("Upgrade"):
        return await handler(request)
    # The body is not read here (socket.io reads the raw stream itself): a timer checks that it
    # has arrived whole by the deadline, and drops the connection if not.
    content = request.content

    def expire() -> None:
        if not content.is_eof() and request.transport is not None:
            log.info("closing a connection whose request body did not arrive in %.0f s",
                     BODY_TIMEOUT)
            request.transport.abort()

    timer = asyncio.get_running_loop().call_later(BODY_TIMEOUT, expire)
    try:
        return await handler(request)
    finally:
        timer.cancel()


class AiohttpServer:
    """One aiohttp app on one pre-bound socket: start, then stop (idempotent)."""

    def __init__(self, app: web.Application) -> None:
        app.middlewares.insert(0, http1_only)
        app.middlewares.insert(1, body_deadline)
        # keepalive_timeout bounds the wait for every later request of a kept-alive connection
        # (aiohttp closes it if no complete request arrived by then), not just idle ones.
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                    shutdown_timeout=SHUTDOWN_TIMEOUT,
                                    keepalive_timeout=HEADER_TIMEOUT)
        self._server: asyncio.base_events.Server | None = None

    async def start(self, sock: socket.socket, ssl_context: ssl.SSLContext | None) -> None:
        await self.runner.setup()
        factory = self.runner.server
        assert factory is not None
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _HeaderDeadline(factory(), HEADER_TIMEOUT),  # type: ignore[arg-type,return-value]
            sock=sock, ssl=ssl_context,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if ssl_context else None)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        await self.runner.cleanup()
