"""Hypothesis strategies for whole lab configurations: a topology, the page the browser visits and
the pages visited first. Used by tests/test_explain_browser.py and bench/explain_vs_browser.py to
check that ``labkit.explain`` predicts what the real Chromium does on configurations nobody listed.

Most draws have one of the story's plausible shapes (so most are accepted by the validator):

- ``trio``     web, api, chat (sometimes socket.io, an HTTP->HTTPS redirect, a redirect listener
               the page's socket is pointed at, HSTS or CSP upgrade-insecure-requests on the
               page, an API that forces https) on one host family;
- ``hijack``   the victim's web page, api and chat, and an attacker's ``evil`` page, visited after
               the victim logged in (``before=("web",)``), same-site (``evil.lab.test``) or
               cross-site (``evil-lab.test``, localhost): stealing the chat socket, or reading
               ``/api/whoami`` with credentials, sometimes from a sandboxed frame (Origin null)
               against a reflecting or ``null``-allowing API;
- ``proxied``  plain backends behind one TLS origin (labkit's proxy or nginx), routes sometimes
               broken, often with a redirect listener in front; sometimes an API that forces
               https behind a proxy that does (or does not) send X-Forwarded-Proto;
- ``lb``       the load-balancer shape: one proxy per backend, each with its own certificate;
- ``sio``      a socket.io server, polling first;
- ``wild``     any mix the validator accepts: proxies with drawn routes, pages calling them
               directly, redirects to any TLS service, several pages visited first.

Every knob of the public API is drawn somewhere: host families (localhost, 127.0.0.1, ::1,
``*.lab.test``, upper-cased names, the other site ``evil-lab.test``), fixed ports, TLS and
certificates (lab, rogue, wrong-name, own, ``wildcard`` = ``*.lab.test`` only, also on two-label
names such as ``chat.ws.lab.test``), CORS policies (mode ``none``/``allowlist``/``wildcard``/
``reflect``, origins by service name, explicit or ``"null"``, credentials, preflight, methods,
headers, max-age), chat and socket.io Origin allow-lists (``"null"`` too), the page's calls,
scheme, path, steps (all of ``topology.STEPS``: ``whoami`` and ``bearer`` included), credentials
mode, user and ``sandboxed``, per-service or topology-wide pages, the page server's ``hsts`` and
``upgrade_insecure``, the API's ``https_only``, proxy routes, idle timeouts and
``forwarded_proto``, redirect listeners with and without TLS (also as a page's ``ws=`` target).
Pure: no sockets, no browser.
"""

from __future__ import annotations

import dataclasses
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import reject
from hypothesis import strategies as st

from labkit import CorsPolicy, LabError, Page, Route, Service, Topology
from labkit.model import topology as _topology
from labkit.model.routing import STORY_ROUTES

#: The topology name of every drawn configuration (a Lab stops an older lab of the same name).
NAME = "explain-prop"
#: The page steps, in the order the page may run them (topology.STEPS).
STEPS: tuple[str, ...] = tuple(s for s in _topology.STEPS if s != "script")  # unexplainable
API_STEPS: tuple[str, ...] = tuple(_topology.API_STEPS)
STORY_STEPS = ("hello", "login", "rooms", "socket", "chat")
PAGE_KINDS = ("web", "evil", "proxy", "nginx")

#: Counters of what the strategy drew: ``accepted``, ``rejected`` and ``rejected: <why>``,
#: ``crashed: <why>`` (the validator raised something other than a LabError).
STATS: Counter[str] = Counter()
#: (config key, traceback) for every validator crash: findings, not rejections.
CRASHES: list[tuple[str, str]] = []


@dataclass(frozen=True)
class Config:
    """One configuration to explain and observe."""

    topology: Topology
    visit: str
    before: tuple[str, ...] = ()
    #: Which family of shapes produced it (for grouping reports; not part of the key).
    shape: str = field(default="", compare=False)

    def key(self) -> str:
        """A stable text form: equal keys, equal configurations (defaults left out)."""
        before = ",".join(self.before) or "-"
        return f"visit={self.visit} before={before} {short(self.topology)}"

    def __str__(self) -> str:
        return f"[{self.shape}] {self.key()}"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        # Hypothesis prints a falsifying example with this: one line, not every default field.
        p.text(f"<Config {self}>")


# -- the stable text form ----------------------------------------------------------------------
def short(x: Any) -> str:
    """Dataclasses with only their non-default fields, tuples as (a,b), strings bare."""
    if isinstance(x, Topology):
        services = "; ".join(short(s) for s in x.services)
        return f"services=[{services}] page={short(x.page)}"
    if isinstance(x, Service):
        head = f"{x.name}:{x.kind}@{x.host}:{x.port}"
        rest = _fields(x, skip=("name", "kind", "host", "port"))
        return head + (f"({rest})" if rest else "")
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return f"{type(x).__name__}({_fields(x)})"
    if isinstance(x, tuple):
        return "(" + ",".join(short(v) for v in x) + ")"
    return str(x)


