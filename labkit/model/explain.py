"""Explain before you observe: predict what the browser does on any configuration, and why.

A model of the browser, not of the catalogue: the visit is walked the way Chromium walks it —
load the page (TLS, then the HTTP answer), then each of the page's steps in order, each request
through mixed content, TLS, the same-origin test, the preflight and the CORS check (or, for a
WebSocket, the server's answer and its Origin check) — with the page's cookie jar carried from
step to step and from the ``before`` pages to the visited one. Addresses come from the one
:class:`~labkit.model.deployment.Deployment`; the rules from :mod:`labkit.model.policy` and
:mod:`labkit.model.cookies`. Nothing is started. Tests run every scenario, and hypothesis-drawn
configurations, in Chromium and require the two to agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from . import policy
from .cookies import Cookie, Jar, login_cookie, why_not_sent, why_not_stored
from .cors import CorsPolicy, is_preflight, response_headers
from .deployment import Answer, Deployment
from .policy import OPAQUE, Prediction
from .scenarios import Scenario, get
from .topology import API_STEPS, PAGE_KINDS, SOCKET_STEPS, Topology

_HTTP = "RFC 9110 §15: the server answered with an error status"
_REDIRECTS = "Fetch Standard: HTTP-redirect fetch (#http-redirect-fetch): at most 20 redirects"
_WS_PATHS = ("/ws", "/")  # what labkit's chat server serves (apps/chat.py PATHS)
_STATUS_TEXT = {308: "Permanent Redirect", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
                405: "Method Not Allowed", 421: "Misdirected Request", 426: "Upgrade Required",
                502: "Bad Gateway"}


@dataclass(frozen=True)
class Explanation:
    scenario: str
    outcome: str
    reason: str | None
    rule: str
    checks: tuple[tuple[str, Prediction], ...]
    #: Who the servers take the visited page for, last: the session cookie the browser attaches
    #: to an accepted chat socket or an answered /api/whoami; None: no cookie, or no such request.
    session: str | None = None
    #: The cookies the browser holds at the end of the visit (from logins, this page's or the
    #: ``before`` pages'), with their attributes.
    cookies: tuple[Cookie, ...] = ()
    #: Whose rules and habits: "chromium" (the default) or "firefox".
    browser: str = "chromium"
    #: Firefox's (outcome, reason) where it differs from this explanation's (Chromium's).
    firefox: tuple[str, str | None] | None = None

    @property
    def browser_differences(self) -> tuple[BrowserDifference, ...]:
        """Where Firefox says the same verdict differently from Chromium (its words, its close
        code), for the first blocked check of each kind; empty when nothing is blocked."""
        out: list[BrowserDifference] = []
        for step, p in self.checks:
            if p.ok or p.reason is None:
                continue
            # socket.io's polling is XHR: its CORS blocks are fetch blocks.
            socket = step in SOCKET_STEPS or (step == "sio" and not p.reason.startswith("cors"))
            diff = firefox_difference("socket" if socket else "fetch", p.reason)
            if diff is not None and step in API_STEPS:
                diff = replace(diff, text=f"{diff.text}; {_FETCH_JS}")
            if diff is not None and diff not in out:
                out.append(diff)
        return tuple(out)

    def __str__(self) -> str:
        head = self.outcome + (f" ({self.reason})" if self.reason else "")
        lines = [f"{self.scenario}: {head}" + (f" — {self.rule}" if self.rule else "")]
        lines += [f"  {step}: {p.outcome}{f' ({p.reason})' if p.reason else ''} — {p.rule}"
                  f"{': ' + p.detail if p.detail else ''}" for step, p in self.checks]
        lines += [f"  cookie: {c}" for c in self.cookies]
        if any(step == "steal" and p.ok for step, p in self.checks):
            lines.append(f"  attack: reads the chat history as {self.session}" if self.session
                         else "  attack: the socket opens as a guest, so there is nothing to read")
        if self.firefox is not None:
            fo, fr = self.firefox
            lines.append(f"  in Firefox: {fo}" + (f" ({fr})" if fr else "") + " — "
                         + FIREFOX_CORS_QUIRK)
        lines += [f"  in Firefox: {d.text}" for d in self.browser_differences
                  if self.browser == "chromium"]
        return "\n".join(lines)


@dataclass(frozen=True)
class BrowserDifference:
    """How Firefox reports a block Chromium reports otherwise (Firefox ESR 153, BROWSER-FACTS;
    tests/test_firefox.py checks each against a real Firefox): ``text`` for people, ``evidence``
    a piece of Firefox's own words that must appear in its console, network errors or the
    page's view, and the close code a failed socket gets."""

    text: str
    evidence: str  # a regular expression
    close_code: int | None = None


