"""The scenario catalogue: each failure and fix of the story as data.

A scenario is a topology, what the page does, the outcome a real Chromium shows, and the rule
behind it. The names are an interface: ``labkit up --scenario NAME``, ``labkit tour`` and the
notebooks refer to them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnknownScenarioError
from .cors import CorsPolicy
from .policy import Credentials
from .routing import STORY_ROUTES, Route
from .topology import Kind, Page, Service, Topology, WsScheme

#: ``Scenario.session`` for "the server saw no session cookie": the attack ran, as nobody.
GUEST = "guest"


@dataclass(frozen=True)
class Scenario:
    name: str
    topology: Topology
    expected: str  # "allowed" | "blocked"
    reason: str | None  # the expected block reason (policy.REASONS), None when allowed
    rule: str
    explanation: str
    #: The page steps whose states decide the outcome (all ok: allowed; any blocked: blocked).
    decisive: tuple[str, ...] = ()
    #: Which service's page the browser visits.
    visit: str = "web"
    #: Pages visited first in the same browser context (the victim, before the attacker's page).
    before: tuple[str, ...] = ()
    #: Who makes the requests: "browser", or "python" for server-to-server calls.
    client: str = "browser"
    #: For cors-simple-post: the API's counter must show the blocked request was executed.
    side_effect: bool = False
    #: Steps of the ``before`` pages that must be ok (the real page keeps working).
    before_ok: tuple[str, ...] = ()
    #: The visit must have been redirected (https-redirect).
    redirected: bool = False
    #: System pieces the scenario needs beyond Python ("nginx").
    needs: tuple[str, ...] = ()
    #: When set, the servers must have taken the visited page for this user (its chat socket, or
    #: its /api/whoami): the proof that an attack really read as the victim (the socket opening
    #: alone proves nothing). :data:`GUEST`: they must have seen no session cookie at all.
    session: str | None = None

    def __repr__(self) -> str:
        reason = f" ({self.reason})" if self.reason else ""
        return f"<Scenario {self.name}: {self.expected}{reason}>"


# -- topology builders: hosts are localhost for the CORS family, *.lab.test where names matter --
def _trio(name: str, *, page: Page, cors: CorsPolicy | None = None, web_host: str = "localhost",
          api: Service | None = None, chat: Service | None = None,
          extra: tuple[Service, ...] = (), hsts: bool = False, upgrade_insecure: bool = False
          ) -> Topology:
    services = [Service("web", "web", host=web_host, hsts=hsts,
                        upgrade_insecure=upgrade_insecure)]
    if api is not None or cors is not None:
        services.append(api or Service("api", "api", cors=cors or CorsPolicy()))
    if chat is not None:
        services.append(chat)
    return Topology(name=name, title=f"labkit messenger — {name}",
                    services=tuple(services) + extra, page=page)


def _cors(name: str, cors: CorsPolicy, steps: tuple[str, ...], credentials: Credentials = "omit"
          ) -> Topology:
    return _trio(name, cors=cors, page=Page(ws=None, steps=steps, credentials=credentials))


_WEB = ("web",)
_ALLOW_WEB = CorsPolicy("allowlist", _WEB)


def _ws(name: str, chat: Service, ws_scheme: WsScheme | None = None,
        web_host: str = "app.lab.test"
        ) -> Topology:
    return _trio(name, web_host=web_host, chat=chat,
                 page=Page(api=None, ws="chat", ws_scheme=ws_scheme, steps=("socket", "chat")))


def _hijack(name: str, origins: tuple[str, ...] | None, evil_host: str = "evil.lab.test"
            ) -> Topology:
    # The victim's session cookie comes from a real login on the real page (the API must allow
    # credentials for the page to store it). It is scoped to lab.test, and evil.lab.test is the
    # same *site* as ws.lab.test, so SameSite=Lax does not keep it off the attacker's handshake.
    return _trio(
        name,
        web_host="app.lab.test",
        api=Service("api", "api", host="api.lab.test",
                    cors=CorsPolicy("allowlist", _WEB, credentials=True)),
        chat=Service("chat", "chat", host="ws.lab.test", origins=origins),
        extra=(Service("evil", "evil", host=evil_host,
                       page=Page(api=None, ws="chat", steps=("steal",))),),
        page=Page(steps=("login", "socket", "chat"), credentials="include"),
    )


def _cookie_read(name: str, cors: CorsPolicy, *, sandboxed: bool = False) -> Topology:
    """The victim logs in on the real page (app.lab.test; session cookie Domain=lab.test); then
    a page on evil.lab.test — the same *site* — reads /api/whoami with credentials. With
    ``sandboxed`` the evil page runs it in a sandboxed frame, whose origin is ``null``."""
    return Topology(
        name=name, title=f"labkit messenger — {name}",
        services=(
            Service("web", "web", host="app.lab.test"),
            Service("api", "api", host="api.lab.test", cors=cors),
            Service("evil", "evil", host="evil.lab.test",
                    page=Page(api="api", ws=None, steps=("whoami",), credentials="include",
                              sandboxed=sandboxed)),
        ),
        page=Page(ws=None, steps=("login", "whoami"), credentials="include"),
    )


def _proxied(name: str, *, kind: Kind = "proxy", ws_scheme: WsScheme | None = None,
             https_only: bool = False, forwarded_proto: bool = True) -> Topology:
    """The long-term fix: plain backends with no CORS anywhere, one TLS origin in front.
    The chat server still checks Origin — against the proxy's origin, which the proxy forwards."""
    return Topology(
        name=name, title=f"labkit messenger — {name}",
        services=(
            Service("web", "web", tls=False),
            Service("api", "api", tls=False, https_only=https_only),
            Service("chat", "chat", tls=False, origins=("proxy",)),
            Service("proxy", kind, host="app.lab.test", routes=STORY_ROUTES,
                    forwarded_proto=forwarded_proto),
            Service("redirect", "redirect", host="app.lab.test", tls=False, target="proxy"),
        ),
        page=Page(api=None, ws=None, same_origin=True, ws_scheme=ws_scheme,
                  credentials="same-origin"),
    )


