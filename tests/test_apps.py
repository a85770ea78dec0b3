"""The story's servers over real HTTPS/WSS: the API's CORS answers, its side effects and session,
and the chat server's broadcast and Origin check. Each fix is paired with the case it fixes."""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from hostile_util import close_quietly
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from labkit import CorsPolicy, Lab, messenger

FORGED = "https://evil.lab.test:4444"


# -- helpers -------------------------------------------------------------------------------------
def fetch(
    lab: Lab, service: str, path: str, method: str = "GET",
    headers: dict[str, str] | None = None, data: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request with urllib; HTTP errors are answers too. Header names are lower-cased."""
    req = urllib.request.Request(lab.url(service, path), data=data, method=method,
                                 headers=headers or {})
    ctx = lab.pki.client_context() if lab.info(service).tls else None
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def preflight(lab: Lab, origin: str, method: str = "POST") -> tuple[int, dict[str, str]]:
    status, headers, _ = fetch(lab, "api", "/api/login", "OPTIONS", {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "content-type",
    })
    return status, headers


def cors_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith("access-control-")}


@pytest.fixture
def make_lab() -> Iterator[Any]:
    labs: list[Lab] = []

    def make(**kw: Any) -> Lab:
        lab = Lab(messenger(**kw)).start()
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.stop()


# -- CORS preflights -----------------------------------------------------------------------------
def test_cors_none_answers_the_preflight_without_cors_headers(make_lab: Any) -> None:
    # The story's bug: the server answers, but nothing lets the page's origin read the answer.
    lab = make_lab(cors=CorsPolicy("none"))
    status, headers = preflight(lab, lab.origin("web"))
    assert status == 204
    assert cors_headers(headers) == {}
    _, headers, _ = fetch(lab, "api", "/api/hello", headers={"Origin": lab.origin("web")})
    assert cors_headers(headers) == {}


def test_cors_allowlist_answers_the_page_origin_only(make_lab: Any) -> None:
    lab = make_lab(cors=CorsPolicy("allowlist", ("web",)))
    web = lab.origin("web")
    status, headers = preflight(lab, web)
    assert status == 204
    assert headers["access-control-allow-origin"] == web
    assert "origin" in headers["vary"].lower()
    assert "POST" in headers["access-control-allow-methods"]
    assert "content-type" in headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in headers
    # its twin: any other origin (another port of the same host, or an attacker) gets nothing
    for other in (FORGED, lab.origin("chat").replace("wss://", "https://")):
        status, headers = preflight(lab, other)
        assert cors_headers(headers) == {}, other
    _, headers, _ = fetch(lab, "api", "/api/hello", headers={"Origin": web})
    assert headers["access-control-allow-origin"] == web


def test_cors_allowlist_accepts_literal_origins(make_lab: Any) -> None:
    lab = make_lab(cors=CorsPolicy("allowlist", ("https://app.lab.test:8443",)))
    _, headers = preflight(lab, "https://app.lab.test:8443")
    assert headers["access-control-allow-origin"] == "https://app.lab.test:8443"
    _, headers = preflight(lab, lab.origin("web"))
    assert "access-control-allow-origin" not in headers


def test_cors_wildcard_answers_star_to_anyone(make_lab: Any) -> None:
    lab = make_lab(cors=CorsPolicy("wildcard"))
    for origin in (lab.origin("web"), FORGED):
        status, headers = preflight(lab, origin)
        assert status == 204
        assert headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in headers


def test_cors_credentials_with_an_allowlisted_origin(make_lab: Any) -> None:
    lab = make_lab(cors=CorsPolicy("allowlist", ("web",), credentials=True))
    _, headers = preflight(lab, lab.origin("web"))
    assert headers["access-control-allow-origin"] == lab.origin("web")
    assert headers["access-control-allow-credentials"] == "true"
    # credentials never go to an origin outside the list
    _, headers = preflight(lab, FORGED)
    assert cors_headers(headers) == {}


def test_cors_wildcard_with_credentials_reproduces_the_broken_combination(make_lab: Any) -> None:
    # Browsers refuse "*" together with credentials (Fetch §3.2.5); the lab must be able to send it.
    lab = make_lab(cors=CorsPolicy("wildcard", credentials=True))
    _, headers = preflight(lab, lab.origin("web"))
    assert headers["access-control-allow-origin"] == "*"
    assert headers["access-control-allow-credentials"] == "true"


def test_unanswered_preflight_is_405_without_cors_headers(make_lab: Any) -> None:
    """CorsPolicy(preflight=False): "when False they get 405 with no CORS headers"."""
    lab = make_lab(cors=CorsPolicy("allowlist", ("web",), preflight=False))
    status, headers = preflight(lab, lab.origin("web"))
    assert status == 405
    assert cors_headers(headers) == {}
    # the simple GET still carries ACAO: only the preflight is broken
    _, headers, _ = fetch(lab, "api", "/api/hello", headers={"Origin": lab.origin("web")})
    assert headers["access-control-allow-origin"] == lab.origin("web")


def test_answered_preflight_is_the_twin_of_the_405(make_lab: Any) -> None:
    lab = make_lab(cors=CorsPolicy("allowlist", ("web",), preflight=True))
    status, headers = preflight(lab, lab.origin("web"))
    assert status == 204
    assert headers["access-control-allow-origin"] == lab.origin("web")


# -- side effects and sessions -------------------------------------------------------------------
def test_simple_text_plain_post_runs_even_without_cors(make_lab: Any) -> None:
    # The browser would hide this answer from the page (no ACAO) — but the server ran it.
    lab = make_lab(cors=CorsPolicy("none"))
    for expected in (1, 2):
        status, headers, body = fetch(lab, "api", "/api/counter", "POST",
                                      {"Origin": FORGED, "Content-Type": "text/plain"},
                                      b"increment please")
        assert status == 200
        assert json.loads(body) == {"counter": expected}
        assert "access-control-allow-origin" not in headers
    _, _, body = fetch(lab, "api", "/api/counter")
    assert json.loads(body) == {"counter": 2}
    assert lab.store.counter == 2


def test_login_sets_the_session_cookie_and_the_api_knows_the_user(lab: Lab) -> None:
    async def main() -> tuple[Any, Any, Any]:
        ctx = lab.pki.client_context()
        async with aiohttp.ClientSession() as http:
            async with http.post(lab.url("api", "/api/login"), json={"user": "alice"},
                                 ssl=ctx) as r:
                assert r.status == 200
                body = await r.json()
                cookie = r.cookies["labkit_session"]
            async with http.get(lab.url("api", "/api/whoami"), ssl=ctx) as r:
                me = await r.json()
        async with aiohttp.ClientSession() as anon:
            async with anon.get(lab.url("api", "/api/whoami"), ssl=ctx) as r:
                nobody = await r.json()
        return body, cookie, (me, nobody)

    body, cookie, (me, nobody) = asyncio.run(main())
    assert body == {"user": "alice", "logged_in": True}
    assert cookie.value
    assert cookie["httponly"] and cookie["secure"]  # served over TLS: Secure
    # Lax, today's browser default: every port of localhost is the same site, so it still
    # travels from the page to the API and the chat server.
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"
    assert not cookie["domain"]  # on localhost: a host-only cookie
    assert me == {"user": "alice"}
    assert nobody == {"user": None}


def test_login_on_a_lab_name_scopes_the_cookie_to_the_lab_domain(lab: Lab) -> None:
    # Like a company's single sign-on cookie for .example.com: a sibling (evil.lab.test) gets it.
    conn = http.client.HTTPSConnection("127.0.0.1", lab.info("api").port,
                                       context=lab.pki.client_context(), timeout=10)
    try:
        conn.request("POST", "/api/login", body=b'{"user": "alice"}', headers={
            "Host": f"api.lab.test:{lab.info('api').port}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        cookie = resp.getheader("Set-Cookie") or ""
    finally:
        conn.close()
    assert resp.status == 200
    assert "labkit_session=" in cookie
    assert "Domain=lab.test" in cookie


def test_login_over_plain_http_sets_a_cookie_without_secure(make_lab: Any) -> None:
    # The twin of the TLS case: browsers drop Secure cookies set over plain HTTP.
    lab = make_lab(tls=False)
    status, headers, _ = fetch(lab, "api", "/api/login", "POST",
                               {"Content-Type": "application/json"}, b'{"user": "bob"}')
    assert status == 200
    cookie = headers["set-cookie"]
    assert "labkit_session=" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie


def test_login_without_a_user_says_what_to_send(lab: Lab) -> None:
    status, _, body = fetch(lab, "api", "/api/login", "POST",
                            {"Content-Type": "application/json"}, b"{}")
    assert status == 400 and json.loads(body) == {"error": "user is required"}
    status, _, body = fetch(lab, "api", "/api/login", "POST", {}, b"not json")
    assert status == 400 and "send JSON" in json.loads(body)["error"]


# -- chat ----------------------------------------------------------------------------------------
async def _join(url: str, ctx: ssl.SSLContext, origin: str, **kw: Any) -> ClientConnection:
    ws = await connect(url, ssl=ctx, origin=origin, open_timeout=10, **kw)  # type: ignore[arg-type]
    await ws.send(json.dumps({"type": "join", "room": "general"}))
    hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert hello["type"] == "history"
    return ws


def test_broadcast_reaches_every_member_once_in_the_same_order(lab: Lab) -> None:
    members, per_member = 5, 8
    total = members * per_member

    async def main() -> list[list[dict[str, Any]]]:
        ctx = lab.pki.client_context()
        clients = [await _join(lab.url("chat"), ctx, lab.origin("web")) for _ in range(members)]
        try:
            async def talk(i: int, ws: ClientConnection) -> None:
                for j in range(per_member):
                    await ws.send(json.dumps({"type": "say", "text": f"m{i}-{j}"}))

            async def listen(ws: ClientConnection) -> list[dict[str, Any]]:
                return [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(total)]

            listeners = [asyncio.create_task(listen(ws)) for ws in clients]
            await asyncio.gather(*(talk(i, ws) for i, ws in enumerate(clients)))
            got = await asyncio.gather(*listeners)
            # nothing extra arrives after the expected messages
            extra = await asyncio.gather(*(asyncio.wait_for(ws.recv(), 0.2) for ws in clients),
                                         return_exceptions=True)
            assert all(isinstance(e, asyncio.TimeoutError) for e in extra), extra
            return list(got)
        finally:
            await asyncio.gather(*(ws.close() for ws in clients))

    got = asyncio.run(main())
    expected = {f"m{i}-{j}" for i in range(members) for j in range(per_member)}
    first = got[0]
    assert len(first) == total
    assert {m["text"] for m in first} == expected  # every message, exactly once (len == set size)
    assert all(m["type"] == "message" and m["room"] == "general" for m in first)
    seqs = [m["seq"] for m in first]
    assert seqs == sorted(seqs) and len(set(seqs)) == total
    for other in got[1:]:
        assert other == first  # same messages, same order, for every member
    # each sender's own messages keep their order
    for i in range(members):
        mine = [m["text"] for m in first if m["text"].startswith(f"m{i}-")]
        assert mine == [f"m{i}-{j}" for j in range(per_member)]
    assert len(lab.store.history["general"]) == total


def login(lab: Lab, user: str) -> str:
    """Log ``user`` in through the API; the ``name=value`` of the session cookie."""
    _, headers, _ = fetch(lab, "api", "/api/login", "POST",
                          {"Content-Type": "application/json"},
                          json.dumps({"user": user}).encode())
    return headers["set-cookie"].split(";", 1)[0]


def test_chat_history_goes_to_members_with_a_session_only(lab: Lab) -> None:
    alice, bob = login(lab, "alice"), login(lab, "bob")

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        ctx, web = lab.pki.client_context(), lab.origin("web")
        a = await _join(lab.url("chat"), ctx, web, additional_headers={"Cookie": alice})
        await a.send(json.dumps({"type": "say", "text": "before you came"}))
        said = json.loads(await asyncio.wait_for(a.recv(), 10))
        assert said["user"] == "alice"
        hist = {}
        for who, headers in (("bob", {"Cookie": bob}), ("guest", {})):
            async with connect(lab.url("chat"), ssl=ctx, origin=web,  # type: ignore[arg-type]
                               additional_headers=headers) as ws:
                await ws.send(json.dumps({"type": "join", "room": "general"}))
                hist[who] = json.loads(await asyncio.wait_for(ws.recv(), 10))
        await a.close()
        return hist["bob"], hist["guest"]

    member, guest = asyncio.run(main())
    assert member["user"] == "bob"
    assert [(m["user"], m["text"]) for m in member["messages"]] == [("alice", "before you came")]
    assert guest["user"] == "guest" and guest["messages"] == []


def test_chat_origin_allowlist_rejects_a_forged_origin_and_accepts_the_page(make_lab: Any) -> None:
    lab = make_lab(chat_origins=("web",))
    ctx = lab.pki.client_context()

    async def forged() -> int:
        with pytest.raises(InvalidStatus) as err:
            await _join(lab.url("chat"), ctx, FORGED)
        return err.value.response.status_code

    async def real() -> dict[str, Any]:
        ws = await _join(lab.url("chat"), ctx, lab.origin("web"))
        await ws.send(json.dumps({"type": "say", "text": "hi"}))
        msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
        await ws.close()
        return msg

    assert asyncio.run(forged()) == 403
    assert asyncio.run(real())["text"] == "hi"
    seen = [(r["origin"], r["status"]) for r in lab.requests("chat")]
    assert seen == [(FORGED, 403), (lab.origin("web"), 101)]


def test_without_an_allowlist_a_forged_origin_hijacks_the_session(make_lab: Any) -> None:
    """The twin: WebSocket handshakes are not subject to CORS (RFC 6455 §10.2), so a chat server
    that does not check Origin lets any page open a socket that carries the victim's cookie."""
    lab = make_lab(chat_origins=None)
    cookie = login(lab, "alice")

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        ctx = lab.pki.client_context()
        own = await _join(lab.url("chat"), ctx, lab.origin("web"),
                          additional_headers={"Cookie": cookie})
        await own.send(json.dumps({"type": "say", "text": "my secret"}))
        await asyncio.wait_for(own.recv(), 10)
        await own.close()
        async with connect(lab.url("chat"), ssl=ctx, origin=FORGED,  # type: ignore[arg-type]
                           additional_headers={"Cookie": cookie}) as ws:
            await ws.send(json.dumps({"type": "join", "room": "general"}))
            stolen = json.loads(await asyncio.wait_for(ws.recv(), 10))
            await ws.send(json.dumps({"type": "say", "text": "sent by the attacker"}))
            forged = json.loads(await asyncio.wait_for(ws.recv(), 10))
        return stolen, forged

    stolen, forged = asyncio.run(main())
    assert stolen["user"] == "alice"
    assert [m["text"] for m in stolen["messages"]] == ["my secret"]
    assert forged["user"] == "alice" and forged["text"] == "sent by the attacker"
    assert lab.requests("chat")[-1]["origin"] == FORGED
    assert lab.requests("chat")[-1]["user"] == "alice"


def test_chat_answers_404_off_its_path(lab: Lab) -> None:
    url = lab.url("chat").removesuffix("/ws") + "/nope"

    async def main() -> int:
        with pytest.raises(InvalidStatus) as err:
            await _join(url, lab.pki.client_context(), lab.origin("web"))
        return err.value.response.status_code

    assert asyncio.run(main()) == 404


# -- what the servers saw ------------------------------------------------------------------------
def test_requests_records_origin_method_path_and_status(lab: Lab) -> None:
    web = lab.origin("web")
    fetch(lab, "api", "/api/hello", headers={"Origin": web, "Sec-Fetch-Site": "same-site"})
    fetch(lab, "api", "/api/counter", "POST", {"Origin": FORGED, "Content-Type": "text/plain"},
          b"x")
    fetch(lab, "web", "/")
    api = lab.requests("api")
    assert [(r["method"], r["path"], r["origin"], r["status"]) for r in api] == [
        ("GET", "/api/hello", web, 200),
        ("POST", "/api/counter", FORGED, 200),
    ]
    assert api[0]["sec_fetch_site"] == "same-site"
    assert [(r["path"], r["origin"]) for r in lab.requests("web")] == [("/", None)]
    assert len(lab.requests()) == 3


async def _post_slow(port: int, announced: int, sent: bytes, pki: Any) -> tuple[int | None, float]:
    """POST announcing ``announced`` bytes, send ``sent``, then stay silent: the status (None if
    the server just closed) and how long the server took to answer or hang up."""
    import time

    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=pki.client_context(),
                                                   server_hostname="localhost")
    t0 = time.monotonic()
    try:
        writer.write(f"POST /api/login HTTP/1.1\r\nHost: localhost:{port}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {announced}\r\n\r\n"
                     .encode() + sent)
        line = await asyncio.wait_for(reader.readline(), 20)
        return (int(line.split()[1]) if line else None), time.monotonic() - t0
    finally:
        await close_quietly(writer)


def test_a_body_that_never_arrives_is_cut_at_the_deadline(
        lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit.serve import serving

    monkeypatch.setattr(serving, "BODY_TIMEOUT", 1.0)
    status, seconds = asyncio.run(_post_slow(lab.info("api").port, 50_000, b"{\"u", lab.pki))
    assert status in (None, 408) and 0.9 < seconds < 5


def test_a_body_announced_over_the_limit_is_refused_before_it_is_read(lab: Lab) -> None:
    status, seconds = asyncio.run(_post_slow(lab.info("api").port, 10_000_000, b"", lab.pki))
    assert status == 413 and seconds < 1


def test_a_complete_body_is_still_served(lab: Lab) -> None:
    # The twin: a whole body within the deadline is an ordinary login.
    body = b'{"user": "alice"}'
    status, _ = asyncio.run(_post_slow(lab.info("api").port, len(body), body, lab.pki))
    assert status == 200
