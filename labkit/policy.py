"""The browser's rules, as plain functions with no I/O.

Each function names the spec section it follows. They let labkit *explain* an outcome before the
real Chromium shows it; tests cross-check the two for every scenario.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import InvalidOriginError, UnknownHostError

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
LAB_DOMAIN = "lab.test"
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


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


def origin_of(url: str) -> Origin:
    """The origin of a URL (URL Standard §4.6 "origin"): scheme, host and port, path dropped."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise InvalidOriginError(url, "needs an http, https, ws or wss scheme and a host")
    try:
        port = parts.port
    except ValueError as e:
        raise InvalidOriginError(url, str(e)) from None
    return Origin(scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme])


def parse_origin(value: str) -> Origin:
    """Parse the value of an ``Origin`` header or an allow-list entry (RFC 6454 §7).

    Stricter than :func:`origin_of`: an origin has no path, query, fragment or user info, and only
    http/https (the schemes of pages that can open sockets or call APIs).
    """
    if not isinstance(value, str) or not value:
        raise InvalidOriginError(str(value), "empty")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise InvalidOriginError(value, "the scheme must be http or https")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise InvalidOriginError(value, "an origin has no path, query or user name")
    if value.endswith("/"):
        raise InvalidOriginError(value, "browsers send origins without a trailing slash")
    return origin_of(value)


def same_origin(a: str | Origin, b: str | Origin) -> bool:
    """Same origin: identical scheme, host and port (HTML §7.5 "same origin")."""
    oa = a if isinstance(a, Origin) else origin_of(a)
    ob = b if isinstance(b, Origin) else origin_of(b)
    return oa == ob


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
    if h.endswith("." + LAB_DOMAIN):
        labels = h[: -len(LAB_DOMAIN) - 1].split(".")
        if all(_LABEL.match(label) for label in labels):
            return h
    raise UnknownHostError(host, service)