_NO_SOCKET = "its console says only “Firefox can’t establish a connection to the server at …”"
_FETCH_JS = ("the page's JavaScript gets “TypeError: NetworkError when attempting to fetch "
             "resource.”")
#: (page step kind, reason) -> Firefox's way of saying it. Chromium's words are in the checks.
FIREFOX_DIFFERENCES: dict[tuple[str, str], BrowserDifference] = {
    ("socket", "cert-authority"): BrowserDifference(
        f"close code 1015 (Chromium: 1006); {_NO_SOCKET}; the reason is the network error "
        "SEC_ERROR_UNKNOWN_ISSUER", "SEC_ERROR_UNKNOWN_ISSUER", 1015),
    ("socket", "cert-name"): BrowserDifference(
        f"close code 1015 (Chromium: 1006); {_NO_SOCKET}; the reason is the network error "
        "SSL_ERROR_BAD_CERT_DOMAIN", "SSL_ERROR_BAD_CERT_DOMAIN", 1015),
    ("socket", "tls-handshake"): BrowserDifference(
        f"{_NO_SOCKET}; the network error is NS_ERROR_NET_RESET when the server hangs up on the "
        "TLS hello, SSL_ERROR_RX_RECORD_TOO_LONG when it answers in plain HTTP",
        "NS_ERROR_NET_RESET|SSL_ERROR_RX_RECORD_TOO_LONG", 1006),
    ("socket", "mixed-content"): BrowserDifference(
        "`new WebSocket` throws “SecurityError: The operation is insecure.” and Firefox logs no "
        "error-level console line about it", "SecurityError: The operation is insecure."),
    ("socket", "origin-rejected"): BrowserDifference(
        f"{_NO_SOCKET}; the network error NS_ERROR_WEBSOCKET_CONNECTION_REFUSED does not name "
        "the status: only its network log shows the server's refusal",
        "NS_ERROR_WEBSOCKET_CONNECTION_REFUSED", 1006),
    ("socket", "http-error"): BrowserDifference(
        f"{_NO_SOCKET}; the network error is NS_ERROR_WEBSOCKET_CONNECTION_REFUSED, whatever the "
        "status", "NS_ERROR_WEBSOCKET_CONNECTION_REFUSED", 1006),
    ("fetch", "mixed-content"): BrowserDifference(
        "the console says “Blocked loading mixed active content …”",
        "Blocked loading mixed active content"),
    ("fetch", "cors"): BrowserDifference(
        "the console says “Cross-Origin Request Blocked: The Same Origin Policy disallows "
        "reading the remote resource at … (Reason: …)”",
        "Cross-Origin Request Blocked"),
    ("fetch", "cors-credentials"): BrowserDifference(
        "the console says “Cross-Origin Request Blocked … (Reason: Credential is not supported "
        "if the CORS header ‘Access-Control-Allow-Origin’ is ‘*’)”",
        "Credential is not supported"),
    ("fetch", "cors-preflight"): BrowserDifference(
        "the console says “Cross-Origin Request Blocked …” for the preflight and then “(Reason: "
        "CORS request did not succeed)” for the request it never sent",
        "CORS request did not succeed"),
    ("fetch", "too-many-redirects"): BrowserDifference(
        "the network error is NS_ERROR_REDIRECT_LOOP", "NS_ERROR_REDIRECT_LOOP"),
}


