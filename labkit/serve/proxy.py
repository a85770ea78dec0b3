"""labkit's TLS-terminating reverse proxy (aiohttp, on the lab loop) and its HTTP->HTTPS redirect.

The story's long-term fix: one origin in front of everything — ``/`` to web, ``/api`` to the API,
``/ws`` to chat — so the browser sees a single origin and CORS never comes up. The same class, with
one route and an idle timeout, plays a cloud load balancer in the short-term fix.

Limits (all per proxy, see :class:`ProxyConfig`):
- request bodies up to ``max_body`` (1 MiB; larger: 413), WebSocket messages up to ``max_message``
  (1 MiB; larger: the browser side is closed with 1009);
- headers: aiohttp's defaults (8190 bytes per line/field; larger: 400);
- upstream connect timeout ``connect_timeout`` (5 s), HTTP answer timeout ``read_timeout`` (60 s);
  a backend's answer head up to 64 KiB (larger, or malformed: 502);
- ``idle_timeout``: None for the reverse proxy; a load balancer drops a WebSocket that carried no
  frame (pings count) for that long, as cloud load balancers do (60 s by default there).
It proxies only to declared upstreams: unknown paths get 404, other Host names 421, absolute-form
or escaping paths 400 — never an open proxy. A down backend gives 502; a WebSocket whose backend
dies is closed toward the browser with 1014 (bad gateway).

Requests go to the backends as the bytes the browser sent, as nginx sends them: header values
that are not ASCII — UTF-8, or a single Latin-1 byte (obs-text, RFC 9110 §5.5) — arrive unchanged.
aiohttp's client cannot do that (it writes every header as UTF-8 and drops a byte that is not), so
the proxy speaks HTTP/1.1 to its backends with h11, over connections it keeps alive
(:class:`Backends`), and aiohttp serves only the browser's side.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11
from aiohttp import web
from multidict import CIMultiDict

from ..model.routing import (
    Route,
    clean_path,
    host_allowed,
    match,
    normal_host,
    parse_host,
    redirect_location,
    response_headers,
    upstream_headers,
)
from .apps.store import Store
from .serving import HEADER_TIMEOUT, AiohttpServer
from .splice import BACKEND_GONE as BACKEND_GONE  # re-exported: part of the proxy's contract
from .splice import Splice, backend_endpoint, splice_websocket, wire_headers

log = logging.getLogger("labkit.proxy")

#: A kept-alive backend connection idle this long is closed rather than reused: shorter than the
#: backends' own keep-alive (HEADER_TIMEOUT), so the proxy seldom reuses one the backend is
#: just closing.
IDLE_TIMEOUT = HEADER_TIMEOUT * 0.8
#: RFC 9110 §9.2.2: a request that may be sent twice; only these are retried (RFC 9112 §9.3.1).
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
_MAX_HEAD = 64 * 1024  # a backend's answer head longer than this is not one
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class ProxyConfig:
    name: str
    routes: tuple[Route, ...]
    upstreams: dict[str, str]  # service name -> http(s) origin of the backend
    hosts: tuple[str, ...]  # the Host names this proxy serves
    #: The scheme told to backends as X-Forwarded-Proto; None: the header is not sent.
    proto: str | None = "https"
    max_body: int = 1024 * 1024
    max_message: int = 1024 * 1024
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    idle_timeout: float | None = None
    upstream_ssl: ssl.SSLContext | None = field(default=None, compare=False)


class _Conn:
    """One HTTP/1.1 connection to a backend: asyncio streams below, h11 keeping the state."""

    def __init__(self, upstream: str, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.upstream, self.reader, self.writer = upstream, reader, writer
        self.http = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
        self.idle_since = 0.0
        self.answered = False  # a byte of the answer to the current request has arrived

    async def next_event(self, timeout: float) -> object:
        while True:
            event = self.http.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await asyncio.wait_for(self.reader.read(_CHUNK), timeout)
            self.answered = self.answered or bool(data)
            # b"" at EOF: h11 then ends a body that runs to the close, or raises.
            self.http.receive_data(data)

    def close(self) -> None:
        self.writer.close()


class Backends:
    """The proxy's HTTP/1.1 client: a request and its body out as bytes, the answer's head back,
    the body streamed by :meth:`relay_body`. Connections are kept alive per backend and reused
    (no cap on how many: a slow request never queues the next one behind it). Relayed
    WebSockets do not use them: the splice opens its own connection for each (splice.py)."""

    def __init__(self, cfg: ProxyConfig) -> None:
        self.cfg = cfg
        self.idle: dict[str, list[_Conn]] = {}
        self.busy: set[_Conn] = set()
        self.closed = False

    async def send(self, upstream: str, head: h11.Request, body: bytes | None
                   ) -> tuple[_Conn, h11.Response]:
        """Send one request to ``upstream`` (an http(s) origin); the answer's head comes back
        with the connection, which the caller hands to :meth:`release` when done with it."""
        may_retry = head.method in _IDEMPOTENT
        while True:
            conn = self._reuse(upstream)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(upstream)
            self.busy.add(conn)
            try:
                out = conn.http.send(head) or b""
                if body:
                    out += conn.http.send(h11.Data(data=body)) or b""
                conn.writer.write(out + (conn.http.send(h11.EndOfMessage()) or b""))
                while True:
                    event = await conn.next_event(self.cfg.read_timeout)
                    if isinstance(event, h11.Response):
                        return conn, event
                    if not isinstance(event, h11.InformationalResponse):  # 100 Continue: next
                        raise h11.RemoteProtocolError(f"unexpected {type(event).__name__}")
            except (ConnectionError, h11.RemoteProtocolError):
                self.release(conn)
                if not (reused and may_retry) or conn.answered:
                    raise
                # RFC 9112 §9.3.1: the backend closed a kept-alive connection as the request
                # went out, before a byte of answer; an idempotent request may go again, once,
                # on a new connection.
                may_retry = False
            except BaseException:
                self.release(conn)
                raise

    async def relay_body(self, conn: _Conn, resp: web.StreamResponse) -> None:
        while True:
            event = await conn.next_event(self.cfg.read_timeout)
            if isinstance(event, h11.Data):
                await resp.write(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            else:
                raise h11.RemoteProtocolError(f"unexpected {type(event).__name__}")

    def release(self, conn: _Conn) -> None:
        """Keep ``conn`` for the next request if its exchange finished cleanly, else close it."""
        self.busy.discard(conn)
        http = conn.http
        if self.closed or http.our_state is not h11.DONE or http.their_state is not h11.DONE:
            conn.close()
            return
        http.start_next_cycle()
        conn.idle_since, conn.answered = time.monotonic(), False
        self.idle.setdefault(conn.upstream, []).append(conn)

    def close(self) -> None:
        self.closed = True
        for conn in [*self.busy, *(c for idle in self.idle.values() for c in idle)]:
            conn.close()
        self.busy.clear()
        self.idle.clear()

    def _reuse(self, upstream: str) -> _Conn | None:
        idle, now = self.idle.get(upstream, []), time.monotonic()
        while idle:
            conn = idle.pop()  # the most recent: the least likely to be timing out
            if now - conn.idle_since < IDLE_TIMEOUT and not conn.reader.at_eof() \
                    and not conn.writer.is_closing():
                return conn
            conn.close()
        return None

    async def _connect(self, upstream: str) -> _Conn:
        addr, port, sni = backend_endpoint(upstream)
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            addr, port, ssl=self.cfg.upstream_ssl if sni else None, server_hostname=sni,
            limit=_CHUNK), self.cfg.connect_timeout)
        return _Conn(upstream, reader, writer)


class ReverseProxy:
    def __init__(self, cfg: ProxyConfig) -> None:
        self.cfg = cfg
        self.backends: Backends | None = None
        self.server: AiohttpServer | None = None
        self.splices: set[Splice] = set()

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self, sock: socket.socket, ssl_context: ssl.SSLContext | None) -> None:
        self.backends = Backends(self.cfg)
        app = web.Application(client_max_size=self.cfg.max_body)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.server = AiohttpServer(app)
        await self.server.start(sock, ssl_context)

    async def stop(self) -> None:
        for sp in list(self.splices):
            sp.close(1001, "proxy shutting down")
        if self.server is not None:
            await self.server.stop()
            self.server = None
        if self.backends is not None:
            self.backends.close()
            self.backends = None

    # -- HTTP ------------------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        target, host_value = request.raw_path, request.host
        if target.lower().startswith(("http://", "https://")):
            # Absolute-form (RFC 9112 §3.2.2): a server must accept it; its authority replaces
            # Host. Only for this proxy's own names: never an open proxy.
            parts = urlsplit(target)
            host_value = parts.netloc
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        parsed = parse_host(host_value)
        if parsed is None:
            return _text(400, "bad Host header")
        if not host_allowed(host_value, self.cfg.hosts):
            return _text(421, f"this proxy serves {', '.join(self.cfg.hosts)}, "
                              f"not {normal_host(*parsed)}")
        host = normal_host(*parsed)  # what the backend sees: never the raw value
        if clean_path(target) is None:
            return _text(400, "bad request path")
        route = match(self.cfg.routes, target)
        if route is None:
            return _text(404, f"no route for {request.path}")
        upstream = self.cfg.upstreams[route.upstream]
        if route.websocket and request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._relay_ws(request, route, upstream, host, target)
        return await self._forward(request, route.upstream, upstream, host, target)

    async def _forward(self, request: web.Request, name: str, upstream: str, host: str,
                       target: str) -> web.StreamResponse:
        body = await request.read() if request.body_exists else None
        headers = [(k, v) for k, v in upstream_headers(
            request.headers.items(), host=host, client_ip=request.remote or "",
            proto=self.cfg.proto) if k.lower() != "content-length"]
        if body is not None:  # the body is read whole, so its length is known: never chunked
            headers.append(("Content-Length", str(len(body))))
        try:
            head = h11.Request(method=request.method,
                               target=target.encode("utf-8", "surrogateescape"),
                               headers=wire_headers(headers))
        except h11.LocalProtocolError as e:  # a field aiohttp let through but HTTP/1.1 forbids
            return _text(400, f"a request the proxy cannot forward ({e})")
        backends = self.backends
        assert backends is not None
        try:
            conn, answer = await backends.send(upstream, head, body)
        except (OSError, asyncio.TimeoutError, h11.RemoteProtocolError) as e:
            log.warning("%s: upstream %s failed: %r", self.cfg.name, name, e)
            return _text(502, f"502 Bad Gateway: the {name} server is not answering "
                              f"({type(e).__name__})")
        try:
            resp = web.StreamResponse(status=answer.status_code,
                                      reason=answer.reason.decode("latin-1"),
                                      headers=CIMultiDict(response_headers(
                                          (k.decode("utf-8", "surrogateescape"),
                                           v.decode("utf-8", "surrogateescape"))
                                          for k, v in answer.headers.raw_items())))
            await resp.prepare(request)
            await backends.relay_body(conn, resp)
            await resp.write_eof()
            return resp
        except (OSError, asyncio.TimeoutError, h11.RemoteProtocolError) as e:
            # The answer is half sent: closing is the only way left to tell the browser it is
            # cut short, as nginx does (finishing the chunked body would pass it off as whole;
            # aiohttp's own write_eof then meets a closed transport and lets it be).
            log.warning("%s: the answer from %s was cut short: %r", self.cfg.name, name, e)
            if request.transport is not None:
                request.transport.abort()
            return resp
        finally:
            backends.release(conn)

    # -- WebSocket relay (a byte splice, see splice.py) -----------------------------------------
    async def _relay_ws(self, request: web.Request, route: Route, upstream: str, host: str,
                        target: str) -> web.StreamResponse:
        def track(old: Splice | None, new: Splice) -> None:
            if old is None:
                self.splices.add(new)
            else:
                self.splices.discard(old)

        return await splice_websocket(
            request, upstream=upstream, name=route.upstream, upstream_ssl=self.cfg.upstream_ssl,
            host=host, target=target,
            proto=self.cfg.proto, connect_timeout=self.cfg.connect_timeout,
            max_message=self.cfg.max_message, idle_timeout=self.cfg.idle_timeout,
            track=track, refuse=_text)


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n")


class RedirectServer:
    """Plain-HTTP listener: every request gets 308 to the https origin, path and query kept.
    The Location uses the configured public name, never the request's Host (no open redirect)."""

    def __init__(self, host: str, https_port: int, store: Store | None = None,
                 name: str = "redirect") -> None:
        self.host, self.https_port = host, https_port
        self.store, self.name = store, name
        self.server: AiohttpServer | None = None

    async def _redirect(self, request: web.Request) -> web.Response:
        location = redirect_location(self.host, self.https_port, request.raw_path)
        if self.store is not None:  # on the wire view too: a handshake answered 308
            self.store.receive(self.name, request, status=308, response={"Location": location})
        return web.Response(status=308, headers={"Location": location},
                            text=f"moved to {location}\n")

    async def start(self, sock: socket.socket, ssl_context: ssl.SSLContext | None) -> None:
        app = web.Application(client_max_size=1024)
        app.router.add_route("*", "/{tail:.*}", self._redirect)
        self.server = AiohttpServer(app)
        await self.server.start(sock, ssl_context)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None
