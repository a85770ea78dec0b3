"""Hostile input against every kind of listener labkit opens, over real sockets.

Two labs run for the whole module: the ``reverse-proxy`` topology (web, api and chat as plain
backends, labkit's TLS proxy on app.lab.test, the plain HTTP->HTTPS redirect) and the plain
messenger (web, api and chat, all TLS). That is eight listeners of five kinds, TLS and plain.

Every case has the same shape: the hostile client gets a correct refusal (a 4xx, a WebSocket close
with the right code, or a closed connection); the *next* client is served normally; and two
well-behaved chat clients, connected through the whole case and chatting before, during and after
it, lose no message and see every one in the same order. Groups start with a well-formed twin
where one exists, so a refusal is never just a broken test client.

Malformed bytes go out raw (tests/hostile_util.py): clients refuse to send most of them.
Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace

import psutil
import pytest
from hostile_util import (
    BINARY,
    CLOSE,
    CONT,
    GONE,
    TEXT,
    Bystanders,
    Listener,
    Reply,
    exchange,
    frame,
    hang_up,
    next_frame,
    open_raw,
    read_reply,
    refused,
    send_frames,
    serves,
    ws_close_code,
    ws_raw,
    ws_raw_close_code,
    ws_status,
)
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from labkit import Lab, messenger
from labkit.model import scenarios
from labkit.serve.apps.chat import MAX_MESSAGE
from labkit.serve.clients import ws_connect

KiB, MiB = 1024, 1024 * 1024
LISTENERS = ("rp-proxy", "rp-web", "rp-api", "rp-chat", "rp-redirect",
             "tls-web", "tls-api", "tls-chat")
WS_LISTENERS = ("rp-chat", "tls-chat", "rp-proxy")
#: A slow client must be dropped within this long (nginx's client_header_timeout is 60 s; the
#: websockets library's open_timeout, which the chat server keeps, is 10 s).
SLOW_LIMIT = 15.0
FILE_MARKS = (b"root:", b"[project]")


# -- the labs ------------------------------------------------------------------------------------
@dataclass
class Labs:
    rp: Lab
    tls: Lab
    listeners: dict[str, Listener] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for prefix, lab in (("rp", self.rp), ("tls", self.tls)):
            for s in lab.services:
                kind = lab.topology.service(s.name).kind
                lid = f"{prefix}-{s.name}"
                self.listeners[lid] = Listener(lid, lab, s.name, kind, s.port, s.tls, s.host,
                                               self.chat_origin(lab))

    def chat_origin(self, lab: Lab) -> str | None:
        """The Origin the lab's chat server accepts: behind the proxy, the proxy's origin."""
        return lab.origin("proxy") if lab is self.rp else None

    def bystanders(self, lab: Lab) -> Bystanders:
        origin = self.chat_origin(lab)
        if lab is self.rp:  # one through the proxy (wss), one straight to the chat server (ws)
            return Bystanders(lab, [(lab.ws_url("proxy"), origin), (lab.url("chat"), origin)])
        return Bystanders(lab, [(lab.url("chat"), origin)] * 2)


@pytest.fixture(scope="module")
def labs() -> Iterator[Labs]:
    rp = Lab(scenarios.get("reverse-proxy").topology).start()
    # The messenger under its own name: a Lab stops any running lab of the same topology name.
    tls = Lab(messenger(name="hostile-messenger"))
    try:
        tls.start()
        yield Labs(rp, tls)
    finally:
        tls.stop()
        rp.stop()


Attempt = Callable[[], Awaitable[str | None]]


def run_variants(labs: Labs, lst: Listener, variants: dict[str, Attempt]) -> None:
    """Run each variant with bystanders chatting throughout; after each one, the next client
    must be served. Every variant runs, and every problem is reported together."""
    async def go() -> list[str]:
        problems: list[str] = []
        async with labs.bystanders(lst.lab):
            for name, attempt in variants.items():
                try:
                    problem = await attempt()
                except AssertionError as e:
                    problem = str(e)
                if problem:
                    problems.append(f"{name}: {problem}")
                try:
                    await serves(lst)
                except Exception as e:  # noqa: BLE001 - any failure of the next client counts
                    problems.append(f"{name}: the next client was not served ({e!r})")
        return problems

    problems = asyncio.run(go())
    where = f"{lst.id} ({lst.kind}, {'TLS' if lst.tls else 'plain'})"
    assert not problems, f"{where}:\n  " + "\n  ".join(problems)


def expect(lst: Listener, data: bytes | list[bytes], judge: Callable[[Reply], bool], *,
           tls: bool | None = None) -> Attempt:
    async def attempt() -> str | None:
        reply = await exchange(lst, data, tls=tls)
        return None if judge(reply) else f"answered {reply!r}"
    return attempt


def twin(lst: Listener) -> Attempt:
    """The well-formed request: proves the raw client speaks the listener's protocol."""
    return expect(lst, lst.request(), lambda r: r.status == lst.ok_status)


