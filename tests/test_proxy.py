"""labkit's reverse proxy, its HTTP->HTTPS redirect listener and the load-balancer entry points,
over real sockets and real TLS.

Two kinds of backend: the story's own servers (the ``reverse-proxy`` and ``lb-managed-certs``
topologies, started by a Lab), and a small aiohttp backend started here that records every header
and close frame it sees and misbehaves on request (closes with a given code, dies mid-conversation).
The proxy in front of that one is labkit's ``ReverseProxy``, built directly from a ``ProxyConfig``.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import aiohttp
import psutil
import pytest
from aiohttp import WSMsgType, web
from hostile_util import close_quietly
from websockets.exceptions import ConnectionClosed, InvalidStatus

from labkit import Lab, LabPKI, runtime
from labkit.lab import bind_loopback
from labkit.model import scenarios
from labkit.model.routing import STORY_ROUTES, Route
from labkit.serve.clients import http_session, ws_connect
from labkit.serve.proxy import BACKEND_GONE, ProxyConfig, ReverseProxy

MiB = 1024 * 1024
HOST = "app.lab.test"


# -- helpers -------------------------------------------------------------------------------------
async def raw_request(port: int, target: str, *, host: str, pki: LabPKI | None = None,
                      method: str = "GET", sni: str = HOST) -> tuple[int, dict[str, str], str]:
    """One HTTP/1.1 request with the request-target and Host exactly as given (clients normalise
    '..' and absolute URLs away, which is the very thing these tests need to send). TLS when
    ``pki`` is given."""
    ctx = pki.client_context() if pki is not None else None
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                   server_hostname=sni if ctx else None)
    try:
        writer.write(f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                     .encode("latin-1"))
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        await close_quietly(writer)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        body = _unchunk(body)
    return status, headers, body.decode(errors="replace")


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2:]
    return out


def wait_for(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


class Backend:
    """A plain-HTTP backend on 127.0.0.1 that records what crossed the proxy.

    WebSocket ``/ws`` (and ``/api/ws``): echoes text and binary; the text ``close:CODE:REASON``
    makes it close with that code and reason, ``die`` makes it drop the TCP connection without a
    close frame. Every other path answers 200 with the path it saw."""

    def __init__(self) -> None:
        self.port = 0
        self.requests: list[dict[str, Any]] = []  # method, path, headers (lower-case keys)
        self.messages: list[int] = []  # sizes of the WebSocket messages received
        self.closes: list[tuple[int | None, str]] = []  # close frames received
        self.floods_done = 0  # flood:… commands sent in full
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=4 * MiB)
        app.router.add_get("/ws", self._ws)
        app.router.add_route("*", "/{tail:.*}", self._http)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                    shutdown_timeout=0.2)
        await self.runner.setup()
        sock = bind_loopback("127.0.0.1", self.port, "backend")  # the same port on a restart
        self.port = sock.getsockname()[1]
        await web.SockSite(self.runner, sock).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _record(self, request: web.Request) -> None:
        self.requests.append({"method": request.method, "path": request.raw_path,
                              "headers": {k.lower(): v for k, v in request.headers.items()},
                              "xff": request.headers.getall("X-Forwarded-For", [])})

    async def _http(self, request: web.Request) -> web.Response:
        self._record(request)
        await request.read()
        return web.json_response({"backend": True, "path": request.raw_path})

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        self._record(request)
        ws = web.WebSocketResponse(max_msg_size=4 * MiB)  # larger than the proxy's limit
        await ws.prepare(request)
        while True:
            msg = await ws.receive()
            if msg.type == WSMsgType.TEXT:
                self.messages.append(len(msg.data))
                if msg.data.startswith("close:"):
                    _, code, reason = msg.data.split(":", 2)
                    await ws.close(code=int(code), message=reason.encode())
                    break
                if msg.data == "die":
                    assert request.transport is not None
                    request.transport.abort()
                    break
                if msg.data.startswith("flood:"):  # flood:COUNT:SIZE binary messages, at once
                    _, count, size = msg.data.split(":")
                    for _ in range(int(count)):
                        await ws.send_bytes(b"f" * int(size))
                    self.floods_done += 1
                    continue
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                self.messages.append(len(msg.data))
                await ws.send_bytes(msg.data)
            else:
                if msg.type == WSMsgType.CLOSE:
                    self.closes.append((msg.data, msg.extra or ""))
                break
        return ws


@contextmanager
def proxied(routes: tuple[Route, ...] = STORY_ROUTES, **cfg: Any
            ) -> Iterator[tuple[Backend, ReverseProxy, int, LabPKI]]:
    """labkit's ReverseProxy on labkit's loop, every upstream pointing at one recording Backend."""
    pki = LabPKI().ensure()
    backend = Backend()
    runtime.run(backend.start())
    proxy = ReverseProxy(ProxyConfig(
        name="test-proxy", routes=routes, hosts=(HOST,),
        upstreams={r.upstream: backend.url for r in routes}, **cfg))
    sock = bind_loopback("127.0.0.1", 0, "proxy")
    port = sock.getsockname()[1]
    try:
        runtime.run(proxy.start(sock, pki.server_context("lab")))
        yield backend, proxy, port, pki
    finally:
        runtime.run(proxy.stop())
        runtime.run(backend.stop())


def loopback_only(ports: set[int], pids: set[int] | None = None) -> None:
    """Every port is listened on, and only on loopback (participants share Wi-Fi)."""
    procs = [psutil.Process(p) for p in (pids or {os.getpid()})]
    conns = [c for p in procs for c in p.net_connections(kind="inet")
             if c.status == psutil.CONN_LISTEN and c.laddr.port in ports]
    assert {c.laddr.port for c in conns} == ports
    assert {c.laddr.ip for c in conns} <= {"127.0.0.1", "::1"}, conns


# -- the story's reverse-proxy topology ----------------------------------------------------------
@pytest.fixture(scope="module")
def rp_lab() -> Iterator[Lab]:
    lab = Lab(scenarios.get("reverse-proxy").topology).start()
    try:
        yield lab
    finally:
        lab.stop()


def test_proxy_serves_page_and_api_on_one_origin(rp_lab: Lab) -> None:
    base = rp_lab.origin("proxy")
    assert base.startswith(f"https://{HOST}:")

    async def go() -> tuple[int, dict[str, Any], int, str]:
        async with http_session(rp_lab.pki) as s:
            async with s.get(base + "/api/hello") as r:
                api_status, api = r.status, await r.json()
            async with s.get(base + "/") as r:
                return api_status, api, r.status, await r.text()

    before = len(rp_lab.requests())
    api_status, api, page_status, page = asyncio.run(go())
    assert (api_status, api) == (200, {"service": "api", "message": "hello from the API"})
    assert page_status == 200 and page.startswith("<!doctype html>")
    assert "labkit messenger — reverse-proxy" in page
    # The page is told to use relative URLs: same origin, no CORS anywhere.
    assert '"api": ""' in page and '"ws": "/ws"' in page
    seen = [(r["service"], r["path"], r["status"]) for r in rp_lab.requests()[before:]]
    assert seen == [("api", "/api/hello", 200), ("web", "/", 200)]


def test_proxy_chats_over_wss_with_the_allowed_origin(rp_lab: Lab) -> None:
    url = rp_lab.origin("proxy").replace("https://", "wss://") + "/ws"

    async def go() -> list[dict[str, Any]]:
        async with ws_connect(url, rp_lab.pki, origin=rp_lab.origin("proxy")) as ws:
            await ws.send(json.dumps({"type": "join", "room": "random"}))
            history = json.loads(await asyncio.wait_for(ws.recv(), 5))
            await ws.send(json.dumps({"type": "say", "text": "through the proxy"}))
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            return [history, message]

    history, message = asyncio.run(go())
    assert history["type"] == "history" and history["room"] == "random"
    assert (message["type"], message["text"]) == ("message", "through the proxy")
    chat = [r for r in rp_lab.requests("chat") if r["kind"] == "ws"]
    assert chat[-1]["origin"] == rp_lab.origin("proxy") and chat[-1]["status"] == 101


def test_login_cookie_crosses_the_proxy_both_ways(rp_lab: Lab) -> None:
    """Set-Cookie comes back through the proxy, and the cookie goes out again on the WebSocket
    handshake: the chat server knows the user."""
    base = rp_lab.origin("proxy")

    async def go() -> tuple[int, str, str]:
        async with http_session(rp_lab.pki) as s:
            async with s.post(base + "/api/login", json={"user": "carol"}) as r:
                status = r.status
                cookie = r.cookies["labkit_session"]
        async with ws_connect(base.replace("https", "wss") + "/ws", rp_lab.pki, origin=base,
                              additional_headers={"Cookie": f"labkit_session={cookie.value}"}
                              ) as ws:
            await ws.send(json.dumps({"type": "join", "room": "general"}))
            user = json.loads(await asyncio.wait_for(ws.recv(), 5))["user"]
        return status, cookie["domain"], user

    assert asyncio.run(go()) == (200, "lab.test", "carol")


def test_proxy_keeps_the_chat_servers_origin_check(rp_lab: Lab) -> None:
    """The backend decides, the proxy passes its answer on: a forged Origin gets the chat server's
    403 as the HTTP answer to the handshake (never a socket that dies at once)."""
    url = rp_lab.origin("proxy").replace("https://", "wss://") + "/ws"

    async def go() -> int:
        try:
            async with ws_connect(url, rp_lab.pki, origin="https://evil.lab.test"):
                return 101
        except InvalidStatus as e:
            return e.response.status_code

    assert asyncio.run(go()) == 403
    assert rp_lab.requests("chat")[-1]["origin"] == "https://evil.lab.test"


@pytest.mark.parametrize("path, service", [("/nope", "web"), ("/api/nope", "api")])
def test_unknown_path_is_the_backends_own_404(rp_lab: Lab, path: str, service: str) -> None:
    """With the catch-all "/" route every clean path has a backend; an unknown one is that
    backend's 404, passed on as such (not a 502)."""
    port = rp_lab.info("proxy").port
    status, _, _ = asyncio.run(raw_request(port, path, host=f"{HOST}:{port}", pki=rp_lab.pki))
    assert status == 404
    assert rp_lab.requests(service)[-1]["path"] == path