def _fields(x: Any, skip: tuple[str, ...] = ()) -> str:
    out = []
    for f in dataclasses.fields(x):
        if f.name in skip:
            continue
        v = getattr(x, f.name)
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        if v != default:
            out.append(f"{f.name}={short(v)}")
    return ",".join(out)


# -- small helpers -----------------------------------------------------------------------------
def chance(draw: Any, percent: int) -> bool:
    """True ``percent`` times in a hundred (the simplest draw, 0, is the common outcome)."""
    return bool(draw(st.integers(0, 99)) >= 100 - percent)


def weighted(draw: Any, *pairs: tuple[Any, int]) -> Any:
    """One of the values, each with its weight."""
    pool = [v for v, w in pairs for _ in range(w)]
    return draw(st.sampled_from(pool))


#: Names under lab.test for each role. ``chat.ws.lab.test`` is two labels deep: the lab
#: certificate's ``*.lab.test`` does not cover it.
_LAB = {
    "web": (("app.lab.test", 8), ("www.lab.test", 1)),
    "api": (("api.lab.test", 8), ("app.lab.test", 1), ("api.v1.lab.test", 1)),
    "chat": (("ws.lab.test", 7), ("chat.ws.lab.test", 2), ("chat.lab.test", 1)),
    "evil": (("evil.lab.test", 8), ("evil.app.lab.test", 1)),
    "sio": (("sio.lab.test", 3), ("ws.lab.test", 1)),
    "proxy": (("app.lab.test", 1),),
}


def _upper_first_label(host: str) -> str:
    label, dot, rest = host.partition(".")
    return label.upper() + dot + rest


def draw_host(draw: Any, role: str, family: str) -> str:
    if family == "mixed":
        family = weighted(draw, ("localhost", 3), ("lab", 4), ("127.0.0.1", 1))
    if family == "lab":
        host = weighted(draw, *_LAB.get(role, (("app.lab.test", 1),)))
        return _upper_first_label(host) if chance(draw, 8) else host
    if family == "localhost" and chance(draw, 3):
        return "LOCALHOST"
    return family


FAMILIES = (("localhost", 6), ("lab", 8), ("127.0.0.1", 2), ("mixed", 3), ("::1", 1))


def draw_cert(draw: Any, rare: int = 15) -> str:
    """Mostly the trusted lab certificate; ``rare`` percent of the time another one (the
    ``wildcard`` one covers ``*.lab.test`` only: one label deep, no localhost, no IPs)."""
    if not chance(draw, rare):
        return "lab"
    return weighted(draw, ("rogue", 2), ("wrong-name", 2), ("own", 2), ("wildcard", 3))


class Draft:
    """A service being drawn: its fields as keyword arguments, built once every port is known."""

    def __init__(self, name: str, kind: str, host: str, *, tls: bool = True, cert: str = "lab",
                 **kw: Any) -> None:
        self.name, self.kind, self.host = name, kind, host
        self.kw: dict[str, Any] = {"tls": tls, "cert": cert, **kw}
        self.port = 0

    @property
    def tls(self) -> bool:
        return bool(self.kw["tls"])

    def build(self) -> Service:
        return Service(self.name, self.kind, host=self.host, port=self.port, **self.kw)


#: Fixed ports: 30000-32767, under Linux's ephemeral range (32768-60999). A fixed port inside it
#: can be held by one of Chromium's client sockets in TIME_WAIT for a minute: PortInUseError.
FIXED_PORTS = (30000, 32767)


def draw_ports(draw: Any, drafts: list[Draft], percent: int = 12) -> None:
    """Mostly 0 (a free port); sometimes a fixed port, unique in the topology."""
    used: set[int] = set()
    for d in drafts:
        if chance(draw, percent):
            port = draw(st.integers(*FIXED_PORTS))
            if port not in used:
                d.port = port
                used.add(port)


def _origin_text(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}"


def draw_explicit_origin(draw: Any, drafts: list[Draft]) -> str:
    """An origin written out: mostly the exact origin of a fixed-port page service (matching, or
    not quite: other scheme, upper-cased host), else one that names no service."""
    fixed = [d for d in drafts if d.port and d.kind in PAGE_KINDS]
    fixed = fixed or [d for d in drafts if d.port]
    if fixed and chance(draw, 80):
        d = draw(st.sampled_from(fixed))
        scheme = "https" if d.tls else "http"
        how = weighted(draw, ("exact", 6), ("upper", 2), ("scheme", 1), ("lower", 1))
        host = d.host
        if how == "upper":
            host = _upper_first_label(d.host.lower())
        elif how == "lower":
            host = d.host.lower()
        elif how == "scheme":
            scheme = "http" if d.tls else "https"
        return _origin_text(scheme, host, d.port)
    host = weighted(draw, ("localhost", 3), ("app.lab.test", 2), ("APP.lab.test", 1),
                    ("127.0.0.1", 1), ("evil.lab.test", 1), ("evil-lab.test", 1))
    if chance(draw, 10):
        return f"https://{host}"  # default port: names no lab listener
    return _origin_text(weighted(draw, ("https", 4), ("http", 1)), host,
                        draw(st.integers(*FIXED_PORTS)))