def _load_balanced(name: str, cors: CorsPolicy) -> Topology:
    """The short-term fix: a load balancer with its own managed certificate in front of each
    server, each with its own HTTP->HTTPS redirect; the page calls both entry points directly."""
    return Topology(
        name=name, title=f"labkit messenger — {name}",
        services=(
            Service("web", "web", host="app.lab.test"),
            Service("api", "api", tls=False, cors=cors),
            Service("chat", "chat", tls=False),
            Service("lb-api", "proxy", host="api.lab.test", cert="own",
                    routes=(Route("/", "api"),), idle_timeout=60.0),
            Service("lb-ws", "proxy", host="ws.lab.test", cert="own",
                    routes=(Route("/", "chat", websocket=True),), idle_timeout=60.0),
            Service("redirect-api", "redirect", host="api.lab.test", tls=False, target="lb-api"),
            Service("redirect-ws", "redirect", host="ws.lab.test", tls=False, target="lb-ws"),
        ),
        page=Page(api="lb-api", ws="lb-ws"),
    )


_STORY_STEPS = ("hello", "login", "rooms", "socket", "chat")


def _sio(name: str, origins: tuple[str, ...] | None, websocket_only: bool = False) -> Topology:
    return _trio(name, extra=(Service("sio", "socketio", origins=origins),),
                 page=Page(api=None, ws=None, sio="sio", steps=("sio",),
                           sio_websocket_only=websocket_only))