def test_redirect_listener_sends_308_to_the_https_origin(rp_lab: Lab) -> None:
    rport, pport = rp_lab.info("redirect").port, rp_lab.info("proxy").port
    want = f"https://{HOST}:{pport}/path?q=1"

    async def go() -> list[tuple[int, str]]:
        out = []
        for host in (f"{HOST}:{rport}", "evil.example", f"evil.lab.test:{rport}"):
            status, headers, _ = await raw_request(rport, "/path?q=1", host=host)
            out.append((status, headers["location"]))
        return out

    # The forged Host headers do not move the Location: no open redirect.
    assert asyncio.run(go()) == [(308, want)] * 3


def test_redirect_then_proxy_end_to_end(rp_lab: Lab) -> None:
    url = f"http://{HOST}:{rp_lab.info('redirect').port}/api/hello?x=1"

    async def go() -> tuple[int, str, list[int]]:
        async with http_session(rp_lab.pki) as s, s.get(url) as r:
            await r.read()
            return r.status, str(r.url), [h.status for h in r.history]

    status, final, history = asyncio.run(go())
    assert (status, history) == (200, [308])
    assert final == f"{rp_lab.origin('proxy')}/api/hello?x=1"


def test_reverse_proxy_topology_listens_on_loopback_only(rp_lab: Lab) -> None:
    loopback_only({s.port for s in rp_lab.services})


