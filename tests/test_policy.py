"""labkit.model.policy: the browser's rules without a browser.

Cases come from what Chromium 156 did (the browser tests check it again) and the scenario
catalogue. Each fix is paired with the broken case it fixes.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit.errors import InvalidOriginError
from labkit.model.cors import CorsPolicy, response_headers
from labkit.model.policy import (
    REASONS,
    Origin,
    Prediction,
    cors_check,
    is_mixed_content,
    is_potentially_trustworthy,
    mixed_content_check,
    needs_preflight,
    origin_of,
    parse_origin,
    preflight_check,
    registrable_domain,
    same_origin,
    same_site,
    tls_check,
    unsafe_header_names,
    websocket_origin_check,
)

PAGE = "https://localhost:8443"
APP = "https://app.lab.test:8443/"
JSON = {"Content-Type": "application/json"}
ACAO = "Access-Control-Allow-Origin"


# -- the interface other modules rely on ---------------------------------------------------------
def test_reasons_are_the_classifier_interface() -> None:
    assert REASONS == ("cors", "cors-preflight", "cors-credentials", "mixed-content",
                       "cert-authority", "cert-name", "tls-handshake", "origin-rejected",
                       "http-error", "too-many-redirects")


@pytest.mark.parametrize("outcome, reason", [
    ("blocked", None), ("allowed", "cors"), ("blocked", "cors-typo"), ("maybe", None),
])
def test_verdict_refuses_inconsistent_reasons(outcome: str, reason: str | None) -> None:
    with pytest.raises(ValueError, match="inconsistent verdict"):
        Prediction(outcome, reason, "rule", "detail")  # type: ignore[arg-type]


def test_verdict_ok() -> None:
    assert Prediction("allowed", None, "r", "d").ok
    assert not Prediction("blocked", "cors", "r", "d").ok


# -- origins (RFC 6454, URL Standard) ------------------------------------------------------------
@pytest.mark.parametrize("url, origin, text", [
    ("https://localhost:8443/api/hello?x=1#f", Origin("https", "localhost", 8443),
     "https://localhost:8443"),
    ("HTTPS://App.Lab.Test/", Origin("https", "app.lab.test", 443), "https://app.lab.test"),
    ("https://app.lab.test:443", Origin("https", "app.lab.test", 443), "https://app.lab.test"),
    ("ws://ws.lab.test:8766/ws", Origin("ws", "ws.lab.test", 8766), "ws://ws.lab.test:8766"),
    ("http://[::1]:8080/", Origin("http", "::1", 8080), "http://[::1]:8080"),
    ("http://localhost:0/", Origin("http", "localhost", 0), "http://localhost:0"),
    ("https://user:pw@localhost:8443/", Origin("https", "localhost", 8443),
     "https://localhost:8443"),
])
def test_origin_of(url: str, origin: Origin, text: str) -> None:
    assert origin_of(url) == origin
    assert str(origin) == text


@pytest.mark.parametrize("url", [
    "localhost:8443", "ftp://localhost/", "https://", "file:///etc/passwd", "http://[::1",
    "https://localhost:99999", "https://localhost:port", "", "/relative/path",
    "http://a b/", "http://a<b>/", "http://[fe80::1%25eth0]/", "http://[v1.x]/", "http://[::1]x/",
])
def test_origin_of_rejects_non_origins(url: str) -> None:
    with pytest.raises(InvalidOriginError):
        origin_of(url)


@pytest.mark.parametrize("value, ok", [
    ("https://localhost:8443", True),
    ("http://127.0.0.1:8080", True),
    ("https://localhost:8443/", False),  # browsers never send the trailing slash
    ("https://localhost:8443/chat", False),
    ("wss://localhost:8443", False),
    ("null", False),
    ("", False),
    ("https://[::1", False),
])
def test_parse_origin(value: str, ok: bool) -> None:
    if ok:
        assert str(parse_origin(value)) == value
    else:
        with pytest.raises(InvalidOriginError):
            parse_origin(value)


# -- same origin vs same site (HTML) -------------------------------------------------------------
@pytest.mark.parametrize("a, b, origin, site", [
    # Observed in Chromium 156: across ports, Sec-Fetch-Site is same-site: the port changes the
    # origin only
    ("https://localhost:8443", "https://localhost:9443", False, True),
    ("https://localhost:8443/", "https://localhost:8443/api", True, True),
    ("https://app.lab.test:8443", "https://api.lab.test:9443", False, True),  # lab.test is a site
    ("https://app.lab.test", "https://evil.lab.test", False, True),
    ("https://app.lab.test", "http://app.lab.test", False, False),  # schemeful
    ("https://localhost:8443", "https://127.0.0.1:8443", False, False),
    ("https://127.0.0.1:1", "https://127.0.0.1:2", False, True),
    ("https://localhost", "https://app.localhost", False, False),  # localhost is a suffix
    ("https://app.lab.test:8443", "wss://ws.lab.test:8766", False, True),  # handshake is https
    ("https://app.lab.test", "ws://ws.lab.test", False, False),
    ("https://app.lab.test", "https://app.other.test", False, False),
])
def test_same_origin_and_same_site(a: str, b: str, origin: bool, site: bool) -> None:
    assert same_origin(a, b) is origin
    assert same_site(a, b) is site
    assert same_site(b, a) is site


@pytest.mark.parametrize("host, domain", [
    ("app.lab.test", "lab.test"), ("lab.test", "lab.test"), ("a.b.lab.test", "lab.test"),
    ("localhost", None), ("ws.localhost", "ws.localhost"), ("127.0.0.1", None), ("::1", None),
    ("app.lab.test.", "lab.test."),
])
def test_registrable_domain(host: str, domain: str | None) -> None:
    assert registrable_domain(host) == domain


# -- potentially trustworthy (Secure Contexts §3.1/§3.2) -----------------------------------------
@pytest.mark.parametrize("target, trusted", [
    ("https://app.lab.test", True),
    ("wss://ws.lab.test:8766/ws", True),
    ("http://localhost:8080", True),
    ("ws://localhost:8766", True),
    ("ws://LOCALHOST.:8766", True),
    ("ws://ws.localhost:8766", True),
    ("ws://127.0.0.1:8766", True),
    ("ws://127.8.9.10", True),  # all of 127.0.0.0/8
    ("ws://[::1]:8766", True),
    ("ws://ws.lab.test:8766", False),  # the lab's names get no pass: that is the point
    ("http://api.lab.test:8080", False),
    ("ws://localhost.evil.test", False),
    ("ws://127.0.0.1.evil.test", False),
    ("ws://[::ffff:127.0.0.1]", False),  # only ::1/128 for IPv6
    ("http://10.0.0.1", False),
    ("data:text/plain,hi", True),
    ("about:blank", True),
    ("ftp://localhost/", False),  # an opaque origin
    (Origin("ws", "localhost", 8766), True),
    (Origin("http", "app.lab.test", 80), False),
])
def test_is_potentially_trustworthy(target: str | Origin, trusted: bool) -> None:
    assert is_potentially_trustworthy(target) is trusted


# -- mixed content (Mixed Content #should-block-fetch) -------------------------------------------
WS_BLOCKED = "attempted to connect to the insecure WebSocket endpoint"
HTTP_BLOCKED = "requested an insecure resource"


@pytest.mark.parametrize("page, target, blocked, text", [
    (APP, "ws://ws.lab.test:8766/ws", True, WS_BLOCKED),  # mixed-content-ws
    (APP, "wss://ws.lab.test:8766/ws", False, ""),  # its fix
    (APP, "ws://localhost:8766/ws", False, ""),  # mixed-content-localhost
    (APP, "http://api.lab.test:8080/api/hello", True, HTTP_BLOCKED),  # mixed-content-api
    (APP, "https://api.lab.test:8080/api/hello", False, ""),
    (APP, "ws://app.lab.test:8443/ws", True, WS_BLOCKED),  # reverse-proxy-ws-scheme
    (APP, "/ws", False, ""),  # relative: resolves to the page's (secure) scheme
    (APP, "ws://127.0.0.1:8766", False, ""),
    (APP, "ws://ws.localhost:8766", False, ""),
    (APP, "http://localhost:8080", False, ""),
    (APP, "ws://127.0.0.1.evil.test", True, WS_BLOCKED),
    ("https://localhost:8443/", "ws://localhost:8766", False, ""),  # "worked on my machine"
    ("https://127.0.0.1:8443/", "ws://127.0.0.1:8766", False, ""),
    ("http://app.lab.test:8080/", "ws://ws.lab.test:8766", False, ""),  # no secure page
    # The spec would block this (localhost pages are potentially trustworthy); Chromium does not.
    ("http://localhost:8080/", "http://api.lab.test:8080", False, ""),
])
def test_mixed_content(page: str, target: str, blocked: bool, text: str) -> None:
    verdict = mixed_content_check(page, target)
    assert is_mixed_content(page, target) is blocked
    assert verdict.outcome == ("blocked" if blocked else "allowed")
    assert verdict.reason == ("mixed-content" if blocked else None)
    if blocked:
        assert verdict.detail.startswith(f"Mixed Content: The page at '{page}' was loaded over "
                                         f"HTTPS, but {text} '{target}'. This request has been "
                                         "blocked;")
        assert verdict.detail.endswith("over WSS." if text == WS_BLOCKED else "over HTTPS.")


def test_mixed_content_rejects_pages_that_are_not_urls() -> None:
    with pytest.raises(InvalidOriginError):
        is_mixed_content("app.lab.test", "ws://ws.lab.test")


# -- preflight needed? (Fetch #cors-safelisted-method, #cors-safelisted-request-header) ----------
@pytest.mark.parametrize("method, headers, needed", [
    ("GET", {}, False),
    ("HEAD", {}, False),
    ("post", {}, False),  # normalized to POST
    ("POST", {"Content-Type": "text/plain;charset=UTF-8"}, False),  # cors-simple-post
    ("POST", JSON, True),  # cors-preflight
    ("POST", {"content-type": "TEXT/PLAIN"}, False),
    ("POST", {"Content-Type": "multipart/form-data; boundary=x"}, False),
    ("POST", {"Content-Type": "application/x-www-form-urlencoded"}, False),
    ("POST", {"Content-Type": 'text/plain; charset="utf-8"'}, True),  # '"' is an unsafe byte
    ("PUT", {}, True),
    ("DELETE", {}, True),
    ("PATCH", {}, True),
    ("GET", {"Authorization": "Bearer t"}, True),
    ("GET", {"X-Requested-With": "XMLHttpRequest"}, True),
    ("GET", {"Accept": "application/json"}, False),
    ("GET", {"Accept": "text/" + "x" * 124}, True),  # over 128 bytes
    ("GET", {"Accept": "text/(html)"}, True),
    ("GET", {"Accept-Language": "en-US,en;q=0.9"}, False),
    ("GET", {"Accept-Language": "en_US"}, True),
    ("GET", {"Range": "bytes=0-499"}, False),
    ("GET", {"Range": "bytes=0-"}, False),
    ("GET", {"Range": "bytes=-500"}, True),  # suffix ranges are not safelisted
    ("GET", {"Range": "bytes=500-100"}, True),
])
def test_needs_preflight(method: str, headers: dict[str, str], needed: bool) -> None:
    assert needs_preflight(method, headers) is needed


def test_unsafe_header_names_are_sorted_lowercase() -> None:
    headers = {"X-Token": "t", "Content-Type": "application/json", "Accept": "*/*"}
    assert unsafe_header_names(headers) == ["content-type", "x-token"]


def test_safelisted_headers_over_1024_bytes_become_unsafe() -> None:
    # Nine spellings of Accept, 128 bytes each: every one is fine alone, not together.
    spellings = ["".join(c.upper() if int(bit) else c
                         for c, bit in zip("accept", f"{n:06b}", strict=True)) for n in range(9)]
    headers = {name: "a" * 128 for name in spellings}
    assert len(headers) == 9
    assert unsafe_header_names(headers) == ["accept"]
    assert not needs_preflight("GET", {"Accept": "a" * 128})


# -- the CORS check (Fetch #cors-check), Chromium's words ----------------------------------------
MISSING = "No 'Access-Control-Allow-Origin' header is present on the requested resource."
WILDCARD = ("The value of the 'Access-Control-Allow-Origin' header in the response must not be "
            "the wildcard '*' when the request's credentials mode is 'include'.")


def _mismatch(value: str) -> str:
    return (f"The 'Access-Control-Allow-Origin' header has a value '{value}' that is not equal "
            "to the supplied origin.")


def _no_credentials(value: str) -> str:
    return (f"The value of the 'Access-Control-Allow-Credentials' header in the response is "
            f"'{value}' which must be 'true' when the request's credentials mode is 'include'.")


@pytest.mark.parametrize("origin, headers, mode, reason, detail", [
    (PAGE, {}, "omit", "cors", MISSING),  # cors-port-mismatch
    (PAGE, {ACAO: PAGE}, "omit", None, ""),  # cors-allow-origin
    (PAGE, {"access-control-allow-origin": PAGE}, "omit", None, ""),  # names are case-insensitive
    (PAGE, {"ACCESS-CONTROL-ALLOW-ORIGIN": f" {PAGE}\t"}, "omit", None, ""),
    (PAGE, {ACAO: "https://localhost:9443"}, "omit", "cors", _mismatch("https://localhost:9443")),
    (PAGE, {ACAO: PAGE + "/"}, "omit", "cors", _mismatch(PAGE + "/")),  # compared as text
    (PAGE, {ACAO: "https://LOCALHOST:8443"}, "omit", "cors", _mismatch("https://LOCALHOST:8443")),
    (PAGE, {ACAO: "null"}, "omit", "cors", _mismatch("null")),
    (PAGE, {ACAO: f"{PAGE}, {APP[:-1]}"}, "omit", "cors",
     f"The 'Access-Control-Allow-Origin' header contains multiple values '{PAGE}, {APP[:-1]}', "
     "but only one is allowed."),
    (PAGE, {ACAO: PAGE, ACAO.lower(): PAGE}, "omit", "cors",
     f"The 'Access-Control-Allow-Origin' header contains multiple values '{PAGE}, {PAGE}', "
     "but only one is allowed."),
    (PAGE, {ACAO: "*"}, "omit", None, ""),
    (PAGE, {ACAO: "*"}, "same-origin", None, ""),
    (PAGE, {ACAO: "*", "Access-Control-Allow-Credentials": "true"}, "include", "cors-credentials",
     WILDCARD),  # cors-credentials-wildcard
    (PAGE, {ACAO: PAGE}, "include", "cors-credentials", _no_credentials("")),
    (PAGE, {ACAO: PAGE, "Access-Control-Allow-Credentials": "True"}, "include",
     "cors-credentials", _no_credentials("True")),
    (PAGE, {ACAO: PAGE, "access-control-allow-credentials": "true"}, "include", None, ""),
    ("https://app.lab.test:443/page", {ACAO: "https://app.lab.test"}, "omit", None, ""),
    ("https://app.lab.test", {ACAO: "https://app.lab.test:443"}, "omit", "cors",
     _mismatch("https://app.lab.test:443")),  # browsers never send the default port
    (Origin("https", "localhost", 8443), {ACAO: PAGE}, "omit", None, ""),
])
def test_cors_check(origin: str | Origin, headers: dict[str, str], mode: str,
                    reason: str | None, detail: str) -> None:
    verdict = cors_check(origin, headers, mode)
    assert verdict.reason == reason
    assert verdict.ok is (reason is None)
    if reason:
        assert verdict.detail == detail


def test_cors_check_refuses_unknown_credentials_modes() -> None:
    with pytest.raises(ValueError, match="omit, same-origin, include"):
        cors_check(PAGE, {ACAO: PAGE}, "with-cookies")


# -- the preflight (Fetch #cors-preflight-fetch) -------------------------------------------------
PRE = "Response to preflight request doesn't pass access control check: "
GOOD = {ACAO: PAGE, "Access-Control-Allow-Methods": "GET, POST",
        "Access-Control-Allow-Headers": "content-type"}


@pytest.mark.parametrize("method, headers, status, answer, mode, reason, detail", [
    ("POST", JSON, 405, {}, "omit", "cors-preflight", PRE + MISSING),  # no CORS on the 405
    ("POST", JSON, 405, GOOD, "omit", "cors-preflight", PRE + "It does not have HTTP ok status."),
    ("POST", JSON, 204, GOOD, "omit", None, ""),  # cors-preflight-fixed
    ("POST", JSON, 200, GOOD | {"Access-Control-Allow-Headers": "Content-Type"}, "omit", None, ""),
    ("POST", JSON, 204, {ACAO: PAGE, "Access-Control-Allow-Methods": "GET, POST"}, "omit",
     "cors-preflight", "Request header field content-type is not allowed by "
     "Access-Control-Allow-Headers in preflight response."),
    ("PUT", JSON, 204, GOOD, "omit", "cors-preflight",
     "Method PUT is not allowed by Access-Control-Allow-Methods in preflight response."),
    ("POST", JSON, 204, GOOD | {"Access-Control-Allow-Methods": "PUT"}, "omit", None, ""),
    ("PUT", {}, 204, {ACAO: PAGE, "Access-Control-Allow-Methods": "*"}, "omit", None, ""),
    ("PUT", {}, 204, {ACAO: PAGE, "Access-Control-Allow-Methods": "*",
                      "Access-Control-Allow-Credentials": "true"}, "include", "cors-preflight",
     "Method PUT is not allowed by Access-Control-Allow-Methods in preflight response."),
    ("GET", {"X-Token": "t"}, 204, {ACAO: PAGE, "Access-Control-Allow-Headers": "*"}, "omit",
     None, ""),
    ("GET", {"Authorization": "Bearer t"}, 204, {ACAO: PAGE, "Access-Control-Allow-Headers": "*"},
     "omit", "cors-preflight", "Request header field authorization is not allowed by "
     "Access-Control-Allow-Headers in preflight response."),
    ("POST", JSON, 204, GOOD | {ACAO: "*"}, "include", "cors-credentials", PRE + WILDCARD),
    ("POST", JSON, 204, GOOD, "include", "cors-credentials", PRE + _no_credentials("")),
    ("POST", JSON, 204, GOOD | {"Access-Control-Allow-Methods": "GET POST"}, "omit",
     "cors-preflight", "Cannot parse Access-Control-Allow-Methods response header field in "
     "preflight response."),
    ("POST", JSON, 204, GOOD | {"Access-Control-Allow-Headers": "content-type;"}, "omit",
     "cors-preflight", "Cannot parse Access-Control-Allow-Headers response header field in "
     "preflight response."),
])
def test_preflight_check(method: str, headers: dict[str, str], status: int,
                         answer: dict[str, str], mode: str, reason: str | None,
                         detail: str) -> None:
    verdict = preflight_check(PAGE, method, headers, status, answer, mode)
    assert verdict.reason == reason
    if reason:
        assert verdict.detail == detail


@pytest.mark.parametrize("policy, reason", [
    (CorsPolicy("none"), "cors-preflight"),
    (CorsPolicy("allowlist", (PAGE,), preflight=False), "cors-preflight"),  # cors-preflight
    (CorsPolicy("allowlist", (PAGE,)), None),  # cors-preflight-fixed
    (CorsPolicy("allowlist", (PAGE,), headers=()), "cors-preflight"),
    (CorsPolicy("wildcard"), None),
])
def test_preflight_check_agrees_with_the_lab_api(policy: CorsPolicy, reason: str | None) -> None:
    # What labkit's API answers to the page's JSON POST (405 when it ignores preflights).
    answer = response_headers(policy, PAGE, policy.origins, preflight=True)
    status = 204 if policy.preflight else 405
    assert preflight_check(PAGE, "POST", JSON, status, answer).reason == reason


@pytest.mark.parametrize("policy, mode, reason", [
    (CorsPolicy("none"), "omit", "cors"),  # cors-port-mismatch, cors-simple-post
    (CorsPolicy("allowlist", (PAGE,)), "omit", None),  # cors-allow-origin
    (CorsPolicy("allowlist", ("https://localhost:9999",)), "omit", "cors"),
    (CorsPolicy("wildcard", credentials=True), "include", "cors-credentials"),
    (CorsPolicy("allowlist", (PAGE,)), "include", "cors-credentials"),
    (CorsPolicy("allowlist", (PAGE,), credentials=True), "include", None),
])
def test_cors_check_agrees_with_the_lab_api(policy: CorsPolicy, mode: str,
                                            reason: str | None) -> None:
    answer = response_headers(policy, PAGE, policy.origins)
    assert cors_check(PAGE, answer, mode).reason == reason


# -- WebSocket: no CORS, the server checks Origin (RFC 6455 §4.2.2, §10.2) -----------------------
EVIL = "https://evil.lab.test:9443"
REAL = "https://app.lab.test:8443"


@pytest.mark.parametrize("origin, allowlist, ok", [
    (EVIL, None, True),  # ws-hijack: the attack works
    (EVIL, [REAL], False),  # ws-origin-allowlist refuses the evil page...
    (REAL, [REAL], True),  # ...and accepts the real one
    ("https://app.lab.test", ["https://app.lab.test:443"], False),  # browsers drop default ports
    (REAL, [REAL + "/"], False),
    (None, [REAL], False),  # a non-browser client sends no Origin
    (None, [None, REAL], True),
])
def test_websocket_origin_check(origin: str | None, allowlist: list[str | None] | None,
                                ok: bool) -> None:
    verdict = websocket_origin_check(origin, allowlist)
    assert verdict.ok is ok
    if not ok:
        assert verdict.reason == "origin-rejected"
        assert verdict.detail == "Error during WebSocket handshake: Unexpected response code: 403"


def test_websocket_handshakes_are_not_cors_checked() -> None:
    # ws-cross-port: a page on A reaches chat on C with no ACAO anywhere; nothing but the server
    # decides, and the rule says so.
    assert "never CORS-check" in websocket_origin_check(PAGE, None).rule
    assert not same_origin(PAGE, "wss://localhost:8766") and same_site(PAGE, "wss://localhost:8766")


# -- certificates ---------------------------------------------------------------------------------
@pytest.mark.parametrize("host, names, trusted, reason", [
    ("ws.lab.test", ["ws.lab.test"], True, None),  # wss-trusted
    ("WS.lab.test.", ["ws.lab.test"], True, None),
    ("ws.lab.test", ["*.lab.test"], True, None),
    ("ws.lab.test", ["ws.lab.test"], False, "cert-authority"),  # wss-untrusted-cert
    ("ws.lab.test", ["app.lab.test"], True, "cert-name"),  # wss-name-mismatch
    ("ws.lab.test", ["app.lab.test"], False, "cert-authority"),  # the issuer is reported first
    ("ws.lab.test", None, True, "tls-handshake"),  # wss-to-plain-server
    ("a.ws.lab.test", ["*.lab.test"], True, "cert-name"),  # one label deep
    ("lab.test", ["*.lab.test"], True, "cert-name"),
    ("127.0.0.1", ["127.0.0.1"], True, None),
    ("127.0.0.1", ["*.0.0.1"], True, "cert-name"),
    ("[::1]", ["0:0::1"], True, None),
    ("localhost", ["127.0.0.1"], True, "cert-name"),
])
def test_tls_check(host: str, names: list[str] | None, trusted: bool, reason: str | None) -> None:
    assert tls_check(host, names, trusted).reason == reason


# -- the catalogue, explained before it is observed -----------------------------------------------
CATALOGUE = {
    "cors-port-mismatch": lambda: cors_check(PAGE, {}),
    "cors-allow-origin": lambda: cors_check(PAGE, {ACAO: PAGE}),
    "cors-preflight": lambda: preflight_check(PAGE, "POST", JSON, 405, {}),
    "cors-preflight-fixed": lambda: preflight_check(PAGE, "POST", JSON, 204, GOOD),
    "cors-credentials-wildcard": lambda: cors_check(PAGE, {ACAO: "*"}, "include"),
    "cors-simple-post": lambda: cors_check(PAGE, {}),
    "ws-cross-port": lambda: websocket_origin_check(PAGE, None),
    "ws-hijack": lambda: websocket_origin_check(EVIL, None),
    "ws-origin-allowlist": lambda: websocket_origin_check(EVIL, [REAL]),
    "mixed-content-ws": lambda: mixed_content_check(APP, "ws://ws.lab.test:8766/ws"),
    "mixed-content-localhost": lambda: mixed_content_check(APP, "ws://localhost:8766/ws"),
    "mixed-content-api": lambda: mixed_content_check(APP, "http://api.lab.test:8080/api"),
    "wss-trusted": lambda: tls_check("ws.lab.test", ["ws.lab.test"]),
    "wss-untrusted-cert": lambda: tls_check("ws.lab.test", ["ws.lab.test"], trusted=False),
    "wss-name-mismatch": lambda: tls_check("ws.lab.test", ["app.lab.test"]),
    "wss-to-plain-server": lambda: tls_check("ws.lab.test", None),
    "reverse-proxy": lambda: mixed_content_check(APP, "/ws"),
    "reverse-proxy-ws-scheme": lambda: mixed_content_check(APP, "ws://app.lab.test:8443/ws"),
    "socketio-polling-cors": lambda: cors_check(PAGE, {}),
    "socketio-fixed": lambda: cors_check(PAGE, {ACAO: PAGE}),
}
EXPECTED = {
    "cors-port-mismatch": "cors", "cors-preflight": "cors-preflight",
    "cors-credentials-wildcard": "cors-credentials", "cors-simple-post": "cors",
    "ws-origin-allowlist": "origin-rejected", "mixed-content-ws": "mixed-content",
    "mixed-content-api": "mixed-content", "wss-untrusted-cert": "cert-authority",
    "wss-name-mismatch": "cert-name", "wss-to-plain-server": "tls-handshake",
    "reverse-proxy-ws-scheme": "mixed-content", "socketio-polling-cors": "cors",
}


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_catalogue_outcomes(name: str) -> None:
    # The catalogue's expected outcome and reason, predicted without starting anything.
    assert CATALOGUE[name]().reason == EXPECTED.get(name)


def test_cors_simple_post_is_sent_yet_unreadable() -> None:
    # No preflight, so the server runs it; then the CORS check hides the answer from the page.
    assert not needs_preflight("POST", {"Content-Type": "text/plain;charset=UTF-8"})
    assert cors_check(PAGE, {}).reason == "cors"


# -- fuzz: arbitrary URL-ish text may be refused, never crash ------------------------------------
_CHARS = st.sampled_from(list("abcxyz0189-._~:/?#[]@!$&'()*+,;=% ") +
                         ["İ", "ß", "é", "℀", "\uff0f", "\u3002", "\x00", "\t", "\n", "\x7f"])
_TEXT = st.text(alphabet=_CHARS, max_size=30)
_HOSTS = st.one_of(
    st.sampled_from(["localhost", "LocalHost", "app.lab.test", "127.0.0.1", "[::1]", "[::1",
                     "ws.localhost", "", "xn--nxa.test", "a..b", "[v1.x]", "[fe80::1%25eth0]"]),
    _TEXT,
)
_PORTS = st.one_of(st.just(""), st.integers(-1, 70000).map(lambda n: f":{n}"),
                   _TEXT.map(lambda t: ":" + t))
_URLISH = st.one_of(
    _TEXT,
    st.builds(lambda s, h, p, rest: f"{s}{h}{p}{rest}",
              st.sampled_from(["http://", "https://", "ws://", "wss://", "HTTPS://", "ftp://",
                               "data:", "about:", "file://", "javascript:", "//", ""]),
              _HOSTS, _PORTS, _TEXT),
)
FUZZ = settings(max_examples=400, database=None, deadline=None)


@FUZZ
@given(_URLISH)
def test_fuzz_origin_of_round_trips_or_refuses(url: str) -> None:
    try:
        origin = origin_of(url)
    except InvalidOriginError:
        return
    assert origin_of(str(origin)) == origin
    assert same_origin(url, str(origin))


@FUZZ
@given(_URLISH)
def test_fuzz_parse_origin_refuses_cleanly(value: str) -> None:
    try:
        origin = parse_origin(value)
    except InvalidOriginError:
        return
    assert origin.scheme in ("http", "https")


@FUZZ
@given(_URLISH, _URLISH)
def test_fuzz_same_origin_and_same_site_are_symmetric(a: str, b: str) -> None:
    try:
        origin, site = same_origin(a, b), same_site(a, b)
    except InvalidOriginError:
        return
    assert same_origin(b, a) is origin
    assert same_site(b, a) is site
    assert site or not origin  # same origin always implies same site
    assert same_origin(a, a) and same_site(a, a)


@FUZZ
@given(st.one_of(_URLISH, st.sampled_from([APP, PAGE, "https://[::1]/", "http://app.lab.test/"])),
       _URLISH)
def test_fuzz_mixed_content_never_crashes(page: str, target: str) -> None:
    try:
        verdict = mixed_content_check(page, target)
    except InvalidOriginError:
        return
    assert verdict.reason in (None, "mixed-content")
    if verdict.ok is False:
        assert origin_of(page).scheme == "https"


_HEADERS = st.dictionaries(
    st.one_of(st.sampled_from(["Accept", "Content-Type", "Range", "Accept-Language",
                               "Authorization", ACAO, "access-control-allow-credentials"]), _TEXT),
    st.one_of(st.sampled_from(["text/plain", "application/json", "bytes=0-1", "*", PAGE, "true"]),
              _TEXT),
    max_size=4,
)


@FUZZ
@given(st.sampled_from(["GET", "post", "PUT", "patch", "", "ΓΕΤ"]), _HEADERS, _HEADERS,
       st.integers(0, 999), st.sampled_from(["omit", "same-origin", "include"]))
def test_fuzz_cors_rules_total(method: str, request: dict[str, str], answer: dict[str, str],
                               status: int, mode: str) -> None:
    if unsafe_header_names(request):
        assert needs_preflight(method, request)
    verdict = cors_check(PAGE, answer, mode)
    assert verdict.reason in (None, "cors", "cors-credentials")
    pre = preflight_check(PAGE, method, request, status, answer, mode)
    assert pre.reason in (None, "cors-preflight", "cors-credentials")
    assert not pre.ok or (verdict.ok and 200 <= status <= 299)