def refusal(lst: Listener, data: bytes | list[bytes], *, tls: bool | None = None) -> Attempt:
    return expect(lst, data, refused, tls=tls)


# -- malformed requests --------------------------------------------------------------------------
@pytest.mark.parametrize("lid", LISTENERS)
def test_malformed_request_lines_are_refused(labs: Labs, lid: str) -> None:
    lst = labs.listeners[lid]
    p = lst.ok_path
    variants = {
        "well-formed twin": twin(lst),
        "binary garbage": refusal(lst, b"\x00\xff\xfe\x80garbage\x01\x02\r\n\r\n"),
        "missing version": refusal(lst, lst.request(line=f"GET {p}")),
        "HTTP/9.9": refusal(lst, lst.request(line=f"GET {p} HTTP/9.9")),
        "NUL in the target": refusal(lst, lst.request(line=f"GET {p}\x00 HTTP/1.1")),
        "NUL in the method": refusal(lst, lst.request(line=f"G\x00T {p} HTTP/1.1")),
        "no spaces": refusal(lst, lst.request(line=f"GET{p}HTTP/1.1")),
        "trailing token": refusal(lst, lst.request(line=f"GET {p} HTTP/1.1 extra")),
    }
    run_variants(labs, lst, variants)


@pytest.mark.parametrize("lid", LISTENERS)
def test_malformed_headers_are_refused(labs: Labs, lid: str) -> None:
    lst = labs.listeners[lid]
    bad = {
        "no colon": "NoColonHere\r\n",
        "space in the name": "Bad Name: x\r\n",
        "space before the colon": "X-Lab : x\r\n",  # RFC 9112 §5.1: MUST be rejected with 400
        "control char in the name": "X-\x01Lab: x\r\n",
        "0xff in the name": "X-\xffLab: x\r\n",
        "NUL in the value": "X-Lab: a\x00b\r\n",
        "bare CR in the value": "X-Lab: a\rb\r\n",
        "conflicting Content-Length": "Content-Length: 1\r\nContent-Length: 2\r\n",
        "Content-Length with chunked": "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
        "negative Content-Length": "Content-Length: -1\r\n",
        "two Host headers": "Host: evil.example\r\n",  # RFC 9112 §3.2: MUST be 400
    }
    variants: dict[str, Attempt] = {"well-formed twin": twin(lst)}
    variants.update({name: refusal(lst, lst.request(extra=extra)) for name, extra in bad.items()})
    # RFC 9112 §3.2 and RFC 6455 §4.2.1 (the handshake needs a Host): MUST be 400.
    variants["no Host header"] = refusal(lst, lst.request(host=False))
    run_variants(labs, lst, variants)


@pytest.mark.parametrize("lid", LISTENERS)
def test_oversized_headers_are_refused(labs: Labs, lid: str) -> None:
    lst = labs.listeners[lid]
    variants = {
        "well-formed twin": twin(lst),
        "a 64 KiB header line": refusal(lst, lst.request(extra=f"X-Big: {'a' * 64 * KiB}\r\n")),
        "200 headers": refusal(lst, lst.request(
            extra="".join(f"X-H{i}: v\r\n" for i in range(200)))),
        "a 64 KiB request target": refusal(lst, lst.request(
            line=f"GET /{'a' * 64 * KiB} HTTP/1.1")),
        "an endless header block": refusal(lst, [lst.request()[:-2]] + [
            f"X-Flood-{i}: {'f' * 1000}\r\n".encode() for i in range(2048)]),
    }
    run_variants(labs, lst, variants)