def firefox_difference(kind: str, reason: str) -> BrowserDifference | None:
    return FIREFOX_DIFFERENCES.get((kind, reason))


FIREFOX_CORS_QUIRK = (
    "Firefox ESR 153 sends it without a preflight and lets the page read the answer without any "
    "CORS header: an http page on a loopback address that sets upgrade-insecure-requests, calling "
    "http on another loopback port (observed here, tests/test_firefox.py; the Fetch Standard has "
    "no such exemption, and Chromium blocks it)")


def firefox_skips_cors(upgrade_insecure: bool, page_origin: str, url: str) -> bool:
    """Firefox's loopback quirk (observed on ESR 153, see :data:`FIREFOX_CORS_QUIRK`)."""
    return (upgrade_insecure and page_origin.startswith("http:") and url.startswith("http:")
            and policy.is_potentially_trustworthy(page_origin)
            and policy.is_potentially_trustworthy(url))


def _allow(rule: str, detail: str) -> Prediction:
    return Prediction("allowed", None, rule, detail)


def _http_error(status: int, why: str, websocket: bool = False) -> Prediction:
    if websocket:
        text = f"Error during WebSocket handshake: Unexpected response code: {status}"
    else:
        text = (f"Failed to load resource: the server responded with a status of {status} "
                f"({_STATUS_TEXT.get(status, '')})")
    return Prediction("blocked", "http-error", _HTTP, f"{text} — {why}" if why else text)


def _tls(d: Deployment, service: str, url: str) -> Prediction | None:
    """The TLS check for ``url`` served by ``service``; None when the URL is not TLS."""
    if urlsplit(url).scheme not in ("https", "wss"):
        return None
    cert = d.certificate(service)
    host = (urlsplit(url).hostname or "").lower()
    if cert is None:
        # The websockets chat server hangs up on a ClientHello; HTTP servers answer it in text.
        return policy.tls_check(host, None,
                                hangs_up=d.topology.service(service).kind == "chat")
    return policy.tls_check(host, cert.names, trusted=cert.trusted)


def _upgrade(url: str) -> str:
    """http→https, ws→wss, the port kept (Upgrade Insecure Requests §4.1; RFC 6797 §8.3)."""
    scheme, rest = url.split(":", 1)
    return {"http": "https", "ws": "wss"}.get(scheme, scheme) + ":" + rest


@dataclass
class _Response:
    status: int
    headers: dict[str, str]


def _believed_https(d: Deployment, a: Answer) -> bool:
    """Whether the API believes the browser used https: its own listener's TLS, or behind
    proxies what the last one says in X-Forwarded-Proto (nothing: http)."""
    if d.listener(a.service or "").tls:
        return True  # its own socket is TLS (request.secure)
    if not a.via:
        return False
    proxy = d.topology.service(a.via[-1])
    return proxy.forwarded_proto and d.listener(proxy.name).tls


