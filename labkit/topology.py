"""A deployment described as data: which servers, on which names and ports, with or without TLS,
and what the chat page does. A :class:`~labkit.lab.Lab` starts one; scenarios declare them.

Validation here is pure (no sockets), so bad input fails before anything is started.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .apps.cors import CorsPolicy
from .errors import TopologyError
from .policy import check_lab_host, parse_origin
from .routing import Route

KINDS = ("web", "api", "chat", "evil", "socketio", "proxy", "nginx", "redirect")
CERTS = ("lab", "rogue", "wrong-name", "own")
#: The page's API steps: the request each makes — method, the headers its script sets, path.
API_STEPS: dict[str, tuple[str, dict[str, str], str]] = {
    "hello": ("GET", {}, "/api/hello"),
    "login": ("POST", {"Content-Type": "application/json"}, "/api/login"),
    "rooms": ("GET", {}, "/api/rooms"),
    "post-text": ("POST", {"Content-Type": "text/plain"}, "/api/counter"),
}
#: The page's steps that open or use the chat WebSocket.
SOCKET_STEPS = ("socket", "chat", "steal")
STEPS = (*API_STEPS, *SOCKET_STEPS, "sio")
CREDENTIALS = ("omit", "same-origin", "include")
PAGE_KINDS = ("web", "evil")


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
    ws_scheme: str | None = None
    ws_path: str = "/ws"
    steps: tuple[str, ...] = ("hello", "login", "rooms", "socket", "chat")
    credentials: str = "omit"
    user: str = "alice"
    room: str = "general"


@dataclass(frozen=True)
class Service:
    """One listener of the deployment.

    ``port=0`` picks a free port when the lab starts; a fixed port is for instructors who want
    stable URLs on the projector. ``cert`` chooses which lab certificate a TLS port presents.
    ``origins`` is the chat server's Origin allow-list (None: accept any origin, the hijackable
    default of most WebSocket servers). Entries are origins or names of services in the topology.
    """

    name: str
    kind: str
    host: str = "localhost"
    port: int = 0
    tls: bool = True
    cert: str = "lab"
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

    def notes(self) -> list[str]:
        """What matters about this service for the lessons, in a few words each."""
        out = []
        if self.tls:
            out.append("TLS, " + {"lab": "lab cert", "own": f"cert for {self.host} only",
                                  "rogue": "cert from a rogue CA",
                                  "wrong-name": "cert for wrong.lab.test"}[self.cert])
        else:
            out.append("plain, no TLS")
        if self.kind == "api":
            out.append("CORS: " + self.cors.describe())
        if self.kind in ("chat", "socketio"):
            out.append("Origin check: " + ("none" if self.origins is None
                                           else ", ".join(self.origins)))
        if self.kind == "redirect":
            out.append(f"answers 308 → https ({self.target})")
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
        """Raise a learner-readable error for anything that cannot be started."""
        names = [s.name for s in self.services]
        if not names:
            raise TopologyError(f"topology '{self.name}' has no services", "Add at least one.")
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise TopologyError(f"service names must be unique; repeated: {sorted(dupes)}")
        ports = [s.port for s in self.services if s.port]
        if len(ports) != len(set(ports)):
            raise TopologyError(
                f"two services ask for the same port in topology '{self.name}'",
                "Give each service its own port, or 0 for a free one.",
            )
        for s in self.services:
            if s.kind not in KINDS:
                raise TopologyError(f"service '{s.name}' has unknown kind '{s.kind}'",
                                    f"Kinds are: {', '.join(KINDS)}.")
            check_lab_host(s.host, s.name)
            if not (0 <= s.port <= 65535):
                raise TopologyError(f"port {s.port} of service '{s.name}' is out of range",
                                    "Use 1024-65535, or 0 for a free port.")
            if 0 < s.port < 1024:
                raise TopologyError(
                    f"port {s.port} of service '{s.name}' is privileged",
                    "labkit runs unprivileged: use a port from 1024 to 65535, or 0.",
                )
            if s.cert not in CERTS:
                raise TopologyError(f"service '{s.name}' asks for certificate '{s.cert}'",
                                    f"Certificates are: {', '.join(CERTS)}.")
            for entry in s.cors.origins + (s.origins or ()):
                self._check_origin_entry(entry, names)
            if s.kind in ("proxy", "nginx"):
                if not s.routes:
                    raise TopologyError(f"proxy '{s.name}' has no routes",
                                        "Give it routes, e.g. labkit.routing.STORY_ROUTES.")
                for r in s.routes:
                    if r.upstream not in names or r.upstream == s.name:
                        raise TopologyError(
                            f"proxy '{s.name}' routes {r.prefix} to '{r.upstream}', which is not "
                            f"another service of the topology",
                            f"Services are: {', '.join(names)}.")
            if s.kind == "redirect":
                if s.target not in names or s.tls:
                    raise TopologyError(
                        f"redirect listener '{s.name}' needs tls=False and a target service",
                        f"Set target= to the TLS service it redirects to ({', '.join(names)}).")
        for s in self.services:
            if s.kind in PAGE_KINDS:
                self._check_page(self.page_for(s.name), names)
        return self

    def page_for(self, name: str) -> Page:
        """What the page served by service ``name`` does."""
        return self.service(name).page or self.page

    @staticmethod
    def _check_page(p: Page, names: list[str]) -> None:
        for ref in (p.api, p.ws, p.sio):
            if ref is not None and ref not in names:
                raise TopologyError(f"the page calls service '{ref}', which is not in the topology",
                                    f"Services are: {', '.join(names)}.")
        bad = [s for s in p.steps if s not in STEPS]
        if bad:
            raise TopologyError(f"unknown page steps {bad}", f"Steps are: {', '.join(STEPS)}.")
        if p.credentials not in CREDENTIALS:
            raise TopologyError(f"credentials mode '{p.credentials}' is not a fetch mode",
                                f"Use one of: {', '.join(CREDENTIALS)}.")
        if p.ws_scheme not in (None, "ws", "wss"):
            raise TopologyError(f"ws_scheme '{p.ws_scheme}' must be 'ws' or 'wss'")

    @staticmethod
    def _check_origin_entry(entry: str, names: list[str]) -> None:
        if "://" in entry:
            parse_origin(entry)
        elif entry not in names:
            raise TopologyError(
                f"allow-list entry '{entry}' is neither an origin nor a service name",
                "Write an origin like 'https://localhost:8443', or the name of a service.",
            )


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
