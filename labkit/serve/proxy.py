"""labkit's TLS-terminating reverse proxy (aiohttp, on the lab loop) and its HTTP->HTTPS redirect.

The story's long-term fix: one origin in front of everything — ``/`` to web, ``/api`` to the API,
``/ws`` to chat — so the browser sees a single origin and CORS never comes up. The same class, with
one route and an idle timeout, plays a cloud load balancer in the short-term fix.

Limits (all per proxy, see :class:`ProxyConfig`):
- request bodies up to ``max_body`` (1 MiB; larger: 413), WebSocket messages up to ``max_message``
  (1 MiB; larger: the browser side is closed with 1009);
- headers: aiohttp's defaults (8190 bytes per line/field; larger: 400);
- upstream connect timeout ``connect_timeout`` (5 s), HTTP answer timeout ``read_timeout`` (60 s);
- ``idle_timeout``: None for the reverse proxy; a load balancer drops a WebSocket that carried no
  frame (pings count) for that long, as cloud load balancers do (60 s by default there).
It proxies only to declared upstreams: unknown paths get 404, other Host names 421, absolute-form
or escaping paths 400 — never an open proxy. A down backend gives 502; a WebSocket whose backend
dies is closed toward the browser with 1014 (bad gateway).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
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
from .clients import LabResolver
from .serving import AiohttpServer
from .splice import BACKEND_GONE as BACKEND_GONE  # re-exported: part of the proxy's contract
from .splice import Splice, splice_websocket

log = logging.getLogger("labkit.proxy")



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


class ReverseProxy:
    def __init__(self, cfg: ProxyConfig) -> None:
        self.cfg = cfg
        self.session: aiohttp.ClientSession | None = None
        self.server: AiohttpServer | None = None
        self.splices: set[Splice] = set()

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self, sock: socket.socket, ssl_context: ssl.SSLContext | None) -> None:
        self.session = aiohttp.ClientSession(
            # limit=0: no cap on concurrent upstream requests (aiohttp's default of 100 would
            # queue the 101st behind slow ones). Relayed WebSockets do not use this pool: the
            # splice opens its own connection for each (splice.py).
            connector=aiohttp.TCPConnector(ssl=self.cfg.upstream_ssl or False, limit=0,
                                           resolver=LabResolver()),
            timeout=aiohttp.ClientTimeout(total=None, connect=self.cfg.connect_timeout,
                                          sock_read=self.cfg.read_timeout),
            auto_decompress=False,
        )
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
        if self.session is not None:
            await self.session.close()
            self.session = None

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
        headers = upstream_headers(request.headers.items(), host=host,
                                   client_ip=request.remote or "", proto=self.cfg.proto)
        body = await request.read() if request.body_exists else None
        assert self.session is not None
        try:
            async with self.session.request(request.method, upstream + target,
                                            headers=headers, data=body,
                                            allow_redirects=False) as up:
                resp = web.StreamResponse(status=up.status, reason=up.reason,
                                          headers=CIMultiDict(response_headers(up.headers.items())))
                await resp.prepare(request)
                async for chunk in up.content.iter_chunked(64 * 1024):
                    await resp.write(chunk)
                await resp.write_eof()
                return resp
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as e:
            log.warning("%s: upstream %s failed: %r", self.cfg.name, route.upstream, e)
            return _text(502, f"502 Bad Gateway: the {route.upstream} server is not answering "
                              f"({type(e).__name__})")

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
