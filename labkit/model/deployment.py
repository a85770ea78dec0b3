"""The deployment: a topology with its real ports, described once for every view (no I/O).

A :class:`~labkit.model.topology.Topology` says *what* runs; a :class:`Deployment` adds *where*:
each listener's port, and from it every address the lessons talk about — origins, page and socket
URLs (ws or wss), which service serves a visited page, allow-lists resolved to origins, a proxy's
upstreams, the certificate each TLS listener presents, and which service answers a path. `explain`,
the diagrams, the page's config, labkit's proxy and the nginx config all read this one object, so
nothing recomputes an origin or a scheme on its own.

Before a lab starts, ports are known only where a service fixes one; the others get placeholder
ports (distinct, never a fixed one), which is all reasoning about origins needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .policy import OPAQUE, Origin, parse_origin, tls_check
from .routing import match
from .topology import PAGE_KINDS, PROXY_KINDS, Page, Service, Topology

#: Every name the lab certificate covers (RFC 6125 subjectAltName entries); the explicit names as
#: well as the wildcard, so a reader of the certificate sees the story's hosts.
LAB_NAMES: tuple[str, ...] = (
    "localhost", "127.0.0.1", "::1", "*.lab.test",
    "app.lab.test", "api.lab.test", "ws.lab.test", "evil.lab.test", "evil-lab.test",
)
#: The shape a managed certificate usually has: one wildcard, one label deep (RFC 6125 §6.4.3).
WILDCARD_NAMES: tuple[str, ...] = ("*.lab.test",)
#: A lab-CA certificate that deliberately does not name the story's hosts (wss-name-mismatch).
WRONG_NAMES: tuple[str, ...] = ("wrong.lab.test",)
_PLACEHOLDER_BASE = 20000


@dataclass(frozen=True)
class Certificate:
    """What a TLS listener presents: the names it covers and whether the browser trusts its CA."""

    kind: str  # "lab" | "rogue" | "wrong-name" | "own" | "wildcard"
    names: tuple[str, ...]
    trusted: bool

    def describe(self, host: str) -> str:
        return {"lab": "lab cert", "own": f"cert for {host} only",
                "rogue": "cert from a rogue CA",
                "wrong-name": "cert for " + ", ".join(self.names),
                "wildcard": "cert for *.lab.test only"}[self.kind]


def certificate(svc: Service) -> Certificate | None:
    """The certificate ``svc`` presents, or None when it speaks no TLS. ``own``: one for its
    host only, as a cloud load balancer's managed certificate is."""
    if not svc.tls:
        return None
    names = {"lab": LAB_NAMES, "rogue": LAB_NAMES, "wrong-name": WRONG_NAMES,
             "own": (svc.host.lower(),), "wildcard": WILDCARD_NAMES}[svc.cert]
    return Certificate(svc.cert, names, trusted=svc.cert != "rogue")


def _verifies(cert: Certificate, host: str) -> bool:
    return tls_check(host, cert.names, cert.trusted).ok


@dataclass(frozen=True)
class Listener:
    """One service at its port, addressed the way a browser writes it (host in lower case)."""

    name: str
    kind: str
    host: str
    port: int
    tls: bool

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def origin(self) -> str:
        """The serialized origin (HTML #ascii-serialisation-of-an-origin): what a page served
        here sends as ``Origin``, and what an allow-list entry naming this service means."""
        return str(Origin(self.scheme, self.host, self.port))

    def url(self, path: str = "") -> str:
        return self.origin + path

    @property
    def service_scheme(self) -> str:
        """The scheme a participant is shown: ws/wss for a chat server, else http/https."""
        return ("wss" if self.tls else "ws") if self.kind == "chat" else self.scheme

    @property
    def service_url(self) -> str:
        """The URL a participant is shown: a chat server's socket, else the origin."""
        return self.ws_url() if self.kind == "chat" else self.origin

    def ws_url(self, path: str = "/ws", scheme: str | None = None) -> str:
        """``ws://`` or ``wss://`` for ``path`` here; ``scheme`` forces one (the lessons where
        the page gets it wrong)."""
        scheme = scheme or ("wss" if self.tls else "ws")
        return str(Origin(scheme, self.host, self.port)) + path


