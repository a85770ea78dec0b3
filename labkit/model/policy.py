"""The browser's rules, as plain functions with no I/O: explain an outcome before Chromium shows it.

Each function names the spec it follows; WHATWG sections are cited by anchor (#cors-check) because
living standards renumber. Where Chromium and the spec disagree the function follows Chromium and
says so: tests compare every verdict with what the real browser did. Checks return a
:class:`Prediction` whose ``detail``, when blocked, is Chromium's console sentence.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args
from urllib.parse import SplitResult, urljoin, urlsplit

from ..errors import InvalidOriginError, UnknownHostError

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
LAB_DOMAIN = "lab.test"
#: Another *site* for the attacker: a different registrable domain than lab.test (RFC 6761
#: reserves .test, so neither name can exist on the internet).
CROSS_SITE_DOMAIN = "evil-lab.test"
#: The origin of a sandboxed frame, a data: page or a redirect across origins: opaque, sent as
#: ``Origin: null`` (HTML #concept-origin-opaque; RFC 6454 §7.3).
OPAQUE = "null"
#: Why a check blocked. An interface: the browser-observation classifier uses the same strings.
Reason = Literal["cors", "cors-preflight", "cors-credentials", "mixed-content", "cert-authority",
           "cert-name", "tls-handshake", "origin-rejected", "http-error", "too-many-redirects"]
REASONS: tuple[Reason, ...] = get_args(Reason)
Outcome = Literal["allowed", "blocked"]
Credentials = Literal["omit", "same-origin", "include"]
CREDENTIALS_MODES: tuple[Credentials, ...] = get_args(Credentials)
SAFELISTED_METHODS = ("GET", "HEAD", "POST")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# URL Standard "forbidden domain code point" (':' too: a colon only appears in an IPv6 host)
_BAD_HOST = re.compile(r"[\x00-\x20#%/:<>?@\[\\\]^|\x7f]")
_IPV6_HOSTPORT = re.compile(r"\[[0-9a-f:.]+\](:[0-9]*)?")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_UNSAFE_BYTE = re.compile(r'[\x00-\x08\x0a-\x1f"():<>?@\[\\\]{}\x7f]')
_LANGUAGE = re.compile(r"[0-9A-Za-z *,.;=-]*")
_RANGE = re.compile(r"bytes=([0-9]+)-([0-9]*)")
_SIMPLE_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")
_PREFLIGHT = "Response to preflight request doesn't pass access control check: "
_CORS = "Fetch Standard: CORS check (#cors-check)"
_PRE = "Fetch Standard: CORS-preflight fetch (#cors-preflight-fetch)"
_MIX = "Mixed Content: should fetching request be blocked as mixed content? (#should-block-fetch)"
_WS = "RFC 6455 §4.2.2, §10.2: the server checks Origin; browsers never CORS-check a handshake"
_TLS = {"tls-handshake": "RFC 8446: https:// and wss:// begin with a TLS handshake",
        "cert-authority": "RFC 5280 §6: the certificate chain must end at a trusted CA",
        "cert-name": "RFC 9525 §6.3: a subjectAltName entry must match the host name"}


@dataclass(frozen=True)
class Prediction:
    """A decision and its reason: ``reason`` is one of :data:`REASONS` exactly when blocked.

    ``rule`` cites the spec; ``detail`` explains, in Chromium's words when the outcome is blocked.
    """

    outcome: Outcome
    reason: Reason | None
    rule: str
    detail: str

    def __post_init__(self) -> None:
        # Fail at construction: a verdict the classifier cannot match would silently never agree.
        if self.outcome not in ("allowed", "blocked") or (
            (self.outcome == "blocked") != (self.reason in REASONS)
        ):
            raise ValueError(f"inconsistent verdict: {self.outcome!r} with reason {self.reason!r}")

    @property
    def ok(self) -> bool:
        return self.outcome == "allowed"


def _allow(rule: str, detail: str) -> Prediction:
    return Prediction("allowed", None, rule, detail)


def _block(reason: Reason, rule: str, detail: str) -> Prediction:
    return Prediction("blocked", reason, rule, detail)


@dataclass(frozen=True, order=True)
class Origin:
    """A tuple origin (scheme, host, port) — HTML Standard §7.5 "Origin", RFC 6454 §4."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = DEFAULT_PORTS.get(self.scheme)
        return f"{self.scheme}://{host}" + ("" if self.port == default else f":{self.port}")


def _split(url: str) -> SplitResult:
    try:
        return urlsplit(url)
    except ValueError as e:  # e.g. an unclosed IPv6 bracket: no browser would parse it either
        raise InvalidOriginError(url, str(e)) from None