def draw_allowlist(draw: Any, drafts: list[Draft], primary: str) -> tuple[str, ...]:
    """An allow-list: mostly the page's service name, sometimes several names, explicit origins,
    ``"null"`` (the opaque origin of sandboxed frames), a service that serves no page, or
    nothing."""
    pages = [d.name for d in drafts if d.kind in PAGE_KINDS]
    others = [d.name for d in drafts if d.kind not in PAGE_KINDS]
    how = weighted(draw, ("primary", 10), ("names", 3), ("explicit", 3), ("mixed", 2),
                   ("null", 2), ("other", 1), ("empty", 1))
    if how == "primary":
        return (primary,)
    if how == "null":
        return weighted(draw, (("null",), 1), (("null", primary), 2), ((primary, "null"), 1))
    if how == "names":
        return tuple(draw(st.lists(st.sampled_from(pages), min_size=1, max_size=3, unique=True)))
    if how == "explicit":
        n = draw(st.integers(1, 2))
        return tuple(dict.fromkeys(draw_explicit_origin(draw, drafts) for _ in range(n)))
    if how == "mixed":
        return (draw_explicit_origin(draw, drafts), primary)
    if how == "other" and others:
        return (draw(st.sampled_from(others)),)
    return ()


def draw_cors(draw: Any, drafts: list[Draft], primary: str, *, credentials: int = 30,
              mode: str | None = None) -> CorsPolicy:
    mode = mode or weighted(draw, ("allowlist", 6), ("none", 2), ("wildcard", 2), ("reflect", 2))
    if mode == "allowlist" or chance(draw, 10):  # an allow-list with another mode is ignored
        origins = draw_allowlist(draw, drafts, primary)
    else:
        origins = ()
    return CorsPolicy(
        mode=mode,
        origins=origins,
        credentials=chance(draw, credentials),
        preflight=not chance(draw, 15),
        # The page only sends GET and POST (CORS-safelisted methods): a list without POST is fine.
        methods=weighted(draw, (("GET", "POST"), 8), (("GET",), 1), (("GET", "POST", "PUT"), 1),
                         (("PUT",), 1)),
        headers=weighted(draw, (("content-type",), 10), ((), 2), (("Content-Type",), 1),
                         (("*",), 1), (("authorization",), 1), (("content-type", "x-token"), 1),
                         (("content-type", "authorization"), 2), (("Authorization",), 1)),
        max_age=weighted(draw, (0, 9), (600, 1)),
    )


def draw_origins(draw: Any, drafts: list[Draft], primary: str, none: int = 45
                 ) -> tuple[str, ...] | None:
    """A chat or socket.io server's Origin allow-list; None (no check) ``none`` percent."""
    return None if chance(draw, none) else draw_allowlist(draw, drafts, primary)


def draw_steps(draw: Any, api: str | None, ws: str | None, sio: str | None,
               role: str = "web") -> tuple[str, ...]:
    """Steps in the page's order, mostly ones that use what the page has."""
    pool = []
    if api is not None:
        pool += list(API_STEPS)
    if ws is not None:
        pool += ["socket", "chat"] + (["steal"] if role == "evil" else [])
    if api is not None and role == "evil":
        pool += ["whoami", "whoami"]  # the attacker's read: who does the API take it for
    if sio is not None:
        pool += ["sio"]
    if api is not None and ws is not None and sio is None and role == "web" and chance(draw, 35):
        return STORY_STEPS
    if not pool and chance(draw, 50):
        return ()  # a page that calls nothing: only its own certificate matters
    if not pool or chance(draw, 3):
        pool = list(STEPS)  # incoherent: a step whose part the page does not have
    chosen = set(draw(st.lists(st.sampled_from(pool), min_size=1, max_size=4, unique=True)))
    if "chat" in chosen and "socket" not in chosen and chance(draw, 85):
        chosen.add("socket")
    return tuple(s for s in STEPS if s in chosen)


def draw_page(draw: Any, *, api: str | None, ws: str | None, sio: str | None = None,
              role: str = "web", same_origin: bool = False, sandboxed: int | None = None
              ) -> Page:
    """A page; ``sandboxed`` percent of the time its steps run in a sandboxed frame (Origin
    null): mostly an attacker's trick (30% for evil pages, 5% otherwise by default)."""
    if sandboxed is None:
        sandboxed = 30 if role == "evil" else 5
    if api is not None and chance(draw, 8):
        api = None
    if ws is not None and chance(draw, 8):
        ws = None
    steps = draw_steps(draw, "/api" if same_origin else api, "/ws" if same_origin else ws, sio,
                       role)
    return Page(
        api=api,
        ws=ws,
        sio=sio,
        same_origin=same_origin,
        ws_scheme=weighted(draw, (None, 16), ("ws", 2), ("wss", 2)),
        ws_path=weighted(draw, ("/ws", 17), ("/", 2)),
        steps=steps,
        credentials=weighted(draw, ("omit", 5), ("include", 3), ("same-origin", 2)),
        user=weighted(draw, ("alice", 9), ("bob", 1)),
        room=weighted(draw, ("general", 19), ("random", 1)),
        sandboxed=chance(draw, sandboxed),
    )