# -- what crosses the proxy (own backend) --------------------------------------------------------
def test_backend_sees_forwarded_headers_origin_and_cookie() -> None:
    with proxied() as (backend, _, port, pki):
        async def go() -> int:
            forged = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "http",
                      "X-Forwarded-Host": "evil.example", "Origin": f"https://{HOST}:{port}",
                      "Cookie": "labkit_session=abc"}
            async with http_session(pki) as s, \
                    s.get(f"https://{HOST}:{port}/api/hello", headers=forged) as r:
                await r.read()
                return r.status

        assert asyncio.run(go()) == 200
        (req,) = backend.requests
        h = req["headers"]
        assert req["path"] == "/api/hello"
        assert h["host"] == f"{HOST}:{port}"
        assert h["x-forwarded-proto"] == "https"
        assert h["x-forwarded-host"] == f"{HOST}:{port}"
        assert req["xff"] == ["203.0.113.9, 127.0.0.1"]
        assert h["origin"] == f"https://{HOST}:{port}"
        assert h["cookie"] == "labkit_session=abc"


def test_websocket_handshake_carries_forwarded_headers() -> None:
    with proxied() as (backend, _, port, pki):
        async def go() -> str:
            async with ws_connect(f"wss://{HOST}:{port}/ws", pki,
                                  origin=f"https://{HOST}:{port}") as ws:
                await ws.send("hi")
                return await asyncio.wait_for(ws.recv(), 5)  # type: ignore[return-value]

        assert asyncio.run(go()) == "hi"
        h = backend.requests[-1]["headers"]
        assert (h["host"], h["x-forwarded-proto"], h["x-forwarded-for"], h["origin"]) == (
            f"{HOST}:{port}", "https", "127.0.0.1", f"https://{HOST}:{port}")


