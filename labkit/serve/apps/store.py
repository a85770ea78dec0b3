"""The messenger's shared state: users, sessions, rooms, history, the side-effect counter, and a
log of the requests each server saw. The API and chat servers share one Store per lab, as the
story's servers would share a database. Only touched from the lab loop, so no locks.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any

ROOMS = ("general", "random")
SESSION_COOKIE = "labkit_session"


@dataclass
class Seen:
    """One request as a server saw it: the headers the lessons are about."""

    service: str
    method: str
    path: str
    origin: str | None
    sec_fetch_site: str | None
    status: int | None = None
    kind: str = "http"  # "http" | "ws"
    user: str | None = None
    #: Host and X-Forwarded-* as received: what a reverse proxy told the backend.
    forwarded: dict[str, str] = field(default_factory=dict)
    #: The request headers that decide the lessons (:data:`REQUEST_HEADERS`), as received.
    request: dict[str, str] = field(default_factory=dict)
    #: The response headers that decide them (:data:`RESPONSE_HEADERS`), as sent.
    response: dict[str, str] = field(default_factory=dict)
    seq: int = -1
    at: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service, "kind": self.kind, "method": self.method, "path": self.path,
            "origin": self.origin, "sec_fetch_site": self.sec_fetch_site, "status": self.status,
            "user": self.user, "forwarded": dict(self.forwarded),
            "request": dict(self.request), "response": dict(self.response),
        }


FORWARDED = ("Host", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host")
#: What the browser sends that a lesson turns on: who is asking (Origin, Sec-Fetch-Site), with
#: what (Cookie, Authorization), what a preflight asks for, and the WebSocket upgrade.
REQUEST_HEADERS = ("Origin", "Sec-Fetch-Site", "Cookie", "Authorization", "Content-Type",
                   "Access-Control-Request-Method", "Access-Control-Request-Headers", "Upgrade",
                   "X-Forwarded-Proto")
#: What the server answers that the browser decides on.
RESPONSE_HEADERS = ("Access-Control-Allow-Origin", "Access-Control-Allow-Credentials",
                    "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
                    "Access-Control-Max-Age", "Vary", "Set-Cookie", "Location",
                    "Strict-Transport-Security", "Content-Security-Policy")


def lesson_headers(headers: Any, names: tuple[str, ...]) -> dict[str, str]:
    """The headers of ``names`` present in ``headers`` (any case-insensitive mapping; repeated
    ones joined as ", "), with secrets cut: a session token or bearer token is shown as "…", so
    a notebook's output never holds a working credential."""
    out: dict[str, str] = {}
    for name in names:
        values = headers.getall(name, []) if hasattr(headers, "getall") else (
            headers.get_all(name) if hasattr(headers, "get_all") else
            [headers[name]] if name in headers else [])
        if values:
            out[name] = ", ".join(_redact(name, str(v)) for v in values)
    return out


def _redact(name: str, value: str) -> str:
    if name in ("Cookie", "Set-Cookie"):
        parts = []
        for part in value.split(";"):
            key, eq, _ = part.partition("=")
            parts.append(f"{key}=…" if eq and key.strip() == SESSION_COOKIE else part)
        return ";".join(parts)
    if name == "Authorization":
        scheme, _, token = value.partition(" ")
        return f"{scheme} …" if token else "…"
    return value


def forwarded(headers: Any) -> dict[str, str]:
    """Host and X-Forwarded-* of a request that came through a proxy; {} for a direct one."""
    if "X-Forwarded-For" not in headers:
        return {}
    return {h: headers[h] for h in FORWARDED if h in headers}


class Store:
    def __init__(self, history_limit: int = 200) -> None:
        self.sessions: dict[str, str] = {}
        self.history: dict[str, deque[dict[str, Any]]] = {
            r: deque(maxlen=history_limit) for r in ROOMS
        }
        self.counter = 0
        self.seen: deque[Seen] = deque(maxlen=2000)
        self.recorded = 0  # how many requests were ever recorded: the next one's sequence number
        self._seq = itertools.count(1)

    def receive(self, service: str, request: Any, **kw: Any) -> Seen:
        """Record an HTTP request as ``service`` saw it (an aiohttp request: method, path_qs,
        headers): who asked, the headers the lessons turn on, a WebSocket upgrade as "ws".
        The caller fills in the status and response headers once it has answered."""
        h = request.headers
        kw.setdefault("kind", "ws" if h.get("Upgrade", "").lower() == "websocket" else "http")
        seen = Seen(service, request.method, request.path_qs, h.get("Origin"),
                    h.get("Sec-Fetch-Site"), request=lesson_headers(h, REQUEST_HEADERS), **kw)
        self.record(seen)
        return seen

    def login(self, user: str) -> str:
        token = secrets.token_urlsafe(16)
        self.sessions[token] = user
        return token

    def user_for(self, cookie_header: str | None) -> str | None:
        """The user of a request's session cookie, if it carries a valid one: the first
        ``labkit_session`` naming a live session wins (a browser sends the cookie of the longest
        path first, RFC 6265 §5.4). A malformed header never raises; a bad pair is skipped.

        Each ``name=value`` pair goes to :class:`~http.cookies.SimpleCookie` on its own. Given
        the whole header, it keeps only the last of two sessions, raises ``CookieError`` on one
        illegal name (``a@b=1``), and drops every pair after a bare word (``junk;``)."""
        if not cookie_header:
            return None
        for pair in cookie_header.split(";"):
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(pair)
            except CookieError:
                continue
            morsel = jar.get(SESSION_COOKIE)
            if morsel is not None and morsel.value in self.sessions:
                return self.sessions[morsel.value]
        return None

    def post(self, room: str, user: str, text: str) -> dict[str, Any]:
        msg = {"type": "message", "room": room, "user": user, "text": text, "seq": next(self._seq)}
        self.history.setdefault(room, deque(maxlen=200)).append(msg)
        return msg

    def record(self, seen: Seen) -> None:
        seen.seq = self.recorded
        self.recorded += 1
        self.seen.append(seen)

    def since(self, mark: int) -> list[dict[str, Any]]:
        """Requests recorded from ``mark`` (a past value of ``recorded``) on. The log is a bounded
        ring, so positions shift once it is full; sequence numbers do not."""
        return [s.as_dict() for s in self.seen if s.seq >= mark]