def draw_page_headers(draw: Any, d: Draft, percent: int = 12) -> None:
    """Sometimes HSTS and/or CSP upgrade-insecure-requests on a page server (TLS or not: over
    plain http both are sent and HSTS ignored)."""
    if chance(draw, percent):
        d.kw["hsts"] = True
    if chance(draw, percent):
        d.kw["upgrade_insecure"] = True


def _tls_plan(draw: Any) -> str:
    return weighted(draw, ("all", 14), ("none", 2), ("each", 4))


def _tls(draw: Any, plan: str) -> bool:
    """TLS for one service under a plan: all, none, or each service on its own."""
    if plan == "each":
        return chance(draw, 80)
    return plan == "all"


# -- shapes ------------------------------------------------------------------------------------
def _trio(draw: Any) -> tuple[list[Draft], Page, str, tuple[str, ...]]:
    """web, api, chat on one host family (sometimes socket.io, a redirect listener)."""
    family = weighted(draw, *FAMILIES)
    plan = _tls_plan(draw)
    web = Draft("web", "web", draw_host(draw, "web", family), tls=_tls(draw, plan),
                cert=draw_cert(draw, 8))
    drafts = [web]
    api = chat = sio = None
    if chance(draw, 85):
        api = Draft("api", "api", draw_host(draw, "api", family), tls=_tls(draw, plan),
                    cert=draw_cert(draw))
        drafts.append(api)
    if chance(draw, 80):
        chat = Draft("chat", "chat", draw_host(draw, "chat", family), tls=_tls(draw, plan),
                     cert=draw_cert(draw))
        drafts.append(chat)
    if chance(draw, 10):
        sio = Draft("sio", "socketio", draw_host(draw, "sio", family), tls=_tls(draw, plan),
                    cert=draw_cert(draw, 8))
        drafts.append(sio)
    draw_page_headers(draw, web, percent=15)
    if (web.kw.get("hsts") or web.kw.get("upgrade_insecure")) and chance(draw, 40):
        # HSTS is per host, every port: a plain service on the page's host is what it changes.
        other = [d for d in (api, chat) if d is not None]
        if other:
            d = draw(st.sampled_from(other))
            d.host, d.kw["tls"] = web.host, chance(draw, 30)
    if api is not None and chance(draw, 8):
        api.kw["https_only"] = True  # on a plain API: a 308 to https on a port without TLS
    if chat is not None and chat.host.lower() == "chat.ws.lab.test" and chance(draw, 40):
        chat.kw["cert"] = "wildcard"  # *.lab.test is one label deep: chat.ws is two
    redirect = None
    if web.tls and chance(draw, 12):
        host = web.host if chance(draw, 85) else draw_host(draw, "web", "mixed")
        redirect = Draft("redirect", "redirect", host, tls=False, target="web")
        drafts.append(redirect)
    moved = None
    if chat is not None and chance(draw, 10):
        # A listener that answers the socket's handshake with 308 to the chat server: browsers
        # never follow it. Usually TLS (the page asks for wss://), on the chat's host.
        tls = chance(draw, 75)
        moved = Draft("moved", "redirect", chat.host if chance(draw, 80) else web.host, tls=tls,
                      cert=draw_cert(draw, 10) if tls else "lab", target="chat")
        drafts.append(moved)
    draw_ports(draw, drafts)
    if api is not None:
        api.kw["cors"] = draw_cors(draw, drafts, "web")
    if chat is not None:
        chat.kw["origins"] = draw_origins(draw, drafts, "web")
    if sio is not None:
        sio.kw["origins"] = draw_origins(draw, drafts, "web", none=35)
    ws = moved.name if moved is not None and chance(draw, 85) else chat and chat.name
    page = draw_page(draw, api=api and api.name, ws=ws, sio=sio and sio.name)
    visit = "redirect" if redirect is not None and chance(draw, 70) else "web"
    before: tuple[str, ...] = ()
    if web.kw.get("hsts") and chance(draw, 50):
        # A later visit in the same browser: the HSTS host is now known (every port). Either
        # the same page again (or its redirect listener), or a plain page on another host whose
        # calls to the HSTS host get upgraded.
        before = ("web",)
        if chance(draw, 50):
            host = weighted(draw, ("www.lab.test", 3), ("evil.lab.test", 1), ("localhost", 1))
            old = Draft("old", "web", host, tls=False,
                        page=draw_page(draw, api=api and api.name, ws=ws, sio=sio and sio.name,
                                       sandboxed=0))
            drafts.append(old)
            visit = "old"
    return drafts, page, visit, before