def test_close_code_and_reason_survive_the_relay_both_ways() -> None:
    with proxied() as (backend, _, port, pki):
        url = f"wss://{HOST}:{port}/ws"

        async def client_closes() -> None:
            async with ws_connect(url, pki) as ws:
                await ws.send("hi")
                await asyncio.wait_for(ws.recv(), 5)
                await ws.close(4001, "bye")

        async def backend_closes() -> tuple[int | None, str | None]:
            async with ws_connect(url, pki) as ws:
                await ws.send("close:4002:server bye")
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
                return ws.close_code, ws.close_reason

        asyncio.run(client_closes())
        wait_for(lambda: backend.closes)
        assert backend.closes == [(4001, "bye")]
        assert asyncio.run(backend_closes()) == (4002, "server bye")


def test_binary_and_large_messages_arrive_intact_and_pings_are_answered() -> None:
    with proxied() as (backend, _, port, pki):
        blob = os.urandom(512 * 1024)

        async def go() -> tuple[bytes, bytes, str, float]:
            async with ws_connect(f"wss://{HOST}:{port}/ws", pki) as ws:
                await ws.send(b"\x00\x01\xff")
                small = await asyncio.wait_for(ws.recv(), 5)
                await ws.send(blob)
                big = await asyncio.wait_for(ws.recv(), 10)
                await ws.send("héllo ✓")
                text = await asyncio.wait_for(ws.recv(), 5)
                pong = await ws.ping(b"are you there")
                latency = await asyncio.wait_for(pong, 3)
                return small, big, text, latency  # type: ignore[return-value]

        small, big, text, latency = asyncio.run(go())
        assert small == b"\x00\x01\xff"
        assert big == blob
        assert text == "héllo ✓"
        assert latency < 3
        assert backend.messages == [3, len(blob), len("héllo ✓")]


def test_message_over_the_limit_closes_with_1009() -> None:
    with proxied() as (backend, proxy, port, pki):
        async def go() -> int | None:
            async with ws_connect(f"wss://{HOST}:{port}/ws", pki) as ws:
                await ws.send(b"x" * 1024)  # the twin: under the limit, echoed
                assert len(await asyncio.wait_for(ws.recv(), 5)) == 1024
                await ws.send(b"x" * (proxy.cfg.max_message + 1))
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10)
                return ws.close_code

        assert asyncio.run(go()) == 1009
        assert backend.messages == [1024]  # the big one never reached the backend


