"""The classifier and the normaliser, on hand-built observations (no browser, milliseconds).

The message texts are Chromium 156's own words, as observed in the real browser: the
browser tests check the same rules against a real Chromium.
"""

from __future__ import annotations

from typing import Any

import pytest

from labkit.observe.observation import (
    ConsoleMessage,
    FailedRequest,
    Observation,
    PageError,
    SocketEvent,
    Step,
    classify,
    normalize_text,
)

WEB, API, CHAT = 8443, 8444, 8765
PORTS = {WEB: "web", API: "api", CHAT: "chat"}
PAGE = f"https://localhost:{WEB}"
LAB_PAGE = f"https://app.lab.test:{WEB}"
FAILED_TO_FETCH = "TypeError: Failed to fetch"
ERR_FAILED = "Failed to load resource: net::ERR_FAILED"


def observe(
    steps: dict[str, tuple[str, str]] | None = None,
    console: list[str] | None = None,
    page_errors: list[tuple[str, str]] | None = None,
    sockets: list[SocketEvent] | None = None,
    navigation_error: str | None = None,
    failed: list[FailedRequest] | None = None,
    url: str = PAGE + "/",
) -> Observation:
    return Observation(
        url=url, final_url=url, redirects=[], navigation_error=navigation_error,
        status=None if navigation_error else 200,
        steps={k: Step(*v) for k, v in (steps or {}).items()},
        console=[ConsoleMessage("error", t) for t in console or []],
        page_errors=[PageError(*e) for e in page_errors or []],
        failed_requests=failed or [], sockets=sockets or [], seen=[],
        browser_version="156.0.8078.108", ports=dict(PORTS),
    )


def cors_message(reason: str, kind: str = "fetch", path: str = "/api/hello") -> str:
    return (f"Access to {kind} at 'https://localhost:{API}{path}' from origin '{PAGE}' "
            f"has been blocked by CORS policy: {reason}")


def fetch_blocked(reason: str, step: str = "hello", kind: str = "fetch") -> Observation:
    """What the page and console show when the browser hides an API answer for ``reason``."""
    return observe({step: ("blocked", FAILED_TO_FETCH)},
                   [cors_message(reason, kind), ERR_FAILED],
                   failed=[FailedRequest(f"https://localhost:{API}/api/hello", "net::ERR_FAILED")])


def ws_failed(url: str, why: str) -> Observation:
    text = f"WebSocket connection to '{url}' failed: {why}"
    return observe({"socket": ("blocked", "connection failed (close code 1006)"),
                    "chat": ("skipped", "no open chat socket")},
                   [text], sockets=[SocketEvent(url, False, 1006, "", why)], url=LAB_PAGE + "/")


NO_ACAO = "No 'Access-Control-Allow-Origin' header is present on the requested resource."
PREFLIGHT = "Response to preflight request doesn't pass access control check: "
MIXED_WS = (f"Mixed Content: The page at '{LAB_PAGE}/' was loaded over HTTPS, but attempted to "
            f"connect to the insecure WebSocket endpoint 'ws://ws.lab.test:{CHAT}/ws'. This "
            f"request has been blocked; this endpoint must be available over WSS.")
INSECURE_WS = ("Failed to construct 'WebSocket': An insecure WebSocket connection may not be "
               "initiated from a page loaded over HTTPS.")
MIXED_FETCH = (f"Mixed Content: The page at '{LAB_PAGE}/' was loaded over HTTPS, but requested "
               f"an insecure resource 'http://api.lab.test:{API}/api/hello'. This request has "
               f"been blocked; the content must be served over HTTPS.")