_EVIL_HOSTS = (("evil.lab.test", 10), ("evil-lab.test", 6), ("localhost", 3), ("127.0.0.1", 2),
               ("EVIL.lab.test", 1), ("app.lab.test", 1), ("evil.app.lab.test", 1),
               ("www.evil-lab.test", 1), ("Evil-Lab.test", 1))


def _hijack(draw: Any) -> tuple[list[Draft], Page, str, tuple[str, ...]]:
    """The victim logs in on the real page; the attacker's page then opens the chat socket."""
    family = weighted(draw, ("lab", 7), ("localhost", 2), ("127.0.0.1", 1), ("mixed", 1))
    plan = weighted(draw, ("all", 17), ("each", 3))
    web = Draft("web", "web", draw_host(draw, "web", family), tls=_tls(draw, plan))
    api = Draft("api", "api", draw_host(draw, "api", family), tls=_tls(draw, plan),
                cert=draw_cert(draw, 5))
    chat = Draft("chat", "chat", draw_host(draw, "chat", family), tls=_tls(draw, plan),
                 cert=draw_cert(draw, 5))
    evil = Draft("evil", "evil", weighted(draw, *_EVIL_HOSTS), tls=not chance(draw, 15))
    drafts = [web, api, chat, evil]
    draw_ports(draw, drafts)
    how = weighted(draw, ("web", 10), ("reflect", 4), ("null", 3), ("drawn", 6))
    if how == "web":
        api.kw["cors"] = CorsPolicy("allowlist", ("web",), credentials=True)
    elif how == "reflect":
        api.kw["cors"] = CorsPolicy("reflect", credentials=not chance(draw, 20))
    elif how == "null":
        api.kw["cors"] = CorsPolicy("allowlist", ("null", "web"), credentials=True)
    else:
        api.kw["cors"] = draw_cors(draw, drafts, "web", credentials=60)
    how = weighted(draw, ("none", 8), ("web", 6), ("drawn", 6))
    if how == "drawn":
        chat.kw["origins"] = draw_origins(draw, drafts, "web", none=0)
    else:
        chat.kw["origins"] = None if how == "none" else ("web",)
    if chance(draw, 65):
        victim = Page(steps=weighted(draw, (("login", "socket", "chat"), 4),
                                     (("login", "whoami", "socket", "chat"), 1),
                                     (("login", "whoami"), 1)), credentials="include")
    else:
        victim = draw_page(draw, api="api", ws="chat", sandboxed=0)
    how = weighted(draw, ("steal", 10), ("read", 6), ("drawn", 5), ("inherit", 2))
    if how == "steal":
        evil.kw["page"] = Page(api=None, ws="chat", steps=("steal",),
                               ws_scheme=weighted(draw, (None, 9), ("wss", 1)),
                               sandboxed=chance(draw, 20))
    elif how == "read":
        # The attacker reads who the API takes it for, with credentials (the victim's cookie
        # rides along same-site; never from another site or an opaque origin).
        evil.kw["page"] = Page(api="api", ws=None,
                               steps=weighted(draw, (("whoami",), 6), (("hello", "whoami"), 1),
                                              (("whoami", "bearer"), 1)),
                               credentials=weighted(draw, ("include", 8), ("omit", 1),
                                                    ("same-origin", 1)),
                               sandboxed=chance(draw, 45))
    elif how == "drawn":
        evil.kw["page"] = draw_page(draw, api="api", ws="chat", role="evil")
    if chance(draw, 12):
        return drafts, victim, "web", ()
    return drafts, victim, "evil", ("web",) if chance(draw, 75) else ()


def _routes(draw: Any) -> tuple[Route, ...]:
    """The story's routes, or one of the ways to get them wrong (or merely reordered)."""
    how = weighted(draw, ("story", 12), ("no-api", 2), ("no-ws", 2), ("ws-plain", 2),
                   ("slash", 1), ("chat-path", 1), ("shuffled", 2), ("no-root", 1))
    if how == "story":
        return STORY_ROUTES
    api, ws, root = Route("/api", "api"), Route("/ws", "chat", websocket=True), Route("/", "web")
    if how == "no-api":
        return (ws, root)
    if how == "no-ws":
        return (api, root)
    if how == "ws-plain":
        return (api, Route("/ws", "chat"), root)
    if how == "slash":
        return (Route("/api/", "api"), Route("/ws/", "chat", websocket=True), root)
    if how == "chat-path":
        return (api, Route("/chat", "chat", websocket=True), root)
    if how == "no-root":
        return (api, ws)
    return (root, ws, api)  # shuffled: the order of routes must not matter