@pytest.mark.parametrize("lid", LISTENERS)
def test_oversized_bodies_are_refused(labs: Labs, lid: str) -> None:
    """2 MiB to POST /api/login: the API takes 64 KiB, the proxy 1 MiB (larger: 413)."""
    lst = labs.listeners[lid]
    path = {"api": "/api/login", "proxy": "/api/login", "redirect": "/hello"}.get(lst.kind, "/")
    chunk = b"x" * 64 * KiB
    chunks = [chunk] * 32  # 2 MiB

    def post(headers: str, body: list[bytes]) -> list[bytes]:
        return [lst.request(method="POST", path=path,
                            body_headers=f"Content-Type: application/json\r\n{headers}"), *body]

    def judge(r: Reply) -> bool:
        if lst.kind in ("api", "proxy"):  # the body is read: too big is 413, nothing else
            return r.status in (None, 413)
        if lst.kind == "redirect":  # the redirect never reads a body: its 308 is the answer
            return r.status in (None, 308) or refused(r)
        return refused(r)

    variants: dict[str, Attempt] = {}
    if lst.kind in ("api", "proxy"):
        login = b'{"user": "mallory"}'
        variants["well-formed twin"] = expect(
            lst, post(f"Content-Length: {len(login)}\r\n", [login]), lambda r: r.status == 200)
    variants["2 MiB with Content-Length"] = expect(
        lst, post(f"Content-Length: {2 * MiB}\r\n", chunks), judge)
    variants["2 MiB chunked"] = expect(
        lst, post("Transfer-Encoding: chunked\r\n",
                  [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 32 + [b"0\r\n\r\n"]), judge)
    run_variants(labs, lst, variants)


# -- hostile WebSocket frames --------------------------------------------------------------------
@pytest.mark.parametrize("lid", WS_LISTENERS)
def test_a_frame_over_the_size_limit_closes_with_1009(labs: Labs, lid: str) -> None:
    lst = labs.listeners[lid]
    url = lst.lab.ws_url(lst.service) if lst.kind == "proxy" else lst.lab.url(lst.service)

    def close_code(message: str | bytes) -> Attempt:
        async def attempt() -> str | None:
            code = await ws_close_code(url, lst.lab, lst.chat_origin, message)
            return None if code == 1009 else f"closed with {code}, not 1009"
        return attempt

    async def under_the_limit() -> str | None:
        async with ws_raw(lst) as (reader, writer):
            await send_frames(writer, [frame(TEXT, json.dumps(
                {"type": "say", "text": "x" * (MAX_MESSAGE - 100)}).encode())])
            got = await next_frame(lst, reader, TEXT)
            return None if got and got[0] == TEXT else f"no answer but {got!r}"

    async def lying_header() -> str | None:
        code, reason = await ws_raw_close_code(lst, [frame(BINARY, b"x" * 16, length=1 << 40)])
        return None if code == 1009 else f"closed with {code} ({reason}), not 1009"

    variants: dict[str, Attempt] = {
        "twin: a message just under the chat server's limit": under_the_limit,
        "text one byte over the chat server's 64 KiB": close_code("x" * (MAX_MESSAGE + 1)),
        "binary one byte over the chat server's 64 KiB": close_code(b"x" * (MAX_MESSAGE + 1)),
        "a header announcing 1 TiB": lying_header,
    }
    if lst.kind == "proxy":  # over the proxy's own 1 MiB limit: refused before the backend
        variants["2 MiB, over the proxy's 1 MiB"] = close_code(b"x" * (2 * MiB))
    run_variants(labs, lst, variants)


@pytest.mark.parametrize("lid", WS_LISTENERS)
def test_invalid_utf8_in_a_text_frame_closes_with_1007(labs: Labs, lid: str) -> None:
    """RFC 6455 §8.1: a text message that is not valid UTF-8 fails the connection with 1007."""
    lst = labs.listeners[lid]

    def close_code(*frames: bytes) -> Attempt:
        async def attempt() -> str | None:
            code, reason = await ws_raw_close_code(lst, frames)
            return None if code == 1007 else f"closed with {code} ({reason}), not 1007"
        return attempt

    async def valid_text() -> str | None:
        async with ws_raw(lst) as (reader, writer):
            await send_frames(writer, [frame(TEXT, "{\"type\": \"join\", \"room\": \"é✓\"}"
                                             .encode())])
            got = await next_frame(lst, reader, TEXT)
            return None if got and got[0] == TEXT else f"no answer but {got!r}"

    variants = {
        "twin: valid UTF-8 is answered": valid_text,
        "0xff 0xfe": close_code(frame(TEXT, b"\xff\xfe")),
        "overlong encoding of '/'": close_code(frame(TEXT, b"\xc0\xaf")),
        "a UTF-16 surrogate": close_code(frame(TEXT, b"\xed\xa0\x80")),
        "truncated at the end of the message": close_code(frame(TEXT, b"abc\xe2\x82")),
        "broken across fragments": close_code(frame(TEXT, b"ok \xe2\x82", fin=False),
                                              frame(CONT, b"\x28")),
        "in a close frame's reason": close_code(frame(CLOSE, b"\x03\xe8\xff\xfe")),
    }
    run_variants(labs, lst, variants)


@pytest.mark.parametrize("lid", WS_LISTENERS)
def test_a_clean_close_is_answered_with_the_same_code(labs: Labs, lid: str) -> None:
    """The twin of the two cases above: the same hand-made client closing cleanly gets its close
    code echoed (RFC 6455 §5.5.1), not an error. A browser's onclose shows the code it gets back,
    so a clean leave must not read as "backend went away"."""
    lst = labs.listeners[lid]

    def echoed(code: int, *before: bytes) -> Attempt:
        async def attempt() -> str | None:
            got, reason = await ws_raw_close_code(
                lst, [*before, frame(CLOSE, code.to_bytes(2, "big") + b"bye")])
            return None if got == code else f"answered {got} ({reason!r}), not {code}"
        return attempt

    run_variants(labs, lst, {
        "1000 right away": echoed(1000),
        "1000 after chatting": echoed(1000, frame(TEXT, b'{"type": "join", "room": "x"}')),
        "1001 going away": echoed(1001),
    })


# -- slow and wrong-protocol clients -------------------------------------------------------------
HTTP_LISTENERS = tuple(lid for lid in LISTENERS if not lid.endswith("chat"))
SLOW_KINDS = ("slowloris", "silent", "slow second request")


@dataclass
class SlowResult:
    #: how long each kind of slow client was kept (None: still open after SLOW_LIMIT)
    closed_after: dict[str, float | None] = field(default_factory=dict)
    answers: dict[str, bytes] = field(default_factory=dict)
    meanwhile: list[str] = field(default_factory=list)  # problems serving others meanwhile
    wrong_scheme: str = ""  # problem with the wrong-protocol client ("" when refused in time)


@dataclass
class SlowClients:
    results: dict[str, SlowResult]
    bystanders: dict[str, str]  # lab prefix -> problem ("" when fine)

    def check(self, lid: str, kind: str) -> None:
        r = self.results[lid]
        assert not r.meanwhile, f"{lid} did not serve others meanwhile: {r.meanwhile}"
        assert not self.bystanders[lid.split("-")[0]], self.bystanders
        after = r.closed_after[kind]
        assert after is not None, (
            f"{lid} still held the {kind} client after {SLOW_LIMIT:.0f} s (answers so far: "
            f"{r.answers.get(kind, b'')[:100]!r}): no deadline, so a few hundred such clients "
            f"exhaust it")
        assert after <= SLOW_LIMIT


async def _slow(lst: Listener, kind: str, result: SlowResult) -> None:
    """``slowloris``: a request line, then one more header line a second, never the blank line
    that ends the headers. ``silent``: TCP open, not a byte sent (not even a ClientHello).
    ``slow second request``: one complete request on a kept-alive connection, answered, then a
    slowloris. Records when the server hangs up."""
    if kind == "silent":
        reader, writer = await asyncio.open_connection("127.0.0.1", lst.port)
    else:
        reader, writer = await open_raw(lst)
    t0 = time.monotonic()
    got = b""
    try:
        if kind == "slow second request":
            writer.write(f"GET {lst.ok_path} HTTP/1.1\r\nHost: {lst.hostport}\r\n\r\n".encode())
            reply = await asyncio.wait_for(read_reply(reader), 10)
            assert reply.status == lst.ok_status, f"{lst.id}: {reply!r}"
            t0 = time.monotonic()
        if kind != "silent":
            writer.write(f"GET {lst.ok_path} HTTP/1.1\r\nHost: {lst.hostport}\r\n".encode())
        n = 0
        while time.monotonic() - t0 < SLOW_LIMIT:
            try:
                data = await asyncio.wait_for(reader.read(65536), 1.0)
            except asyncio.TimeoutError:
                data = None
            except GONE:
                data = b""
            if data == b"" or writer.transport.is_closing():
                result.closed_after[kind] = time.monotonic() - t0
                return
            if data:
                got += data  # a 408 before the close is fine
                continue
            if kind != "silent":
                writer.write(f"X-Slow-{n}: {n}\r\n".encode())
                n += 1
        result.closed_after[kind] = None
    finally:
        result.answers[kind] = got
        hang_up(writer)


#: The start of a TLS ClientHello: what a browser sends for an https:// URL to a plain port.
CLIENT_HELLO = b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03" + bytes(32) + b"\x00\x00\x02\x13\x01"


async def _wrong_scheme(lst: Listener, result: SlowResult) -> None:
    """TLS to a plain port, plain HTTP to a TLS port: the classic wrong-scheme mistakes. A
    ClientHello has no line end, so a server waiting for a request line waits for its timeout:
    this runs with the slow clients, under the same bound."""
    data = lst.request() if lst.tls else CLIENT_HELLO
    try:
        reply = await exchange(lst, data, tls=False, timeout=SLOW_LIMIT)
    except AssertionError as e:
        result.wrong_scheme = str(e)
        return
    if not refused(reply):
        result.wrong_scheme = f"answered {reply!r}"


@pytest.fixture(scope="module")
def slow_clients(labs: Labs) -> SlowClients:
    """Every kind of slow client and a wrong-protocol client on every listener at once (so the
    wait is paid once), while well-behaved clients are served and the bystanders chat."""
    results = {lid: SlowResult() for lid in LISTENERS}
    problems = {"rp": "", "tls": ""}

    async def meanwhile() -> None:
        for delay in (2.0, 4.0):
            await asyncio.sleep(delay)
            for lid, lst in labs.listeners.items():
                try:
                    await serves(lst)
                except Exception as e:  # noqa: BLE001
                    results[lid].meanwhile.append(f"at +{delay:.0f} s: {e!r}")

    async def chatting(prefix: str, lab: Lab, until: asyncio.Event) -> None:
        try:
            async with labs.bystanders(lab):
                await until.wait()
        except AssertionError as e:
            problems[prefix] = str(e)

    async def go() -> None:
        done = asyncio.Event()
        chats = [asyncio.ensure_future(chatting("rp", labs.rp, done)),
                 asyncio.ensure_future(chatting("tls", labs.tls, done))]
        await asyncio.sleep(0.5)
        slow = [_slow(labs.listeners[lid], kind, results[lid]) for lid in LISTENERS
                for kind in SLOW_KINDS if lid in HTTP_LISTENERS or kind != "slow second request"]
        await asyncio.gather(
            meanwhile(), *slow,
            *(_wrong_scheme(labs.listeners[lid], results[lid]) for lid in LISTENERS))
        done.set()
        await asyncio.gather(*chats)

    asyncio.run(go())
    return SlowClients(results, problems)


@pytest.mark.parametrize("lid", LISTENERS)
def test_a_client_that_never_finishes_its_headers_is_timed_out(slow_clients: SlowClients,
                                                                lid: str) -> None:
    slow_clients.check(lid, "slowloris")


@pytest.mark.parametrize("lid", LISTENERS)
def test_a_connection_that_never_says_anything_is_timed_out(slow_clients: SlowClients,
                                                             lid: str) -> None:
    """Not a byte, not even a TLS ClientHello on the TLS listeners."""
    slow_clients.check(lid, "silent")


@pytest.mark.parametrize("lid", HTTP_LISTENERS)
def test_a_slow_second_request_on_a_kept_alive_connection_is_timed_out(
        slow_clients: SlowClients, lid: str) -> None:
    """The same slowloris after one honest request: the header deadline must hold for every
    request of a keep-alive connection, not only its first."""
    slow_clients.check(lid, "slow second request")


@pytest.mark.parametrize("lid", LISTENERS)
def test_tls_to_a_plain_port_and_plain_http_to_a_tls_port_are_refused(slow_clients: SlowClients,
                                                                       lid: str) -> None:
    r = slow_clients.results[lid]
    assert not r.wrong_scheme, f"{lid}: {r.wrong_scheme}"
    assert not r.meanwhile, f"{lid} did not serve others meanwhile: {r.meanwhile}"
    assert not slow_clients.bystanders[lid.split("-")[0]], slow_clients.bystanders


# -- path traversal ------------------------------------------------------------------------------
TRAVERSALS = (
    "/../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc/passwd", "//etc/passwd",
    "/static/../../pyproject.toml", "/app.js/../../../pyproject.toml",
    "/%2e%2e%2f%2e%2e%2fpyproject.toml", "/..%5c..%5cpyproject.toml",
    "/%252e%252e/%252e%252e/etc/passwd", "/api/../../../etc/passwd",
    "/api/%2e%2e/%2e%2e/pyproject.toml", "/ws/../../etc/passwd",
)
ABSOLUTE = ("http://example.com/", "http://example.com/../../etc/passwd", "file:///etc/passwd")


@pytest.mark.parametrize("lid", LISTENERS)
def test_path_traversal_never_reaches_a_file(labs: Labs, lid: str) -> None:
    """Never a file's contents; a 4xx. Two answers are correct without being a 4xx: the redirect
    listener's 308, always to its own https origin; and an origin server taking absolute-form
    as its own path (RFC 9112 §3.2.2: servers MUST accept absolute-form) — the proxy, though,
    must refuse it: it is never an open proxy."""
    lst = labs.listeners[lid]
    target = lst.lab.topology.service(lst.service).target

    def judge(t: str) -> Callable[[Reply], bool]:
        def ok(r: Reply) -> bool:
            if any(m in r.body for m in FILE_MARKS):
                return False
            if lst.kind == "redirect" and r.status == 308:
                assert target is not None
                return r.headers.get("location", "").startswith(lst.lab.origin(target) + "/")
            if t in ABSOLUTE and lst.kind in ("web", "api", "chat") and r.status == 200:
                return r.body.startswith(b"<!doctype html>")  # the page it serves at "/"
            return refused(r)
        return ok

    variants: dict[str, Attempt] = {"well-formed twin": twin(lst)}
    for t in TRAVERSALS + ABSOLUTE:
        variants[t] = expect(lst, lst.request(line=f"GET {t} HTTP/1.1"), judge(t))
    run_variants(labs, lst, variants)


# -- Host and Origin -----------------------------------------------------------------------------
def test_a_host_the_proxy_does_not_serve_gets_421(labs: Labs) -> None:
    lst = labs.listeners["rp-proxy"]
    port = lst.port
    hosts = ("evil.lab.test", f"evil.lab.test:{port}", "example.com", f"localhost:{port}",
             f"127.0.0.1:{port}", f"[::1]:{port}", f"app.lab.test.evil.example:{port}",
             f"app.lab.test@evil.example:{port}", f"evil.example:{port}#app.lab.test")
    seen = labs.rp.store.recorded

    def misdirected_for(h: str) -> Callable[[Reply], bool]:
        def misdirected(r: Reply) -> bool:
            # 421 for a name the proxy does not serve; 400 for a value that is no Host at all
            # (userinfo, a fragment): refused either way, never forwarded.
            return r.status == 421 or (r.status == 400 and ("@" in h or "#" in h))
        return misdirected

    variants: dict[str, Attempt] = {"well-formed twin": twin(lst)}
    for h in hosts:
        line = f"GET /api/hello HTTP/1.1\r\nHost: {h}"
        variants[f"Host: {h}"] = expect(lst, lst.request(line=line, host=False),
                                        misdirected_for(h))
        upgrade = f"GET /ws HTTP/1.1\r\nHost: {h}"
        variants[f"Host: {h} (WebSocket)"] = expect(
            lst, lst.request(line=upgrade, host=False, path="/ws"), misdirected_for(h))
    run_variants(labs, lst, variants)
    forwarded = [r for r in labs.rp.store.since(seen) if r["forwarded"]
                 and r["forwarded"].get("Host", "").split(":")[0] != "app.lab.test"]
    assert forwarded == [], "a request for another host reached a backend"


@pytest.fixture(scope="module")
def origin_lab() -> Iterator[Lab]:
    """The messenger with the chat server's Origin allow-list: Service("chat", "chat",
    origins=("web",))."""
    lab = Lab(messenger(name="hostile-origins", chat_origins=("web",)))
    try:
        yield lab.start()
    finally:
        lab.stop()


@pytest.mark.parametrize("where", ["tls-chat with origins=('web',)", "rp-chat", "rp-proxy"])
def test_a_forged_origin_gets_403_and_the_bystanders_chat_on(labs: Labs, origin_lab: Lab,
                                                             where: str) -> None:
    if where.startswith("tls-chat"):
        lab, allowed = origin_lab, origin_lab.origin("web")
        info = lab.info("chat")
        lst = Listener("origins-chat", lab, "chat", "chat", info.port, True, info.host, allowed)
        bystanders = Bystanders(lab, [(lab.url("chat"), allowed)] * 2)
        url = lab.url("chat")
    else:
        lst = labs.listeners[where]
        lab, allowed = labs.rp, labs.rp.origin("proxy")  # the chat allow-lists the proxy
        bystanders = labs.bystanders(lab)
        url = lab.ws_url("proxy") if lst.kind == "proxy" else lab.url("chat")
    scheme, _, hostport = allowed.partition("://")
    host, _, port = hostport.rpartition(":")
    forged: list[str | None] = [
        "https://evil.lab.test", "null", None, f"http://{hostport}", f"{scheme}://{host}",
        f"{scheme}://{host}:{int(port) + 1}", allowed + "/", allowed.upper(),
        f"{allowed}.evil.lab.test", f"{scheme}://evil.lab.test#{hostport}",
    ]

    async def go() -> list[str]:
        problems = []
        async with bystanders:
            status = await ws_status(url, lab, allowed)
            if status != 101:
                problems.append(f"the allowed origin {allowed} got {status}")
            for origin in forged:
                status = await ws_status(url, lab, origin)
                if status != 403:
                    problems.append(f"Origin {origin!r} got {status}, not 403")
                try:
                    await serves(lst)
                except Exception as e:  # noqa: BLE001
                    problems.append(f"after Origin {origin!r} the next client failed: {e!r}")
        return problems

    problems = asyncio.run(go())
    assert not problems, "\n".join(problems)


# -- floods --------------------------------------------------------------------------------------
def _server_side(port: int) -> int:
    """Open server-side sockets of this process on ``port`` (not the listener itself)."""
    return sum(1 for c in psutil.Process().net_connections(kind="tcp")
               if c.laddr and c.laddr.port == port and c.status != psutil.CONN_LISTEN)


@pytest.mark.parametrize("lid", LISTENERS)
def test_a_flood_of_quick_connections_leaves_the_listener_serving(labs: Labs, lid: str) -> None:
    """200 connections that open and close at once (FIN, RST, or after half a request line),
    50 at a time: the listener serves the next client, and every server-side socket goes."""
    lst = labs.listeners[lid]

    async def one(i: int, gate: asyncio.Semaphore) -> None:
        async with gate:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", lst.port), 10)
            except GONE:
                return
            if i % 3 == 1:
                writer.write(b"GET / HT")
                await asyncio.sleep(0)
            elif i % 3 == 2:  # a reset, not a FIN
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            if i % 3 == 0:
                writer.close()
                try:
                    await asyncio.wait_for(writer.wait_closed(), 5)
                except (asyncio.TimeoutError, *GONE):
                    hang_up(writer)
            else:
                hang_up(writer)

    async def go() -> tuple[int, int]:
        async with labs.bystanders(lst.lab):
            baseline = _server_side(lst.port)
            gate = asyncio.Semaphore(50)
            await asyncio.gather(*(one(i, gate) for i in range(200)))
            await serves(lst)
            deadline = time.monotonic() + 10
            while (left := _server_side(lst.port)) > baseline and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        return baseline, left

    baseline, left = asyncio.run(go())
    assert left <= baseline, f"{lid}: {left - baseline} server-side sockets left after the flood"


# -- what the labs leave behind ------------------------------------------------------------------
def test_no_listener_is_bound_beyond_loopback(labs: Labs, origin_lab: Lab) -> None:
    ports = {s.port for lab in (labs.rp, labs.tls, origin_lab) for s in lab.services}
    listening = [c for c in psutil.Process().net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port in ports]
    assert {c.laddr.port for c in listening} == ports  # every one of them is found
    assert {c.laddr.ip for c in listening} <= {"127.0.0.1", "::1"}, listening


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_stop_is_prompt_and_leaks_no_socket_with_hostile_clients_attached() -> None:
    """Start both labs afresh; leave attached a slow client on every listener and open
    WebSockets (through the proxy and straight to chat); stop. The open WebSockets are told 1001
    (going away), the process is back to its file descriptors of before, and stop() is prompt:
    learners re-run cells, and a stuck client must not make them wait."""
    gc.collect()
    before = _fds()
    rp = Lab(replace(scenarios.get("reverse-proxy").topology, name="hostile-leak-rp")).start()
    tls = Lab(messenger(name="hostile-leak-tls"))
    ports: set[int] = set()
    stop_took = 0.0
    codes: list[int | None] = []
    try:
        tls.start()
        leaked = Labs(rp, tls)
        ports = {lst.port for lst in leaked.listeners.values()}

        async def run_and_stop() -> None:
            nonlocal stop_took
            writers: list[asyncio.StreamWriter] = []
            sockets: list[ClientConnection] = []
            try:
                async with leaked.bystanders(rp), leaked.bystanders(tls):
                    for lst in leaked.listeners.values():
                        await exchange(lst, lst.request(line="GET / HTTP/9.9"))
                        _, w = await open_raw(lst)
                        w.write(f"GET / HTTP/1.1\r\nHost: {lst.hostport}\r\n".encode())
                        writers.append(w)
                    for lid in ("rp-proxy", "rp-chat", "tls-chat"):
                        lst = leaked.listeners[lid]
                        url = lst.lab.ws_url(lst.service) if lid == "rp-proxy" else lst.lab.url(
                            "chat")
                        await ws_close_code(url, lst.lab, lst.chat_origin,
                                            b"x" * (MAX_MESSAGE + 1))
                        sockets.append(await ws_connect(url, lst.lab.pki, host="127.0.0.1",
                                                        origin=lst.chat_origin))
                t0 = time.monotonic()
                await asyncio.get_running_loop().run_in_executor(None, _stop, rp, tls)
                stop_took = time.monotonic() - t0
                for ws in sockets:
                    with contextlib.suppress(ConnectionClosed):
                        await asyncio.wait_for(ws.recv(), 5)
                    codes.append(ws.close_code)
            finally:
                for w in writers:
                    hang_up(w)
                for ws in sockets:
                    ws.transport.abort()

        asyncio.run(run_and_stop())
    finally:
        _stop(rp, tls)
    deadline = time.monotonic() + 10
    while _fds() > before + 2 and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.1)
    assert _fds() <= before + 2, f"{_fds() - before} file descriptors more than before the labs"
    still = [c for c in psutil.Process().net_connections(kind="tcp")
             if c.laddr and c.laddr.port in ports]
    assert still == [], still
    assert codes == [1001, 1001, 1001], codes
    assert stop_took < 3, (
        f"Lab.stop() took {stop_took:.1f} s with a client stuck in its opening handshake")


def _stop(*labs: Lab) -> None:
    for lab in labs:
        lab.stop()
