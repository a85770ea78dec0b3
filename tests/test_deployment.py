"""The deployment model and explain on configurations beyond the catalogue (pure: no sockets).

Each rule has its twin: the configuration that passes next to the one that fails, and each
refusal of the validator is checked for the words a learner needs (which services, what to write).
The same configurations run in the real browser in tests/test_explain_browser.py.
"""

from __future__ import annotations

import pytest

from labkit import CorsPolicy, LabError, Page, Route, Service, Topology, TopologyError, explain
from labkit.model.deployment import Deployment
from labkit.model.routing import STORY_ROUTES


def _ws_topo(origins: tuple[str, ...] | None, web_port: int = 31001,
             web_host: str = "app.lab.test") -> Topology:
    return Topology("t", (Service("web", "web", host=web_host, port=web_port),
                          Service("chat", "chat", host="ws.lab.test", origins=origins)),
                    page=Page(api=None, steps=("socket", "chat")))


def _proxied(*, tls: bool = True, routes: tuple[Route, ...] = STORY_ROUTES, kind: str = "proxy",
             backend_tls: bool = False, backend_cert: str = "lab",
             redirect_host: str | None = None, steps: tuple[str, ...] = ("hello", "login",
                                                                          "socket", "chat"),
             ) -> Topology:
    services = [Service("web", "web", tls=backend_tls, cert=backend_cert),
                Service("api", "api", tls=False),
                Service("chat", "chat", tls=False, origins=("proxy",)),
                Service("proxy", kind, host="app.lab.test", tls=tls, routes=routes)]
    if redirect_host:
        services.append(Service("redirect", "redirect", host=redirect_host, tls=False,
                                target="proxy"))
    return Topology("p", tuple(services), page=Page(api=None, ws=None, same_origin=True,
                                                    steps=steps, credentials="same-origin"))


# -- addresses --------------------------------------------------------------------------------
def test_fixed_ports_are_the_ports_explain_reasons_with() -> None:
    d = Deployment.plan(_ws_topo(None))
    assert d.origin("web") == "https://app.lab.test:31001"
    assert d.listener("chat").port >= 20000 and d.planned
    assert d.service_url("chat").startswith("wss://ws.lab.test:")


def test_an_explicit_origin_with_a_fixed_port_is_allowed_and_another_port_is_not() -> None:
    ok = explain(_ws_topo(("https://app.lab.test:31001",)))
    assert (ok.outcome, ok.reason) == ("allowed", None)
    twin = explain(_ws_topo(("https://app.lab.test:31002",)))
    assert (twin.outcome, twin.reason) == ("blocked", "origin-rejected")


def test_upper_case_hosts_and_entries_are_normalised_as_browsers_serialise_origins() -> None:
    topo = _ws_topo(("https://APP.Lab.Test:31001",), web_host="APP.lab.test")
    d = Deployment.plan(topo)
    assert d.origin("web") == "https://app.lab.test:31001"
    assert d.chat_origins("chat") == ("https://app.lab.test:31001",)
    assert explain(topo).outcome == "allowed"


def test_ipv6_origins_are_bracketed_once() -> None:
    topo = Topology("v6", (Service("web", "web", host="::1", port=31003),),
                    page=Page(api=None, ws=None, steps=()))
    assert Deployment.plan(topo).origin("web") == "https://[::1]:31003"


def test_real_ports_replace_placeholders() -> None:
    d = Deployment.plan(_ws_topo(None), {"chat": 45000})
    assert d.service_url("chat") == "wss://ws.lab.test:45000/ws" and not d.planned


# -- what a proxy answers -------------------------------------------------------------------
def test_a_proxy_answers_421_404_426_and_502_itself() -> None:
    d = Deployment.plan(_proxied(routes=(Route("/ws", "chat"), Route("/api", "api"))))
    assert d.answer("proxy", "/").status == 404
    assert d.answer("proxy", "/api/hello").service == "api"
    assert d.answer("proxy", "/", host="www.lab.test").status == 421
    assert d.answer("proxy", "/ws", upgrade=True).status == 426
    rogue = Topology("r", (Service("web", "web", cert="rogue"),
                           Service("proxy", "proxy", routes=(Route("/", "web"),))),
                     page=Page(api=None, ws=None, steps=()))
    assert Deployment.plan(rogue).answer("proxy", "/").status == 502


