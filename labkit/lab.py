"""``Lab``: start a topology's servers on labkit's loop, report their real URLs, stop them cleanly.

Lifecycle like aiohttp's runner/site: every listening socket is bound first (so a port in use fails
before any server starts, and every URL is known before the page is served), then the servers start
in order; any failure stops what started. ``start()`` and ``stop()`` are idempotent, because
learners re-run cells.

One async core: every operation is a coroutine that runs on labkit's loop (``astart``, ``astop``,
``avisit``, ...), whichever loop awaits it; the synchronous methods notebook cells call are one line
each, ``runtime.run(self.aop(...))``, gathered at the edge of the class.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from . import runtime
from .errors import LabNotRunningError, PortInUseError, TopologyError
from .model.deployment import Deployment
from .model.topology import Service, Topology, messenger
from .observe import Browser, Driver, check_name, make_browser
from .observe.observation import Observation
from .serve import logs
from .serve.apps import api as api_app
from .serve.apps import web as web_app
from .serve.apps.chat import ChatServer
from .serve.apps.store import Store
from .serve.apps.web import check_socketio_client
from .serve.nginx import NginxServer
from .serve.nginx import editable as nginx_editable
from .serve.pki import CertFiles, LabPKI
from .serve.proxy import ProxyConfig, RedirectServer, ReverseProxy
from .serve.serving import AiohttpServer

_running: dict[str, Lab] = {}
_running_lock = threading.Lock()


@dataclass(frozen=True)
class ServiceInfo:
    """A started service, as a participant (or ``labkit up --json``) sees it."""

    name: str
    kind: str
    host: str
    port: int
    tls: bool
    scheme: str
    url: str
    origin: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "origin": self.origin, "host": self.host,
                "port": self.port, "tls": self.tls}


class _Server(Protocol):
    async def start(self, sock: socket.socket, ssl_context: ssl.SSLContext | None) -> None: ...
    async def stop(self) -> None: ...


def bind_loopback(host: str, port: int, service: str) -> socket.socket:
    """A listening TCP socket on loopback only: participants share Wi-Fi, so nothing labkit opens
    is reachable from another machine. ``*.lab.test`` and ``localhost`` serve on 127.0.0.1."""
    family, addr = (socket.AF_INET6, "::1") if host == "::1" else (socket.AF_INET, "127.0.0.1")
    # IPPROTO_TCP explicitly: asyncio enables TCP_NODELAY only on sockets created with it, and
    # without it Nagle's algorithm stalls a WebSocket handshake by 40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        # Lets a fixed port be re-bound right after a stop (TIME_WAIT), never while in use.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((addr, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        if e.errno in (errno.EADDRINUSE, errno.EACCES):
            raise PortInUseError(service, port) from None
        raise
    return sock


class Lab:
    """A running (or runnable) deployment of a topology.

    >>> lab = Lab().start()          # web, api and chat with TLS on free loopback ports
    >>> lab.url("web")
    'https://localhost:43117'
    >>> lab.stop()
    """

    def __init__(
        self,
        topology: Topology | None = None,
        *,
        ports: dict[str, int] | None = None,
        pki: LabPKI | None = None,
        browser: Driver | None = None,
        headless: bool = True,
        nginx_configs: dict[str, str] | None = None,
    ) -> None:
        """``nginx_configs``: for an nginx service, your own nginx.conf text to run instead of the
        generated one (``lab.nginx_config(name, editable=True)`` gives one to edit)."""
        topo = topology or messenger()
        self.nginx_configs = dict(nginx_configs or {})
        if ports:
            topo = topo.with_ports(ports)
        self.topology = topo.validate()
        self.pki = pki or LabPKI()
        self.store = Store()
        #: TLS handshakes (ClientHellos) each labkit TLS listener received since start.
        self.tls_hellos: Counter[str] = Counter()
        self._servers: dict[str, _Server] = {}
        self._info: dict[str, ServiceInfo] = {}
        self._deployment: Deployment | None = None
        self._state = "stopped"
        # Start, stop and the faults run one at a time (a stop sent while a start runs waits for
        # it, then stops what it started). Only ever awaited on labkit's loop.
        self._lifecycle = asyncio.Lock()
        # A browser handed in (the tour's) is shared and outlives this lab; our own one does not.
        self._browser = browser
        self._owns_browser = browser is None
        # Browsers of another kind asked for by name (lab.visit(browser="firefox")): the lab's own.
        self._extra_browsers: dict[str, Driver] = {}
        self._headless = headless

    @property
    def running(self) -> bool:
        return self._state == "running"

    # -- the synchronous edge: what notebook cells and scripts call -------------------------------
    # Each is its async twin run on labkit's loop, and nothing more: the logic exists once.
    def start(self) -> Lab:
        """Start every service; a no-op when already running. Returns the lab for chaining."""
        return runtime.run(self.astart())

    def stop(self) -> None:
        """Stop every service (and the lab's own browser) and free every port; safe to call any
        number of times."""
        return runtime.run(self.astop())

    def stop_service(self, name: str, *, abrupt: bool = False) -> None:
        """Stop one server while the rest of the lab runs (its port stays reserved for it).
        ``abrupt=True`` kills its connections without a goodbye, as a crashed process would."""
        return runtime.run(self.astop_service(name, abrupt=abrupt))

    def start_service(self, name: str) -> None:
        """Start a stopped server again, on the same port."""
        return runtime.run(self.astart_service(name))

    def visit(self, service: str = "web", path: str = "/", *, before: Sequence[str] = (),
              browser: str | Driver | None = None, **kw: Any) -> Observation:
        """Open ``service``'s page in the real browser and report what it did. ``before``: page
        services visited first in the same browser context (the victim, before the attacker).
        ``browser``: "chromium" (the default) or "firefox"."""
        return runtime.run(self.avisit(service, path, before=before, browser=browser, **kw))

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Lab:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()

    # -- lifecycle: the async core, on labkit's loop ----------------------------------------------
    @runtime.on_loop
    async def astart(self) -> Lab:
        """:meth:`start`, awaitable from any loop (a Jupyter cell's, ``asyncio.run``'s)."""
        async with self._lifecycle:
            if self.running:
                return self
            logs.setup()
            # Re-running a notebook cell builds a new Lab for the same topology: stop the old one
            # so the kernel never accumulates forgotten servers. Awaited: this runs on labkit's
            # loop (a scenario run starts its lab from there), where the sync stop() cannot.
            with _running_lock:
                old = _running.get(self.topology.name)
            if old is not None and old is not self:
                await old.astop()
            # The lab state folder may have been deleted since the last start. Checked off the
            # loop: it hashes files (the first time, creates keys) while other labs serve; and a
            # warning it logs (a damaged CA replaced) reaches the learner's cell, which records
            # from the loop's own thread never do (see serve/logs.py).
            await asyncio.to_thread(self.pki.refresh)
            try:
                await self._start_servers()
            except BaseException:
                self._forget()
                raise
            return self

    @runtime.on_loop
    async def astop(self) -> None:
        """:meth:`stop`, awaitable from any loop."""
        if self._owns_browser and self._browser is not None:
            await self._browser.astop()
        extra, self._extra_browsers = self._extra_browsers, {}
        for b in extra.values():
            await b.astop()
        async with self._lifecycle:
            if self._state == "stopped":
                return
            await self._stop_servers()
            self._forget()

    def _forget(self) -> None:
        self._state = "stopped"
        self._info = {}
        self._deployment = None
        with _running_lock:
            if _running.get(self.topology.name) is self:
                del _running[self.topology.name]

    async def _start_servers(self) -> None:
        self._state = "starting"
        self.store = Store()
        self.tls_hellos.clear()
        socks: dict[str, socket.socket] = {}
        try:
            for svc in self.topology.services:
                socks[svc.name] = bind_loopback(svc.host, svc.port, svc.name)
            deployment = Deployment.plan(
                self.topology, {n: s.getsockname()[1] for n, s in socks.items()})
            # Built whole, then swapped in: a cell reading lab.services from its own thread never
            # iterates a dict this loop is still filling.
            self._info = {li.name: ServiceInfo(
                li.name, li.kind, li.host, li.port, li.tls, li.service_scheme, li.service_url,
                li.origin)
                for li in deployment.listeners.values()}
            self._deployment = deployment
            for svc in self.topology.services:
                if self._served_by_nginx(svc):
                    continue  # its port is handed to nginx, which serves the redirect itself
                server = self._build(svc, socks)
                ctx = self._server_context(svc) if svc.tls else None
                sock = socks.pop(svc.name)
                try:
                    await server.start(sock, ctx)
                except BaseException:
                    sock.close()
                    raise
                self._servers[svc.name] = server
        except BaseException:
            for s in socks.values():
                s.close()
            await self._stop_servers()
            raise
        self._state = "running"
        with _running_lock:
            _running[self.topology.name] = self

    async def _stop_servers(self) -> None:
        servers, self._servers = self._servers, {}
        # Chat servers first: each says goodbye (1001 "going away") to its clients, through any
        # proxy in front, so no proxy is left waiting on a socket; then the rest, last started
        # first.
        chats = [srv for srv in servers.values() if isinstance(srv, ChatServer)]
        rest = [srv for srv in reversed(list(servers.values())) if not isinstance(srv, ChatServer)]
        for server in chats + rest:
            try:
                await server.stop()
            except Exception:  # keep stopping the others; a half-stopped lab is worse
                logs.logging.getLogger("labkit.lab").exception("error while stopping a server")

    # -- faults, on purpose ------------------------------------------------------------------
    @runtime.on_loop
    async def astop_service(self, name: str, *, abrupt: bool = False) -> None:
        """:meth:`stop_service`, awaitable from any loop."""
        async with self._lifecycle:
            if not self.running:
                raise LabNotRunningError(f"stop service '{name}'")
            self.topology.service(name)
            server = self._servers.pop(name, None)
            if server is None:
                return
            if abrupt and isinstance(server, ChatServer):
                server.abort()
            await server.stop()

    @runtime.on_loop
    async def astart_service(self, name: str) -> None:
        """:meth:`start_service`, awaitable from any loop."""
        async with self._lifecycle:
            if not self.running:
                raise LabNotRunningError(f"start service '{name}'")
            svc = self.topology.service(name)
            if name in self._servers or self._served_by_nginx(svc):
                return
            sock = bind_loopback(svc.host, self._info[name].port, name)
            server = self._build(svc, {})
            try:
                await server.start(sock, self._server_context(svc) if svc.tls else None)
            except BaseException:
                sock.close()
                raise
            self._servers[name] = server

    def _served_by_nginx(self, svc: Service) -> bool:
        return (svc.kind == "redirect" and svc.target is not None
                and self.topology.service(svc.target).kind == "nginx")

    def _build(self, svc: Service, socks: dict[str, socket.socket]) -> _Server:
        d = self.deployment
        if svc.kind in ("web", "evil"):
            if self.topology.page_for(svc.name).sio:
                check_socketio_client()  # fail at start, with the fix, not in the browser later
            return AiohttpServer(web_app.make_app(
                svc.name, self.store, lambda: self.page_config(svc.name),
                d.page_headers(svc.name)))
        if svc.kind == "socketio":
            from .serve.apps import (
                sio as sio_app,  # socket.io pulls in requests & co: only when used
            )

            return AiohttpServer(sio_app.make_app(svc.name, self.store,
                                                  d.chat_origins(svc.name)))
        if svc.kind == "api":
            return AiohttpServer(api_app.make_app(svc.name, self.store, svc.cors,
                                                  d.cors_origins(svc.name),
                                                  https_only=svc.https_only))
        if svc.kind == "chat":
            return ChatServer(svc.name, self.store, d.chat_origins(svc.name))
        if svc.kind == "proxy":
            return ReverseProxy(self.proxy_config(svc.name))
        if svc.kind == "nginx":
            served = [r for r in self.topology.services
                      if self._served_by_nginx(r) and r.target == svc.name]
            return NginxServer(self.proxy_config(svc.name), self._cert(svc),
                               [socks.pop(r.name) for r in served], ca_pem=self.pki.ca_pem,
                               redirect_hosts=tuple(d.listener(r.name).host for r in served),
                               edited=self.nginx_configs.get(svc.name))
        if svc.kind == "redirect":
            assert svc.target is not None
            return RedirectServer(d.listener(svc.name).host, d.listener(svc.target).port,
                                  self.store, svc.name)
        raise AssertionError(f"unbuildable kind {svc.kind}")  # validate() rejects these

    def nginx_config(self, name: str = "proxy", editable: bool = False) -> str:
        """The nginx.conf running for service ``name`` (annotated, ready to adapt).
        ``editable``: its run folder shown as ``PREFIX``, ready to edit and hand back through
        ``Lab(..., nginx_configs={name: text})``."""
        # Looked up on the loop, which adds and removes servers (start_service, stop_service).
        texts = runtime.call(lambda: [(s.config_text, s.prefix) for s in self._servers.values()
                                      if isinstance(s, NginxServer) and s.cfg.name == name])
        if texts:
            text, prefix = texts[0]
            return nginx_editable(text, prefix) if editable and prefix else text
        raise TopologyError(f"no nginx is running as service '{name}'",
                            "Start a topology with an nginx service, e.g. scenario nginx-proxy.")

    def proxy_config(self, name: str) -> ProxyConfig:
        """The routes and upstream addresses of proxy ``name`` (labkit's or nginx)."""
        svc = self.topology.service(name)
        d = self.deployment
        # X-Forwarded-Proto says what the browser's side of this listener really is: a plain
        # proxy claiming https would make the API set a Secure cookie the browser then drops.
        return ProxyConfig(name=name, routes=svc.routes, upstreams=d.upstreams(name),
                           hosts=d.proxy_hosts(name),
                           proto=d.listener(name).scheme if svc.forwarded_proto else None,
                           idle_timeout=svc.idle_timeout,
                           upstream_ssl=self.pki.client_context())

    def _cert(self, svc: Service) -> CertFiles:
        """The certificate a TLS service presents. ``own``: one for its host name only, as a
        cloud load balancer's managed certificate is."""
        return self.pki.for_service(svc.cert, svc.host)

    def _server_context(self, svc: Service) -> ssl.SSLContext:
        ctx = self._cert(svc).server_context()

        def hello(_obj: object, _server_name: str | None, _ctx: object) -> None:
            # Called once per ClientHello (SNI or not): the TLS handshakes this listener served.
            self.tls_hellos[svc.name] += 1

        ctx.sni_callback = hello
        return ctx

    # -- the browser -----------------------------------------------------------------------------
    @property
    def browser(self) -> Driver:
        """The lab's browser: headless Chromium unless one was handed in (started on the first
        visit, reused after)."""
        if self._browser is None:
            self._browser = Browser(self.pki, headless=self._headless)
        return self._browser

    def _browser_for(self, which: str | Driver | None) -> Driver:
        """``browser=`` of a visit: None (the lab's), a name ("firefox": the lab's own one of
        that kind, stopped with the lab), or a browser object (the caller's, left running)."""
        if which is None:
            return self.browser
        if isinstance(which, Driver):
            return which
        name = check_name(which)
        if name == self.browser.name:
            return self.browser
        if name not in self._extra_browsers:
            self._extra_browsers[name] = make_browser(name, self.pki, headless=self._headless)
        return self._extra_browsers[name]

    def _visit_args(self, service: str, path: str, before: Sequence[str] = ()
                    ) -> tuple[str, dict[str, Any]]:
        url = self.page_url(service, path)
        ports = {i.port: i.name for i in self.services}
        # The names the page may reach: a browser that cannot map a whole domain to loopback
        # (Firefox) is told each one.
        hosts = sorted({s.host.lower() for s in self.topology.services})
        return url, {"ports": ports, "seen": self.store, "hosts": hosts,
                     "before": [self.page_url(b) for b in before]}

    def page_url(self, service: str, path: str = "/") -> str:
        url = self.info(service).origin + path
        self.topology.check_visit(service)
        return url

    @runtime.on_loop
    async def avisit(self, service: str = "web", path: str = "/", *,
                     before: Sequence[str] = (), browser: str | Driver | None = None,
                     **kw: Any) -> Observation:
        """:meth:`visit`, awaitable from any loop."""
        if not self.running:
            raise LabNotRunningError(f"visit '{service}'")
        url, args = self._visit_args(service, path, before)
        return await self._browser_for(browser).avisit(url, **args, **kw)

    # -- what a participant asks -----------------------------------------------------------------
    @property
    def deployment(self) -> Deployment:
        """The running deployment: every address, read by the servers, the page and explain."""
        if self._deployment is None:
            raise LabNotRunningError("read the deployment")
        return self._deployment

    def resolve_origins(self, entries: Sequence[str]) -> list[str]:
        """Allow-list entries as origins: service names become that service's page origin."""
        return list(self.deployment.allowlist(entries))

    def page_config(self, service: str = "web") -> dict[str, Any]:
        """What the page served by ``service`` is told: where the API and chat are, which steps."""
        return self.deployment.page_config(service)

    def info(self, name: str) -> ServiceInfo:
        if not self.running and self._state != "starting":
            raise LabNotRunningError(f"look up service '{name}'")
        if name not in self._info:
            self.topology.service(name)  # raises the readable error
        return self._info[name]

    def url(self, name: str, path: str = "") -> str:
        return self.info(name).url + path

    def ws_url(self, name: str, path: str = "/ws") -> str:
        """The ws:// or wss:// URL of ``path`` on any service (a proxy's /ws, say)."""
        self.info(name)
        return self.deployment.listener(name).ws_url(path)

    def origin(self, name: str) -> str:
        return self.info(name).origin

    @property
    def services(self) -> list[ServiceInfo]:
        return list(self._info.values())

    def services_by_name(self) -> dict[str, ServiceInfo]:
        return dict(self._info)

    def requests(self, service: str | None = None) -> list[dict[str, Any]]:
        """What the servers saw (method, path, Origin, Sec-Fetch-Site, status), oldest first."""
        # A snapshot taken on labkit's loop: the servers append to this log there while they
        # answer, and iterating it from a cell's thread fails ("deque mutated during iteration").
        store = self.store
        return runtime.call(lambda: [s.as_dict() for s in store.seen
                                     if service in (None, s.service)])

    def logs(self, n: int = 50) -> list[str]:
        # Read here, not on the loop: every thread appends to the ring (it is no loop state),
        # list() copies a deque in one C call no other thread can interleave with, and the log
        # must stay readable when something wedges the loop — exactly when a learner needs it.
        return logs.recent(n)

    def describe(self) -> dict[str, Any]:
        """The ``labkit up --json`` object."""
        return {"ca": str(self.pki.ca_pem), "services": [s.as_dict() for s in self.services]}

    # -- display (the notebook's HTML view: labkit.notebook.display.lab_html) -------------------
    def __repr__(self) -> str:
        if not self.running:
            return f"<Lab '{self.topology.name}' {self._state}>"
        urls = ", ".join(f"{s.name} {s.url}" for s in self.services)
        return f"<Lab '{self.topology.name}' running: {urls}>"


def stop_all() -> None:
    """Stop every running lab (kernel shutdown, ``labkit`` CLI exit)."""
    with _running_lock:
        labs = list(_running.values())
    for lab in labs:
        try:
            lab.stop()
        except Exception:
            pass


runtime.on_shutdown(stop_all)
