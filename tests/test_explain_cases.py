"""The configurations the issue named, each run in the real browser: explain must agree with it on
outcome, reason and whose session the chat server saw (the same topologies are checked without a
browser in tests/test_deployment.py)."""

from __future__ import annotations

from typing import Any

import pytest
from test_deployment import _hijack, _proxied, _ws_topo

from labkit import CorsPolicy, Page, Route, Service, Topology
from labkit.notebook.runner import check

pytestmark = pytest.mark.browser

_WS_TLS = Topology("ws-to-tls", (Service("web", "web", host="app.lab.test", tls=False),
                                 Service("chat", "chat", host="ws.lab.test")),
                   page=Page(api=None, ws_scheme="ws", steps=("socket",)))
_WSS_PLAIN_WS = Topology("wss-to-plain-websockets", (
    Service("web", "web", host="app.lab.test"), Service("chat", "chat", host="ws.lab.test",
                                                        tls=False)),
    page=Page(api=None, ws_scheme="wss", steps=("socket",)))
_WSS_PLAIN_HTTP = Topology("wss-to-plain-http", (
    Service("web", "web", host="app.lab.test"), Service("chat", "chat", tls=False),
    Service("lb", "proxy", host="ws.lab.test", tls=False,
            routes=(Route("/", "chat", websocket=True),))),
    page=Page(api=None, ws="lb", ws_scheme="wss", steps=("socket",)))
_SIO_ROGUE = Topology("sio-rogue", (Service("web", "web", host="app.lab.test"),
                                    Service("sio", "socketio", host="io.lab.test", cert="rogue",
                                            origins=("web",))),
                      page=Page(api=None, ws=None, sio="sio", steps=("sio",)))
_SIO_PLAIN = Topology("sio-plain", (Service("web", "web", host="app.lab.test"),
                                    Service("sio", "socketio", host="io.lab.test", tls=False,
                                            origins=("web",))),
                      page=Page(api=None, ws=None, sio="sio", steps=("sio",)))

# Found by the hypothesis strategy (tests/configs.py) after the second-round knobs: each was a
# disagreement between explain and Chromium until the rule named in its comment was modelled.
_NGINX_NO_XFP = Topology("nginx-no-xfp", (  # nginx sends Host with the port (a redirect keeps it)
    Service("web", "web", tls=False), Service("api", "api", tls=False, https_only=True),
    Service("proxy", "nginx", host="app.lab.test", routes=(Route("/api", "api"), Route("/", "web")),
            forwarded_proto=False)),
    page=Page(api=None, ws=None, same_origin=True, steps=("hello",)))
_CSP_LOCALHOST = Topology("csp-localhost", (  # upgrade-insecure-requests skips localhost
    Service("web", "web", upgrade_insecure=True),
    Service("api", "api", tls=False, cors=CorsPolicy("wildcard"))),
    page=Page(ws=None, steps=("hello",)))
_HSTS_LOCALHOST = Topology("hsts-localhost", (  # Chromium ignores HSTS from localhost
    Service("web", "web", hsts=True),
    Service("redirect", "redirect", tls=False, target="web")),
    page=Page(api=None, ws=None, steps=()))
_HSTS_WS_ORIGIN = Topology("hsts-ws-origin", (  # an HSTS-upgraded handshake sends Origin: null
    Service("web", "web", host="app.lab.test", hsts=True),
    Service("chat", "chat", host="app.lab.test", origins=("old",)),
    Service("old", "web", host="www.lab.test", tls=False,
            page=Page(api=None, ws="chat", ws_scheme="ws", steps=("socket",)))),
    page=Page(api=None, ws=None, steps=()))
_CSP_HTTP_PAGE = Topology("csp-http-page", (  # the page's own script is upgraded too
    Service("web", "web", host="app.lab.test", tls=False, upgrade_insecure=True),
    Service("api", "api", host="api.lab.test", cors=CorsPolicy("wildcard"))),
    page=Page(ws=None, steps=("hello",)))
_NO_XFP_COOKIE = Topology("no-xfp-cookie", (  # no X-Forwarded-Proto: the cookie is not Secure
    Service("web", "web", tls=False), Service("api", "api", tls=False),
    Service("proxy", "proxy", host="app.lab.test", routes=(Route("/api", "api"), Route("/", "web")),
            forwarded_proto=False),
    Service("chat", "chat", host="ws.lab.test", tls=False),
    Service("plain", "web", host="www.lab.test", tls=False,
            page=Page(api=None, ws="chat", steps=("socket",)))),
    page=Page(api=None, ws=None, same_origin=True, steps=("login",), credentials="same-origin"))