def _flood_peak(high_water: int, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """A backend floods 32 MiB toward a browser that reads nothing for 2 s (or until the backend
    got it all out): the largest send buffer the proxy held toward that browser meanwhile, and
    how many messages arrived after."""
    from labkit.serve import splice as splice_module

    monkeypatch.setattr(splice_module, "HIGH_WATER", high_water)
    count, size = 512, 64 * 1024
    with proxied() as (backend, proxy, port, pki):
        def buffered() -> int:
            return max((sp.down.get_write_buffer_size() for sp in proxy.splices), default=0)

        async def go() -> tuple[int, int]:
            async with ws_connect(f"wss://{HOST}:{port}/ws", pki, max_size=MiB,
                                  max_queue=1) as ws:
                await ws.send(f"flood:{count}:{size}")
                peak = 0
                for _ in range(40):  # reading nothing
                    await asyncio.sleep(0.05)
                    peak = max(peak, runtime.call(buffered))
                    if backend.floods_done:  # all of it left the backend: it can pile no higher
                        break
                got = 0
                while got < count:
                    assert len(await asyncio.wait_for(ws.recv(), 10)) == size
                    got += 1
                return peak, got

        return asyncio.run(go())


def test_a_browser_that_does_not_read_holds_the_proxy_to_its_buffer_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Flow control: once the browser's send buffer passes the limit, the proxy stops reading the
    backend (whose own sends then wait), and reads it again once the browser catches up."""
    from labkit.serve.splice import HIGH_WATER

    peak, got = _flood_peak(HIGH_WATER, monkeypatch)
    assert got == 512  # nothing lost once reading resumed
    assert peak <= HIGH_WATER + 512 * 1024, f"{peak / MiB:.1f} MiB held"
    assert peak >= HIGH_WATER // 2, "the flood never pressed against the limit"


def test_twin_without_a_limit_the_flood_piles_up_in_the_proxy(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The twin: with the limit above the flood, the same browser makes the proxy hold several
    times the limit (so the test above measures what it claims)."""
    peak, got = _flood_peak(64 * MiB, monkeypatch)
    assert got == 512
    assert peak > 4 * MiB, f"only {peak / MiB:.1f} MiB held"


def test_client_vanishing_is_passed_on_to_the_backend_promptly_as_going_away() -> None:
    """A browser tab killed mid-chat sends no close frame. The proxy must tell the backend at once
    that the client went away (1001), not leave it waiting and then report a normal close (1000):
    the backend would record a clean goodbye that never happened."""
    with proxied() as (backend, _, port, pki):
        async def vanish() -> float:
            ws = await ws_connect(f"wss://{HOST}:{port}/ws", pki)
            await ws.send("hi")
            assert await asyncio.wait_for(ws.recv(), 5) == "hi"
            ws.transport.abort()
            return time.monotonic()

        t0 = asyncio.run(vanish())
        wait_for(lambda: backend.closes, timeout=10)
        elapsed = time.monotonic() - t0
        assert backend.closes == [(1001, "client went away")]
        assert elapsed < 1.5, elapsed


def test_request_body_over_the_limit_is_413_and_never_reaches_the_backend() -> None:
    with proxied(max_body=64 * 1024) as (backend, _, port, pki):
        async def post(size: int) -> int:
            # Raw, and the body sent only when the proxy has not answered first: a refusal
            # comes before the body (the client's own upload would race the early close).
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=pki.client_context(), server_hostname=HOST)
            try:
                writer.write(f"POST /api/counter HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                             f"Content-Length: {size}\r\nConnection: close\r\n\r\n".encode())
                try:
                    line = await asyncio.wait_for(reader.readline(), 0.5)
                except asyncio.TimeoutError:
                    writer.write(b"x" * size)
                    line = await asyncio.wait_for(reader.readline(), 10)
                return int(line.split()[1])
            finally:
                await close_quietly(writer)

        assert asyncio.run(post(1024)) == 200  # the twin
        assert asyncio.run(post(256 * 1024)) == 413
        assert [r["method"] for r in backend.requests] == ["POST"]


class RawBackend:
    """A plain-HTTP backend written by hand, to misbehave where aiohttp would not: it answers
    ``ok`` on kept-alive connections, and on a connection's ``drop_at``-th request hangs up
    without a word (a keep-alive close racing the request); a request for ``/api/short``
    gets a Content-Length of 100 and 10 bytes."""

    def __init__(self, drop_at: int = 0) -> None:
        self.drop_at, self.connections, self.requests = drop_at, 0, 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        n = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                n += 1
                self.requests += 1
                if n == self.drop_at:
                    return
                if head.split()[1] == b"/api/short":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                    return
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextmanager
def proxied_raw(backend: RawBackend) -> Iterator[tuple[int, LabPKI]]:
    pki = LabPKI().ensure()
    port_b = runtime.run(backend.start())
    proxy = ReverseProxy(ProxyConfig(
        name="test-proxy", routes=STORY_ROUTES, hosts=(HOST,),
        upstreams={r.upstream: f"http://127.0.0.1:{port_b}" for r in STORY_ROUTES}))
    sock = bind_loopback("127.0.0.1", 0, "proxy")
    try:
        runtime.run(proxy.start(sock, pki.server_context("lab")))
        yield sock.getsockname()[1], pki
    finally:
        runtime.run(proxy.stop())
        runtime.run(backend.stop())


def _statuses(port: int, pki: LabPKI, method: str, n: int) -> list[int]:
    async def go() -> list[int]:
        async with http_session(pki) as s:
            out = []
            for _ in range(n):
                async with s.request(method, f"https://{HOST}:{port}/api/x", data=b"+1") as r:
                    await r.read()  # read whole: the client's connection goes back to its pool
                    out.append(r.status)
            return out
    return asyncio.run(go())


def test_backend_connections_are_kept_alive_and_a_get_the_backend_dropped_is_retried() -> None:
    """The proxy's own HTTP/1.1 client keeps backend connections alive (twin: three GETs, one
    connection). A kept-alive connection the backend closes as the request arrives is retried
    on a new one for a GET (RFC 9112 §9.3.1: idempotent), never for a POST: that one is a 502."""
    keep = RawBackend()
    with proxied_raw(keep) as (port, pki):
        assert _statuses(port, pki, "GET", 3) == [200, 200, 200]
    assert (keep.connections, keep.requests) == (1, 3)

    flaky = RawBackend(drop_at=2)  # every connection hangs up on its second request
    with proxied_raw(flaky) as (port, pki):
        assert _statuses(port, pki, "GET", 3) == [200, 200, 200]
        # The kept connection has served one request: the POST is its second, and is dropped.
        # Not sent again, it is a 502; the next POST goes on a new connection.
        assert _statuses(port, pki, "POST", 2) == [502, 200]
    assert flaky.connections == 4  # three GETs, two of them retried; the last POST


def test_an_answer_the_backend_cuts_short_is_not_passed_off_as_whole() -> None:
    """The backend promised 100 bytes and sent 10: the browser's connection is closed (as nginx
    does), so the client sees a broken answer, not a complete-looking one; the next is served."""
    with proxied_raw(RawBackend()) as (port, pki):
        async def go() -> str:
            async with http_session(pki) as s:
                try:
                    async with s.get(f"https://{HOST}:{port}/api/short") as r:
                        await r.read()
                        return "whole"
                except aiohttp.ClientPayloadError:
                    return "cut short"
        assert asyncio.run(go()) == "cut short"
        assert _statuses(port, pki, "GET", 1) == [200]


def test_down_backend_gives_502_with_a_short_clear_body() -> None:
    with proxied() as (backend, _, port, pki):
        runtime.run(backend.stop())

        async def go() -> tuple[int, str, int]:
            async with http_session(pki) as s, s.get(f"https://{HOST}:{port}/api/hello") as r:
                status, body = r.status, await r.text()
            try:
                async with ws_connect(f"wss://{HOST}:{port}/ws", pki):
                    ws_status = 101
            except InvalidStatus as e:
                ws_status = e.response.status_code
            return status, body, ws_status

        status, body, ws_status = asyncio.run(go())
        assert status == 502 and ws_status == 502
        assert body.startswith("502 Bad Gateway: the api server is not answering")
        assert len(body) < 200


def test_backend_dying_mid_conversation_closes_the_client_with_1014_and_recovers() -> None:
    with proxied() as (backend, _, port, pki):
        url = f"wss://{HOST}:{port}/ws"

        async def dies() -> tuple[int | None, float]:
            async with ws_connect(url, pki) as ws:
                await ws.send("still there?")
                assert await asyncio.wait_for(ws.recv(), 5) == "still there?"
                t0 = time.monotonic()
                await ws.send("die")
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10)
                return ws.close_code, time.monotonic() - t0

        async def echo() -> tuple[str, int]:
            async with ws_connect(url, pki) as ws:
                await ws.send("back again")
                text = await asyncio.wait_for(ws.recv(), 5)
            async with http_session(pki) as s, s.get(f"https://{HOST}:{port}/api/hello") as r:
                await r.read()
                return text, r.status  # type: ignore[return-value]

        code, elapsed = asyncio.run(dies())
        assert code == BACKEND_GONE == 1014
        assert elapsed < 3
        runtime.run(backend.stop())
        runtime.run(backend.start())  # the backend returns on the same port
        assert asyncio.run(echo()) == ("back again", 200)


