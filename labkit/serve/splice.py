"""The proxy's WebSocket relay: handshake upstream, then copy bytes both ways, as nginx does.

Copying bytes instead of decoding and re-encoding every frame keeps close codes, reasons, pings and
fragmentation exactly as the two ends sent them, and costs a fraction of the CPU.
Two :class:`~labkit.model.frames.FrameCursor`\\ s follow the frame boundaries so the proxy can
still speak up when it must: 1009 for a frame over the size limit, 1014 toward the browser when
the backend vanishes, 1001 toward the backend when the browser does.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import h11
from aiohttp import web
from multidict import CIMultiDict

from ..model.frames import FrameCursor, close_frame
from ..model.routing import upstream_headers

log = logging.getLogger("labkit.proxy")

#: Close code toward the browser when the backend of a relayed WebSocket goes away (RFC 6455 §7.4.1
#: registry: 1014 "Bad Gateway").
BACKEND_GONE = 1014
_KEEP = ("sec-websocket-accept", "sec-websocket-protocol", "sec-websocket-extensions")
#: Flow control: a side whose send buffer holds more than this stops the other side's reads until
#: it drains below a quarter of it, so a reader that does not keep up (a slow Wi-Fi, a frozen tab)
#: costs the proxy at most this much memory per direction, as nginx's fixed buffers do.
HIGH_WATER = 1024 * 1024
_MAX_HEAD = 64 * 1024  # a handshake answer longer than this is not one


class _Upstream(asyncio.Protocol):
    """The backend connection. Its handshake answer is parsed by h11 (a real HTTP/1.1 parser:
    status line, headers, limits, and the bytes that arrive right behind a 101); after that every
    byte goes straight to the splice from ``data_received`` — no reader task in between, so no
    extra loop turn."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.head: asyncio.Future[tuple[int, list[tuple[str, str]]]] = \
            asyncio.get_running_loop().create_future()
        self.http = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
        self.buf = b""
        self.splice: Splice | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send_handshake(self, request: h11.Request) -> None:
        assert self.transport is not None
        self.transport.write(self.http.send(request) or b"")

    def data_received(self, data: bytes) -> None:
        if self.splice is not None:
            self.splice.from_backend(data)
            return
        if self.head.done():
            self.buf += data  # frames behind the 101, before the splice is attached
            return
        self.http.receive_data(data)
        try:
            while True:
                event = self.http.next_event()
                if event is h11.NEED_DATA:
                    return
                if isinstance(event, h11.InformationalResponse) and event.status_code != 101:
                    continue  # 100 Continue and friends: the real answer follows
                if isinstance(event, (h11.InformationalResponse, h11.Response)):
                    headers = [(k.decode("latin-1"), v.decode("latin-1"))
                               for k, v in event.headers if k.decode("latin-1") in _KEEP]
                    if event.status_code == 101:
                        # h11 hands back what followed the 101: the first frames, if any.
                        self.buf = self.http.trailing_data[0]
                    self.head.set_result((event.status_code, headers))
                    return
                raise h11.RemoteProtocolError(f"unexpected {type(event).__name__}")
        except h11.RemoteProtocolError as e:
            self.head.set_exception(ValueError(f"a broken handshake answer: {e}"))

    def eof_received(self) -> bool:
        return False  # close our side too

    # The transport says when its send buffer is over or back under the limits (see HIGH_WATER).
    def pause_writing(self) -> None:
        if self.splice is not None:
            self.splice.down.pause_reading()  # type: ignore[attr-defined]

    def resume_writing(self) -> None:
        if self.splice is not None:
            self.splice.resume(self.splice.down)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.splice is not None:
            self.splice.backend_gone()
        elif not self.head.done():
            self.head.set_exception(ConnectionError("the backend closed during the handshake"))

    def attach(self, splice: Splice) -> None:
        self.splice = splice
        rest, self.buf = self.buf, b""
        if rest:  # frames that arrived right behind the 101
            splice.from_backend(rest)
        if self.transport is not None and self.transport.is_closing():
            splice.backend_gone()


class _Down(asyncio.Protocol):
    """The browser's connection once upgraded: its bytes go straight to the splice.

    aiohttp's handler (behind labkit's header-deadline wrapper) would pass every read through two
    more Python calls; with a relay measured against nginx's per message, those count. The
    handler stays behind this protocol for the rest: it still learns when the connection ends
    (and then tells the splice, its payload parser), and flow control reaches it as before."""

    def __init__(self, splice: Splice, handler: asyncio.BaseProtocol) -> None:
        self.splice = splice
        self.feed = splice.feed_data
        self.handler = handler

    def data_received(self, data: bytes) -> None:
        self.feed(data)

    def eof_received(self) -> bool | None:
        return self.handler.eof_received()  # type: ignore[attr-defined,no-any-return]

    def connection_lost(self, exc: Exception | None) -> None:
        self.handler.connection_lost(exc)

    # The browser's send buffer is over or back under the limits (see HIGH_WATER): stop or go on
    # reading the backend.
    def pause_writing(self) -> None:
        self.splice.up.pause_reading()  # type: ignore[attr-defined]
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.splice.resume(self.splice.up)
        self.handler.resume_writing()