_CATALOGUE: tuple[Scenario, ...] = (
    # -- CORS across ports ---------------------------------------------------------------------
    Scenario(
        "cors-port-mismatch",
        _cors("cors-port-mismatch", CorsPolicy("none"), ("hello",)),
        "blocked", "cors", "origin = scheme+host+port; no ACAO",
        "The page at https://localhost:A and the API at https://localhost:B differ only by port, "
        "which makes them different origins. The API sends no Access-Control-Allow-Origin header, "
        "so the browser hides the answer from the page.",
        decisive=("hello",),
    ),
    Scenario(
        "cors-allow-origin",
        _cors("cors-allow-origin", _ALLOW_WEB, ("hello",)),
        "allowed", None, "ACAO matches origin",
        "The API now answers with Access-Control-Allow-Origin set to the page's exact origin. "
        "The browser compares it with the page's origin and lets the page read the answer.",
        decisive=("hello",),
    ),
    Scenario(
        "cors-preflight",
        _cors("cors-preflight", CorsPolicy("allowlist", _WEB, preflight=False), ("login",)),
        "blocked", "cors-preflight", "non-simple request needs a successful OPTIONS",
        "A JSON POST is not a 'simple' request, so the browser first sends an OPTIONS preflight "
        "asking permission. The API allow-lists the origin on GET and POST but answers OPTIONS "
        "with 405, so the POST is never sent.",
        decisive=("login",),
    ),
    Scenario(
        "cors-preflight-fixed",
        _cors("cors-preflight-fixed", _ALLOW_WEB, ("login",)),
        "allowed", None, "preflight passes",
        "The API answers the preflight with 204, the page's origin, the allowed methods and the "
        "content-type header. The browser then sends the real POST and lets the page read it.",
        decisive=("login",),
    ),
    Scenario(
        "cors-credentials-wildcard",
        _cors("cors-credentials-wildcard", CorsPolicy("wildcard", credentials=True), ("hello",),
              credentials="include"),
        "blocked", "cors-credentials", "wildcard forbidden with credentials",
        "The page fetches with credentials: 'include', the mode that lets cookies go along "
        "(this page holds none: the rule is about the mode). A wildcard "
        "Access-Control-Allow-Origin: * with it would let any site read the user's data, so the "
        "browser refuses: with credentials the server must name the exact origin.",
        decisive=("hello",),
    ),
    Scenario(
        "cors-credentials-allowlist",
        _cors("cors-credentials-allowlist", CorsPolicy("allowlist", _WEB, credentials=True),
              ("hello",), credentials="include"),
        "allowed", None, "exact origin + Access-Control-Allow-Credentials: true",
        "The API names the page's exact origin and sends Access-Control-Allow-Credentials: true. "
        "That is the only form the browser accepts for requests made with credentials: "
        "'include'.",
        decisive=("hello",),
    ),
    Scenario(
        "cors-authorization-preflight",
        _cors("cors-authorization-preflight", _ALLOW_WEB, ("bearer",)),
        "blocked", "cors-preflight", "an Authorization header makes even a GET preflighted",
        "The page sends GET /api/hello with Authorization: Bearer …, as single-page apps send "
        "tokens. Authorization is not a CORS-safelisted header, so the browser asks first; the "
        "preflight answer allows only content-type, and the GET is never sent.",
        decisive=("bearer",),
    ),
    Scenario(
        "cors-authorization-preflight-fixed",
        _cors("cors-authorization-preflight-fixed",
              CorsPolicy("allowlist", _WEB, headers=("content-type", "authorization")),
              ("bearer",)),
        "allowed", None, "the preflight lists authorization explicitly",
        "The API's preflight answer now names authorization in Access-Control-Allow-Headers. "
        "(The Fetch standard says '*' does not cover Authorization; name it.)",
        decisive=("bearer",),
    ),
    Scenario(
        "cors-reflect-origin",
        _cookie_read("cors-reflect-origin", CorsPolicy("reflect", credentials=True)),
        "allowed", None, "reflecting Origin lets every origin read, with the cookie when same-site",
        "The API echoes whatever Origin arrives into Access-Control-Allow-Origin, with "
        "Access-Control-Allow-Credentials: true. The victim logged in on the real page; a page on "
        "https://evil.lab.test — another origin, but the same site — reads /api/whoami with "
        "credentials, and the API answers as the victim.",
        decisive=("whoami",), visit="evil", before=("web",), before_ok=("login",),
        session="alice",
    ),
    Scenario(
        "cors-reflect-origin-fixed",
        _cookie_read("cors-reflect-origin-fixed",
                     CorsPolicy("allowlist", _WEB, credentials=True)),
        "blocked", "cors", "an exact allow-list: the sibling page may not read",
        "The API names only the real page's origin. The evil page's request still reaches the "
        "API with the cookie, but the browser withholds the answer from it.",
        decisive=("whoami",), visit="evil", before=("web",), before_ok=("login",),
    ),
    Scenario(
        "cors-null-origin",
        _cookie_read("cors-null-origin", CorsPolicy("allowlist", ("null", "web"),
                                                    credentials=True), sandboxed=True),
        "allowed", None, "null is not a safe allow-list entry: any sandboxed page has it",
        "The API allows Origin: null with credentials. The evil page runs its script in a "
        "sandboxed iframe, whose origin is null: CORS passes. Chromium sends no session cookie "
        "from it (the sandboxed request counts as cross-site), so it reads what an anonymous "
        "caller gets — enough for data not guarded by cookies.",
        decisive=("whoami",), visit="evil", before=("web",), before_ok=("login",),
        session=GUEST,
    ),
    Scenario(
        "cors-null-origin-fixed",
        _cookie_read("cors-null-origin-fixed", CorsPolicy("allowlist", _WEB, credentials=True),
                     sandboxed=True),
        "blocked", "cors", "allow-list real origins only",
        "The allow-list names the real page's origin and not null. The sandboxed frame's request "
        "gets no Access-Control-Allow-Origin, and the browser withholds the answer.",
        decisive=("whoami",), visit="evil", before=("web",), before_ok=("login",),
    ),
    Scenario(
        "cors-simple-post",
        _cors("cors-simple-post", CorsPolicy("none"), ("post-text",)),
        "blocked", "cors", "CORS protects the reader, not the server",
        "A text/plain POST is a 'simple' request: the browser sends it without asking first and "
        "only hides the answer. The API's counter still went up — CORS is no protection for "
        "state-changing endpoints.",
        decisive=("post-text",), side_effect=True,
    ),
    Scenario(
        "server-to-server",
        _trio("server-to-server", cors=CorsPolicy("none"), chat=Service("chat", "chat"),
              page=Page(steps=("hello", "socket"))),
        "allowed", None, "CORS is enforced by browsers only",
        "A Python client calls the same API and chat ports with no CORS headers anywhere and "
        "gets every answer. CORS is a browser rule that protects users, not a server firewall.",
        decisive=("hello", "socket"), client="python",
    ),
    # -- WebSocket across ports: no CORS, so Origin is the server's job --------------------------
    Scenario(
        "ws-cross-port",
        _trio("ws-cross-port", chat=Service("chat", "chat"),
              page=Page(api=None, steps=("socket", "chat"))),
        "allowed", None, "WebSocket handshakes are not CORS-checked; Origin is sent",
        "The page on port A opens wss://localhost:C with no CORS headers anywhere, and it works. "
        "The browser only sends an Origin header; checking it is up to the chat server.",
        decisive=("socket", "chat"),
    ),
    Scenario(
        "ws-hijack",
        _hijack("ws-hijack", None),
        "allowed", None, "server must check Origin (RFC 6455 §10.2)",
        "The victim logged in on the real page; later a page on https://evil.lab.test opens the "
        "chat socket, the browser attaches the victim's session cookie, and the attacker reads "
        "the history as the victim. No CORS rule applies: the server accepted any Origin.",
        decisive=("steal",), visit="evil", before=("web",), before_ok=("login", "chat"),
        session="alice",
    ),
    Scenario(
        "ws-origin-allowlist",
        _hijack("ws-origin-allowlist", _WEB),
        "blocked", "origin-rejected", "Origin allow-list",
        "The chat server now accepts only handshakes whose Origin is the real page's origin. "
        "The evil page is refused with 403 while the real page still chats.",
        decisive=("steal",), visit="evil", before=("web",), before_ok=("login", "chat"),
    ),
    Scenario(
        "ws-hijack-cross-site",
        _hijack("ws-hijack-cross-site", None, evil_host="evil-lab.test"),
        "allowed", None, "SameSite=Lax keeps the cookie off cross-site handshakes",
        "The same hijack from https://evil-lab.test — another registrable domain, so another "
        "site. The socket opens (no Origin check), but the browser attaches no session cookie "
        "(SameSite=Lax, and Chromium's third-party-cookie blocking): the attacker is a guest and "
        "reads no history. The story's ports and sibling subdomains are same-site: this does not "
        "protect them.",
        decisive=("steal",), visit="evil", before=("web",), before_ok=("login", "chat"),
        session=GUEST,
    ),
    Scenario(
        "ws-redirect",
        _trio("ws-redirect", web_host="app.lab.test",
              chat=Service("chat", "chat", host="ws.lab.test"),
              extra=(Service("moved", "redirect", host="ws.lab.test", target="chat"),),
              page=Page(api=None, ws="moved", steps=("socket", "chat"))),
        "blocked", "http-error", "browsers do not follow redirects on a WebSocket handshake",
        "The page opens wss:// to a listener that answers the handshake with 308 to the real chat "
        "server. The browser does not follow it: a handshake must be answered 101, so the socket "
        "fails. A redirect cannot rescue a ws:// URL either.",
        decisive=("socket",),
    ),
    # -- ws:// from an https page: mixed content -------------------------------------------------
    Scenario(
        "mixed-content-ws",
        _ws("mixed-content-ws", Service("chat", "chat", host="ws.lab.test", tls=False)),
        "blocked", "mixed-content", "mixed content: ws:// from https",
        "The page was loaded over HTTPS, so the browser refuses to open an unencrypted ws:// "
        "socket to ws.lab.test — the socket is never even created. The fix is wss://.",
        decisive=("socket",),
    ),
    Scenario(
        "mixed-content-localhost",
        _ws("mixed-content-localhost", Service("chat", "chat", host="localhost", tls=False)),
        "allowed", None,
        "localhost is potentially trustworthy (one reason it worked in development)",
        "The same ws:// socket to localhost is allowed from the https page: loopback addresses "
        "are 'potentially trustworthy', so Chromium's mixed-content blocking exempts them. In "
        "development the page was most likely http:// anyway, with no mixed content at all; this "
        "exemption (which not every browser grants) is the second reason it worked there.",
        decisive=("socket", "chat"),
    ),
    Scenario(
        "mixed-content-api",
        _trio("mixed-content-api", web_host="app.lab.test",
              api=Service("api", "api", host="api.lab.test", tls=False, cors=_ALLOW_WEB),
              page=Page(ws=None, steps=("hello",))),
        "blocked", "mixed-content", "mixed content: http from https",
        "The https page fetches http://api.lab.test. The browser blocks the insecure request "
        "before it leaves, even though the API would allow the origin.",
        decisive=("hello",),
    ),
    Scenario(
        "csp-upgrade-insecure",
        _trio("csp-upgrade-insecure",
              web_host="app.lab.test", upgrade_insecure=True,
              chat=Service("chat", "chat", host="ws.lab.test"),
              page=Page(api=None, ws="chat", ws_scheme="ws", steps=("socket", "chat"))),
        "allowed", None, "upgrade-insecure-requests rewrites ws: to wss: first",
        "The page is served with Content-Security-Policy: upgrade-insecure-requests; its code "
        "still says ws://ws.lab.test:C. The browser rewrites the URL to wss:// before the "
        "mixed-content check, and the chat server speaks TLS on that port, so it works.",
        decisive=("socket", "chat"),
    ),
    Scenario(
        "csp-upgrade-insecure-no-tls",
        _trio("csp-upgrade-insecure-no-tls",
              web_host="app.lab.test", upgrade_insecure=True,
              chat=Service("chat", "chat", host="ws.lab.test", tls=False),
              page=Page(api=None, ws="chat", ws_scheme="ws", steps=("socket", "chat"))),
        "blocked", "tls-handshake", "the upgrade works only where wss is already served",
        "The same policy in front of a chat server without TLS: the browser still asks for "
        "wss://, and the TLS handshake fails. upgrade-insecure-requests never adds TLS to a "
        "server.",
        decisive=("socket",),
    ),
    Scenario(
        "hsts-ws",
        _trio("hsts-ws", web_host="app.lab.test", hsts=True,
              chat=Service("chat", "chat", host="app.lab.test", tls=False),
              page=Page(api=None, ws="chat", steps=("socket", "chat"))),
        "blocked", "mixed-content", "HSTS does not rescue ws:// from an https page",
        "app.lab.test sent Strict-Transport-Security with the page. The page opens "
        "ws://app.lab.test:C: mixed-content blocking fires before HSTS could upgrade it.",
        decisive=("socket",),
    ),
    # -- wss:// needs a certificate the browser trusts, for the right name --------------------
    Scenario(
        "wss-trusted",
        _ws("wss-trusted", Service("chat", "chat", host="ws.lab.test")),
        "allowed", None, "TLS with a trusted cert",
        "The chat server presents a certificate for ws.lab.test signed by the lab CA, which this "
        "browser trusts. The TLS handshake succeeds and the socket opens.",
        decisive=("socket", "chat"),
    ),
    Scenario(
        "wss-untrusted-cert",
        _ws("wss-untrusted-cert", Service("chat", "chat", host="ws.lab.test", cert="rogue")),
        "blocked", "cert-authority", "ERR_CERT_AUTHORITY_INVALID",
        "The chat server's certificate names ws.lab.test but was signed by a CA the browser does "
        "not trust. A page cannot click through a certificate warning for a WebSocket: it fails.",
        decisive=("socket",),
    ),
    Scenario(
        "wss-name-mismatch",
        _ws("wss-name-mismatch", Service("chat", "chat", host="ws.lab.test", cert="wrong-name")),
        "blocked", "cert-name", "ERR_CERT_COMMON_NAME_INVALID",
        "The certificate comes from the trusted lab CA but is for wrong.lab.test, not "
        "ws.lab.test. Trust is per name: the browser refuses the handshake.",
        decisive=("socket",),
    ),
    Scenario(
        "wss-to-plain-server",
        _ws("wss-to-plain-server", Service("chat", "chat", host="ws.lab.test", tls=False),
            ws_scheme="wss"),
        "blocked", "tls-handshake", "wss:// to a server that does not speak TLS: no handshake",
        "The page asks for wss://, but the chat server on that port speaks no TLS at all. It "
        "does not understand the browser's TLS ClientHello and hangs up, so the socket fails "
        "(Chromium says ERR_CONNECTION_CLOSED here; a plain HTTP server answering in text gives "
        "ERR_SSL_PROTOCOL_ERROR).",
        decisive=("socket",),
    ),
    Scenario(
        "wss-wildcard-cert",
        _ws("wss-wildcard-cert", Service("chat", "chat", host="ws.lab.test", cert="wildcard")),
        "allowed", None, "a wildcard covers exactly one label",
        "The chat server presents a certificate for *.lab.test only, the shape a managed "
        "certificate usually has. ws.lab.test is one label under lab.test: the name matches.",
        decisive=("socket", "chat"),
    ),
    Scenario(
        "wss-wildcard-depth",
        _ws("wss-wildcard-depth",
            Service("chat", "chat", host="chat.ws.lab.test", cert="wildcard")),
        "blocked", "cert-name", "a wildcard does not cover two labels",
        "The same *.lab.test certificate on chat.ws.lab.test: the * stands for one whole label, "
        "and chat.ws is two. The browser refuses the name.",
        decisive=("socket",),
    ),
    # -- the long-term fix: one TLS-terminating reverse proxy ---------------------------------
    Scenario(
        "reverse-proxy",
        _proxied("reverse-proxy"),
        "allowed", None, "same origin",
        "labkit's proxy serves the page at https://app.lab.test:P and forwards /api to the API and "
        "/ws to chat. Page, API and socket share one origin, so no CORS header is needed anywhere "
        "and one certificate covers everything.",
        decisive=_STORY_STEPS, visit="proxy",
    ),
    Scenario(
        "reverse-proxy-ws-scheme",
        _proxied("reverse-proxy-ws-scheme", ws_scheme="ws"),
        "blocked", "mixed-content", "mixed content still applies",
        "Same proxy, but the page opens ws://app.lab.test:P/ws. One origin does not make ws:// "
        "acceptable from an https page: the browser still blocks it. Use wss:// or a relative URL.",
        decisive=("socket",), visit="proxy",
    ),
    Scenario(
        "https-redirect",
        _proxied("https-redirect"),
        "allowed", None, "HTTP→HTTPS redirect",
        "A visitor types http://app.lab.test:H. The plain-HTTP listener answers 308 with the https "
        "origin, path and query kept, and the page then works over TLS.",
        decisive=_STORY_STEPS, visit="redirect", redirected=True,
    ),
    Scenario(
        "nginx-proxy",
        _proxied("nginx-proxy", kind="nginx"),
        "allowed", None, "same origin",
        "The same one-origin deployment, served by real nginx from the config labkit generated. "
        "The page logs in and chats with no CORS headers on any backend.",
        decisive=_STORY_STEPS, visit="proxy", needs=("nginx",),
    ),
    Scenario(
        "proxy-missing-forwarded-proto",
        _proxied("proxy-missing-forwarded-proto", https_only=True, forwarded_proto=False),
        "blocked", "too-many-redirects", "the backend only knows the scheme the proxy tells it",
        "The API redirects every request it believes came over http to https. Behind the TLS "
        "proxy it always speaks plain http, and this proxy does not send X-Forwarded-Proto: "
        "each answer is a 308 to the very same https URL, and the browser gives up.",
        decisive=("hello",), visit="proxy",
    ),
    Scenario(
        "proxy-forwarded-proto",
        _proxied("proxy-forwarded-proto", https_only=True),
        "allowed", None, "X-Forwarded-Proto: https tells the backend the truth",
        "The same API behind a proxy that sends X-Forwarded-Proto: https. The API knows the "
        "browser used https and answers normally.",
        decisive=_STORY_STEPS, visit="proxy",
    ),
    # -- the short-term fix: a load balancer with a managed certificate per server -----------
    Scenario(
        "lb-managed-certs",
        _load_balanced("lb-managed-certs", _ALLOW_WEB),
        "allowed", None, "short-term fix: works, costs more",
        "Each server gets its own load balancer with its own certificate: https://api.lab.test:L1 "
        "and wss://ws.lab.test:L2, and the API allow-lists the page's origin. It works; every "
        "entry point (the page's, the API's, the socket's) is a certificate and a TLS handshake "
        "to pay for.",
        decisive=_STORY_STEPS,
    ),
    Scenario(
        "lb-managed-certs-no-cors",
        _load_balanced("lb-managed-certs-no-cors", CorsPolicy("none")),
        "blocked", "cors", "separate entry points are still separate origins",
        "The same load-balanced setup with CORS left off the API. The certificates are fine, but "
        "https://api.lab.test:L1 is another origin than the page, so the browser blocks the call: "
        "separate entry points still need CORS.",
        decisive=("hello",),
    ),
    # -- socket.io: polling is XHR, so CORS applies -------------------------------------------
    Scenario(
        "socketio-polling-cors",
        _sio("socketio-polling-cors", None),
        "blocked", "cors", "polling is XHR: CORS applies",
        "socket.io's client starts with HTTP long-polling, which is XHR, so CORS applies to it. "
        "python-socketio accepts only its own origin by default, and the browser blocks the poll.",
        decisive=("sio",),
    ),
    Scenario(
        "socketio-fixed",
        _sio("socketio-fixed", _WEB),
        "allowed", None, "CORS on the polling transport",
        "With cors_allowed_origins set to the page's origin, the polling requests carry the right "
        "Access-Control-Allow-Origin header. The client connects and then upgrades to WebSocket.",
        decisive=("sio",),
    ),
    Scenario(
        "socketio-websocket-only",
        _sio("socketio-websocket-only", None, websocket_only=True),
        "blocked", "origin-rejected", "skipping polling skips CORS, not the server's Origin check",
        "The workaround people copy: transports: ['websocket'] in the client. There is no XHR, so "
        "no CORS check — but python-socketio checks Origin on the WebSocket handshake too, "
        "against cors_allowed_origins (default: its own origin only), and answers 400.",
        decisive=("sio",),
    ),
    Scenario(
        "socketio-websocket-only-fixed",
        _sio("socketio-websocket-only-fixed", _WEB, websocket_only=True),
        "allowed", None, "the Origin allow-list admits the page",
        "The same websocket-only client with cors_allowed_origins set to the page's origin. The "
        "server accepts the handshake's Origin, and the client connects without any polling.",
        decisive=("sio",),
    ),
)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in _CATALOGUE}


def names() -> list[str]:
    return list(SCENARIOS)


def get(name: str) -> Scenario:
    """The scenario called ``name``; an unknown name lists the known ones."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise UnknownScenarioError(name, names()) from None