def test_proxy_refuses_escaping_and_absolute_targets_before_any_backend() -> None:
    with proxied() as (backend, _, port, pki):
        hostport = f"{HOST}:{port}"
        bad = ["/../etc/passwd", "/api/../../etc/passwd", "/api/%2e%2e/%2e%2e/etc/passwd",
               "/api/%252e%252e/x", "/api/..%5c..%5cx", "//evil/api/hello", "/api/%00",
               "http://evil.example/api/hello", f"https://{hostport}/api/../../etc/passwd"]

        async def go() -> list[tuple[str, int]]:
            out = [(t, (await raw_request(port, t, host=hostport, pki=pki))[0]) for t in bad]
            out.append(("http://evil/", (await raw_request(port, "http://evil/", host=hostport,
                                                           pki=pki))[0]))
            return out

        results = asyncio.run(go())
        assert all(status in (400, 421) for _, status in results), results
        assert backend.requests == []
        # The twin: a clean path does reach the backend.
        assert asyncio.run(raw_request(port, "/api/hello", host=hostport, pki=pki))[0] == 200
        assert [r["path"] for r in backend.requests] == ["/api/hello"]


def test_unknown_path_without_a_catch_all_is_the_proxys_404() -> None:
    routes = (Route("/api", "api"), Route("/ws", "chat", websocket=True))
    with proxied(routes) as (backend, _, port, pki):
        async def go() -> list[tuple[int, str]]:
            out = []
            for t in ("/nope", "/apix", "/api/hello"):
                status, _, body = await raw_request(port, t, host=f"{HOST}:{port}", pki=pki)
                out.append((status, body))
            return out

        (nope, apix, hello) = asyncio.run(go())
        assert nope == (404, "no route for /nope\n")
        assert apix[0] == 404
        assert hello[0] == 200
        assert [r["path"] for r in backend.requests] == ["/api/hello"]