CASES: dict[str, tuple[str, Any]] = {
    # -- CORS (page https://localhost:A calls https://localhost:B) --
    "no-acao": ("cors", lambda: fetch_blocked(NO_ACAO)),
    "wrong-acao": ("cors", lambda: fetch_blocked(
        "The 'Access-Control-Allow-Origin' header has a value 'https://localhost:9999' that is "
        "not equal to the supplied origin.")),
    "xhr-polling": ("cors", lambda: fetch_blocked(NO_ACAO, kind="XMLHttpRequest")),
    "preflight-no-acao": ("cors-preflight", lambda: fetch_blocked(PREFLIGHT + NO_ACAO, "login")),
    "preflight-not-ok": ("cors-preflight", lambda: fetch_blocked(
        PREFLIGHT + "It does not have HTTP ok status.", "login")),
    "preflight-header": ("cors-preflight", lambda: fetch_blocked(
        "Request header field content-type is not allowed by Access-Control-Allow-Headers in "
        "preflight response.", "login")),
    "preflight-method": ("cors-preflight", lambda: fetch_blocked(
        "Method PUT is not allowed by Access-Control-Allow-Methods in preflight response.",
        "login")),
    "credentials-wildcard": ("cors-credentials", lambda: fetch_blocked(
        "The value of the 'Access-Control-Allow-Origin' header in the response must not be the "
        "wildcard '*' when the request's credentials mode is 'include'.")),
    "credentials-no-acac": ("cors-credentials", lambda: fetch_blocked(
        "The value of the 'Access-Control-Allow-Credentials' header in the response is '' which "
        "must be 'true' when the request's credentials mode is 'include'.")),
    # -- mixed content (page https://app.lab.test:A) --
    "mixed-ws-console": ("mixed-content", lambda: observe(
        {"socket": ("blocked", f"SecurityError: {INSECURE_WS}")}, [MIXED_WS], url=LAB_PAGE)),
    "mixed-ws-pageerror": ("mixed-content", lambda: observe(
        {"socket": ("error", f"SecurityError: {INSECURE_WS}")},
        page_errors=[("SecurityError", INSECURE_WS)], url=LAB_PAGE)),
    "mixed-fetch": ("mixed-content", lambda: observe(
        {"hello": ("blocked", FAILED_TO_FETCH)}, [MIXED_FETCH], url=LAB_PAGE,
        failed=[FailedRequest(f"http://api.lab.test:{API}/api/hello", "mixed-content")])),
    # -- certificates and TLS --
    "page-untrusted": ("cert-authority", lambda: observe(
        navigation_error="net::ERR_CERT_AUTHORITY_INVALID")),
    "wss-untrusted": ("cert-authority", lambda: ws_failed(
        f"wss://ws.lab.test:{CHAT}/ws",
        "Error in connection establishment: net::ERR_CERT_AUTHORITY_INVALID")),
    "page-wrong-name": ("cert-name", lambda: observe(
        navigation_error="net::ERR_CERT_COMMON_NAME_INVALID", url=LAB_PAGE)),
    "wss-wrong-name": ("cert-name", lambda: ws_failed(
        f"wss://ws.lab.test:{CHAT}/ws",
        "Error in connection establishment: net::ERR_CERT_COMMON_NAME_INVALID")),
    "wss-to-plain-closed": ("tls-handshake", lambda: ws_failed(
        f"wss://ws.lab.test:{CHAT}/ws",
        "Error in connection establishment: net::ERR_CONNECTION_CLOSED")),
    "wss-to-plain-ssl": ("tls-handshake", lambda: ws_failed(
        f"wss://ws.lab.test:{CHAT}/ws",
        "Error in connection establishment: net::ERR_SSL_PROTOCOL_ERROR")),
    # -- the chat server's Origin allow-list --
    "origin-403": ("origin-rejected", lambda: ws_failed(
        f"wss://localhost:{CHAT}/ws",
        "Error during WebSocket handshake: Unexpected response code: 403")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_browser_message_gives_its_reason(case: str) -> None:
    reason, build = CASES[case]
    v = classify(build())
    assert (v.outcome, v.reason) == ("blocked", reason)
    assert str(v) == f"blocked ({reason})"


def test_every_reason_is_covered() -> None:
    assert {r for r, _ in CASES.values()} == {
        "cors", "cors-preflight", "cors-credentials", "mixed-content", "cert-authority",
        "cert-name", "tls-handshake", "origin-rejected"}


def test_evidence_is_the_browsers_own_words_with_ports_named() -> None:
    v = classify(fetch_blocked(NO_ACAO))
    assert v.evidence == (f"Access to fetch at 'https://localhost:<api>/api/hello' from origin "
                          f"'https://localhost:<web>' has been blocked by CORS policy: {NO_ACAO}")


def test_a_certificate_failure_explains_the_failed_fetch_after_it() -> None:
    obs = observe({"hello": ("blocked", FAILED_TO_FETCH)},
                  ["Failed to load resource: net::ERR_CERT_AUTHORITY_INVALID", ERR_FAILED])
    assert classify(obs).reason == "cert-authority"


def test_allowed_when_all_decisive_steps_are_ok_despite_an_unrelated_console_error() -> None:
    obs = observe({"hello": ("ok", "hello from the API"), "rooms": ("ok", "general, random")},
                  ["Failed to load resource: the server responded with a status of 404 "
                   "(Not Found)", cors_message(NO_ACAO, path="/api/other")])
    assert classify(obs).outcome == "allowed"
    assert classify(obs).reason is None
    assert str(obs.verdict()) == "allowed"


def test_only_decisive_steps_decide() -> None:
    obs = observe({"hello": ("ok", "hello from the API"),
                   "socket": ("blocked", f"SecurityError: {INSECURE_WS}")}, [MIXED_WS])
    assert classify(obs, ["hello"]).outcome == "allowed"
    assert classify(obs).reason == "mixed-content"
    assert classify(obs, ["socket"]).reason == "mixed-content"


def test_a_failed_navigation_is_blocked_even_without_steps() -> None:
    obs = observe(navigation_error="net::ERR_CONNECTION_REFUSED")
    v = classify(obs)
    assert (v.outcome, v.reason) == ("blocked", None)
    assert v.evidence == "net::ERR_CONNECTION_REFUSED"


def test_a_decisive_step_the_page_never_showed_is_a_block() -> None:
    obs = observe({"hello": ("ok", "hello from the API")})
    assert classify(obs, ["hello", "socket"]).outcome == "blocked"


def test_a_block_with_no_known_message_names_the_step() -> None:
    obs = observe({"hello": ("error", "HTTP 500")})
    v = classify(obs)
    assert (v.outcome, v.reason, v.evidence) == ("blocked", None, "hello: HTTP 500")


# -- normalisation ---------------------------------------------------------------------------------
def test_known_ports_become_service_names_and_others_port() -> None:
    text = (f"Access to fetch at 'https://localhost:{API}/api/hello' from origin "
            f"'https://localhost:{WEB}' (see also wss://ws.lab.test:{CHAT}/ws and :51234)")
    assert normalize_text(text, PORTS) == (
        "Access to fetch at 'https://localhost:<api>/api/hello' from origin "
        "'https://localhost:<web>' (see also wss://ws.lab.test:<chat>/ws and :<PORT>)")


@pytest.mark.parametrize("text", [
    "Error during WebSocket handshake: Unexpected response code: 403",
    "connection failed (close code 1006)",
    "message #12 delivered to the room",
    "net::ERR_CERT_AUTHORITY_INVALID",
])
def test_text_without_ports_is_unchanged(text: str) -> None:
    assert normalize_text(text, PORTS) == text


def test_normalized_observations_of_different_ports_compare_equal() -> None:
    def run(web: int, api: int) -> Observation:
        ports = {web: "web", api: "api"}
        obs = Observation(
            url=f"https://localhost:{web}/", final_url=f"https://localhost:{web}/", redirects=[],
            navigation_error=None, status=200, steps={"hello": Step("blocked", FAILED_TO_FETCH)},
            console=[ConsoleMessage("error", ERR_FAILED), ConsoleMessage(
                "error", f"Access to fetch at 'https://localhost:{api}/api/hello' from origin "
                         f"'https://localhost:{web}' has been blocked by CORS policy: {NO_ACAO}")],
            page_errors=[], failed_requests=[
                FailedRequest(f"https://localhost:{api}/api/hello", "net::ERR_FAILED")],
            sockets=[], browser_version="156", ports=ports,
            seen=[{"service": "api", "kind": "http", "method": "GET", "path": "/api/hello",
                   "origin": f"https://localhost:{web}", "sec_fetch_site": "same-site",
                   "status": 200, "user": None}])
        return obs

    a, b = run(40001, 40002), run(51001, 51002)
    # Console order varies between runs: compare as multisets.
    b.console.reverse()
    assert a.normalized() == b.normalized()
    assert "https://localhost:<web>" in str(a.normalized()["seen"])


def test_noise_is_dropped_from_messages() -> None:
    obs = observe(console=["Failed to load resource: the server responded with a status of 404 "
                           "(Not Found) https://localhost:8443/favicon.ico", ERR_FAILED])
    assert obs.messages() == [f"error: {ERR_FAILED}"]


def test_socketio_requests_on_the_wire_are_settled_whatever_their_order() -> None:
    """socket.io polls and upgrades at once: two runs that differ only in the order and number
    of its requests show the same wire (a count per kind of request)."""
    from labkit.observe.observation import _settle_socketio

    def row(method: str, path: str, kind: str = "http") -> dict[str, object]:
        return {"service": "sio" if "socket.io" in path else "web", "kind": kind,
                "method": method, "path": path, "status": 200, "request": {}, "response": {},
                "times": 1}

    page = row("GET", "/")
    poll, post = row("GET", "/socket.io/?t=<ID>&sid=<ID>"), row("POST", "/socket.io/?sid=<ID>")
    ws = row("GET", "/socket.io/?transport=websocket", "ws")
    a = _settle_socketio([page, poll, ws, post, poll])
    b = _settle_socketio([page, post, poll, ws])
    assert [r["path"] for r in a] == [r["path"] for r in b]
    assert [r["times"] for r in a] == [1, 2, 1, 1] and [r["times"] for r in b] == [1, 1, 1, 1]