def _proxied(draw: Any) -> tuple[list[Draft], Page, str, tuple[str, ...]]:
    """One TLS origin (labkit's proxy or nginx) in front of plain backends."""
    family = weighted(draw, ("localhost", 7), ("127.0.0.1", 2), ("lab", 2))
    plain = chance(draw, 88)
    drafts = [Draft(n, n, draw_host(draw, n, family),
                    tls=not plain and chance(draw, 70)) for n in ("web", "api", "chat")]
    kind = weighted(draw, ("proxy", 3), ("nginx", 1))
    proxy_host = weighted(draw, ("app.lab.test", 11), ("localhost", 5), ("APP.lab.test", 1),
                          ("127.0.0.1", 2), ("::1", 1))
    proxy = Draft("proxy", kind, proxy_host, tls=not chance(draw, 6), cert=draw_cert(draw, 10),
                  routes=_routes(draw))
    drafts.append(proxy)
    if chance(draw, 30):
        drafts[1].kw["https_only"] = True  # "force HTTPS" on the API behind the proxy
    if chance(draw, 25):
        proxy.kw["forwarded_proto"] = False  # the proxy never says X-Forwarded-Proto
    if chance(draw, 10):
        draw_page_headers(draw, drafts[0], percent=60)  # the web backend's page headers
    redirect = None
    if proxy.tls and chance(draw, 50):
        host = proxy_host if chance(draw, 88) else weighted(draw, ("localhost", 1),
                                                            ("app.lab.test", 1))
        redirect = Draft("redirect", "redirect", host, tls=False, target="proxy")
        drafts.append(redirect)
    draw_ports(draw, drafts)
    api, chat = drafts[1], drafts[2]
    api.kw["cors"] = CorsPolicy() if chance(draw, 70) else draw_cors(draw, drafts, "proxy")
    how = weighted(draw, ("proxy", 10), ("none", 4), ("web", 2), ("drawn", 4))
    if how == "drawn":
        chat.kw["origins"] = draw_origins(draw, drafts, "proxy", none=0)
    else:
        chat.kw["origins"] = {"proxy": ("proxy",), "none": None, "web": ("web",)}[how]
    if chance(draw, 85):
        if chance(draw, 45):
            page = Page(api=None, ws=None, same_origin=True, credentials="same-origin")
        else:
            page = draw_page(draw, api=None, ws=None, same_origin=True)
    else:
        page = draw_page(draw, api="api", ws="chat")
    visit = weighted(draw, ("proxy", 11), ("redirect", 8 if redirect else 0), ("web", 1))
    if chance(draw, 12):
        # Log in through the proxy, then a plain page on a lab name opens the chat directly:
        # whether the session cookie is Secure depends on what the proxy told the API.
        if chance(draw, 70):
            chat.host = "ws.lab.test"
        drafts.append(Draft("plain", "web", "www.lab.test", tls=False,
                            page=Page(api=None, ws="chat",
                                      steps=weighted(draw, (("socket",), 3),
                                                     (("socket", "chat"), 1)))))
        if chance(draw, 50):
            page = Page(api=None, ws=None, same_origin=True, steps=("login",),
                        credentials=weighted(draw, ("same-origin", 3), ("include", 1)))
        return drafts, page, "plain", ("proxy",)
    return drafts, page, visit, ()


def _lb(draw: Any) -> tuple[list[Draft], Page, str, tuple[str, ...]]:
    """The short-term fix: a load balancer with its own certificate in front of each backend."""
    web_host = weighted(draw, ("app.lab.test", 6), ("localhost", 2), ("127.0.0.1", 1))
    web = Draft("web", "web", web_host, cert=draw_cert(draw, 5))
    backend_host = weighted(draw, ("localhost", 4), ("127.0.0.1", 1))
    plain = not chance(draw, 10)
    api = Draft("api", "api", backend_host, tls=not plain)
    chat = Draft("chat", "chat", backend_host, tls=not plain)
    family = weighted(draw, ("lab", 6), ("localhost", 2), ("127.0.0.1", 1))
    idle = (None, 8), (60.0, 3), (5.0, 1)
    lb_api = Draft("lb-api", weighted(draw, ("proxy", 9), ("nginx", 1)),
                   draw_host(draw, "api", family),
                   cert=weighted(draw, ("own", 6), ("lab", 3), ("wrong-name", 1), ("rogue", 1)),
                   routes=weighted(draw, ((Route("/", "api"),), 8), ((Route("/api", "api"),), 2)),
                   idle_timeout=weighted(draw, *idle))
    lb_ws = Draft("lb-ws", weighted(draw, ("proxy", 9), ("nginx", 1)),
                  draw_host(draw, "chat", family),
                  cert=weighted(draw, ("own", 6), ("lab", 3), ("wrong-name", 1), ("rogue", 1)),
                  routes=weighted(draw, ((Route("/", "chat", websocket=True),), 8),
                                  ((Route("/", "chat"),), 1),
                                  ((Route("/ws", "chat", websocket=True),), 1)),
                  idle_timeout=weighted(draw, *idle))
    drafts = [web, api, chat, lb_api, lb_ws]
    for lb in (lb_api, lb_ws):
        if chance(draw, 35):
            drafts.append(Draft(f"redirect-{lb.name[3:]}", "redirect", lb.host, tls=False,
                                target=lb.name))
    draw_ports(draw, drafts)
    api.kw["cors"] = draw_cors(draw, drafts, "web", credentials=20)
    chat.kw["origins"] = draw_origins(draw, drafts, "web", none=60)
    if chance(draw, 50):
        page = Page(api="lb-api", ws="lb-ws")
    else:
        page = draw_page(draw, api="lb-api", ws="lb-ws")
    return drafts, page, "web", ()