def _http_answer(d: Deployment, a: Answer, method: str, path: str, origin: str | None,
                 headers: Mapping[str, str], url: str = "") -> _Response:
    """The status and CORS headers a request gets from whoever answers it (apps/*.py)."""
    if a.status is not None or a.service is None:
        return _Response(a.status or 502, {})
    svc = d.topology.service(a.service)
    if svc.kind == "redirect":
        return _Response(308, {})
    if svc.kind == "api" and svc.https_only and not _believed_https(d, a):
        # apps/api.py: to https on the Host the request carried (the browser's), no CORS headers
        parts = urlsplit(url)
        return _Response(308, {"Location": f"https://{parts.netloc}{path}"})
    if svc.kind == "api":
        cors: CorsPolicy = svc.cors
        allowed = list(d.cors_origins(svc.name))
        req = {"Origin": origin or "", **headers} if origin else dict(headers)
        if is_preflight(method, req):
            if not cors.preflight:
                return _Response(405, {})  # the story's bug: no CORS headers on the 405
            return _Response(204, response_headers(cors, origin, allowed, preflight=True))
        routes = {("GET", "/api/hello"), ("GET", "/api/whoami"), ("GET", "/api/rooms"),
                  ("GET", "/api/history"), ("GET", "/api/counter"), ("POST", "/api/login"),
                  ("POST", "/api/counter")}
        paths = {p for _, p in routes}
        status = 200 if (method, path) in routes else (405 if path in paths else 404)
        # Errors carry the CORS headers too (apps/api.py): the page may read a 404.
        return _Response(status, response_headers(cors, origin, allowed))
    if svc.kind in PAGE_KINDS:
        ok = path in ("/", "/app.js", "/socket.io.min.js")
        return _Response(200 if ok and method == "GET" else (405 if ok else 404), {})
    if svc.kind == "chat":
        if method != "GET":
            return _Response(400, {})  # websockets parses GET requests only
        return _Response(426 if path in _WS_PATHS else 404, {})
    return _Response(404, {})  # socket.io serves /socket.io/ only


@dataclass(frozen=True)
class _Reached:
    """What :meth:`_Walk.reach` decided for one request."""

    refused: Prediction | None  # the browser's block before any server answers, or None
    url: str  # the URL really fetched (upgraded by CSP or HSTS)
    note: str = ""  # what was rewritten, for the step's detail
    #: Upgraded through HSTS: an internal redirect to another origin, so a handshake's Origin
    #: becomes "null" (observed in Chromium 156).
    hsts: bool = False