CASES: list[tuple[str, Topology, str, tuple[str, ...], tuple[str, str | None, str | None]]] = [
    ("nginx-no-forwarded-proto-loops", _NGINX_NO_XFP, "proxy", (),
     ("blocked", "too-many-redirects", None)),
    ("csp-upgrade-skips-localhost", _CSP_LOCALHOST, "web", (), ("allowed", None, None)),
    ("hsts-ignored-on-localhost", _HSTS_LOCALHOST, "redirect", ("web",), ("allowed", None, None)),
    ("hsts-upgraded-socket-sends-null", _HSTS_WS_ORIGIN, "old", ("web",),
     ("blocked", "origin-rejected", None)),
    ("csp-upgrade-breaks-an-http-page", _CSP_HTTP_PAGE, "web", (),
     ("blocked", "tls-handshake", None)),
    ("no-forwarded-proto-cookie-not-secure", _NO_XFP_COOKIE, "plain", ("proxy",),
     ("allowed", None, "alice")),
    ("hijack-same-site", _hijack(), "evil", ("web",), ("allowed", None, "alice")),
    ("hijack-cross-site-localhost", _hijack("localhost"), "evil", ("web",),
     ("allowed", None, None)),
    ("hijack-http-page", _hijack(evil_tls=False), "evil", ("web",), ("allowed", None, None)),
    ("hijack-no-victim-login", _hijack(), "evil", (), ("allowed", None, None)),
    ("ws-to-tls-chat", _WS_TLS, "web", (), ("blocked", "tls-handshake", None)),
    ("wss-to-plain-websockets", _WSS_PLAIN_WS, "web", (), ("blocked", "tls-handshake", None)),
    ("wss-to-plain-http", _WSS_PLAIN_HTTP, "web", (), ("blocked", "tls-handshake", None)),
    ("fixed-port-allow-list", _ws_topo(("https://app.lab.test:31001",)), "web", (),
     ("allowed", None, None)),
    ("fixed-port-other-port", _ws_topo(("https://app.lab.test:31002",)), "web", (),
     ("blocked", "origin-rejected", None)),
    ("upper-case-host", _ws_topo(("https://APP.lab.test:31001",), web_host="APP.lab.test"),
     "web", (), ("allowed", None, None)),
    ("sio-rogue-cert", _SIO_ROGUE, "web", (), ("blocked", "cert-authority", None)),
    ("sio-plain-from-https", _SIO_PLAIN, "web", (), ("blocked", "mixed-content", None)),
    ("proxy-ws-route-no-upgrade",
     _proxied(routes=(Route("/api", "api"), Route("/ws", "chat"), Route("/", "web"))),
     "proxy", (), ("blocked", "http-error", None)),
    ("proxy-no-api-route", _proxied(routes=(Route("/ws", "chat", websocket=True),
                                            Route("/", "web"))),
     "proxy", (), ("blocked", "http-error", None)),
    ("redirect-other-host-421", _proxied(redirect_host="www.lab.test"), "redirect", (),
     ("blocked", "http-error", None)),
    ("redirect-to-plain-proxy", _proxied(tls=False, redirect_host="app.lab.test"), "redirect",
     (), ("blocked", "tls-handshake", None)),
    ("plain-proxy-keeps-login", _proxied(tls=False), "proxy", (), ("allowed", None, "alice")),
    ("proxy-rogue-backend-502", _proxied(backend_tls=True, backend_cert="rogue"), "proxy", (),
     ("blocked", "http-error", None)),
    # The same through real nginx: one model for both proxies.
    ("nginx-ws-route-no-upgrade", _proxied(kind="nginx", routes=(
        Route("/api", "api"), Route("/ws", "chat"), Route("/", "web"))), "proxy", (),
     ("blocked", "http-error", None)),
    ("nginx-redirect-other-host-421", _proxied(kind="nginx", redirect_host="www.lab.test"),
     "redirect", (), ("blocked", "http-error", None)),
    ("nginx-redirect-same-host", _proxied(kind="nginx", redirect_host="app.lab.test"),
     "redirect", (), ("allowed", None, "alice")),
    ("nginx-plain-keeps-login", _proxied(kind="nginx", tls=False), "proxy", (),
     ("allowed", None, "alice")),
    ("nginx-tls-backend", _proxied(kind="nginx", backend_tls=True), "proxy", (),
     ("allowed", None, "alice")),
    ("nginx-rogue-backend-502", _proxied(kind="nginx", backend_tls=True, backend_cert="rogue"),
     "proxy", (), ("blocked", "http-error", None)),
]


@pytest.mark.parametrize("name, topo, visit, before, want", CASES, ids=[c[0] for c in CASES])
def test_explain_agrees_with_the_browser(browser: Any, name: str, topo: Topology, visit: str,
                                         before: tuple[str, ...],
                                         want: tuple[str, str | None, str | None]) -> None:
    a = check(topo, visit, before, browser=browser)
    e = a.explanation
    assert a.ok, f"{name}: {a.problems}\n{e}\nconsole: {a.observation.messages()}"
    assert (e.outcome, e.reason, e.session) == want


def test_a_page_visited_first_that_fails_leaves_no_session(browser: Any) -> None:
    # The victim's page has a certificate for the wrong name: its steps never run, nobody logs
    # in, and the visit goes on (it used to raise Playwright's error from the first page).
    topo = _hijack()
    bad = Topology(topo.name, tuple(Service(s.name, s.kind, host=s.host, cert="wrong-name",
                                            page=s.page, cors=s.cors)
                                    if s.name == "web" else s for s in topo.services),
                   page=topo.page)
    a = check(bad, "evil", ("web",), browser=browser)
    assert a.ok, a.problems
    assert a.observation.before == [{}] and a.explanation.session is None


@pytest.mark.browser
def test_a_tls_redirect_listener_is_certificate_checked_first(browser) -> None:  # type: ignore[no-untyped-def]
    """Found by bench/explain_vs_browser.py (seed 2026): a TLS redirect listener on 127.0.0.1 with
    a *.lab.test certificate fails the navigation on its own name, before any redirect."""

    topo = Topology("tls-redirect-wrong-name", services=(
        Service("web", "web", host="127.0.0.1", page=Page(ws=None, steps=("hello",))),
        Service("api", "api", host="127.0.0.1"),
        Service("redirect", "redirect", host="127.0.0.1", cert="wildcard", target="web"),
    ))
    a = check(topo, visit="redirect", browser=browser)
    assert a.ok, a.problems
    assert str(a.verdict) == "blocked (cert-name)"
