"""The session cookie, as Chromium stores and sends it (no I/O): why a hijack works or not.

The API's login answers ``Set-Cookie: labkit_session=…; Path=/; HttpOnly; SameSite=Lax`` plus
``Secure`` when the request arrived over TLS (directly, or as a proxy's ``X-Forwarded-Proto``),
and ``Domain=lab.test`` on lab names (a company's single-sign-on cookie shape). Whether the
browser keeps it, and whether it attaches it to a later request, follows RFC 6265bis and
Chromium 156 as observed (tests/test_explain_cases.py runs each case in it): schemeful same-site
for ``SameSite=Lax``, third-party-cookie blocking for every cross-site request, ``Secure`` only
over secure transport — where Chromium counts ``localhost`` and loopback addresses as secure.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from .policy import is_potentially_trustworthy, origin_of, same_site

LAB_COOKIE_DOMAIN = "lab.test"


@dataclass(frozen=True)
class Cookie:
    """A cookie in the jar. ``domain`` None: host-only (sent back to ``host`` exactly)."""

    name: str
    value: str
    host: str
    domain: str | None
    secure: bool
    samesite: str = "Lax"
    created: int = 0

    def __str__(self) -> str:
        attrs = ["Path=/", "HttpOnly", f"SameSite={self.samesite}"]
        attrs.insert(0, f"Domain={self.domain}" if self.domain else f"host-only ({self.host})")
        if self.secure:
            attrs.append("Secure")
        return f"{self.name} of {self.value}; " + "; ".join(attrs)

    def key(self) -> tuple[str, str, bool]:
        # RFC 6265bis §5.7 step 22: name, domain and path identify a cookie (path is always "/").
        return (self.name, self.domain or self.host, self.domain is None)


def login_cookie(api_url: str, user: str, *, secure: bool) -> Cookie:
    """The cookie labkit's API sets for a login sent to ``api_url`` (the URL the browser used:
    behind a proxy the backend sees that Host). ``secure``: the API believed the request came
    over https — its own TLS, or a proxy's ``X-Forwarded-Proto: https``."""
    parts = urlsplit(api_url)
    host = (parts.hostname or "").lower()
    domain = LAB_COOKIE_DOMAIN if host.endswith("." + LAB_COOKIE_DOMAIN) else None
    return Cookie("labkit_session", user, host, domain, secure)


def _secure_url(url: str) -> bool:
    # Chromium: secure schemes, plus localhost and loopback ("potentially trustworthy"), so a
    # Secure cookie set by http://localhost is kept, and one set by http://app.lab.test is not.
    return is_potentially_trustworthy(url)


def _domain_match(host: str, c: Cookie) -> bool:
    if c.domain is None:
        return host == c.host
    return host == c.domain or host.endswith("." + c.domain)


def why_not_stored(c: Cookie, page_origin: str, request_url: str, credentials: str,
                   same_origin: bool) -> str | None:
    """None when the browser stores ``c`` from a response to ``request_url`` fetched by a page at
    ``page_origin``; else why not (Fetch "include credentials", RFC 6265bis §5.7)."""
    if credentials == "omit" or (credentials == "same-origin" and not same_origin):
        return f"credentials mode '{credentials}': the response's Set-Cookie is ignored"
    if c.secure and not _secure_url(request_url):
        return "a Secure cookie set over plain http (not localhost) is dropped"
    if not same_site(page_origin, request_url):
        return ("set from a cross-site response: SameSite=Lax and third-party-cookie blocking "
                "refuse it")
    return None


def why_not_sent(c: Cookie, page_origin: str, request_url: str) -> str | None:
    """None when the browser attaches ``c`` to a request (a WebSocket handshake included, which
    always carries credentials) from a page at ``page_origin``; else why not."""
    host = (urlsplit(request_url).hostname or "").lower()
    if not _domain_match(host, c):
        scope = f"Domain={c.domain}" if c.domain else f"host-only for {c.host}"
        return f"the cookie is {scope}, not {host}"
    if c.secure and not _secure_url(request_url):
        return "a Secure cookie is never sent over plain ws:// or http:// (localhost excepted)"
    if not same_site(page_origin, request_url):
        return (f"{origin_of(request_url)} is cross-site from {page_origin} (schemeful): "
                "SameSite=Lax and third-party-cookie blocking keep the cookie off")
    return None


class Jar:
    """One browser context's cookies (a visit gets a fresh one; ``before`` pages share it)."""

    def __init__(self) -> None:
        self.cookies: list[Cookie] = []
        self._clock = 0

    def store(self, c: Cookie) -> None:
        self._clock += 1
        for i, old in enumerate(self.cookies):
            if old.key() == c.key():
                # RFC 6265bis §5.7 step 23: a replacement keeps the old creation time.
                self.cookies[i] = Cookie(c.name, c.value, c.host, c.domain, c.secure, c.samesite,
                                         old.created)
                return
        self.cookies.append(Cookie(c.name, c.value, c.host, c.domain, c.secure, c.samesite,
                                   self._clock))

    def sent(self, page_origin: str, request_url: str) -> list[Cookie]:
        """The cookies attached, in Chromium's order (same path: oldest first)."""
        return sorted((c for c in self.cookies if why_not_sent(c, page_origin, request_url)
                       is None), key=lambda c: c.created)