class _Walk:
    """One browser context walking pages: the deployment, and the cookie jar and HSTS hosts it
    carries."""

    def __init__(self, d: Deployment, browser: str = "chromium") -> None:
        self.d = d
        #: Whose habits, where browsers differ from each other (and the specs): see FIREFOX_*.
        self.browser = browser
        self.jar = Jar()
        self.session: str | None = None
        #: Hosts that sent Strict-Transport-Security over valid TLS (RFC 6797 §8.1): every port.
        self.hsts: set[str] = set()

    def reach(self, page_svc: str, page_origin: str, service: str, url: str) -> _Reached:
        """What the browser decides before a request reaches any server, and the URL it really
        fetches: the page's CSP upgrade-insecure-requests rewrites http/ws first (Upgrade
        Insecure Requests §4.1, before Fetch's mixed-content check), then mixed content blocks
        (the request is never sent), then a known HSTS host is upgraded (Chromium does that in
        the network stack, after the mixed-content check), then the TLS handshake with
        ``service``."""
        note = ""
        if self.d.topology.service(page_svc).upgrade_insecure \
                and not policy.is_potentially_trustworthy(url) and _upgrade(url) != url:
            # Chromium leaves potentially trustworthy URLs alone (localhost, loopback): Blink
            # MixedContentChecker::UpgradeInsecureRequest; websocket_common.cc likewise.
            note = (f"upgrade-insecure-requests rewrote {url} to {_upgrade(url)} before the "
                    "mixed-content check (Upgrade Insecure Requests §4.1); ")
            url = _upgrade(url)
        mixed = policy.mixed_content_check(page_origin + "/", url)
        if not mixed.ok:
            return _Reached(mixed, url, note)
        hsts = (urlsplit(url).hostname or "").lower() in self.hsts and \
            urlsplit(url).scheme in ("http", "ws")
        if hsts:
            note += f"HSTS for this host upgraded it to {_upgrade(url)}; "
            url = _upgrade(url)
        tls = _tls(self.d, service, url)
        return _Reached(tls if tls is not None and not tls.ok else None, url, note, hsts)

    # -- the page load ---------------------------------------------------------------------------
    def load(self, visited: str) -> tuple[str, str | None, Prediction | None]:
        """(page origin, page service, the navigation's block or None)."""
        d = self.d
        landing = d.landing(visited)
        page_origin = d.page_origin(visited)
        start = d.origin(visited)
        if urlsplit(start).scheme == "http" and d.listener(visited).host in self.hsts:
            # RFC 6797 §8.3: the browser rewrites the navigation itself (same port) and never
            # sends the plain request; a plain listener then fails the TLS handshake.
            tls = _tls(d, visited, _upgrade(start) + "/")
            if tls is not None and not tls.ok:
                return _upgrade(start), None, tls
            page_origin, landing = _upgrade(start), visited
        elif urlsplit(start).scheme == "https" and landing != visited:
            # A TLS redirect listener shakes hands before it can say where to go.
            tls = _tls(d, visited, start + "/")
            if tls is not None and not tls.ok:
                return start, None, tls
        tls = _tls(d, landing, page_origin + "/")
        if tls is not None and not tls.ok:
            return page_origin, None, tls
        host = (urlsplit(page_origin).hostname or "").lower()
        a = d.answer(landing, "/", host=host)
        resp = _http_answer(d, a, "GET", "/", None, {})
        page_svc = d.page_service(visited)
        if resp.status >= 400 or page_svc is None:
            return page_origin, None, Prediction(
                "blocked", "http-error", _HTTP,
                f"the page at {page_origin}/ answered HTTP {resp.status}"
                + (f" — {a.why}" if a.why else ""))
        page_server = d.topology.service(page_svc)
        if page_origin.startswith("https:") and page_server.hsts and policy._ip(host) is None \
                and not policy.is_potentially_trustworthy(f"http://{host}/"):
            # Over TLS the browser trusted (a failed one returned above). Not for IP addresses
            # (RFC 6797 §8.1) nor localhost (Chromium ignores it there, crbug.com/41251622).
            self.hsts.add(host)
        if page_origin.startswith("http:") and page_server.upgrade_insecure \
                and not policy.is_potentially_trustworthy(page_origin):
            # The page's own script is upgraded too, to https on a port that speaks none.
            return page_origin, None, Prediction(
                "blocked", "tls-handshake", policy._TLS["tls-handshake"],
                f"net::ERR_SSL_PROTOCOL_ERROR — upgrade-insecure-requests asks for "
                f"{_upgrade(page_origin)}/app.js, and {page_svc} speaks no TLS")
        return page_origin, page_svc, None

    # -- API steps -------------------------------------------------------------------------------
    def api(self, page_origin: str, landing: str, page_svc: str, step: str) -> Prediction:
        d = self.d
        page = d.page(page_svc)
        # A sandboxed frame's requests carry Origin: null; its URL (for mixed content) is the
        # page's own.
        me = OPAQUE if page.sandboxed else page_origin
        method, headers, path = API_STEPS[step]
        if page.same_origin:
            entry, url = landing, page_origin + path
        else:
            assert page.api is not None  # validate() refuses API steps without an API
            entry, url = page.api, d.origin(page.api) + path
        reached = self.reach(page_svc, page_origin, entry, url)
        if reached.refused is not None:
            return reached.refused
        url = reached.url
        host = (urlsplit(url).hostname or "").lower()
        a = d.answer(entry, path, host=host)
        same = policy.same_origin(me, url)
        origin = None if same else me
        # Firefox ESR 153, observed: no preflight and no CORS check (see firefox_skips_cors).
        cors_free = same or (self.browser == "firefox" and firefox_skips_cors(
            self.d.topology.service(page_svc).upgrade_insecure, page_origin, url))
        if not cors_free and policy.needs_preflight(method, headers):
            pre = _http_answer(d, a, "OPTIONS", path, origin,
                               {"Access-Control-Request-Method": method}, url)
            if pre.status == 308:
                return Prediction("blocked", "cors-preflight", policy._PRE,
                                  policy._PREFLIGHT + "Redirect is not allowed for a preflight "
                                  "request.")
            check = policy.preflight_check(me, method, headers, pre.status, pre.headers,
                                           page.credentials)
            if not check.ok:
                return check
        resp = _http_answer(d, a, method, path, origin, headers, url)
        if step == "login" and a.service is not None and resp.status == 200:
            # apps/api.py: the user name is stripped and cut at 32 characters.
            self._set_cookie(me, url, a, page.credentials, same, page.user.strip()[:32])
        if step == "whoami" and a.service is not None and resp.status == 200:
            # The API answers as whoever's cookie rode along (read even if CORS hides it).
            sends = page.credentials == "include" or (page.credentials == "same-origin" and same)
            sent = self.jar.sent(me, url) if sends else []
            self.session = sent[0].value if sent else None
        if resp.status == 308:
            if not cors_free:  # the redirect itself is CORS-checked (Fetch #http-redirect-fetch)
                cors = policy.cors_check(me, resp.headers, page.credentials)
                if not cors.ok:
                    return cors
            location = resp.headers.get("Location", "")
            if location == url:  # the API believes http again on every hop (Fetch: 20 at most)
                return Prediction("blocked", "too-many-redirects", _REDIRECTS,
                                  f"net::ERR_TOO_MANY_REDIRECTS — {a.service} keeps answering "
                                  f"308 to {location}"
                                  + (f" through {a.via[-1]}" if a.via else "")
                                  + ": it never learns the browser used https")
            tls = _tls(d, entry, location)  # same host and port, now https
            if tls is not None and not tls.ok:
                return tls
        if not cors_free:
            cors = policy.cors_check(me, resp.headers, page.credentials)
            if not cors.ok:
                return cors
        if not 200 <= resp.status <= 299:
            return _http_error(resp.status, a.why)
        if step == "whoami":
            who = self.session or "a guest"
            why = ("" if self.session else ": " + self._why_no_cookie(me, url)
                   if page.credentials == "include" else f": credentials mode "
                   f"'{page.credentials}'" + (" (cross-origin)" if not same else ""))
            detail = f"the API answers as {who}{why}"
            if cors_free and not same:
                return _allow("no CORS check (Firefox)", f"{FIREFOX_CORS_QUIRK}; {detail}")
            return _allow(cors.rule if not same else "same origin: no CORS check",
                          (cors.detail + "; " if not same else "") + detail)
        if cors_free and not same:
            return _allow("no CORS check (Firefox)", reached.note + FIREFOX_CORS_QUIRK)
        return _allow(cors.rule if not same else "same origin: no CORS check",
                      reached.note + (cors.detail if not same
                                      else f"{url} has the page's origin"))

    def _why_no_cookie(self, me: str, url: str) -> str:
        if not self.jar.cookies:
            return "nothing logged in in this browser"
        if me == OPAQUE:
            return ("the request comes from an opaque origin (a sandboxed frame): cross-site, so "
                    "SameSite=Lax and third-party-cookie blocking keep the cookie off")
        return "; ".join(sorted({why_not_sent(c, me, url) or "" for c in self.jar.cookies}))

    def _set_cookie(self, page_origin: str, url: str, a: Answer, credentials: str, same: bool,
                    user: str) -> None:
        # The API marks the cookie Secure when it believes the request came over https: its
        # own TLS, or a proxy's X-Forwarded-Proto (apps/api.py _came_over_https).
        c = login_cookie(url, user, secure=_believed_https(self.d, a))
        if why_not_stored(c, page_origin, url, credentials, same) is None:
            self.jar.store(c)

    # -- WebSocket steps -----------------------------------------------------------------------
    def socket(self, page_origin: str, landing: str, page_svc: str) -> Prediction:
        d = self.d
        page = d.page(page_svc)
        me = OPAQUE if page.sandboxed else page_origin
        url = d.socket_url(page_svc, page_origin)
        assert url is not None  # validate() refuses socket steps without a socket
        entry = landing if page.same_origin else page.ws
        assert entry is not None
        reached = self.reach(page_svc, page_origin, entry, url)
        if reached.refused is not None:
            return reached.refused
        url = reached.url
        if reached.hsts:
            me = OPAQUE
        if urlsplit(url).scheme == "ws" and d.listener(entry).tls:
            if d.listener(entry).kind == "nginx":
                # nginx answers a plain request on its TLS port instead of hanging up.
                return _http_error(400, "nginx: the plain HTTP request was sent to HTTPS port",
                                   websocket=True)
            return Prediction("blocked", "tls-handshake", policy._TLS["tls-handshake"],
                              f"{url} speaks plain HTTP to a port that expects a TLS handshake: "
                              "the server drops the connection")
        host = (urlsplit(url).hostname or "").lower()
        a = d.answer(entry, page.ws_path, host=host, upgrade=True)
        if a.status is not None or a.service is None:
            return _http_error(a.status or 502, a.why, websocket=True)
        chat = d.topology.service(a.service)
        if chat.kind == "redirect":
            return Prediction(
                "blocked", "http-error",
                "WHATWG WebSockets: the handshake is fetched with redirect mode \"error\"; only a "
                "101 opens the socket",
                f"Error during WebSocket handshake: Unexpected response code: 308 — {chat.name} "
                "redirects, and the browser never follows a redirect on a handshake")
        if chat.kind != "chat":
            status = _http_answer(d, a, "GET", page.ws_path, me, {}).status
            return _http_error(status if status != 200 else 404,
                               f"{chat.name} is a {chat.kind} server, not a WebSocket endpoint",
                               websocket=True)
        if page.ws_path.split("?", 1)[0] not in _WS_PATHS:
            return _http_error(404, f"the chat server serves {' and '.join(_WS_PATHS)} only",
                               websocket=True)
        check = policy.websocket_origin_check(me, d.chat_origins(chat.name))
        if not check.ok:
            return check
        sent = self.jar.sent(me, url)
        self.session = sent[0].value if sent else None
        if sent:
            why = f"the handshake carries the session cookie of {sent[0].value}"
        else:
            why = "no session cookie on the handshake: " + self._why_no_cookie(me, url)
        return Prediction(check.outcome, check.reason, check.rule,
                          f"{reached.note}{check.detail}; {why}")

    def sio(self, page_origin: str, page_svc: str) -> Prediction:
        d = self.d
        page = d.page(page_svc)
        me = OPAQUE if page.sandboxed else page_origin
        sio = page.sio
        assert sio is not None
        if page.sio_websocket_only:
            url = d.listener(sio).ws_url("/socket.io/?EIO=4&transport=websocket")
        else:
            url = d.origin(sio) + "/socket.io/?EIO=4&transport=polling"
        reached = self.reach(page_svc, page_origin, sio, url)
        if reached.refused is not None:
            return reached.refused
        url = reached.url
        # python-socketio: no cors_allowed_origins means "same origin only"; a refused origin
        # gets 400 without Access-Control-Allow-Origin, which the browser reports as CORS.
        allowed = d.chat_origins(sio) or (d.origin(sio),)
        if page.sio_websocket_only:
            # No polling, so no CORS check: but engineio checks Origin on the WebSocket
            # handshake too, against the same list, and refuses with 400.
            if me in allowed:
                return _allow(policy._WS, f"Origin {me} is in the server's cors_allowed_origins")
            return Prediction(
                "blocked", "origin-rejected", policy._WS,
                "Error during WebSocket handshake: Unexpected response code: 400 — python-socketio "
                "checks Origin on the WebSocket handshake too (cors_allowed_origins; default: "
                "its own origin only) and answers 400, not an accepted origin")
        if policy.same_origin(me, url):
            return _allow("same origin: no CORS check", f"{url} has the page's origin")
        headers = ({"Access-Control-Allow-Origin": me,
                    "Access-Control-Allow-Credentials": "true"}
                   if me in allowed else {})
        # socket.io's polling XHR does not send credentials by default (withCredentials: false).
        # (Its WebSocket, once polling works, is socket.io's own: no chat session to count.)
        return policy.cors_check(me, headers, "same-origin")

    # -- a whole page ----------------------------------------------------------------------------
    def page(self, visited: str) -> list[tuple[str, Prediction]]:
        page_origin, page_svc, blocked = self.load(visited)
        if blocked is not None or page_svc is None:
            return [("page", blocked or _http_error(404, ""))]
        landing = self.d.landing(visited)
        checks: list[tuple[str, Prediction]] = []
        opened: Prediction | None = None
        for step in self.d.page(page_svc).steps:
            if step in API_STEPS:
                p = self.api(page_origin, landing, page_svc, step)
            elif step in ("socket", "steal"):
                p = self.socket(page_origin, landing, page_svc)
                if step == "socket":
                    opened = p
            elif step == "chat":
                # The message goes over the socket the "socket" step opened.
                assert opened is not None  # validate() puts "socket" before "chat"
                p = opened if not opened.ok else _allow(opened.rule, "sent on the open socket")
            else:
                p = self.sio(page_origin, page_svc)
            checks.append((step, p))
        return checks