def _sio(draw: Any) -> tuple[list[Draft], Page, str, tuple[str, ...]]:
    """A socket.io server: its polling transport is XHR, so CORS applies."""
    family = weighted(draw, ("localhost", 5), ("lab", 4), ("127.0.0.1", 1), ("mixed", 1))
    plan = _tls_plan(draw)
    web = Draft("web", "web", draw_host(draw, "web", family), tls=_tls(draw, plan))
    sio = Draft("sio", "socketio", draw_host(draw, "sio", family), tls=_tls(draw, plan),
                cert=draw_cert(draw, 8))
    drafts = [web, sio]
    api = None
    if chance(draw, 30):
        api = Draft("api", "api", draw_host(draw, "api", family), tls=_tls(draw, plan))
        drafts.append(api)
    draw_ports(draw, drafts)
    sio.kw["origins"] = draw_origins(draw, drafts, "web", none=35)
    if api is not None:
        api.kw["cors"] = draw_cors(draw, drafts, "web")
    if chance(draw, 60):
        # transports: ['websocket'] sometimes: no polling, so no CORS; the Origin check stays.
        page = Page(api=None, ws=None, sio="sio", steps=("sio",),
                    sio_websocket_only=chance(draw, 35))
    else:
        page = draw_page(draw, api=api and api.name, ws=None, sio="sio")
    return drafts, page, "web", ()


def _wild(draw: Any) -> tuple[list[Draft], Page, str, tuple[str, ...]]:
    """Any mix of services the validator accepts: the combinations no lesson has — a page calling
    a proxy's /ws route directly, a redirect to a plain server, several pages visited first."""
    family = weighted(draw, *FAMILIES)
    plan = _tls_plan(draw)
    drafts = [Draft("web", "web", draw_host(draw, "web", family), tls=_tls(draw, plan),
                    cert=draw_cert(draw, 10))]
    extra = draw(st.lists(st.sampled_from(["api", "chat", "sio", "evil", "proxy", "proxy2"]),
                          min_size=1, max_size=4, unique=True))
    for name in ("api", "chat", "sio", "evil"):
        if name in extra:
            kind = "socketio" if name == "sio" else name
            host = (weighted(draw, *_EVIL_HOSTS) if name == "evil" and chance(draw, 30)
                    else draw_host(draw, name, family))
            drafts.append(Draft(name, kind, host, tls=_tls(draw, plan),
                                cert=draw_cert(draw, 20)))
    for d in drafts:
        if d.kind in PAGE_KINDS:
            draw_page_headers(draw, d, percent=10)
        elif d.kind == "api" and chance(draw, 15):
            d.kw["https_only"] = True
    backends = [d.name for d in drafts]
    for name in ("proxy", "proxy2"):
        if name in extra:
            n = draw(st.integers(1, 3))
            routes = tuple(Route(draw(st.sampled_from(["/", "/api", "/ws"])),
                                 draw(st.sampled_from(backends)), websocket=chance(draw, 50))
                           for _ in range(n))
            routes = tuple({r.prefix: r for r in routes}.values())
            kind = weighted(draw, ("proxy", 3), ("nginx", 1))
            host = draw_host(draw, "proxy", weighted(draw, ("lab", 2), ("localhost", 2),
                                                     ("127.0.0.1", 1)))
            drafts.append(Draft(name, kind, host, tls=_tls(draw, plan), cert=draw_cert(draw, 20),
                                routes=routes,
                                idle_timeout=weighted(draw, (None, 4), (30.0, 1)),
                                forwarded_proto=not chance(draw, 20)))
    if chance(draw, 25):
        tls_targets = [d.name for d in drafts if d.tls] or [drafts[0].name]
        target = draw(st.sampled_from(tls_targets))
        host = next(d.host for d in drafts if d.name == target) if chance(draw, 70) else \
            draw_host(draw, "web", family)
        kind = next(d.kind for d in drafts if d.name == target)
        # A TLS redirect listener sometimes (never in front of nginx: the validator refuses).
        tls = kind != "nginx" and chance(draw, 20)
        drafts.append(Draft("redirect", "redirect", host, tls=tls,
                            cert=draw_cert(draw, 20) if tls else "lab", target=target))
    draw_ports(draw, drafts, percent=20)
    names = [d.name for d in drafts]
    for d in drafts:
        if d.kind == "api":
            d.kw["cors"] = draw_cors(draw, drafts, draw(st.sampled_from(names)))
        elif d.kind in ("chat", "socketio"):
            d.kw["origins"] = draw_origins(draw, drafts, draw(st.sampled_from(names)), none=40)
    proxies = [d.name for d in drafts if d.kind in ("proxy", "nginx")]
    apis = [d.name for d in drafts if d.kind == "api"] + proxies
    chats = [d.name for d in drafts if d.kind == "chat"] + proxies
    if "redirect" in names and chance(draw, 30):
        chats.append("redirect")  # a socket pointed at a redirect listener

    def page(role: str) -> Page:
        same = bool(proxies) and chance(draw, 20)
        return draw_page(draw, api=draw(st.sampled_from([None, *apis])),
                         ws=draw(st.sampled_from([None, *chats])),
                         sio="sio" if "sio" in names and chance(draw, 60) else None,
                         role=role, same_origin=same)

    top = page("web")
    for d in drafts:
        if d.kind == "evil" or (d.kind == "web" and chance(draw, 20)):
            d.kw["page"] = page(d.kind)
    pages = [d.name for d in drafts if d.kind in ("web", "evil")]
    visit = draw(st.sampled_from(pages + proxies + [d.name for d in drafts
                                                    if d.kind == "redirect"]))
    before = tuple(draw(st.lists(st.sampled_from(pages), max_size=2))) if chance(draw, 30) else ()
    return drafts, top, visit, before