def test_a_host_the_proxy_does_not_serve_gets_421() -> None:
    with proxied() as (backend, _, port, pki):
        async def go(host: str) -> tuple[int, str]:
            status, _, body = await raw_request(port, "/api/hello", host=host, pki=pki)
            return status, body

        status, body = asyncio.run(go(f"evil.lab.test:{port}"))
        assert status == 421
        assert body == f"this proxy serves {HOST}, not evil.lab.test:{port}\n"
        assert backend.requests == []
        assert asyncio.run(go(f"{HOST}:{port}"))[0] == 200  # the twin


# -- the load-balanced topology (short-term fix) -------------------------------------------------
@pytest.fixture(scope="module")
def lb_lab() -> Iterator[Lab]:
    lab = Lab(scenarios.get("lb-managed-certs").topology).start()
    try:
        yield lab
    finally:
        lab.stop()


async def _peer_names(port: int, server_hostname: str, pki: LabPKI) -> list[str]:
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=pki.client_context(),
                                              server_hostname=server_hostname)
    cert = writer.get_extra_info("peercert")
    await close_quietly(writer)
    return [v for k, v in cert["subjectAltName"] if k == "DNS"]


@pytest.mark.parametrize("entry, own, other", [
    ("lb-api", "api.lab.test", "ws.lab.test"),
    ("lb-ws", "ws.lab.test", "api.lab.test"),
])
def test_each_lb_presents_a_certificate_for_its_own_name_only(lb_lab: Lab, entry: str, own: str,
                                                              other: str) -> None:
    port = lb_lab.info(entry).port
    assert asyncio.run(_peer_names(port, own, lb_lab.pki)) == [own]
    with pytest.raises(ssl.SSLCertVerificationError, match="match|mismatch"):
        asyncio.run(_peer_names(port, other, lb_lab.pki))


def test_lb_entry_points_work_and_redirect(lb_lab: Lab) -> None:
    api, ws_url = lb_lab.origin("lb-api"), lb_lab.origin("lb-ws").replace("https", "wss")
    page = lb_lab.origin("web")

    async def go() -> tuple[int, str | None, str]:
        async with http_session(lb_lab.pki) as s, \
                s.get(api + "/api/hello", headers={"Origin": page}) as r:
            status, acao = r.status, r.headers.get("Access-Control-Allow-Origin")
        async with ws_connect(ws_url + "/ws", lb_lab.pki, origin=page) as ws:
            await ws.send(json.dumps({"type": "join", "room": "general"}))
            kind = json.loads(await asyncio.wait_for(ws.recv(), 5))["type"]
        return status, acao, kind

    # Another origin than the page: CORS is still needed, and the API still sends it.
    assert asyncio.run(go()) == (200, page, "history")
    rport = lb_lab.info("redirect-api").port
    status, headers, _ = asyncio.run(raw_request(rport, "/api/hello?x=1", host="evil.example"))
    assert (status, headers["location"]) == (308, f"{api}/api/hello?x=1")


def test_lb_topology_listens_on_loopback_only(lb_lab: Lab) -> None:
    loopback_only({s.port for s in lb_lab.services})


def test_lb_idle_timeout_drops_a_silent_websocket_but_not_a_pinging_one() -> None:
    topo = scenarios.get("lb-managed-certs").topology
    short = replace(topo, name="lb-idle-test", services=tuple(
        replace(s, idle_timeout=1.0) if s.name == "lb-ws" else s for s in topo.services))
    with Lab(short) as lab:
        url = lab.origin("lb-ws").replace("https", "wss") + "/ws"

        async def silent() -> tuple[float, int | None]:
            async with ws_connect(url, lab.pki, ping_interval=None) as ws:
                t0 = time.monotonic()
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10)
                return time.monotonic() - t0, ws.close_code

        async def pinging() -> str:
            async with ws_connect(url, lab.pki, ping_interval=0.3, ping_timeout=5) as ws:
                await asyncio.sleep(2.5)
                await ws.send(json.dumps({"type": "join", "room": "general"}))
                return json.loads(await asyncio.wait_for(ws.recv(), 5))["type"]

        async def both() -> tuple[tuple[float, int | None], str]:
            return await asyncio.gather(silent(), pinging())

        (elapsed, code), kind = asyncio.run(both())
        assert 0.8 <= elapsed < 3.0, elapsed
        assert code == 1006  # dropped like a cloud LB does: no close frame
        assert kind == "history"