def explain(scenario: Scenario | Topology | str, *, visit: str | None = None,
            before: tuple[str, ...] | None = None, ports: Mapping[str, int] | None = None,
            deployment: Deployment | None = None, browser: str = "chromium") -> Explanation:
    """Predict what the browser does and name the rule, from the rules alone.

    ``scenario``: a scenario (or its name) or a :class:`~labkit.model.topology.Topology` you
    built. ``visit``: the service whose page the browser opens (default: the scenario's, else
    ``web``); ``before``: pages opened first in the same browser context (a victim logging in
    before the attacker's page). ``ports`` or a running lab's ``deployment`` give the real ports;
    otherwise fixed ports are used and the others get placeholders. ``browser``: "chromium"
    (the default; Firefox's differences are named in the text) or "firefox".
    """
    target = scenario.topology if isinstance(scenario, Scenario) else scenario
    if isinstance(target, Topology) and any(
            "script" in target.page_for(s.name).steps for s in target.services
            if s.kind in PAGE_KINDS):
        from ..errors import TopologyError

        raise TopologyError("explain cannot predict a page that runs your own script",
                            "Run it instead: the browser is the judge of what a script does.")
    if isinstance(scenario, Topology):
        visit = visit or "web"
        scenario.validate()
        scenario.check_visit(visit, before or ())
        steps = scenario.page_for(_page_service(scenario, visit) or visit).steps
        scenario = Scenario(scenario.name, scenario, "allowed", None, "", "", decisive=steps,
                            visit=visit, before=before or ())
    sc = get(scenario) if isinstance(scenario, str) else scenario
    if sc.client == "python":
        p = Prediction("allowed", None, "CORS is enforced by browsers only",
                       "a Python client neither sends Origin nor checks CORS headers")
        return Explanation(sc.name, p.outcome, p.reason, sc.rule, (("client", p),))
    d = deployment or Deployment.plan(sc.topology, ports)
    e = _explain_in(sc, d, visit, before, browser)
    if browser == "chromium":
        ff = _explain_in(sc, d, visit, before, "firefox")
        if (ff.outcome, ff.reason) != (e.outcome, e.reason):
            e = replace(e, firefox=(ff.outcome, ff.reason))
    return e


def _explain_in(sc: Scenario, d: Deployment, visit: str | None,
                before: tuple[str, ...] | None, browser: str) -> Explanation:
    walk = _Walk(d, browser)
    for earlier in (before if before is not None else sc.before):
        walk.page(earlier)
    walk.session = None
    checks = walk.page(visit or sc.visit)
    decisive = set(sc.decisive) | {"page"}
    first = next((p for step, p in checks if step in decisive and not p.ok), None)
    session, cookies = walk.session, tuple(walk.jar.cookies)
    if first is not None:
        return Explanation(sc.name, "blocked", first.reason, sc.rule, tuple(checks), session,
                           cookies, browser)
    return Explanation(sc.name, "allowed", None, sc.rule, tuple(checks), session, cookies,
                       browser)


def _page_service(topology: Topology, visit: str) -> str | None:
    return Deployment.plan(topology).page_service(visit)