def test_the_page_service_is_found_through_redirects_and_proxies() -> None:
    d = Deployment.plan(_proxied(redirect_host="app.lab.test"))
    assert d.page_service("redirect") == "web"
    assert d.page_origin("redirect") == f"https://app.lab.test:{d.listener('proxy').port}"


@pytest.mark.parametrize("topo, reason", [
    (_proxied(routes=(Route("/ws", "chat", websocket=True), Route("/", "web"))), "http-error"),
    (_proxied(routes=(Route("/api", "api"), Route("/ws", "chat"), Route("/", "web"))),
     "http-error"),
    (_proxied(redirect_host="www.lab.test", steps=("hello",)), "http-error"),
    (_proxied(routes=STORY_ROUTES), None),
])
def test_proxy_misroutes_are_http_errors(topo: Topology, reason: str | None) -> None:
    visit = "redirect" if any(s.kind == "redirect" for s in topo.services) else "proxy"
    assert explain(topo, visit=visit).reason == reason


def test_a_redirect_to_a_plain_proxy_fails_the_tls_handshake() -> None:
    e = explain(_proxied(tls=False, redirect_host="app.lab.test"), visit="redirect")
    assert (e.outcome, e.reason) == ("blocked", "tls-handshake")


def test_a_plain_proxy_keeps_the_session_cookie_and_a_tls_one_too() -> None:
    # X-Forwarded-Proto follows the proxy's listener: on a plain proxy the API's cookie is not
    # Secure, so the browser keeps it (labkit used to claim https and lose the login).
    for tls in (False, True):
        e = explain(_proxied(tls=tls), visit="proxy")
        assert (e.outcome, e.session) == ("allowed", "alice")


# -- scheme mismatches ----------------------------------------------------------------------
def test_ws_against_a_tls_chat_and_wss_against_a_plain_one() -> None:
    base = Topology("s", (Service("web", "web", host="app.lab.test", tls=False),
                          Service("chat", "chat", host="ws.lab.test")),
                    page=Page(api=None, ws_scheme="ws", steps=("socket",)))
    assert explain(base).reason == "tls-handshake"
    plain = Topology("s", (Service("web", "web", host="app.lab.test"),
                           Service("chat", "chat", host="ws.lab.test", tls=False)),
                     page=Page(api=None, ws_scheme="wss", steps=("socket",)))
    assert explain(plain).reason == "tls-handshake"
    fixed = Topology("s", (Service("web", "web", host="app.lab.test"),
                           Service("chat", "chat", host="ws.lab.test")),
                     page=Page(api=None, ws_scheme="wss", steps=("socket",)))
    assert explain(fixed).outcome == "allowed"


def test_socketio_polling_follows_mixed_content_and_certificates() -> None:
    def sio(**kw: object) -> Topology:
        return Topology("io", (Service("web", "web", host="app.lab.test"),
                               Service("sio", "socketio", host="io.lab.test", origins=("web",),
                                       **kw)),  # type: ignore[arg-type]
                        page=Page(api=None, ws=None, sio="sio", steps=("sio",)))
    assert explain(sio()).outcome == "allowed"
    assert explain(sio(cert="rogue")).reason == "cert-authority"
    assert explain(sio(cert="wrong-name")).reason == "cert-name"
    assert explain(sio(tls=False)).reason == "mixed-content"


# -- cookies: who the hijacker's socket runs as ------------------------------------------------
def _hijack(evil_host: str = "evil.lab.test", evil_tls: bool = True) -> Topology:
    return Topology("h", (
        Service("web", "web", host="app.lab.test"),
        Service("api", "api", host="api.lab.test",
                cors=CorsPolicy("allowlist", ("web",), credentials=True)),
        Service("chat", "chat", host="ws.lab.test"),
        Service("evil", "evil", host=evil_host, tls=evil_tls,
                page=Page(api=None, ws="chat", steps=("steal",)))),
        page=Page(steps=("login", "socket", "chat"), credentials="include"))


