"""Explain before you observe: predict a scenario's outcome from its topology with labkit.policy.

Nothing is started: each service gets a placeholder port, and every request the page's decisive
steps make is run through the browser's rules in the order the browser applies them — mixed
content, then TLS, then same-origin, then the preflight, then the CORS check (or, for a WebSocket,
the server's Origin check). A test runs every scenario in Chromium and requires the prediction to
agree with the observation.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import policy
from .apps.cors import CorsPolicy, response_headers
from .pki import LAB_NAMES, WRONG_NAMES
from .policy import Prediction
from .routing import match
from .scenarios import Scenario, get
from .topology import API_STEPS, SOCKET_STEPS, Service, Topology

_PLACEHOLDER_BASE = 20000


@dataclass(frozen=True)
class Explanation:
    scenario: str
    outcome: str
    reason: str | None
    rule: str
    checks: tuple[tuple[str, Prediction], ...]

    def __str__(self) -> str:
        head = self.outcome + (f" ({self.reason})" if self.reason else "")
        lines = [f"{self.scenario}: {head} — {self.rule}"]
        lines += [f"  {step}: {p.outcome}{f' ({p.reason})' if p.reason else ''} — {p.rule}"
                  f"{': ' + p.detail if p.detail else ''}" for step, p in self.checks]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        return "<pre>" + html.escape(str(self)) + "</pre>"


class _Addresses:
    """Placeholder ports, so URLs and origins can be reasoned about without binding anything."""

    def __init__(self, topology: Topology) -> None:
        self.t = topology
        self.port = {s.name: _PLACEHOLDER_BASE + i for i, s in enumerate(topology.services)}

    def origin(self, name: str, scheme: str | None = None) -> str:
        s = self.t.service(name)
        scheme = scheme or ("https" if s.tls else "http")
        host = f"[{s.host}]" if ":" in s.host else s.host
        return f"{scheme}://{host}:{self.port[name]}"

    def allowlist(self, entries: tuple[str, ...]) -> list[str]:
        return [e if "://" in e else self.origin(e) for e in entries]

    def behind(self, name: str, path: str) -> Service:
        """The backend that finally answers ``path`` on service ``name`` (through proxies)."""
        s = self.t.service(name)
        while s.kind in ("proxy", "nginx"):
            route = match(s.routes, path)
            assert route is not None, f"{s.name} has no route for {path}"
            s = self.t.service(route.upstream)
        return s


def _tls(s: Service, host: str) -> Prediction:
    names = {"lab": LAB_NAMES, "rogue": LAB_NAMES, "wrong-name": WRONG_NAMES, "own": (s.host,)}
    return policy.tls_check(host, names[s.cert] if s.tls else None, trusted=s.cert != "rogue")


def _api_check(a: _Addresses, page_origin: str, page_svc: str, step: str) -> Prediction:
    page = a.t.page_for(page_svc)
    method, headers, path = API_STEPS[step]
    if page.same_origin:  # behind the reverse proxy: the page's own origin, already TLS-checked
        return Prediction("allowed", None, "same origin: no CORS check",
                          f"{page_origin}{path} has the page's origin")
    assert page.api is not None
    entry = a.t.service(page.api)
    target = a.origin(entry.name) + path
    mixed = policy.mixed_content_check(page_origin + "/", target)
    if not mixed.ok:
        return mixed
    if entry.tls:
        tls = _tls(entry, entry.host)
        if not tls.ok:
            return tls
    if policy.same_origin(page_origin, target):
        return Prediction("allowed", None, "same origin: no CORS check", "")
    cors: CorsPolicy = a.behind(entry.name, path).cors
    allowed = a.allowlist(cors.origins)
    if policy.needs_preflight(method, headers):
        status = 204 if cors.preflight else 405
        pre_headers = (response_headers(cors, page_origin, allowed, preflight=True)
                       if cors.preflight else {})
        pre = policy.preflight_check(page_origin, method, headers, status, pre_headers,
                                     page.credentials)
        if not pre.ok:
            return pre
    return policy.cors_check(page_origin, response_headers(cors, page_origin, allowed),
                             page.credentials)


def _socket_check(a: _Addresses, page_origin: str, page_svc: str, visited: str) -> Prediction:
    page = a.t.page_for(page_svc)
    if page.same_origin:
        scheme = page.ws_scheme or ("wss" if page_origin.startswith("https") else "ws")
        target_svc = a.t.service(visited)
        url = scheme + page_origin[page_origin.index("://"):] + page.ws_path
    else:
        assert page.ws is not None
        target_svc = a.t.service(page.ws)
        scheme = page.ws_scheme or ("wss" if target_svc.tls else "ws")
        url = a.origin(page.ws, scheme) + page.ws_path
    mixed = policy.mixed_content_check(page_origin + "/", url)
    if not mixed.ok:
        return mixed
    if scheme == "wss":
        tls = _tls(target_svc, target_svc.host)
        if not tls.ok:
            return tls
    chat = a.behind(target_svc.name, page.ws_path)
    allow = None if chat.origins is None else a.allowlist(chat.origins)
    return policy.websocket_origin_check(page_origin, allow)


def _sio_check(a: _Addresses, page_origin: str, page_svc: str) -> Prediction:
    sio = a.t.service(a.t.page_for(page_svc).sio or "")
    target = a.origin(sio.name)
    # python-socketio: no cors_allowed_origins means "same origin only": no ACAO for others.
    allowed = [target] if sio.origins is None else a.allowlist(sio.origins)
    headers = {"Access-Control-Allow-Origin": page_origin} if page_origin in allowed else {}
    # socket.io's XHR polling does not send credentials by default (withCredentials: false).
    return policy.cors_check(page_origin, headers, "same-origin")


def explain(scenario: Scenario | str) -> Explanation:
    """Predict the outcome of ``scenario`` and name the rule, from labkit.policy alone."""
    sc = get(scenario) if isinstance(scenario, str) else scenario
    a = _Addresses(sc.topology)
    if sc.client == "python":
        p = Prediction("allowed", None, "CORS is enforced by browsers only",
                       "a Python client neither sends Origin nor checks CORS headers")
        return Explanation(sc.name, p.outcome, p.reason, sc.rule, (("client", p),))
    visited = sc.topology.service(sc.visit)
    if visited.kind == "redirect":  # the browser follows the 308 to the TLS service
        assert visited.target is not None
        visited = sc.topology.service(visited.target)
    page_origin = a.origin(visited.name)
    # The page itself comes from the visited service (through a proxy: from its "/" backend).
    page_svc = a.behind(visited.name, "/").name
    page_tls = _tls(visited, visited.host) if visited.tls else None
    checks: list[tuple[str, Prediction]] = []
    if page_tls is not None and not page_tls.ok:
        checks.append(("page", page_tls))
    else:
        for step in sc.decisive:
            if step in API_STEPS:
                checks.append((step, _api_check(a, page_origin, page_svc, step)))
            elif step in SOCKET_STEPS:
                checks.append((step, _socket_check(a, page_origin, page_svc, visited.name)))
            elif step == "sio":
                checks.append((step, _sio_check(a, page_origin, page_svc)))
    first_block = next((p for _, p in checks if not p.ok), None)
    if first_block is not None:
        return Explanation(sc.name, "blocked", first_block.reason, sc.rule, tuple(checks))
    return Explanation(sc.name, "allowed", None, sc.rule, tuple(checks))