SHAPES = {"trio": (_trio, 7), "hijack": (_hijack, 4), "proxied": (_proxied, 4), "lb": (_lb, 3),
          "sio": (_sio, 2), "wild": (_wild, 5)}


@st.composite
def configs(draw: Any, shapes: tuple[str, ...] | None = None) -> Config:
    """A whole configuration the validator accepts (rejected draws are ``reject()``-ed)."""
    names = shapes or tuple(SHAPES)
    shape = weighted(draw, *((n, SHAPES[n][1]) for n in names))
    drafts, page, visit, before = SHAPES[shape][0](draw)
    # The page: topology-wide, or on the page service itself (the topology's then does nothing).
    web = next((d for d in drafts if d.name == "web"), None)
    if web is not None and chance(draw, 25):
        web.kw["page"] = page
        page = Page(api=None, ws=None, steps=())
    topology = Topology(NAME, tuple(d.build() for d in drafts), page=page)
    cfg = Config(topology, visit, before, shape)
    try:
        topology.validate()
        check_visit = getattr(topology, "check_visit", None)
        if check_visit is not None:
            check_visit(visit, before)
    except LabError as e:
        STATS["rejected"] += 1
        STATS[f"rejected: {type(e).__name__}: {str(e).split(chr(10))[0][:90]}"] += 1
        reject()
    except Exception as e:  # a validator crash is a finding, not a rejection
        STATS["crashed"] += 1
        STATS[f"crashed: {type(e).__name__}: {e}"[:120]] += 1
        CRASHES.append((cfg.key(), traceback.format_exc()))
        reject()
    STATS["accepted"] += 1
    STATS[f"shape: {shape}"] += 1
    return cfg


def rejection_rate() -> float:
    total = STATS["accepted"] + STATS["rejected"] + STATS["crashed"]
    return (STATS["rejected"] + STATS["crashed"]) / total if total else 0.0


# -- reporting -----------------------------------------------------------------------------------
def describe(cfg: Config, agreement: Any) -> str:
    """Everything needed to understand one agreement or disagreement, as text."""
    obs = agreement.observation
    v = agreement.verdict
    lines = [
        f"config [{cfg.shape}]: {cfg.key()}",
        "problems: " + ("; ".join(agreement.problems) or "-"),
        "explain:",
        *("  " + line for line in str(agreement.explanation).splitlines()),
        f"browser: {v}" + (f" — evidence: {v.evidence}" if v.evidence else ""),
        f"  url {obs.url} -> {obs.final_url}"
        + (f" (redirects {obs.redirects})" if obs.redirects else "")
        + (f"; navigation error: {obs.navigation_error}" if obs.navigation_error else ""),
        "  steps:",
        *(f"    {k}: {s.state} — {s.detail}" for k, s in obs.steps.items()),
    ]
    for i, steps in enumerate(obs.before):
        name = cfg.before[i] if i < len(cfg.before) else "?"
        lines.append(f"  before ({name}): "
                     + ", ".join(f"{k}={s.state}" for k, s in steps.items()))
    lines.append("  console:")
    lines += [f"    {m}" for m in obs.messages()] or ["    -"]
    if obs.page_errors:
        lines.append("  page errors: " + "; ".join(f"{e.name}: {e.message}"
                                                   for e in obs.page_errors))
    sockets = list(obs.sockets)
    if sockets:
        lines.append("  sockets: " + "; ".join(
            f"{s.url} opened={s.opened} close={s.close_code}" + (f" error={s.error}"
                                                                  if s.error else "")
            for s in sockets))
    try:
        session = obs.session()
    except Exception:  # older observations: no session()
        session = "?"
    lines.append(f"  chat session seen by the server: {session!r}")
    return "\n".join(lines)
