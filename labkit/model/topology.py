"""A deployment described as data: which servers, on which names and ports, with or without TLS,
and what the chat page does. A :class:`~labkit.lab.Lab` starts one; scenarios declare them.

Validation here is pure (no sockets), so bad input fails before anything is started.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from typing import Literal, get_args

from ..errors import TopologyError
from .cors import CorsPolicy
from .policy import OPAQUE, Credentials, check_lab_host, parse_origin
from .routing import Route

Kind = Literal["web", "api", "chat", "evil", "socketio", "proxy", "nginx", "redirect"]
KINDS: tuple[Kind, ...] = get_args(Kind)
Cert = Literal["lab", "rogue", "wrong-name", "own", "wildcard"]
WsScheme = Literal["ws", "wss"]
CERTS: tuple[Cert, ...] = get_args(Cert)
#: The page's API steps: the request each makes — method, the headers its script sets, path.
API_STEPS: dict[str, tuple[str, dict[str, str], str]] = {
    "hello": ("GET", {}, "/api/hello"),
    "login": ("POST", {"Content-Type": "application/json"}, "/api/login"),
    "rooms": ("GET", {}, "/api/rooms"),
    "post-text": ("POST", {"Content-Type": "text/plain"}, "/api/counter"),
    # Who the API takes the caller for: the proof of what a cookie-bearing read got.
    "whoami": ("GET", {}, "/api/whoami"),
    # A token in a header, as single-page apps send one: even a GET is then preflighted.
    "bearer": ("GET", {"Authorization": "Bearer lab-token"}, "/api/hello"),
}
#: The page's steps that open or use the chat WebSocket.
SOCKET_STEPS = ("socket", "chat", "steal")
#: The paths labkit's chat server accepts handshakes on (apps/chat.py).
CHAT_PATHS = ("/ws", "/")
#: ``script``: the page runs ``Page.script``, JavaScript you wrote (the attacker's page).
STEPS = (*API_STEPS, *SOCKET_STEPS, "sio", "script")
CREDENTIALS = ("omit", "same-origin", "include")
PAGE_KINDS = ("web", "evil")
PROXY_KINDS = ("proxy", "nginx")


@dataclass(frozen=True)
class Page:
    """What the chat page does on load.

    ``api``/``ws`` name the services the page calls (None: that part is left out).
    ``sio`` names a socket.io server for the ``sio`` step. ``ws_scheme`` forces ``ws``/``wss``
    whatever the chat server speaks (for the lessons where the
    page gets it wrong); ``credentials`` is the fetch credentials mode for API calls.
    """

    api: str | None = "api"
    ws: str | None = "chat"
    sio: str | None = None
    #: Call the API and chat on the page's own origin (behind a reverse proxy): relative URLs.
    same_origin: bool = False
    ws_scheme: WsScheme | None = None
    ws_path: str = "/ws"
    steps: tuple[str, ...] = ("hello", "login", "rooms", "socket", "chat")
    credentials: Credentials = "omit"
    user: str = "alice"
    room: str = "general"
    #: Run the steps inside ``<iframe sandbox="allow-scripts">``: the frame's origin is opaque,
    #: so its requests say ``Origin: null`` (HTML #sandboxing).
    sandboxed: bool = False
    #: socket.io's client with ``transports: ['websocket']``: no long-polling (so no CORS), the
    #: handshake straight away — which the server's own Origin check still judges.
    sio_websocket_only: bool = False
    #: For the ``script`` step: the body of an async function given ``cfg`` (the page's config:
    #: ``cfg.ws``, ``cfg.api``, ``cfg.room`` …), returning ``{state, detail}`` or any value.
    script: str | None = None


@dataclass(frozen=True)
class Service:
    """One listener of the deployment.

    ``port=0`` picks a free port when the lab starts; a fixed port is for instructors who want
    stable URLs on the projector. ``cert`` chooses which lab certificate a TLS port presents.
    ``origins`` is the chat server's Origin allow-list (None: accept any origin, the hijackable
    default of most WebSocket servers). Entries are origins or names of services in the topology.
    """

    name: str
    kind: Kind
    host: str = "localhost"
    port: int = 0
    tls: bool = True
    cert: Cert = "lab"
    cors: CorsPolicy = field(default_factory=CorsPolicy)
    origins: tuple[str, ...] | None = None
    #: For page servers (web, evil): what this page does; None means the topology's page.
    page: Page | None = None
    #: For proxies (proxy, nginx): path routes to services of the topology.
    routes: tuple[Route, ...] = ()
    #: For a redirect listener: the TLS service it sends browsers to.
    target: str | None = None
    #: For a load balancer: drop a WebSocket silent for this long (seconds); None: never.
    idle_timeout: float | None = None
    #: For proxies: tell the backends the browser's scheme (X-Forwarded-Proto). False: the
    #: misconfiguration where a backend believes every request came over plain http.
    forwarded_proto: bool = True
    #: For the API: answer 308 to https for any request it believes came over plain http (its
    #: own listener's scheme, or X-Forwarded-Proto), as frameworks' "force HTTPS" settings do.
    https_only: bool = False
    #: For page servers: send ``Strict-Transport-Security`` (RFC 6797) with the page.
    hsts: bool = False
    #: For page servers: send ``Content-Security-Policy: upgrade-insecure-requests``.
    upgrade_insecure: bool = False

    def notes(self) -> list[str]:
        """What matters about this service for the lessons, in a few words each."""
        out = []
        if self.tls:
            out.append("TLS, " + {"lab": "lab cert", "own": f"cert for {self.host} only",
                                  "rogue": "cert from a rogue CA",
                                  "wrong-name": "cert for wrong.lab.test",
                                  "wildcard": "cert for *.lab.test"}[self.cert])
        else:
            out.append("plain, no TLS")
        if self.kind == "api":
            out.append("CORS: " + self.cors.describe())
        if self.kind == "chat":
            out.append("Origin check: " + ("none" if self.origins is None
                                           else ", ".join(self.origins)))
        if self.kind == "socketio":  # python-socketio's default is not "none"
            out.append("Origin check: " + ("same origin only (python-socketio default)"
                                           if self.origins is None else ", ".join(self.origins)))
        if self.kind == "redirect":
            out.append(f"answers 308 → https ({self.target})")
        if self.https_only:
            out.append("redirects http → https")
        if self.kind in PROXY_KINDS and not self.forwarded_proto:
            out.append("no X-Forwarded-Proto")
        if self.hsts:
            out.append("HSTS")
        if self.upgrade_insecure:
            out.append("CSP upgrade-insecure-requests")
        if self.idle_timeout:
            out.append(f"idle timeout {self.idle_timeout:g} s")
        return out

    @property
    def scheme(self) -> str:
        if self.kind in ("chat",):
            return "wss" if self.tls else "ws"
        return "https" if self.tls else "http"


@dataclass(frozen=True)
class Topology:
    name: str
    services: tuple[Service, ...]
    page: Page = field(default_factory=Page)
    title: str = ""

    def service(self, name: str) -> Service:
        for s in self.services:
            if s.name == name:
                return s
        raise TopologyError(
            f"topology '{self.name}' has no service named '{name}'",
            f"Its services are: {', '.join(s.name for s in self.services)}.",
        )

    def with_ports(self, ports: dict[str, int]) -> Topology:
        """The same topology with fixed ports for some services (instructor mode)."""
        for name in ports:
            self.service(name)
        return replace(
            self, services=tuple(replace(s, port=ports.get(s.name, s.port)) for s in self.services)
        )

    def validate(self) -> Topology:
        """Raise a learner-readable error for anything that cannot be started or cannot work:
        what is wrong, with which services, and what to write instead."""
        if not isinstance(self.services, (tuple, list)) or not all(
                isinstance(s, Service) for s in self.services):
            raise TopologyError(f"topology '{self.name}' needs services=(Service(...), ...)",
                                "Pass a tuple of labkit.Service objects.")
        names = [s.name for s in self.services]
        if not names:
            raise TopologyError(f"topology '{self.name}' has no services", "Add at least one.")
        for s in self.services:
            _check_types(s)
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise TopologyError(f"service names must be unique; repeated: {sorted(dupes)}")
        by_port: dict[int, list[str]] = {}
        for s in self.services:
            if s.port:
                by_port.setdefault(s.port, []).append(s.name)
        for port, owners in by_port.items():
            if len(owners) > 1:
                raise TopologyError(
                    f"services {' and '.join(repr(o) for o in owners)} both ask for port {port} "
                    f"in topology '{self.name}'",
                    "Give each service its own port, or 0 for a free one.")
        for s in self.services:
            self._check_service(s, names)
        for s in self.services:
            if s.kind in PAGE_KINDS:
                self._check_page(s.name, self.page_for(s.name))
        return self

    def _check_service(self, s: Service, names: list[str]) -> None:
        if s.kind not in KINDS:
            raise TopologyError(f"service '{s.name}' has unknown kind '{s.kind}'",
                                f"Kinds are: {', '.join(KINDS)}.")
        if s.host.endswith("."):
            raise TopologyError(
                f"host '{s.host}' of service '{s.name}' ends with a dot",
                f"Write host='{s.host.rstrip('.')}': a trailing dot makes another origin and no "
                "lab certificate names it.")
        check_lab_host(s.host, s.name)
        if not (0 <= s.port <= 65535):
            raise TopologyError(f"port {s.port} of service '{s.name}' is out of range",
                                "Use 1024-65535, or 0 for a free port.")
        if 0 < s.port < 1024:
            raise TopologyError(
                f"port {s.port} of service '{s.name}' is privileged",
                "labkit runs unprivileged: use a port from 1024 to 65535, or 0.")
        if s.cert not in CERTS:
            raise TopologyError(f"service '{s.name}' asks for certificate '{s.cert}'",
                                f"Certificates are: {', '.join(CERTS)}.")
        for entry in s.cors.origins:
            self._check_origin_entry(entry, names, s.name, cors=True)
        for entry in s.origins or ():
            self._check_origin_entry(entry, names, s.name, cors=False)
        if s.kind in PROXY_KINDS:
            if not s.routes:
                raise TopologyError(f"proxy '{s.name}' has no routes",
                                    "Give it routes, e.g. labkit.STORY_ROUTES.")
            for r in s.routes:
                if not _PREFIX.fullmatch(r.prefix):
                    raise TopologyError(
                        f"proxy '{s.name}' has the route prefix {r.prefix!r}",
                        "Write a path of letters, digits and - _ . ~ /, e.g. Route('/api', "
                        "'api'): it becomes an nginx location too.")
                if r.upstream not in names or r.upstream == s.name:
                    raise TopologyError(
                        f"proxy '{s.name}' routes {r.prefix} to '{r.upstream}', which is not "
                        f"another service of the topology",
                        f"Services are: {', '.join(names)}.")
                if self.service(r.upstream).kind == "redirect":
                    raise TopologyError(
                        f"proxy '{s.name}' routes {r.prefix} to the redirect listener "
                        f"'{r.upstream}'",
                        "A proxy forwards to servers: route to the service the redirect points "
                        "at.")
            if s.kind == "nginx":
                for r in s.routes:
                    up = self.service(r.upstream)
                    if up.tls and _is_ip(up.host):
                        raise TopologyError(
                            f"nginx '{s.name}' forwards to '{up.name}' over TLS at the IP "
                            f"address {up.host}",
                            "nginx verifies an upstream certificate by DNS name only: give "
                            f"'{up.name}' host='localhost' or a .lab.test name, or tls=False.")
            if s.kind == "nginx" and s.host == "::1":
                raise TopologyError(f"nginx service '{s.name}' on host ::1",
                                    "labkit runs nginx on 127.0.0.1: use host='localhost', "
                                    "'127.0.0.1' or a .lab.test name.")
        if s.kind == "redirect":
            if s.target not in names:
                raise TopologyError(
                    f"redirect listener '{s.name}' needs a target service",
                    f"Set target= to the TLS service it redirects to ({', '.join(names)}).")
            target = self.service(s.target)
            if target.kind == "nginx" and s.tls:
                raise TopologyError(
                    f"redirect listener '{s.name}' in front of nginx '{target.name}' has "
                    "tls=True", "nginx serves that redirect itself on a plain port: give "
                    f"'{s.name}' tls=False.")
            if target.kind == "nginx" and not target.tls:
                raise TopologyError(
                    f"redirect listener '{s.name}' sends browsers to https, but nginx "
                    f"'{target.name}' has tls=False",
                    "nginx serves the redirect itself, to its own https listener: give "
                    f"'{target.name}' tls=True, or drop the redirect listener.")
            if target.kind == "redirect":
                raise TopologyError(f"redirect listener '{s.name}' points at another redirect "
                                    f"listener '{s.target}'",
                                    "Point target= at the https service browsers should reach.")

    def check_visit(self, visit: str, before: tuple[str, ...] = ()) -> None:
        """A browser can only open pages: page servers, proxies and redirect listeners."""
        for name in (*before, visit):
            svc = self.service(name)
            if svc.kind not in (*PAGE_KINDS, *PROXY_KINDS, "redirect"):
                raise TopologyError(f"service '{name}' ({svc.kind}) serves no page",
                                    "Visit a page service such as 'web' or 'evil', a proxy, or "
                                    "a redirect listener.")

    def page_for(self, name: str) -> Page:
        """What the page served by service ``name`` does."""
        return self.service(name).page or self.page

    def _check_page(self, where: str, p: Page) -> None:
        _check_page_types(where, p)
        # A socket may be pointed at a redirect listener: the lesson that browsers do not follow
        # a redirect on a WebSocket handshake.
        wants = {"api": ("api", "proxy", "nginx"), "ws": ("chat", "proxy", "nginx", "redirect"),
                 "sio": ("socketio",)}
        for attr, kinds in wants.items():
            ref = getattr(p, attr)
            if ref is None:
                continue
            if ref not in [s.name for s in self.services]:
                raise TopologyError(
                    f"the page of '{where}' calls service '{ref}' ({attr}='{ref}'), which is not "
                    f"in the topology",
                    f"Services are: {', '.join(s.name for s in self.services)}.")
            kind = self.service(ref).kind
            if kind not in kinds and not p.same_origin:
                what = {"api": "fetches /api/… from", "ws": "opens its WebSocket to",
                        "sio": "connects socket.io to"}[attr]
                fit = [s.name for s in self.services if s.kind in kinds]
                raise TopologyError(
                    f"the page of '{where}' {what} '{ref}', a {kind} server that does not serve "
                    f"that", f"Set {attr}= to one of: {', '.join(fit) or 'none here: add a '}"
                    + ("" if fit else f"{kinds[0]} service") + ".")
        bad = [s for s in p.steps if s not in STEPS]
        if bad:
            raise TopologyError(f"unknown page steps {bad}", f"Steps are: {', '.join(STEPS)}.")
        if p.credentials not in CREDENTIALS:
            raise TopologyError(f"credentials mode '{p.credentials}' is not a fetch mode",
                                f"Use one of: {', '.join(CREDENTIALS)}.")
        if p.ws_scheme not in (None, "ws", "wss"):
            raise TopologyError(f"ws_scheme '{p.ws_scheme}' must be 'ws' or 'wss'",
                                "Or None: the scheme follows the chat server's TLS.")
        if p.ws_path.split("?", 1)[0] not in CHAT_PATHS:
            raise TopologyError(
                f"the page of '{where}' opens its socket at ws_path='{p.ws_path}', which the chat "
                f"server does not serve", f"The chat server serves {' and '.join(CHAT_PATHS)}.")
        api_steps = [s for s in p.steps if s in API_STEPS]
        if api_steps and p.api is None and not p.same_origin:
            raise TopologyError(f"the page of '{where}' has steps {api_steps} but no API",
                                "Set api= to the API service (or same_origin=True behind a "
                                "proxy), or drop those steps.")
        ws_steps = [s for s in p.steps if s in SOCKET_STEPS]
        if ws_steps and p.ws is None and not p.same_origin:
            raise TopologyError(f"the page of '{where}' has steps {ws_steps} but no chat",
                                "Set ws= to the chat service (or same_origin=True behind a "
                                "proxy), or drop those steps.")
        if "script" in p.steps and not (isinstance(p.script, str) and p.script.strip()):
            raise TopologyError(f"the page of '{where}' has the step 'script' but no script",
                                "Set script= to your JavaScript (a string), or drop the step.")
        if p.script is not None and (not isinstance(p.script, str) or len(p.script) > 8000):
            raise TopologyError(f"the script of the page of '{where}' is not text of at most "
                                "8000 characters", "Write script= as a string.")
        if "sio" in p.steps and p.sio is None:
            raise TopologyError(f"the page of '{where}' has the step 'sio' but no socket.io "
                                "server", "Set sio= to a socketio service, or drop the step.")
        if "chat" in p.steps and "socket" not in p.steps[:p.steps.index("chat")]:
            raise TopologyError(f"the page of '{where}' sends a chat message before opening the "
                                "socket", "Put 'socket' before 'chat' in steps.")

    def _check_origin_entry(self, entry: str, names: list[str], owner: str, cors: bool) -> None:
        where = (f"the CORS allow-list of '{owner}'" if cors
                 else f"the Origin allow-list of '{owner}'")
        if not isinstance(entry, str):
            raise TopologyError(f"{where} holds {entry!r}, not a string",
                                "Write origins like 'https://localhost:8443', or service names.")
        if entry.strip() == "*":
            raise TopologyError(
                f"'*' in {where} is not an origin",
                "For the API use CorsPolicy('wildcard') (ACAO: *, never with credentials); a "
                "chat server that accepts every Origin has origins=None — the hijackable default."
                if cors else
                "A chat server that accepts every Origin has origins=None — the hijackable "
                "default; list the page's origin instead.")
        if entry == OPAQUE:
            return  # "null": sandboxed frames and data: pages send it (a dangerous entry)
        if "://" in entry:
            parse_origin(entry)
        elif entry not in names:
            raise TopologyError(
                f"{where} holds '{entry}', which is neither an origin nor a service name",
                "Write an origin like 'https://localhost:8443', or the name of a service.")


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
_PREFIX = re.compile(r"/[A-Za-z0-9._~/-]{0,100}")


def _is_str_tuple(v: object) -> bool:
    return isinstance(v, (tuple, list)) and all(isinstance(x, str) for x in v)


def _check_types(s: Service) -> None:
    """Wrong types get a sentence with the fix, not a TypeError from deep inside labkit."""
    if not isinstance(s.name, str) or not _NAME.fullmatch(s.name):
        raise TopologyError(f"service name {s.name!r} is not a plain name",
                            "Use letters, digits, '-' or '_' (it names the service in URLs, "
                            "logs and the nginx config), e.g. 'web'.")
    if isinstance(s.port, bool) or not isinstance(s.port, int):
        raise TopologyError(f"port of service '{s.name}' is {s.port!r}, not a number",
                            f"Write port={_int_hint(s.port)} (an int), or 0 for a free port.")
    for attr in ("kind", "host", "cert"):
        if not isinstance(getattr(s, attr), str):
            raise TopologyError(f"{attr} of service '{s.name}' is {getattr(s, attr)!r}",
                                f"Write {attr}= as a string.")
    for flag in ("tls", "forwarded_proto", "https_only", "hsts", "upgrade_insecure"):
        if not isinstance(getattr(s, flag), bool):
            raise TopologyError(f"{flag} of service '{s.name}' is {getattr(s, flag)!r}",
                                f"Write {flag}=True or False.")
    if not isinstance(s.cors, CorsPolicy):
        raise TopologyError(f"cors of service '{s.name}' is {s.cors!r}, not a CorsPolicy",
                            "Write cors=labkit.CorsPolicy('allowlist', ('web',)) or similar.")
    if isinstance(s.cors.origins, str) or not _is_str_tuple(s.cors.origins):
        raise TopologyError(
            f"the CORS origins of service '{s.name}' are {s.cors.origins!r}, not a tuple",
            f"Write a tuple: CorsPolicy('{s.cors.mode}', ({s.cors.origins!r},)) — note the "
            "comma.")
    if not isinstance(s.cors.raw, tuple) or not all(
            isinstance(p, tuple) and len(p) == 2 and _is_str_tuple(p) for p in s.cors.raw):
        raise TopologyError(f"raw CORS headers of service '{s.name}' must be (name, value) pairs",
                            "e.g. raw=(('Access-Control-Allow-Origin', 'https://localhost:8443'),)")
    for attr in ("methods", "headers"):
        if isinstance(getattr(s.cors, attr), str) or not _is_str_tuple(getattr(s.cors, attr)):
            raise TopologyError(f"CorsPolicy {attr} of service '{s.name}' must be a tuple of "
                                "strings", f"e.g. {attr}=('GET', 'POST')." if attr == "methods"
                                else f"e.g. {attr}=('content-type',).")
    if s.origins is not None and (isinstance(s.origins, str) or not _is_str_tuple(s.origins)):
        raise TopologyError(
            f"origins of service '{s.name}' is {s.origins!r}, not a tuple",
            f"Write origins=({s.origins!r},) — a tuple of origins or service names; None "
            "accepts any Origin.")
    if not isinstance(s.routes, (tuple, list)) or not all(isinstance(r, Route)
                                                         for r in s.routes):
        raise TopologyError(f"routes of service '{s.name}' must be a tuple of Route objects",
                            "e.g. routes=(labkit.Route('/api', 'api'), labkit.Route('/', 'web')).")
    if s.page is not None and not isinstance(s.page, Page):
        raise TopologyError(f"page of service '{s.name}' is {s.page!r}, not a Page",
                            "Write page=labkit.Page(...).")
    if s.idle_timeout is not None and (isinstance(s.idle_timeout, bool)
                                       or not isinstance(s.idle_timeout, (int, float))
                                       or s.idle_timeout < 1):
        # Below a second the load balancer could cut the page's socket between two of its
        # steps, and whether it did would depend on the machine's speed, not on a rule.
        raise TopologyError(f"idle_timeout of service '{s.name}' is {s.idle_timeout!r}",
                            "Write a number of seconds of at least 1, e.g. idle_timeout=60, "
                            "or None for no idle timeout.")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _int_hint(v: object) -> str:
    try:
        return str(int(str(v)))
    except ValueError:
        return "8443"


def _check_page_types(where: str, p: Page) -> None:
    if isinstance(p.steps, str) or not _is_str_tuple(p.steps):
        raise TopologyError(f"steps of the page of '{where}' is {p.steps!r}, not a tuple",
                            f"Write steps=({p.steps!r},) — note the comma — or several, e.g. "
                            "steps=('hello', 'socket').")
    for attr in ("api", "ws", "sio", "ws_scheme"):
        v = getattr(p, attr)
        if v is not None and not isinstance(v, str):
            raise TopologyError(f"{attr} of the page of '{where}' is {v!r}",
                                f"Write {attr}= as a service name (a string) or None.")
    if not isinstance(p.ws_path, str) or not p.ws_path.startswith("/"):
        raise TopologyError(f"ws_path of the page of '{where}' is {p.ws_path!r}",
                            "Write a path starting with '/', e.g. ws_path='/ws'.")
    for flag in ("same_origin", "sandboxed", "sio_websocket_only"):
        if not isinstance(getattr(p, flag), bool):
            raise TopologyError(f"{flag} of the page of '{where}' is {getattr(p, flag)!r}",
                                f"Write {flag}=True or False.")
    if not isinstance(p.user, str) or not p.user.strip() or len(p.user) > 32:
        raise TopologyError(f"user of the page of '{where}' is {p.user!r}",
                            "Write a user name of 1-32 characters, e.g. user='alice'.")
    if not isinstance(p.room, str) or not p.room:
        raise TopologyError(f"room of the page of '{where}' is {p.room!r}",
                            "Write a room name, e.g. room='general'.")


def messenger(
    *,
    tls: bool = True,
    host: str = "localhost",
    cors: CorsPolicy | None = None,
    chat_origins: tuple[str, ...] | None = None,
    name: str = "messenger",
    page: Page | None = None,
) -> Topology:
    """The story's deployment: web, api and chat on one host, three ports.

    By default the API allow-lists the page's origin, so the page works: the lab's starting point
    is a deployment that works before the lessons break it.
    """
    return Topology(
        name=name,
        title="the messenger: web, api and chat on three ports",
        services=(
            Service("web", "web", host=host, tls=tls),
            Service("api", "api", host=host, tls=tls,
                    cors=cors if cors is not None else CorsPolicy("allowlist", ("web",))),
            Service("chat", "chat", host=host, tls=tls, origins=chat_origins),
        ),
        page=page or Page(),
    )