@dataclass(frozen=True)
class Answer:
    """Who answers a request, and with what status when it is not the service's own page/API."""

    service: str | None  # the service that finally handles it (None: a proxy answered itself)
    status: int | None  # None: the service answers as usual; else the status it gets
    via: tuple[str, ...] = ()  # proxies passed through, outermost first
    why: str = ""


@dataclass(frozen=True)
class Deployment:
    topology: Topology
    listeners: Mapping[str, Listener]
    #: True when some ports are placeholders (nothing started yet).
    planned: bool = False

    @classmethod
    def plan(cls, topology: Topology, ports: Mapping[str, int] | None = None) -> Deployment:
        """The deployment of ``topology`` at ``ports`` (service -> bound port). Services without a
        port there keep their fixed port, or get a placeholder."""
        ports = dict(ports or {})
        fixed = {s.port for s in topology.services if s.port} | set(ports.values())
        spare = (p for p in range(_PLACEHOLDER_BASE, 65536) if p not in fixed)
        planned = False
        out: dict[str, Listener] = {}
        for s in topology.services:
            port = ports.get(s.name) or s.port
            if not port:
                port, planned = next(spare), True
            out[s.name] = Listener(s.name, s.kind, s.host.lower(), port, s.tls)
        return cls(topology, out, planned)

    # -- addresses -----------------------------------------------------------------------------
    def listener(self, name: str) -> Listener:
        self.topology.service(name)  # the readable error for an unknown name
        return self.listeners[name]

    def origin(self, name: str) -> str:
        return self.listener(name).origin

    def service_url(self, name: str) -> str:
        """The URL a participant is shown for ``name``: a chat server's socket, else its origin."""
        return self.listener(name).service_url

    def allowlist(self, entries: Sequence[str]) -> tuple[str, ...]:
        """Allow-list entries as the origins a browser sends: a service name means that
        service's origin; an origin is normalised (lower-case host, default port dropped), as
        browsers serialize it — so ``https://APP.lab.test:8443`` matches what Chromium sends."""
        return tuple(e if e == OPAQUE else str(parse_origin(e)) if "://" in e else self.origin(e)
                     for e in entries)

    def chat_origins(self, name: str) -> tuple[str, ...] | None:
        """A chat or socket.io server's Origin allow-list (None: no check / library default)."""
        svc = self.topology.service(name)
        return None if svc.origins is None else self.allowlist(svc.origins)

    def cors_origins(self, name: str) -> tuple[str, ...]:
        return self.allowlist(self.topology.service(name).cors.origins)

    def certificate(self, name: str) -> Certificate | None:
        return certificate(self.topology.service(name))

    # -- proxies -------------------------------------------------------------------------------
    def upstreams(self, name: str) -> dict[str, str]:
        """A proxy's upstream origins (service name -> http(s) origin)."""
        svc = self.topology.service(name)
        return {r.upstream: self.origin(r.upstream) for r in svc.routes}

    def proxy_hosts(self, name: str) -> tuple[str, ...]:
        return (self.listener(name).host,)

    def answer(self, name: str, path: str, *, host: str | None = None,
               upgrade: bool = False) -> Answer:
        """Who answers ``path`` sent to service ``name`` (with ``Host`` ``host``), through any
        proxies. A proxy answers 421 for a Host it does not serve and 404 without a route; a
        route not marked ``websocket`` forwards a handshake without its Upgrade header (hop by
        hop, RFC 9110 §7.6.1), so the chat server behind it answers 426."""
        via: list[str] = []
        svc = self.topology.service(name)
        host = (host or self.listener(name).host).lower()
        while svc.kind in PROXY_KINDS:
            via.append(svc.name)
            if host != self.listener(svc.name).host:
                return Answer(None, 421, tuple(via), f"{svc.name} serves "
                              f"{self.listener(svc.name).host} only, not {host}")
            route = match(svc.routes, path)
            if route is None:
                return Answer(None, 404, tuple(via), f"{svc.name} has no route for {path}")
            if upgrade and not route.websocket:
                upgrade = False
                nxt = self.topology.service(route.upstream)
                if nxt.kind == "chat":
                    return Answer(nxt.name, 426, tuple(via), f"{svc.name}'s route "
                                  f"{route.prefix} does not relay WebSocket upgrades")
            svc = self.topology.service(route.upstream)
            cert = certificate(svc)
            if cert is not None and not _verifies(cert, self.listener(svc.name).host):
                # Both labkit's proxy and nginx verify an https upstream against the lab CA.
                return Answer(None, 502, tuple(via), f"{via[-1]} does not trust {svc.name}'s "
                              f"certificate ({cert.describe(svc.host)})")
        return Answer(svc.name, None, tuple(via))

    def page_service(self, visited: str) -> str | None:
        """The service whose page a browser gets at ``visited``'s ``/`` (through a redirect and
        proxies), or None when nothing there serves a page."""
        svc = self.topology.service(visited)
        if svc.kind == "redirect":
            assert svc.target is not None
            a = self.answer(svc.target, "/", host=svc.host)
        else:
            a = self.answer(visited, "/")
        if a.status is None and a.service is not None \
                and self.topology.service(a.service).kind in PAGE_KINDS:
            return a.service
        return None

    def page_origin(self, visited: str) -> str:
        """The origin the page ends up at: a redirect listener sends the browser to the https
        origin of its target, under the host name it was asked for."""
        svc = self.topology.service(visited)
        if svc.kind == "redirect":
            assert svc.target is not None
            return str(Origin("https", self.listener(visited).host,
                              self.listener(svc.target).port))
        return self.origin(visited)

    def landing(self, visited: str) -> str:
        """The service the browser's page finally talks to at :meth:`page_origin`."""
        svc = self.topology.service(visited)
        return svc.target if svc.kind == "redirect" and svc.target else visited

    # -- the page --------------------------------------------------------------------------------
    def page(self, page_service: str) -> Page:
        return self.topology.page_for(page_service)

    def page_config(self, page_service: str) -> dict[str, Any]:
        """What the page served by ``page_service`` is told: where the API and chat are."""
        p = self.page(page_service)
        api: str | None = self.origin(p.api) if p.api else None
        ws: str | None = None
        if p.same_origin:
            # Behind a reverse proxy: relative URLs, resolved by the page against its own origin.
            api, ws = "", p.ws_path
        elif p.ws:
            ws = self.listener(p.ws).ws_url(p.ws_path, p.ws_scheme)
        title = self.topology.title or f"labkit messenger — {self.topology.name}"
        if self.topology.service(page_service).kind == "evil":
            title = f"{self.listener(page_service).host} — a harmless-looking page"
        return {
            "title": title, "api": api, "ws": ws, "steps": list(p.steps),
            "credentials": p.credentials, "sio": self.origin(p.sio) if p.sio else None,
            "ws_scheme": p.ws_scheme, "user": p.user, "room": p.room,
            "message": f"hello from {p.user}", "sandboxed": p.sandboxed,
            "sio_transports": ["websocket"] if p.sio_websocket_only else None,
            "script": p.script,
        }

    def page_headers(self, page_service: str) -> dict[str, str]:
        """What the server of a page sends with it besides the page: HSTS (RFC 6797 §6.1, only
        honoured over TLS) and CSP's upgrade-insecure-requests (Upgrade Insecure Requests §3)."""
        svc = self.topology.service(page_service)
        out = {}
        if svc.hsts:
            out["Strict-Transport-Security"] = "max-age=600"
        if svc.upgrade_insecure:
            out["Content-Security-Policy"] = "upgrade-insecure-requests"
        return out

    def socket_url(self, page_service: str, page_origin: str) -> str | None:
        """The socket URL the page opens, absolute (a relative ``/ws`` resolves against the page
        origin, with wss on an https page unless the page forces a scheme)."""
        p = self.page(page_service)
        if p.same_origin:
            scheme = p.ws_scheme or ("wss" if page_origin.startswith("https:") else "ws")
            return scheme + page_origin[page_origin.index(":"):] + p.ws_path
        if p.ws:
            return self.listener(p.ws).ws_url(p.ws_path, p.ws_scheme)
        return None