@pytest.mark.parametrize("answer, status", [
    (b"HTTP/1.1 banana\r\n\r\n", 502),  # not a status line: h11 refuses it
    (b"HTTP/1.1 101 Switching Protocols\r\nX: " + b"a" * 70000, 502),  # a head that never ends
    (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", 403),  # twin: a real refusal
])
def test_a_backend_handshake_answer_is_parsed_not_sliced(answer: bytes, status: int) -> None:
    """The splice reads the backend's answer with h11: garbage or an endless head is a 502, a
    well-formed refusal passes through with its status."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.close()

    async def start() -> asyncio.base_events.Server:
        return await asyncio.start_server(serve, "127.0.0.1", 0)

    server = runtime.run(start())
    upstream = f"http://localhost:{server.sockets[0].getsockname()[1]}"
    pki = LabPKI().ensure()
    routes = (Route("/ws", "chat", websocket=True),)
    proxy = ReverseProxy(ProxyConfig(name="raw", routes=routes, hosts=(HOST,),
                                     upstreams={"chat": upstream}))
    sock = bind_loopback("127.0.0.1", 0, "proxy")
    port = sock.getsockname()[1]
    try:
        runtime.run(proxy.start(sock, pki.server_context("lab")))

        async def go() -> int:
            try:
                async with ws_connect(f"wss://{HOST}:{port}/ws", pki):
                    return 101
            except InvalidStatus as e:
                return e.response.status_code

        assert asyncio.run(go()) == status
    finally:
        runtime.run(proxy.stop())
        server.close()



def test_absolute_form_for_the_proxys_own_host_is_served() -> None:
    """RFC 9112 §3.2.2: a server MUST accept absolute-form; its authority replaces Host. For
    another host it is misdirected (421): the proxy is never an open proxy."""
    with proxied() as (backend, _, port, pki):
        hostport = f"{HOST}:{port}"

        async def go() -> tuple[int, int]:
            own = await raw_request(port, f"https://{hostport}/api/hello?x=1", host=hostport,
                                    pki=pki)
            other = await raw_request(port, "https://evil.example/api/hello", host=hostport,
                                      pki=pki)
            return own[0], other[0]

        assert asyncio.run(go()) == (200, 421)
        assert [(r["path"], r["headers"]["host"]) for r in backend.requests] == [
            ("/api/hello?x=1", hostport)]


@pytest.mark.parametrize("host", [
    "app.lab.test:@evil.com", "app.lab.test:80/../x", "[app.lab.test]", "app.lab.test:99999",
    "app.lab.test:", "app.lab.test:0", "app.lab.test x", "",
])
def test_a_malformed_host_is_refused_never_forwarded(host: str) -> None:
    with proxied() as (backend, _, port, pki):
        status = asyncio.run(raw_request(port, "/api/hello", host=host, pki=pki))[0]
        assert status in (400, 421)
        assert backend.requests == []


def test_a_well_formed_host_is_forwarded_normalised() -> None:
    # The twin of the refusals above: upper case and a port are fine, and reach the backend
    # lower-cased, port kept.
    with proxied() as (backend, _, port, pki):
        status = asyncio.run(raw_request(port, "/api/hello", host=f"APP.Lab.Test:{port}",
                                         pki=pki))[0]
        assert status == 200
        assert backend.requests[0]["headers"]["host"] == f"app.lab.test:{port}"
        assert backend.requests[0]["headers"]["x-forwarded-host"] == f"app.lab.test:{port}"


@pytest.mark.parametrize("value", ["lab €".encode(), "café".encode(), b"plain",
                                   "café".encode("latin-1")],
                         ids=["utf8-euro", "utf8-e-acute", "ascii", "latin1-e-acute"])
def test_header_bytes_cross_the_proxy_unchanged(value: bytes) -> None:
    """A UTF-8 (or any non-ASCII) header value reaches the backend as the bytes the client sent,
    on a WebSocket upgrade and on plain HTTP (it used to be a 502: UnicodeEncodeError). So does
    a byte that is not UTF-8 at all: obs-text (RFC 9110 §5.5), the Latin-1 ``é`` as b"\\xe9",
    which nginx passes on too (aiohttp's client dropped it: the backend saw "caf")."""
    with proxied() as (backend, _, port, pki):
        async def send(target: str, extra: bytes) -> int:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=pki.client_context(), server_hostname=HOST)
            writer.write(f"GET {target} HTTP/1.1\r\nHost: {HOST}:{port}\r\n".encode()
                         + b"User-Agent: " + value + b"\r\n" + extra + b"\r\n")
            try:
                status_line = await asyncio.wait_for(reader.readline(), 10)
            finally:
                await close_quietly(writer)
            return int(status_line.split()[1])

        ws = (b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
        assert asyncio.run(send("/ws", ws)) == 101
        assert asyncio.run(send("/api/hello", b"Connection: close\r\n")) == 200
        sent = value.decode("utf-8", "surrogateescape")
        assert [r["headers"]["user-agent"] for r in backend.requests] == [sent, sent]