@pytest.mark.parametrize("evil_host, evil_tls, before, session", [
    ("evil.lab.test", True, ("web",), "alice"),  # same site: the cookie goes along
    ("localhost", True, ("web",), None),  # another site: SameSite=Lax, third-party blocking
    ("evil.lab.test", False, ("web",), None),  # http page: schemeful same-site says cross-site
    ("evil.lab.test", True, (), None),  # no victim logged in first
])
def test_the_hijack_reads_as_the_victim_only_from_a_same_site_secure_page(
        evil_host: str, evil_tls: bool, before: tuple[str, ...], session: str | None) -> None:
    e = explain(_hijack(evil_host, evil_tls), visit="evil", before=before)
    assert (e.outcome, e.session) == ("allowed", session)


def test_a_secure_cookie_set_over_plain_http_is_kept_only_on_localhost() -> None:
    def plain(host: str) -> Topology:
        return Topology("c", (
            Service("web", "web", host=host, tls=False),
            Service("api", "api", host=host, tls=False,
                    cors=CorsPolicy("allowlist", ("web",), credentials=True)),
            Service("chat", "chat", host=host, tls=False)),
            page=Page(steps=("login", "socket"), credentials="include"))
    # labkit's API marks the cookie Secure only over TLS: over plain http it is kept anywhere.
    assert explain(plain("localhost")).session == "alice"
    assert explain(plain("app.lab.test")).session == "alice"


def test_a_mismatching_allow_list_sends_no_acao_and_explain_says_so() -> None:
    topo = Topology("m", (Service("web", "web"), Service("api", "api", cors=CorsPolicy(
        "allowlist", ("https://localhost:31999",)))), page=Page(ws=None, steps=("hello",)))
    e = explain(topo)
    assert e.reason == "cors"
    assert "No 'Access-Control-Allow-Origin' header" in e.checks[0][1].detail


# -- the validator: what cannot work is refused, with the fix -------------------------------------
def _page_topo(**page: object) -> Topology:
    return Topology("v", (Service("web", "web"), Service("api", "api"), Service("chat", "chat")),
                    page=Page(**page))  # type: ignore[arg-type]


@pytest.mark.parametrize("build, words", [
    (lambda: _page_topo(api="web"), "fetches /api/… from 'web', a web server"),
    (lambda: _page_topo(ws="api"), "opens its WebSocket to 'api', a api server"),
    (lambda: _page_topo(ws_path="/chat"), "ws_path='/chat', which the chat server does not"),
    (lambda: _page_topo(steps="hello"), "Write steps=('hello',)"),
    (lambda: _page_topo(steps=("chat", "socket")), "Put 'socket' before 'chat'"),
    (lambda: _page_topo(api=None), "has steps ['hello', 'login', 'rooms'] but no API"),
    (lambda: Topology("v", (Service("web", "web", port="8443"),)),  # type: ignore[arg-type]
     "Write port=8443 (an int)"),
    (lambda: Topology("v", (Service("chat", "chat", origins="web"),)),  # type: ignore[arg-type]
     "Write origins=('web',)"),
    (lambda: Topology("v", (Service("api", "api", cors=CorsPolicy("allowlist", "web")),)),
     "CorsPolicy('allowlist', ('web',))"),
    (lambda: Topology("v", (Service("web", "web", host="app.lab.test."),)),
     "Write host='app.lab.test'"),
    (lambda: Topology("v", (Service("api", "api", cors=CorsPolicy("allowlist", ("*",))),)),
     "use CorsPolicy('wildcard')"),
    (lambda: Topology("v", (Service("chat", "chat", origins=("*",)),)),
     "origins=None — the hijackable default"),
    (lambda: Topology("v", (Service("web", "web", port=31000),
                            Service("api", "api", port=31000))),
     "services 'web' and 'api' both ask for port 31000"),
    (lambda: CorsPolicy("everyone"), "CORS mode 'everyone' is not one of"),
])
def test_impossible_configurations_are_refused_with_the_fix(build: object, words: str) -> None:
    with pytest.raises(LabError) as info:
        topo = build()  # type: ignore[operator]
        topo.validate()
    assert isinstance(info.value, TopologyError)
    assert words.replace("use CorsPolicy", "For the API use CorsPolicy") in str(info.value) \
        or words in str(info.value)


def test_a_page_without_a_page_service_cannot_be_visited() -> None:
    with pytest.raises(TopologyError, match="serves no page"):
        explain(_page_topo(), visit="api")
