"""What a real browser did on one visit, and the verdict read from it (no I/O here).

The verdict is read from what the browser *said* — console, page errors, failed navigations, the
page's step states — never from what a scenario expected; tests then compare the two.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ..model.policy import Outcome, Reason


@dataclass(frozen=True)
class ConsoleMessage:
    type: str
    text: str
    source: str = ""  # CDP Log source: "security", "network", "javascript", "console-api", ...
    at: float = 0.0  # when (ms since the epoch), where the browser says (Firefox)


@dataclass(frozen=True)
class PageError:
    name: str
    message: str


@dataclass(frozen=True)
class FailedRequest:
    url: str
    failure: str
    at: float = 0.0  # when (ms since the epoch), where the browser says (Firefox)


@dataclass(frozen=True)
class SocketEvent:
    url: str
    opened: bool
    close_code: int | None
    close_reason: str | None
    error: str | None


#: What the page shows for a step (labkit/serve/static/app.js): the states it can be in.
StepState = Literal["pending", "running", "ok", "blocked", "error", "skipped"]


@dataclass(frozen=True)
class Step:
    state: StepState
    detail: str


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: Reason | None  # one of policy.REASONS when blocked
    evidence: str = ""  # the browser's own words that decided it

    def __str__(self) -> str:
        return self.outcome if self.reason is None else f"{self.outcome} ({self.reason})"


#: Console lines that say nothing about the lesson and vary between machines.
NOISE = (
    re.compile(r"favicon\.ico"),
    re.compile(r"^\[DOM\]"),
    re.compile(r"DevTools"),
    re.compile(r"Third-party cookie"),
)
def _settle_socketio(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """socket.io's client polls and upgrades at once, so how many polls and in which order
    varies from run to run: its requests are shown once each (with a count), sorted, where the
    first of them came; every other request keeps its place."""
    sio = [r for r in rows if r["path"].startswith("/socket.io/")]
    if not sio:
        return rows
    merged: dict[str, dict[str, Any]] = {}
    for r in sio:
        key = repr((r["service"], r["kind"], r["method"], r["path"], r["status"],
                    sorted(r["request"].items()), sorted(r["response"].items())))
        if key in merged:
            merged[key]["times"] += 1
        else:
            merged[key] = dict(r)
    settled = sorted(merged.values(), key=lambda r: (r["kind"], r["method"], r["path"]))
    first = rows.index(sio[0])
    rest = [r for r in rows if not r["path"].startswith("/socket.io/")]
    return rest[:first] + settled + rest[first:]


#: The page's own script and socket.io's bundle: loaded on every visit, they decide nothing.
_STATIC = ("/app.js", "/socket.io.min.js")


@dataclass
class Observation:
    url: str
    final_url: str
    redirects: list[str]
    navigation_error: str | None
    status: int | None
    steps: dict[str, Step]
    console: list[ConsoleMessage]
    page_errors: list[PageError]
    failed_requests: list[FailedRequest]
    sockets: list[SocketEvent]
    seen: list[dict[str, Any]]
    browser_version: str
    screenshot: bytes = field(repr=False, default=b"")
    #: port -> service name, for :meth:`normalized`.
    ports: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0
    #: Step states of pages visited first in the same browser context (e.g. the victim's page).
    before: list[dict[str, Step]] = field(default_factory=list)
    #: How many entries of ``seen`` belong to the ``before`` pages (they come first).
    before_seen: int = 0
    #: Which browser looked: "chromium" or "firefox" (their words differ; see the classifier).
    browser: str = "chromium"

    def session(self) -> str | None:
        """Who the servers took the visited page for, last: the user of the session cookie the
        browser attached to an accepted chat WebSocket or to an answered ``/api/whoami``, or
        None (no cookie, or no such request). Server-side truth: the page never sees cookies."""
        # socket.io's own WebSocket (/socket.io/...) carries no chat session: not counted.
        users = [d["user"] for d in self.seen[self.before_seen:]
                 if (d["kind"] == "ws" and d["status"] == 101
                     and not d["path"].startswith("/socket.io/"))
                 or (d["kind"] == "http" and d["method"] == "GET"
                     and d["path"].startswith("/api/whoami") and d["status"] == 200)]
        return users[-1] if users else None

    def verdict(self, decisive: Iterable[str] | None = None) -> Verdict:
        return classify(self, decisive)

    def messages(self) -> list[str]:
        """Console lines, normalized and noise-free, sorted (event order can vary)."""
        return sorted(
            f"{m.type}: {normalize_text(m.text, self.ports)}"
            for m in self.console
            if not any(p.search(m.text) for p in NOISE)
        )

    def normalized(self) -> dict[str, Any]:
        """The observation with ports replaced by service names and noise dropped, so two runs of
        the same visit compare equal."""
        n = lambda s: normalize_text(s, self.ports) if s else s  # noqa: E731
        return {
            "url": n(self.url),
            "final_url": n(self.final_url),
            "redirects": [n(r) for r in self.redirects],
            "navigation_error": self.navigation_error,
            "status": self.status,
            "steps": {k: {"state": v.state, "detail": n(v.detail)} for k, v in self.steps.items()},
            "before": [{k: {"state": v.state, "detail": n(v.detail)} for k, v in b.items()}
                       for b in self.before],
            "console": self.messages(),
            "page_errors": sorted(f"{e.name}: {n(e.message)}" for e in self.page_errors),
            "failed_requests": sorted(f"{n(r.url)} {r.failure}" for r in self.failed_requests
                                      if not any(p.search(r.url) for p in NOISE)),
            "sockets": sorted((n(s.url), s.opened, s.close_code, n(s.error) if s.error else None)
                              for s in self.sockets),
            "seen": sorted(
                (d["service"], d["kind"], d["method"], n(d["path"]), n(d["origin"] or "-"),
                 d["sec_fetch_site"] or "-", d["status"] or 0) for d in self.seen),
        }

    def wire(self) -> list[dict[str, Any]]:
        """The requests of the visited page, in order, with the headers that decided them (the
        page's own script and socket.io's bundle left out), ports shown as service names."""
        n = lambda s: normalize_text(s, self.ports) if s else s  # noqa: E731
        out = []
        for d in self.seen[self.before_seen:]:
            if d["path"].split("?")[0] in _STATIC:
                continue
            request = {k: n(v) for k, v in d.get("request", {}).items()}
            if "Cookie" in request and d.get("user"):
                request["Cookie"] += f" ({d['user']}'s session)"
            out.append({"service": d["service"], "kind": d["kind"], "method": d["method"],
                        "path": n(d["path"]), "status": d["status"], "request": request,
                        "response": {k: n(v) for k, v in d.get("response", {}).items()},
                        "times": 1})
        return _settle_socketio(out)

    def wire_text(self) -> str:
        """:meth:`wire` as lines: ``→`` what the browser sent, ``←`` what came back."""
        lines = []
        for w in self.wire():
            kind = "WebSocket handshake " if w["kind"] == "ws" else ""
            times = f" (×{w['times']})" if w["path"].startswith("/socket.io/") else ""
            lines.append(f"{w['service']}: {kind}{w['method']} {w['path']} → {w['status']}{times}")
            lines += [f"    → {k}: {v}" for k, v in w["request"].items()]
            lines += [f"    ← {k}: {v}" for k, v in w["response"].items()]
        return "\n".join(lines) or "(no request reached a lab server)"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("screenshot")
        d["verdict"] = str(self.verdict())
        return d

    def __repr__(self) -> str:
        steps = ", ".join(f"{k}={v.state}" for k, v in self.steps.items())
        return f"<Observation {self.final_url} {self.verdict()} steps: {steps or '-'}>"


_PORT = re.compile(r":(\d{2,5})\b")
#: socket.io's cache-buster and session ids differ on every request.
_VOLATILE = re.compile(r"([?&](?:t|sid)=)[^&'\s]+")


def normalize_text(text: str, ports: dict[int, str]) -> str:
    """Replace each known port with its service name (``:<web>``), any other with ``:<PORT>``."""

    def sub(m: re.Match[str]) -> str:
        port = int(m.group(1))
        return f":<{ports[port]}>" if port in ports else ":<PORT>"

    return _VOLATILE.sub(r"\1<ID>", _PORT.sub(sub, text))


# -- the classifier ------------------------------------------------------------------------------
# Order matters: certificate and TLS failures explain a later "failed to fetch"; mixed content is
# decided before any network traffic; CORS messages are the most specific last.
_RULES: tuple[tuple[Reason, re.Pattern[str]], ...] = (
    ("cert-authority", re.compile(r"ERR_CERT_AUTHORITY_INVALID")),
    ("cert-name", re.compile(r"ERR_CERT_COMMON_NAME_INVALID")),
    ("tls-handshake", re.compile(r"ERR_SSL_PROTOCOL_ERROR|ERR_SSL_VERSION_OR_CIPHER|"
                                 r"ERR_CONNECTION_CLOSED|ERR_EMPTY_RESPONSE|"
                                 r"ERR_SSL_[A-Z_]+|wrong version number|"
                                 # ws:// to a port that expects TLS: the server hangs up on the
                                 # plain-text request before any handshake response.
                                 r"Connection closed before receiving a handshake response")),
    ("too-many-redirects", re.compile(r"ERR_TOO_MANY_REDIRECTS")),
    ("mixed-content", re.compile(r"^Mixed Content:|insecure WebSocket connection may not be "
                                 r"initiated")),
    ("origin-rejected", re.compile(r"WebSocket connection to .* failed: Error during WebSocket "
                                   r"handshake: Unexpected response code: 403")),
    # python-socketio refuses an Origin outside cors_allowed_origins with 400 ("Not an accepted
    # origin."): the socket.io path tells it apart from other servers' 400s.
    ("origin-rejected", re.compile(r"WebSocket connection to '[^']*/socket\.io/[^']*' failed: "
                                   r"Error during WebSocket handshake: Unexpected response code: "
                                   r"400")),
    ("cors-credentials", re.compile(r"blocked by CORS policy: .*(credentials mode is 'include'|"
                                    r"Access-Control-Allow-Credentials)")),
    ("cors-preflight", re.compile(r"blocked by CORS policy: (Response to preflight request|"
                                  r".* in preflight response)")),
    ("cors", re.compile(r"blocked by CORS policy")),
    # The request went through and a server said no (404 no route, 421 wrong Host, 426 no
    # upgrade on that route, 502 upstream down): no browser rule blocked it.
    ("http-error", re.compile(r"^HTTP [45]\d\d$|the server responded with a status of [45]\d\d|"
                              r"Unexpected response code: (?!403)\d{3}")),
)


#: Firefox's own words and error codes for the same reasons (verified against ESR 153, see
#: BROWSER-FACTS). Its console says only "Firefox can’t establish a connection" for every failed
#: socket; the reason is the network error, given with the status Firefox received
#: (``NS_ERROR_WEBSOCKET_CONNECTION_REFUSED (HTTP 403) at wss://…``), so those come first.
_FIREFOX_RULES: tuple[tuple[Reason, re.Pattern[str]], ...] = (
    ("cert-authority", re.compile(r"SEC_ERROR_UNKNOWN_ISSUER|SEC_ERROR_UNTRUSTED_ISSUER|"
                                  r"MOZILLA_PKIX_ERROR_SELF_SIGNED_CERT|SEC_ERROR_CA_CERT_INVALID")),
    ("cert-name", re.compile(r"SSL_ERROR_BAD_CERT_DOMAIN")),
    # wss:// to a server without TLS: the server hangs up on the ClientHello (NET_RESET), or
    # answers plain HTTP (RX_RECORD_TOO_LONG).
    ("tls-handshake", re.compile(r"NS_ERROR_NET_RESET|NS_ERROR_NET_INTERRUPT|SSL_ERROR_[A-Z_]+|"
                                 r"NS_ERROR_NET_EMPTY_RESPONSE")),
    ("too-many-redirects", re.compile(r"NS_ERROR_REDIRECT_LOOP")),
    # ws:// from an https page: `new WebSocket` throws, and no error-level console entry exists.
    ("mixed-content", re.compile(r"^Blocked loading mixed active content|"
                                 r"^SecurityError: The operation is insecure")),
    ("origin-rejected", re.compile(r"NS_ERROR_WEBSOCKET_CONNECTION_REFUSED \(HTTP 403\)")),
    ("origin-rejected", re.compile(r"NS_ERROR_WEBSOCKET_CONNECTION_REFUSED \(HTTP 400\) at "
                                   r"\S*/socket\.io/")),
    ("cors-credentials", re.compile(r"Cross-Origin Request Blocked: .*\(Reason: (Credential is not "
                                    r"supported|expected ‘true’ in CORS header "
                                    r"‘Access-Control-Allow-Credentials’)")),
    # The preflight's own network error (its method is OPTIONS), or the words naming it.
    ("cors-preflight", re.compile(r"\[preflight: |from CORS preflight (response|channel)|"
                                  r"CORS preflight (response|channel) did not succeed|"
                                  r"Did not find method in CORS header")),
    # "CORS request did not succeed" follows a network failure or a failed preflight: it is
    # never the reason itself (the failure's own words come with it).
    ("cors", re.compile(r"^Cross-Origin Request Blocked: (?!.*\(Reason: CORS request did not "
                        r"succeed\))")),
    ("http-error", re.compile(r"(^|: )HTTP [45]\d\d$|NS_ERROR_WEBSOCKET_CONNECTION_REFUSED "
                              r"\(HTTP (?!403)\d{3}\)")),
)


_CORS_LINE = re.compile(r"^Cross-Origin Request Blocked: .* remote resource at "
                        r"‘?(?P<url>[^’\s]+?)’?\. \(Reason: .*?\)"
                        r"(?:\. Status code: (?P<status>\d+|\(null\))\.)?")


def _firefox_words(obs: Observation) -> list[str]:
    """Firefox's console lines and network errors in the order they happened. A CORS line
    about a request whose *preflight* failed (an OPTIONS to the same URL with the same status)
    carries that preflight's error: Firefox's words alone do not say it was the preflight.
    The first failing step's words come first; a page step that got an HTTP error status says
    so last (Firefox logs no console line for one)."""
    failed = sorted(obs.failed_requests, key=lambda r: r.at)
    used: set[int] = set()
    out: list[tuple[float, str]] = []
    for m in obs.console:
        text = m.text
        c = _CORS_LINE.match(text)
        if c:
            status = c.group("status")
            want = f"HTTP {status}" if status and status[0].isdigit() else None
            for i, r in enumerate(failed):
                if i not in used and r.url == c.group("url") and "(OPTIONS" in r.failure \
                        and (want in r.failure if want else "HTTP" not in r.failure):
                    used.add(i)
                    text += f" [preflight: {r.failure}]"
                    break
        out.append((m.at, text))
    out += [(r.at, f"{r.failure} at {r.url}") for i, r in enumerate(failed) if i not in used]
    words = [t for _, t in sorted(out, key=lambda x: x[0])]
    words += [f"{k}: {v.detail}" for k, v in obs.steps.items()
              if v.state == "error" and re.fullmatch(r"HTTP [45]\d\d", v.detail)]
    return words


def rules_for(browser: str) -> tuple[tuple[Reason, re.Pattern[str]], ...]:
    return _FIREFOX_RULES if browser == "firefox" else _RULES


def _evidence(obs: Observation) -> list[str]:
    """The browser's words, earliest first: a failed navigation explains everything after it;
    the page runs its steps in order, so the first message belongs to the first failing step."""
    texts = [obs.navigation_error] if obs.navigation_error else []
    if obs.status is not None and obs.status >= 400:
        texts.append(f"HTTP {obs.status}")  # the page itself was an error answer
    if obs.browser == "firefox":
        texts += _firefox_words(obs)
    else:
        texts += [m.text for m in obs.console]
    texts += [f"{e.name}: {e.message}" for e in obs.page_errors]
    texts += [s.error for s in obs.sockets if s.error]
    return texts


def classify(obs: Observation, decisive: Iterable[str] | None = None) -> Verdict:
    """``allowed``, or ``blocked`` with the reason the browser gave.

    ``decisive`` names the page steps that carry the lesson (default: all of them). A navigation
    that failed, or any decisive step not ``ok`` (blocked, error, skipped), is a block; its
    reason is the first browser message that matches a known rule. ``allowed`` needs every
    decisive step ``ok``.
    """
    names = list(decisive) if decisive is not None else list(obs.steps)
    states = [obs.steps[n].state for n in names if n in obs.steps]
    missing = [n for n in names if n not in obs.steps]
    # Allowed means every decisive step finished ok: a step left pending, running or skipped
    # is not a success.
    blocked = (
        obs.navigation_error is not None
        or (obs.status is not None and obs.status >= 400)
        or bool(missing)
        or not all(s == "ok" for s in states)
    )
    if not blocked:
        return Verdict("allowed", None)
    rules = rules_for(obs.browser)
    for text in _evidence(obs):
        for reason, pattern in rules:  # the most specific rule for this message
            if pattern.search(text):
                return Verdict("blocked", reason, normalize_text(text, obs.ports))
    detail = obs.navigation_error or "; ".join(
        f"{n}: {obs.steps[n].detail}" for n in names if n in obs.steps)
    return Verdict("blocked", None, detail)
