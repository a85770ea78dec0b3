"""labkit.model.routing: the reverse proxy's decisions without I/O (which backend, which headers,
where the redirect points). labkit's proxy and the nginx renderer share these, so a mistake here
is a mistake in both deployments the lab shows.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit.model.routing import (
    HOP_BY_HOP,
    STORY_ROUTES,
    Route,
    clean_path,
    host_allowed,
    match,
    redirect_location,
    response_headers,
    upstream_headers,
)


def upstream_of(path: str) -> str | None:
    route = match(STORY_ROUTES, path)
    return None if route is None else route.upstream


# -- match: longest prefix, on segment boundaries ------------------------------------------------
@pytest.mark.parametrize("path, upstream", [
    ("/api", "api"),
    ("/api/", "api"),
    ("/api/hello", "api"),
    ("/api/x/y?z=1", "api"),
    ("/api?room=general", "api"),
    ("/ws", "chat"),
    ("/ws?token=1", "chat"),
    ("/", "web"),
    ("/app.js", "web"),
    # Not a segment boundary: these belong to the page server, never to the API or chat.
    ("/apix", "web"),
    ("/api-docs", "web"),
    ("/wsx", "web"),
    ("/w", "web"),
])
def test_match_longest_prefix_on_segment_boundaries(path: str, upstream: str) -> None:
    assert upstream_of(path) == upstream


def test_match_prefers_the_longest_prefix_whatever_the_order() -> None:
    routes = (Route("/", "web"), Route("/api", "api"), Route("/api/admin", "admin"))
    assert match(routes, "/api/admin/users").upstream == "admin"  # type: ignore[union-attr]
    assert match(routes, "/api/administrators").upstream == "api"  # type: ignore[union-attr]
    assert match(tuple(reversed(routes)), "/api/admin").upstream == "admin"  # type: ignore[union-attr]


def test_match_without_a_catch_all_has_no_route_for_other_paths() -> None:
    routes = (Route("/api", "api"), Route("/ws", "chat", websocket=True))
    assert match(routes, "/api/hello") is not None
    assert match(routes, "/nope") is None
    assert match(routes, "/apix") is None
    assert match(routes, "/") is None


def test_match_has_no_route_for_an_escaping_path() -> None:
    assert upstream_of("/api/../etc/passwd") is None
    assert upstream_of("http://evil/") is None


def test_route_prefix_must_start_with_a_slash() -> None:
    with pytest.raises(ValueError, match="must start with '/'"):
        Route("api", "api")


# -- clean_path: never an open proxy, never an escape --------------------------------------------
@pytest.mark.parametrize("raw", [
    "/",
    "/api/hello",
    "/api/hello?q=..",       # '..' in the query is data, not a path segment
    "/a..b/c",               # '..' inside a segment is just a name
    "/...",
    "/%2e",                  # a single dot is not an escape
    "/ws",
])
def test_clean_path_accepts_origin_form_paths(raw: str) -> None:
    assert clean_path(raw) == raw.split("?", 1)[0]


@pytest.mark.parametrize("raw", [
    "/..",
    "/../etc/passwd",
    "/api/../../etc/passwd",
    "/api/..",
    "/%2e%2e/etc/passwd",            # percent-encoded
    "/%2E%2E/etc/passwd",
    "/.%2e/etc/passwd",
    "/api/%2e%2e%2f%2e%2e%2fetc",    # encoded slashes too
    "/%252e%252e/etc/passwd",        # double-encoded: a backend that decodes once more escapes
    "/api/%252e%252e%252fetc",
    "http://evil/",                  # absolute-form: would make the proxy an open proxy
    "http://app.lab.test/api/hello",
    "https://evil:443/x",
    "//evil",                        # network-path reference
    "//evil/api/hello",
    "/api\\..\\secret",              # backslashes (Windows-style separators)
    "/api%5c..%5csecret",
    "/api%255csecret",
    "/api/\x00",                     # NUL
    "/api/%00",
    "/api/%2500",
    "*",
    "",
    "api/hello",
])
def test_clean_path_rejects_escapes_and_non_origin_form(raw: str) -> None:
    assert clean_path(raw) is None


# -- upstream_headers ----------------------------------------------------------------------------
CLIENT = [
    ("Host", "evil.example"),
    ("Connection", "keep-alive, Upgrade"),
    ("Keep-Alive", "timeout=5"),
    ("Upgrade", "websocket"),
    ("Transfer-Encoding", "chunked"),
    ("TE", "trailers"),
    ("Trailer", "X-Checksum"),
    ("Proxy-Authorization", "Basic c2VjcmV0"),
    ("Proxy-Connection", "keep-alive"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Extensions", "permessage-deflate"),
    ("X-Forwarded-For", "203.0.113.9"),
    ("X-Forwarded-Proto", "http"),
    ("X-Forwarded-Host", "evil.example"),
    ("Origin", "https://app.lab.test:8443"),
    ("Cookie", "labkit_session=abc"),
    ("Accept", "application/json"),
]


def _as_dict(headers: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in headers:
        out.setdefault(k.lower(), []).append(v)
    return out


def test_upstream_headers_drop_hop_by_hop_and_the_clients_forwarding_claims() -> None:
    out = _as_dict(upstream_headers(CLIENT, host="app.lab.test:8443", client_ip="127.0.0.1",
                                    proto="https"))
    for name in HOP_BY_HOP:
        assert name not in out, name
    assert not [k for k in out if k.startswith("sec-websocket-")]
    # Set by the proxy, once, never the client's own value.
    assert out["host"] == ["app.lab.test:8443"]
    assert out["x-forwarded-proto"] == ["https"]
    assert out["x-forwarded-host"] == ["app.lab.test:8443"]
    # Appended: the earlier hops stay, the real peer is last.
    assert out["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
    # The chat server's allow-list and the sessions need these untouched.
    assert out["origin"] == ["https://app.lab.test:8443"]
    assert out["cookie"] == ["labkit_session=abc"]
    assert out["accept"] == ["application/json"]


def test_upstream_headers_without_a_prior_hop() -> None:
    out = _as_dict(upstream_headers([("Accept", "*/*")], host="app.lab.test", client_ip="10.0.0.7",
                                    proto="http"))
    assert out["x-forwarded-for"] == ["10.0.0.7"]
    assert out["x-forwarded-proto"] == ["http"]
    assert out["host"] == ["app.lab.test"]


def test_upstream_headers_drop_headers_the_connection_header_names() -> None:
    """RFC 9110 §7.6.1: a proxy MUST remove the fields listed in Connection, not only the fixed
    hop-by-hop set: what the sender meant for this hop only must not reach the backend)."""
    headers = [("Connection", "close, X-Internal-Token"), ("X-Internal-Token", "s3cret"),
               ("Accept", "*/*")]
    out = _as_dict(upstream_headers(headers, host="app.lab.test", client_ip="127.0.0.1",
                                    proto="https"))
    assert "accept" in out  # the twin: an ordinary header crosses
    assert "x-internal-token" not in out


def test_response_headers_drop_hop_by_hop_and_framing() -> None:
    out = _as_dict(response_headers([
        ("Connection", "keep-alive"), ("Transfer-Encoding", "chunked"), ("Content-Length", "3"),
        ("Server", "labkit-chat"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
        ("Content-Type", "text/plain"),
    ]))
    assert out == {"set-cookie": ["a=1", "b=2"], "content-type": ["text/plain"]}


# -- redirect_location and host_allowed ----------------------------------------------------------
@pytest.mark.parametrize("host, port, path_qs, location", [
    ("app.lab.test", 8443, "/path?q=1", "https://app.lab.test:8443/path?q=1"),
    ("app.lab.test", 8443, "/", "https://app.lab.test:8443/"),
    ("app.lab.test", 8443, "/a/b?x=1&y=%20", "https://app.lab.test:8443/a/b?x=1&y=%20"),
    ("app.lab.test", 443, "/path?q=1", "https://app.lab.test/path?q=1"),
    ("::1", 8443, "/x", "https://[::1]:8443/x"),
    # Not origin-form: the redirect never points anywhere but our own origin.
    ("app.lab.test", 8443, "http://evil/", "https://app.lab.test:8443/"),
    ("app.lab.test", 8443, "", "https://app.lab.test:8443/"),
])
def test_redirect_location_keeps_path_and_query(host: str, port: int, path_qs: str,
                                                location: str) -> None:
    assert redirect_location(host, port, path_qs) == location


@pytest.mark.parametrize("header, allowed", [
    ("app.lab.test", True),
    ("app.lab.test:8443", True),
    ("APP.Lab.Test:8443", True),
    ("evil.lab.test", False),
    ("evil.lab.test:8443", False),
    ("app.lab.test.evil.example", False),
    ("xapp.lab.test", False),
    ("", False),
    (None, False),
])
def test_host_allowed(header: str | None, allowed: bool) -> None:
    assert host_allowed(header, ("app.lab.test",)) is allowed


def test_host_allowed_ipv6() -> None:
    assert host_allowed("[::1]:8443", ("::1",))
    assert host_allowed("[::1]", ("::1",))
    assert not host_allowed("[::2]:8443", ("::1",))


# -- properties ----------------------------------------------------------------------------------
_DOTS = ["..", "%2e%2e", "%2E%2e", ".%2e", "%2e.", "%252e%252e", "%252E.", ".%252e"]
_SEGMENT = st.one_of(
    st.sampled_from(_DOTS + [".", "", "api", "ws", "apix", "%2f", "%252f", "a..b"]),
    st.text(alphabet="abc./%25fFeE-_~", max_size=8),
    st.text(max_size=6),
)
_PATHS = st.one_of(
    st.lists(_SEGMENT, max_size=6).map(lambda segs: "/" + "/".join(segs)),
    st.text(max_size=30),
    st.text(max_size=30).map(lambda s: "/" + s),
)


@given(raw=_PATHS, query=st.one_of(st.none(), st.text(max_size=10)))
@settings(max_examples=400, deadline=None)
def test_match_never_raises_and_only_matches_on_segment_boundaries(raw: str,
                                                                   query: str | None) -> None:
    full = raw if query is None else f"{raw}?{query}"
    routes = STORY_ROUTES + (Route("/api/admin", "admin"), Route("/static/", "web"))
    route = match(routes, full)
    path = clean_path(full)
    if path is None:
        assert route is None
        return
    assert route is not None  # "/" catches everything that is clean
    prefix = route.prefix.rstrip("/")
    assert prefix == "" or path == prefix or path.startswith(prefix + "/"), (path, route)
    # ...and no longer prefix would have matched.
    for r in routes:
        p = r.prefix.rstrip("/")
        if p and (path == p or path.startswith(p + "/")):
            assert len(p) <= len(prefix), (path, r, route)


def _escapes(path: str) -> bool:
    """Whether a backend decoding the path once or twice would see a '..' segment."""
    once = unquote(path)
    return any(".." in p.split("/") for p in (once, unquote(once)))


@given(raw=_PATHS)
@settings(max_examples=400, deadline=None)
def test_clean_path_never_accepts_a_dot_dot_segment(raw: str) -> None:
    if clean_path(raw) is not None:
        assert not _escapes(raw.split("?", 1)[0]), raw


@given(segments=st.lists(st.text(max_size=6), min_size=1, max_size=5),
       at=st.integers(min_value=0, max_value=5),
       dots=st.sampled_from(["..", "%2e%2e", "%2E.", "%252e%252e", "%252E%2e", ".%252e"]))
@settings(max_examples=200, deadline=None)
def test_clean_path_rejects_dot_dot_however_it_is_encoded(segments: list[str], at: int,
                                                          dots: str) -> None:
    segs = [quote(s, safe="") for s in segments]
    segs.insert(min(at, len(segs)), dots)
    assert clean_path("/" + "/".join(segs)) is None