class Splice:
    """One relayed WebSocket: the browser's transport on one side, the backend's on the other."""

    def __init__(self, request: web.Request, up: asyncio.Transport, max_message: int,
                 idle_timeout: float | None) -> None:
        assert request.transport is not None
        self.down = request.transport  # toward the browser
        self.up = up  # toward the backend
        self.up_cursor = FrameCursor(limit=max_message)  # browser -> backend
        self.down_cursor = FrameCursor()  # backend -> browser
        self.idle_timeout = idle_timeout
        for side in (self.down, self.up):
            side.set_write_buffer_limits(high=HIGH_WATER, low=HIGH_WATER // 4)
        self.last = time.monotonic()
        self.done = asyncio.get_running_loop().create_future()
        self.discarding = False
        self.said_close = False  # the proxy sent the browser a close frame of its own
        # Tasks and timers this splice starts are its own: cancelled when it ends (an asyncio
        # task nothing refers to can be garbage-collected mid-flight).
        self.tasks: set[asyncio.Task[None]] = set()
        self.timers: list[asyncio.TimerHandle] = []

    # Every byte the browser sends after the upgrade arrives here: what came right behind its
    # handshake from aiohttp (this object is its "payload parser", installed with set_parser()
    # as aiohttp's own WebSocketResponse does), the rest straight from _Down.
    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self.idle_timeout:
            self.last = time.monotonic()
        if self.discarding:
            # After refusing a frame: skip what the browser still sends until its close frame
            # (closing with unread data would reset the connection and lose our close frame).
            self.up_cursor.feed(data)
            if self.up_cursor.closed:
                self._finish()
            return False, b""
        cut = self.up_cursor.feed(data)
        if cut is not None:
            self._write_up(data[:cut])
            self._close_both(1009, "message too big", finish=False)
            self.discarding = True
            self.up_cursor.limit = None
            self.up_cursor.feed(data[cut:])
            self.timers.append(asyncio.get_running_loop().call_later(2.0, self._finish))
            return False, b""
        self._write_up(data)
        return False, b""

    def feed_eof(self) -> None:
        # The browser's connection ended. Without its close frame, tell the backend it went away.
        if not self.up_cursor.closed and self.up_cursor.at_boundary:
            self._write_up(close_frame(1001, "client went away", masked=True))
        self._finish()

    def from_backend(self, data: bytes) -> None:
        if self.idle_timeout:
            self.last = time.monotonic()
        if self.said_close or self.down.is_closing():
            return  # the proxy already said goodbye: a second close frame would be an error
        self.down_cursor.feed(data)
        self.down.write(data)

    def backend_gone(self) -> None:
        if not self.down_cursor.closed and self.down_cursor.at_boundary \
                and not self.said_close and not self.down.is_closing():
            # The backend vanished without a close frame: a bad gateway, said in WebSocket.
            self.down.write(close_frame(BACKEND_GONE, "backend went away", masked=False))
        if not self.discarding:  # else the browser's close frame (or a deadline) ends it
            self._finish()

    def _write_up(self, data: bytes) -> None:
        if data and not self.up.is_closing():
            self.up.write(data)

    @staticmethod
    def resume(reading: asyncio.BaseTransport) -> None:
        """Read ``reading`` again: the other side's send buffer has drained (see HIGH_WATER)."""
        if not reading.is_closing():
            reading.resume_reading()  # type: ignore[attr-defined]

    async def watch_idle(self) -> None:
        assert self.idle_timeout
        while not self.done.done():
            left = self.last + self.idle_timeout - time.monotonic()
            if left <= 0:
                # A cloud load balancer just drops an idle TCP connection: no close frame, so
                # the browser reports 1006.
                log.info("closing a WebSocket idle for %.1f s", self.idle_timeout)
                self.down.abort()
                self.up.abort()
                self._finish()
                return
            await asyncio.sleep(left)

    def close(self, code: int, reason: str) -> None:
        """The proxy itself ends this socket (shutting down)."""
        self._close_both(code, reason)

    def _close_both(self, code: int, reason: str, finish: bool = True) -> None:
        if self.down_cursor.at_boundary and not self.down_cursor.closed \
                and not self.down.is_closing():
            self.down.write(close_frame(code, reason, masked=False))
            self.said_close = True
        if self.up_cursor.at_boundary:
            self._write_up(close_frame(1001, "proxy closed the connection", masked=True))
        if finish:
            self._finish()

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    async def aclose(self) -> None:
        """Cancel what this splice started and wait for it."""
        for t in self.timers:
            t.cancel()
        tasks, self.tasks = list(self.tasks), set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def splice_websocket(request: web.Request, *, upstream: str, name: str, host: str,
                           target: str,
                           upstream_ssl: ssl.SSLContext | None, proto: str | None,
                           connect_timeout: float, max_message: int,
                           idle_timeout: float | None,
                           track: Callable[[Splice | None, Splice], Any],
                           refuse: Callable[[int, str], web.StreamResponse]) -> web.StreamResponse:
    """Relay the WebSocket of ``request`` to ``upstream`` (an http(s) origin) for its life."""
    addr, port, sni = backend_endpoint(upstream)
    loop = asyncio.get_running_loop()
    try:
        transport, upstream_proto = await asyncio.wait_for(loop.create_connection(
            _Upstream, addr, port, ssl=upstream_ssl if sni else None, server_hostname=sni),
            connect_timeout)
    except (OSError, asyncio.TimeoutError) as e:
        return refuse(502, f"502 Bad Gateway: the {name} server is not answering "
                           f"({type(e).__name__})")
    try:
        upstream_proto.send_handshake(_handshake(request, proto, host, target))
        status, headers = await asyncio.wait_for(upstream_proto.head, connect_timeout)
    except (OSError, asyncio.TimeoutError, ValueError, h11.LocalProtocolError) as e:
        transport.close()
        return refuse(502, f"502 Bad Gateway: the {name} server broke the handshake "
                           f"({type(e).__name__})")
    if status != 101:
        # The backend said no (403 from its Origin check): the browser gets that same answer.
        transport.close()
        return refuse(status if status >= 400 else 502,
                      f"the {name} server refused the WebSocket ({status})")
    resp = web.StreamResponse(status=101, headers=CIMultiDict(
        [("Upgrade", "websocket"), ("Connection", "Upgrade"), *headers]))
    resp.force_close()  # after this socket the connection is done, never kept alive
    await resp.prepare(request)
    splice = Splice(request, transport, max_message, idle_timeout)
    # aiohttp's own way to take over the bytes after an upgrade: it hands the splice what the
    # browser sent right behind its handshake, and the end of the connection (feed_eof).
    request.protocol.set_parser(splice)  # type: ignore[arg-type]
    # Then the reads skip aiohttp's handler (see _Down).
    splice.down.set_protocol(_Down(splice, splice.down.get_protocol()))
    upstream_proto.attach(splice)
    track(None, splice)
    if idle_timeout:
        idle = asyncio.ensure_future(splice.watch_idle())
        splice.tasks.add(idle)
    try:
        await splice.done
        await asyncio.sleep(0.05)  # let a close frame in flight get through
    finally:
        # Close first, synchronously: a second cancellation (the server shutting down) may
        # interrupt the await below, and must not leave a transport open.
        track(splice, splice)
        transport.close()
        if not splice.down.is_closing():
            splice.down.close()
        await splice.aclose()
    return resp


def _handshake(request: web.Request, proto: str | None, host: str, target: str) -> h11.Request:
    """The browser's opening handshake for the backend: its key, version and protocols kept,
    forwarded headers added (``host``: the validated, normalised Host)."""
    headers = upstream_headers(request.headers.items(), host=host,
                               client_ip=request.remote or "", proto=proto)
    # Extensions are not offered upstream: with permessage-deflate a frame's size on the wire is
    # not its message size, and the proxy's message limit could not be enforced.
    ws = [(k, v) for k, v in request.headers.items()
          if k.lower().startswith("sec-websocket-") and k.lower() != "sec-websocket-extensions"]
    return h11.Request(method="GET", target=target.encode(), headers=wire_headers(
        [*headers, ("Upgrade", "websocket"), ("Connection", "Upgrade"), *ws]))


def wire_headers(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Headers back to the bytes the browser sent. aiohttp decodes a field as UTF-8 with
    ``surrogateescape``, so a byte that is not UTF-8 (obs-text, RFC 9110 §5.5: a Latin-1 ``é``
    sent as one byte) is a lone surrogate, and only ``surrogateescape`` restores it — encoding
    with plain UTF-8 (as aiohttp's own writers do) fails on it or drops it."""
    return [(k.encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape"))
            for k, v in headers]


def backend_endpoint(upstream: str) -> tuple[str, int, str | None]:
    """Where to connect for ``upstream`` (an http(s) origin): the loopback address, the port,
    and the TLS server name (None for plain http). Backends are always on loopback; the name
    stays the one the certificate is checked against."""
    up = urlsplit(upstream)
    tls = up.scheme == "https"
    addr = "::1" if up.hostname == "::1" else "127.0.0.1"
    return addr, up.port or (443 if tls else 80), (up.hostname if tls else None)
