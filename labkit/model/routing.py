"""The reverse proxy's decisions, without I/O: which upstream a path goes to, which headers cross
the proxy, where the HTTP->HTTPS redirect points. Shared by labkit's proxy and the nginx renderer,
so both run the same topology.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from .policy import Origin

#: RFC 9110 §7.6.1: connection-specific headers a proxy must not forward. Upgrade is handled
#: separately: the WebSocket relay makes its own handshake upstream.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade",
})


@dataclass(frozen=True)
class Route:
    """``prefix`` (a path like ``/api``) goes to the service ``upstream``; ``websocket`` routes
    relay upgrades. The prefix is kept: the backends serve ``/api/...`` and ``/ws`` themselves."""

    prefix: str
    upstream: str
    websocket: bool = False

    def __post_init__(self) -> None:
        if not self.prefix.startswith("/"):
            raise ValueError(f"route prefix {self.prefix!r} must start with '/'")


#: The story's long-term fix: one origin, three backends.
STORY_ROUTES: tuple[Route, ...] = (
    Route("/api", "api"),
    Route("/ws", "chat", websocket=True),
    Route("/", "web"),
)


def clean_path(raw_path: str) -> str | None:
    """The path a route is matched against, or None if it tries to escape (``..`` segments, also
    percent-encoded) or is not origin-form (absolute URLs make an open proxy)."""
    if not raw_path.startswith("/") or raw_path.startswith("//"):
        return None
    path = raw_path.split("?", 1)[0]
    decoded = unquote(unquote(path))
    if "\x00" in decoded or "\\" in decoded:
        return None
    if any(seg == ".." for seg in decoded.split("/")):
        return None
    return path


def match(routes: Sequence[Route], raw_path: str) -> Route | None:
    """The route for a request path: the longest prefix that matches on a segment boundary
    (``/api`` matches ``/api`` and ``/api/rooms``, not ``/apix``), as nginx's prefix locations
    do."""
    path = clean_path(raw_path)
    if path is None:
        return None
    best: Route | None = None
    for r in routes:
        p = r.prefix.rstrip("/")
        if p == "" or path == p or path.startswith(p + "/"):
            if best is None or len(r.prefix) > len(best.prefix):
                best = r
    return best


def upstream_headers(headers: Iterable[tuple[str, str]], *, host: str, client_ip: str,
                     proto: str | None) -> list[tuple[str, str]]:
    """Request headers for the upstream: hop-by-hop ones dropped, ``Origin`` and cookies kept
    (the chat server's allow-list and sessions must still work), and the X-Forwarded-* set so the
    backend knows who really called and how (``Host`` keeps the name the browser used)."""
    items = list(headers)
    # RFC 9110 §7.6.1: headers named in Connection are hop-by-hop too.
    named = {n.strip().lower() for k, v in items if k.lower() == "connection" for n in v.split(",")}
    out: list[tuple[str, str]] = []
    prior_xff = ""
    for k, v in items:
        lk = k.lower()
        if lk in HOP_BY_HOP or lk in named or lk.startswith("sec-websocket-") or lk == "host":
            continue
        if lk == "x-forwarded-for":
            prior_xff = v
            continue
        if lk in ("x-forwarded-proto", "x-forwarded-host"):
            continue  # never trust a client's own claim
        out.append((k, v))
    out += [
        ("Host", host),
        ("X-Forwarded-For", f"{prior_xff}, {client_ip}" if prior_xff else client_ip),
        *([("X-Forwarded-Proto", proto)] if proto else []),  # None: a proxy that never says
        ("X-Forwarded-Host", host),
    ]
    return out


def response_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Response headers for the browser: hop-by-hop and length/encoding ones dropped (the proxy
    re-frames the body)."""
    return [(k, v) for k, v in headers
            if k.lower() not in HOP_BY_HOP and k.lower() not in ("content-length", "server")]


def redirect_location(host: str, https_port: int, path_qs: str) -> str:
    """Where ``http://host:H/path?q`` is sent: the https origin, path and query kept."""
    return str(Origin("https", host.lower(), https_port)) + (
        path_qs if path_qs.startswith("/") else "/")


_REG_NAME = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
_HOSTPORT = re.compile(rf"(?P<name>{_REG_NAME}|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{{1,5}}))?")


def parse_host(value: str | None) -> tuple[str, int | None] | None:
    """A ``Host`` header (RFC 9110 §7.2: uri-host [":" port]) as (name, port), lower-cased; None
    when it is not one — userinfo (``a:@evil``), a path (``a:80/../x``), brackets around a name,
    a port out of range. A proxy must never forward such a value (nginx refuses or normalises
    it too)."""
    m = _HOSTPORT.fullmatch((value or "").strip().lower())
    if m is None:
        return None
    name, port = m["name"], m["port"]
    if name.startswith("["):
        try:
            ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            return None
    if port is not None and not 0 < int(port) <= 65535:
        return None
    return name, int(port) if port is not None else None


def normal_host(name: str, port: int | None) -> str:
    """The Host a proxy forwards: the parsed name, and the port only when one was given."""
    return name if port is None else f"{name}:{port}"


def host_allowed(host_header: str | None, served: Mapping[str, int] | Sequence[str]) -> bool:
    """Whether the proxy serves the Host the client asked for (name only, port ignored)."""
    parsed = parse_host(host_header)
    return parsed is not None and parsed[0].strip("[]") in {s.lower() for s in served}