def origin_of(url: str) -> Origin:
    """The origin of a URL (URL Standard §4.6 "origin"): scheme, host and port, path dropped."""
    parts = _split(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise InvalidOriginError(url, "needs an http, https, ws or wss scheme and a host")
    try:
        port = parts.port
    except ValueError as e:
        raise InvalidOriginError(url, str(e)) from None
    host = parts.hostname.lower()
    # urlsplit is lenient where browsers refuse: "http://a b/", "http://[::1]x/", "[v1.x]".
    hostport = parts.netloc.rpartition("@")[2].lower()
    ipv6 = bool(_IPV6_HOSTPORT.fullmatch(hostport)) and isinstance(_ip(host), ipaddress.IPv6Address)
    if not ipv6 and (_BAD_HOST.search(host) or "[" in hostport):
        raise InvalidOriginError(url, f"'{host}' is not a host name a browser accepts")
    return Origin(scheme, host, DEFAULT_PORTS[scheme] if port is None else port)


def parse_origin(value: str) -> Origin:
    """Parse the value of an ``Origin`` header or an allow-list entry (RFC 6454 §7).

    Stricter than :func:`origin_of`: an origin has no path, query, fragment or user info, and only
    http/https (the schemes of pages that can open sockets or call APIs).
    """
    if not isinstance(value, str) or not value:
        raise InvalidOriginError(str(value), "empty")
    parts = _split(value)
    if parts.scheme not in ("http", "https"):
        raise InvalidOriginError(value, "the scheme must be http or https")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise InvalidOriginError(value, "an origin has no path, query or user name")
    if value.endswith("/"):
        raise InvalidOriginError(value, "browsers send origins without a trailing slash")
    return origin_of(value)


def _origin(x: str | Origin) -> Origin:
    return x if isinstance(x, Origin) else origin_of(x)


def same_origin(a: str | Origin, b: str | Origin) -> bool:
    """Same origin: identical scheme, host and port (HTML §7.5 "same origin"). An opaque origin
    (``null``) is same origin with nothing this function is given: each is its own."""
    if OPAQUE in (a, b):
        return False
    return _origin(a) == _origin(b)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def registrable_domain(host: str) -> str | None:
    """URL Standard #host-registrable-domain, using only the Public Suffix List's default rule "*".

    Enough for the lab's names: ``test`` is not on the list (RFC 6761 reserves it), so the public
    suffix of app.lab.test is ``test`` and its registrable domain ``lab.test``; ``localhost`` is a
    public suffix itself (None). Wrong for real multi-label suffixes such as co.uk or github.io.
    """
    if _ip(host) is not None:
        return None
    dot = "." if host.endswith(".") else ""
    labels = host.removesuffix(".").split(".")
    return ".".join(labels[-2:]) + dot if len(labels) >= 2 else None


def same_site(a: str | Origin, b: str | Origin) -> bool:
    """Schemeful same site (HTML #same-site): same scheme, and same host or registrable domain.

    The port plays no part, which is why https://localhost:A and https://localhost:B are
    cross-origin yet same-site (Chromium sends ``Sec-Fetch-Site: same-site`` between them).
    ws/wss compare as http/https: a WebSocket handshake is fetched with its URL's scheme mapped so
    (WHATWG WebSockets, "establish a WebSocket connection").
    """
    if OPAQUE in (a, b):  # an opaque origin's site is opaque: cross-site with everything
        return False
    oa, ob = _origin(a), _origin(b)
    as_fetched = {"ws": "http", "wss": "https"}
    if as_fetched.get(oa.scheme, oa.scheme) != as_fetched.get(ob.scheme, ob.scheme):
        return False
    site = registrable_domain(oa.host)
    return oa.host == ob.host or (site is not None and site == registrable_domain(ob.host))


def is_potentially_trustworthy(target: str | Origin) -> bool:
    """Secure Contexts §3.1/§3.2 (#is-origin-trustworthy, #is-url-trustworthy).

    https/wss, loopback addresses (127.0.0.0/8, ::1) and localhost names qualify: loopback traffic
    never crosses a network an attacker could sit on. That exemption is why ws:// "worked on my
    machine"; lab.test names get no such pass, so the lab uses them to make failures real.
    """
    if isinstance(target, str):
        parts = _split(target)
        scheme = parts.scheme.lower()
        if scheme in ("data", "file") or (scheme == "about" and parts.path in ("blank", "srcdoc")):
            return True
        if scheme not in DEFAULT_PORTS:
            return False  # an opaque origin is never trustworthy (step 1)
        target = origin_of(target)
    if target.scheme in ("https", "wss"):
        return True
    ip = _ip(target.host)
    if ip is not None:  # compared by hand: Python 3.13 also counts ::ffff:127.0.0.1 as loopback
        return (ip.version == 4 and ip.is_loopback) or ip == ipaddress.IPv6Address("::1")
    host = target.host.removesuffix(".")
    return host == "localhost" or host.endswith(".localhost")


def mixed_content_check(page_url: str, target_url: str) -> Prediction:
    """May a page at ``page_url`` fetch or open a socket to ``target_url``? (Mixed Content
    #should-block-fetch: decided before any byte is sent, so nothing reaches the server.)

    Blocked when the page restricts mixed content and the target is not a potentially trustworthy
    URL. The spec lets every potentially trustworthy page restrict (http://localhost too); Chromium
    restricts only https pages, and this follows Chromium. A relative target resolves against the
    page, so ``/ws`` from an https page is never mixed.
    """
    page = origin_of(page_url)
    try:
        target = urljoin(page_url, target_url)
    except ValueError as e:
        raise InvalidOriginError(target_url, str(e)) from None
    if page.scheme != "https":
        return _allow(_MIX, f"the page {page} is not HTTPS, so there is no secure page to weaken")
    if is_potentially_trustworthy(target):
        return _allow(_MIX, f"'{target}' is potentially trustworthy (Secure Contexts §3.2)")
    head = f"Mixed Content: The page at '{page_url}' was loaded over HTTPS, but "
    if _split(target).scheme.lower() == "ws":
        tail = (f"attempted to connect to the insecure WebSocket endpoint '{target}'. This "
                "request has been blocked; this endpoint must be available over WSS.")
    else:
        tail = (f"requested an insecure resource '{target}'. This request has been blocked; "
                "the content must be served over HTTPS.")
    return _block("mixed-content", _MIX, head + tail)


def is_mixed_content(page_url: str, target_url: str) -> bool:
    """True when :func:`mixed_content_check` blocks the request."""
    return not mixed_content_check(page_url, target_url).ok


def _method(method: str) -> str:
    # Fetch #concept-method-normalize: only these six are upper-cased, so "patch" stays "patch".
    up = method.upper()
    return up if up in ("DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT") else method


def _safelisted(name: str, value: str) -> bool:
    """Fetch #cors-safelisted-request-header: the headers an HTML form could always send."""
    if len(value) > 128:
        return False
    name = name.lower()
    if name == "accept":
        return not _UNSAFE_BYTE.search(value)
    if name in ("accept-language", "content-language"):
        return bool(_LANGUAGE.fullmatch(value))
    if name == "content-type":
        essence = value.split(";", 1)[0].strip(" \t\r\n").lower()
        return not _UNSAFE_BYTE.search(value) and essence in _SIMPLE_TYPES
    if name == "range":  # only "bytes=start-[end]": the form media elements send
        m = _RANGE.fullmatch(value)
        return m is not None and (not m[2] or int(m[1]) <= int(m[2]))
    return False


def unsafe_header_names(headers: Mapping[str, str]) -> list[str]:
    """Fetch #cors-unsafe-request-header-names: what a preflight's Access-Control-Request-Headers
    lists, sorted and lower-cased. Safelisted values count too once they total over 1024 bytes."""
    unsafe: set[str] = set()
    safe: set[str] = set()
    size = 0
    for name, value in headers.items():
        if _safelisted(name, value):
            safe.add(name.lower())
            size += len(value)
        else:
            unsafe.add(name.lower())
    return sorted(unsafe | safe if size > 1024 else unsafe)


def needs_preflight(method: str, headers: Mapping[str, str] | None = None) -> bool:
    """Does a cross-origin fetch()/XHR send an OPTIONS preflight first? (Fetch #http-fetch step
    "CORS-preflight fetch", with #cors-safelisted-method and the request-header rules.)

    ``headers`` are those the script sets. Requests a form could send without CORS (GET/HEAD/POST
    with safelisted headers) are not preflighted, so a text/plain POST reaches the server and runs
    even though the page may not read the answer; JSON needs a preflight. Credentials never
    trigger one, and WebSocket handshakes are never preflighted.
    """
    return _method(method) not in SAFELISTED_METHODS or bool(unsafe_header_names(headers or {}))


def _headers(headers: Mapping[str, str]) -> dict[str, str]:
    # Header names are case-insensitive; repeats combine with ", " as Fetch's "get" does, so two
    # Access-Control-Allow-Origin headers fail as "multiple values", like in Chromium.
    out: dict[str, str] = {}
    for name, value in headers.items():
        key, value = name.lower(), value.strip(" \t")
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _include(credentials_mode: str) -> bool:
    if credentials_mode not in CREDENTIALS_MODES:
        raise ValueError(f"credentials mode {credentials_mode!r} is not one of "
                         f"{', '.join(CREDENTIALS_MODES)}")
    return credentials_mode == "include"


def cors_check(request_origin: str | Origin, response_headers: Mapping[str, str],
               credentials_mode: str = "omit") -> Prediction:
    """May the page read this cross-origin response? (Fetch #cors-check)

    The browser still received it: CORS protects the reader, not the server. Checks run in
    Chromium's order and ``detail`` is its reason sentence (it may append a hint about 'no-cors').
    """
    origin = OPAQUE if request_origin == OPAQUE else str(_origin(request_origin))
    h = _headers(response_headers)
    include = _include(credentials_mode)
    acao = h.get("access-control-allow-origin")
    if acao is None:
        return _block("cors", _CORS, "No 'Access-Control-Allow-Origin' header is present on the "
                      "requested resource.")
    if acao == "*" and include:
        return _block("cors-credentials", _CORS, "The value of the 'Access-Control-Allow-Origin' "
                      "header in the response must not be the wildcard '*' when the request's "
                      "credentials mode is 'include'.")
    if acao == "*":
        return _allow(_CORS, "'*' lets every origin read a response fetched without credentials")
    if acao != origin:  # exact text: browsers compare the serialization, not parsed origins
        text = f"has a value '{acao}' that is not equal to the supplied origin."
        if " " in acao or "," in acao:  # a list of origins: the commonest misreading of the spec
            text = f"contains multiple values '{acao}', but only one is allowed."
        return _block("cors", _CORS, f"The 'Access-Control-Allow-Origin' header {text}")
    acac = h.get("access-control-allow-credentials", "")
    if include and acac != "true":
        return _block("cors-credentials", _CORS, "The value of the 'Access-Control-Allow-"
                      f"Credentials' header in the response is '{acac}' which must be 'true' when "
                      "the request's credentials mode is 'include'.")
    return _allow(_CORS, f"Access-Control-Allow-Origin names the page's origin {origin}"
                  + (" and Access-Control-Allow-Credentials is 'true'" if include else ""))


def _allow_list(value: str | None) -> set[str] | None:
    # Fetch #http-new-header-syntax: comma-separated tokens; anything else fails the preflight.
    items = [v.strip(" \t") for v in (value or "").split(",")]
    return {v for v in items if v} if all(_TOKEN.fullmatch(v) for v in items if v) else None


def preflight_check(request_origin: str | Origin, method: str, request_headers: Mapping[str, str],
                    status: int, preflight_headers: Mapping[str, str],
                    credentials_mode: str = "omit") -> Prediction:
    """Does the OPTIONS answer let the actual request go? (Fetch #cors-preflight-fetch)

    ``request_headers`` are the headers the script sets on the actual request; ``status`` and
    ``preflight_headers`` are the OPTIONS response's. The CORS check runs first, with the actual
    request's credentials mode (so a 405 without CORS headers reports the missing header), then the
    ok status, then method, then headers, as in Chromium. ``*`` in Allow-Methods/-Headers is a
    wildcard only without credentials and never covers Authorization. Methods compare exactly,
    as the spec says (Chromium has long upper-cased them first, crbug.com/1228178; the two differ
    only for lower-case methods such as "patch"). Passing only lets the request be sent: its
    response gets its own :func:`cors_check`.
    """
    access = cors_check(request_origin, preflight_headers, credentials_mode)
    if not access.ok:  # a credentials failure keeps its reason: Chromium's text names credentials
        reason: Reason = ("cors-credentials" if access.reason == "cors-credentials"
                          else "cors-preflight")
        return _block(reason, _PRE, _PREFLIGHT + access.detail)
    if not 200 <= status <= 299:
        return _block("cors-preflight", _PRE, _PREFLIGHT + "It does not have HTTP ok status.")
    h = _headers(preflight_headers)
    wild = not _include(credentials_mode)
    methods = _allow_list(h.get("access-control-allow-methods"))
    names = _allow_list(h.get("access-control-allow-headers"))
    if methods is None or names is None:
        field = "Methods" if methods is None else "Headers"
        return _block("cors-preflight", _PRE, f"Cannot parse Access-Control-Allow-{field} "
                      "response header field in preflight response.")
    m = _method(method)
    if m not in methods and m not in SAFELISTED_METHODS and not (wild and "*" in methods):
        return _block("cors-preflight", _PRE,
                      f"Method {m} is not allowed by Access-Control-Allow-Methods in preflight "
                      "response.")
    allowed = {n.lower() for n in names}
    for name in unsafe_header_names(request_headers):
        if name not in allowed and not (wild and "*" in allowed and name != "authorization"):
            return _block("cors-preflight", _PRE, f"Request header field {name} is not allowed by "
                          "Access-Control-Allow-Headers in preflight response.")
    return _allow(_PRE, f"the preflight allows {m}; the actual request is sent next")


def websocket_origin_check(origin: str | None,
                           allowlist: Sequence[str | None] | None = None) -> Prediction:
    """Does a WebSocket server accept a handshake carrying this ``Origin``? (RFC 6455 §4.2.2, §10.2)

    Browsers never CORS-check a handshake (Fetch runs it in "websocket" mode, tainting "basic"):
    any page may open any socket, and the browser's whole part is to send ``Origin`` (RFC 6455
    §4.1). So the server decides. ``allowlist=None`` accepts everyone, the default of websockets'
    ``serve(origins=None)`` and of aiohttp: the gap cross-site WebSocket hijacking uses. Entries
    compare as exact strings, as websockets does; browsers send serialized origins, so an entry
    with a trailing slash or a default port never matches. A ``None`` entry admits clients that
    send no Origin (non-browser clients).
    """
    if allowlist is None:
        return _allow(_WS, "no Origin allow-list: a page on any site can open this socket")
    if origin in allowlist:
        return _allow(_WS, f"Origin {origin} is on the server's allow-list")
    return _block("origin-rejected", _WS,
                  "Error during WebSocket handshake: Unexpected response code: 403")


def _name_matches(host: str, name: str) -> bool:
    # RFC 6125 §6.4: IPs match only IP entries; "*" is a whole left-most label, one label deep.
    host, name = host.lower().strip("[]").removesuffix("."), name.lower().removesuffix(".")
    if _ip(host) is not None:
        return _ip(host) == _ip(name)
    if name.startswith("*."):
        label, _, rest = host.partition(".")
        return bool(label) and rest == name[2:]
    return host == name


def tls_check(host: str, cert_names: Sequence[str] | None, trusted: bool = True, *,
              hangs_up: bool = False) -> Prediction:
    """Would Chromium accept the certificate that an https:// or wss:// ``host`` presents?

    ``cert_names``: the certificate's subjectAltName entries (Chromium ignores the subject CN);
    None when the port speaks no TLS at all: Chromium says ERR_SSL_PROTOCOL_ERROR when a plain
    HTTP server answers the ClientHello in text, ERR_CONNECTION_CLOSED when the server just
    hangs up (``hangs_up``, as the websockets chat server does). ``trusted``: the chain
    ends at a CA the browser trusts (the lab CA in the NSS db, not the rogue CA). An untrusted
    issuer is reported before a wrong name, as Chromium ranks its certificate errors; ``detail``
    is the net error it shows.
    """
    if cert_names is None:
        return _block("tls-handshake", _TLS["tls-handshake"],
                      "net::ERR_CONNECTION_CLOSED" if hangs_up else "net::ERR_SSL_PROTOCOL_ERROR")
    if not trusted:
        return _block("cert-authority", _TLS["cert-authority"], "net::ERR_CERT_AUTHORITY_INVALID")
    if not any(_name_matches(host, n) for n in cert_names):
        return _block("cert-name", _TLS["cert-name"], "net::ERR_CERT_COMMON_NAME_INVALID")
    return _allow(_TLS["cert-name"], f"a certificate from a trusted CA names {host}")


def check_lab_host(host: str, service: str = "") -> str:
    """Accept the host names labkit can serve without editing /etc/hosts; raise otherwise."""
    h = host.lower().strip("[]")
    if h in ("localhost", "127.0.0.1", "::1"):
        return h
    try:
        ipaddress.ip_address(h)
    except ValueError:
        pass
    else:
        raise UnknownHostError(host, service)
    if h == CROSS_SITE_DOMAIN:
        return h
    for domain in (LAB_DOMAIN, CROSS_SITE_DOMAIN):
        if h.endswith("." + domain):
            labels = h[: -len(domain) - 1].split(".")
            if all(_LABEL.match(label) for label in labels):
                return h
    raise UnknownHostError(host, service)
