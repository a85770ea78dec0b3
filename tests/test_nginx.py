"""Real nginx running the config labkit renders: the same one-origin topology as labkit's proxy.

nginx is a system piece: missing, these tests fail in CI (where skipping would hide the lesson) and
skip elsewhere, with the command that installs it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiohttp import web
from procs_util import alive, child, survivors
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus

from labkit import Lab, LabPKI, PortInUseError, runtime, system
from labkit.lab import bind_loopback
from labkit.model import scenarios
from labkit.model.routing import STORY_ROUTES, Route
from labkit.observe.browser import Browser
from labkit.serve.clients import http_session, ws_connect
from labkit.serve.nginx import NginxServer, UpstreamAddressError, UpstreamCAMissingError, render
from labkit.serve.proxy import ProxyConfig
from labkit.serve.serving import AiohttpServer

HOST = "app.lab.test"


@pytest.fixture(scope="module", autouse=True)
def need_nginx() -> None:
    if shutil.which("nginx") or os.path.exists("/usr/sbin/nginx"):
        return
    cmd = system.install_command(["nginx"])
    if system.in_ci():
        pytest.fail(f"nginx is missing, and CI must run the nginx lesson. Install: {cmd}",
                    pytrace=False)
    pytest.skip(f"nginx is missing; install it with: {cmd}")


def topology(name: str = "nginx-proxy") -> Any:
    topo = scenarios.get("nginx-proxy").topology
    return topo if name == "nginx-proxy" else replace(topo, name=name)


def nginx_pids(conf: str) -> tuple[str, set[int]]:
    """The temp folder of a running nginx (from its config) and the PIDs of its master (from the
    pid file) and workers."""
    found = re.search(r"^pid (\S+)/nginx\.pid;$", conf, re.M)
    assert found, conf
    prefix = found.group(1)
    master = psutil.Process(int(Path(prefix, "nginx.pid").read_text().strip()))
    assert "nginx" in master.name()
    return prefix, {master.pid} | {c.pid for c in master.children(recursive=True)}


def nginx_children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if "nginx" in p.name()}


@pytest.fixture(scope="module")
def nginx_lab() -> Iterator[Lab]:
    lab = Lab(topology()).start()
    try:
        yield lab
    finally:
        lab.stop()


# -- the config ----------------------------------------------------------------------------------
def test_config_has_the_websocket_tls_and_redirect_pieces(nginx_lab: Lab) -> None:
    conf = nginx_lab.nginx_config("proxy")
    port, rport = nginx_lab.info("proxy").port, nginx_lab.info("redirect").port
    assert re.search(r"map \$http_upgrade \$connection_upgrade \{\s*default upgrade;\s*'' +close;",
                     conf)
    assert "proxy_set_header Upgrade           $http_upgrade;" in conf
    assert "proxy_set_header Connection        $connection_upgrade;" in conf
    assert "proxy_http_version 1.1;" in conf
    assert re.search(r"proxy_read_timeout \S+;", conf)
    for h in ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"):
        assert f"proxy_set_header {h}" in conf, h
    assert f"listen 127.0.0.1:{rport};" in conf
    assert f"return 308 https://{HOST}:{port}$request_uri;" in conf
    assert f"listen 127.0.0.1:{port} ssl;" in conf
    assert re.search(r"ssl_certificate +/\S+\.pem;", conf)
    assert re.search(r"ssl_certificate_key +/\S+\.key;", conf)
    assert "location ~ ^/api(/|$) {" in conf and "location ~ ^/ws(/|$) {" in conf


# -- traffic through real nginx ------------------------------------------------------------------
def test_api_and_page_through_nginx(nginx_lab: Lab) -> None:
    base = nginx_lab.origin("proxy")

    async def go() -> tuple[int, Any, str | None, int, str]:
        async with http_session(nginx_lab.pki) as s:
            async with s.get(base + "/api/hello") as r:
                status, body, server = r.status, await r.json(), r.headers.get("Server")
            async with s.get(base + "/") as r:
                return status, body, server, r.status, await r.text()

    status, body, server, page_status, page = asyncio.run(go())
    assert (status, body) == (200, {"service": "api", "message": "hello from the API"})
    assert server is not None and server.startswith("nginx")  # really nginx in front
    assert page_status == 200 and "labkit messenger — nginx-proxy" in page
    assert [r["path"] for r in nginx_lab.requests("api")][-1] == "/api/hello"


def test_chat_over_wss_through_nginx(nginx_lab: Lab) -> None:
    url = nginx_lab.origin("proxy").replace("https://", "wss://") + "/ws"

    async def go() -> tuple[str, str, int]:
        async with ws_connect(url, nginx_lab.pki, origin=nginx_lab.origin("proxy")) as ws:
            await ws.send(json.dumps({"type": "join", "room": "general"}))
            history = json.loads(await asyncio.wait_for(ws.recv(), 5))["type"]
            await ws.send(json.dumps({"type": "say", "text": "via nginx"}))
            text = json.loads(await asyncio.wait_for(ws.recv(), 5))["text"]
        try:
            async with ws_connect(url, nginx_lab.pki, origin="https://evil.lab.test"):
                forged = 101
        except InvalidStatus as e:
            forged = e.response.status_code
        return history, text, forged

    # The twin: the same handshake with a forged Origin is refused by the chat server via nginx.
    assert asyncio.run(go()) == ("history", "via nginx", 403)


def test_nginx_redirect_keeps_path_and_query_and_ignores_host(nginx_lab: Lab) -> None:
    rport, port = nginx_lab.info("redirect").port, nginx_lab.info("proxy").port

    async def location(host: str) -> tuple[int, str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", rport)
        writer.write(f"GET /path?q=1 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                     .encode())
        head = (await asyncio.wait_for(reader.read(), 5)).decode().split("\r\n\r\n")[0]
        writer.close()
        await writer.wait_closed()
        status = int(head.split()[1])
        loc = re.search(r"^Location: (\S+)", head, re.M | re.I)
        return status, loc.group(1) if loc else ""

    want = (308, f"https://{HOST}:{port}/path?q=1")
    assert asyncio.run(location(f"{HOST}:{rport}")) == want
    assert asyncio.run(location("evil.example")) == want


def test_nginx_listens_on_loopback_only(nginx_lab: Lab) -> None:
    _, pids = nginx_pids(nginx_lab.nginx_config())
    ports = {s.port for s in nginx_lab.services}
    conns = [c for p in [psutil.Process(), *map(psutil.Process, pids)]
             for c in p.net_connections(kind="inet")
             if c.status == psutil.CONN_LISTEN and c.laddr.port in ports]
    assert {c.laddr.port for c in conns} == ports
    assert {c.laddr.ip for c in conns} == {"127.0.0.1"}


class CloseRecorder:
    """A websockets echo backend that records the close frames it receives; the text
    ``close:CODE:REASON`` makes it close with that code and reason."""

    def __init__(self) -> None:
        self.closes: list[tuple[int | None, str | None]] = []
        self.port = 0
        self.server: Any = None

    async def handler(self, ws: ServerConnection) -> None:
        try:
            async for msg in ws:
                if isinstance(msg, str) and msg.startswith("close:"):
                    _, code, reason = msg.split(":", 2)
                    await ws.close(int(code), reason)
                    return
                await ws.send(msg)
        except ConnectionClosed:
            pass
        self.closes.append((ws.close_code, ws.close_reason))

    async def start(self) -> None:
        self.server = await serve(self.handler, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


def test_close_code_and_reason_survive_nginx() -> None:
    pki = LabPKI().ensure()
    backend = CloseRecorder()
    runtime.run(backend.start())
    up = f"http://127.0.0.1:{backend.port}"
    cfg = ProxyConfig(name="nginx-close-test", routes=STORY_ROUTES, hosts=(HOST,),
                      upstreams={"web": up, "api": up, "chat": up})
    nginx = NginxServer(cfg, pki.cert("lab"))
    sock = bind_loopback("127.0.0.1", 0, "nginx")
    url = f"wss://{HOST}:{sock.getsockname()[1]}/ws"
    try:
        runtime.run(nginx.start(sock, pki.server_context()))

        async def client_closes() -> None:
            async with ws_connect(url, pki) as ws:
                await ws.send("hi")
                assert await asyncio.wait_for(ws.recv(), 5) == "hi"
                await ws.close(4001, "bye")

        async def backend_closes() -> tuple[int | None, str | None]:
            async with ws_connect(url, pki) as ws:
                await ws.send("close:4002:server bye")
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
                return ws.close_code, ws.close_reason

        asyncio.run(client_closes())
        deadline = time.monotonic() + 5
        while not backend.closes and time.monotonic() < deadline:
            time.sleep(0.02)
        assert backend.closes == [(4001, "bye")]
        assert asyncio.run(backend_closes()) == (4002, "server bye")
    finally:
        runtime.run(nginx.stop())
        runtime.run(backend.stop())


# -- lifecycle -----------------------------------------------------------------------------------
def test_stop_leaves_no_nginx_and_no_temp_folder_and_is_idempotent() -> None:
    lab = Lab(topology("nginx-stop-test")).start()
    try:
        prefix, pids = nginx_pids(lab.nginx_config())
        assert os.path.isdir(prefix) and all(alive(p) for p in pids) and len(pids) >= 2
        ports = [s.port for s in lab.services]
    finally:
        lab.stop()
    assert not [p for p in pids if alive(p)]
    assert not os.path.exists(prefix)
    for port in ports:  # every port is free again
        bind_loopback("127.0.0.1", port, "check").close()
    lab.stop()  # a second stop is a no-op
    assert not lab.running


@pytest.mark.parametrize("service", ["proxy", "redirect"])
def test_port_in_use_is_a_port_in_use_error_and_leaves_no_nginx(service: str) -> None:
    before = nginx_children()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        lab = Lab(topology(f"nginx-busy-{service}"), ports={service: port})
        with pytest.raises(PortInUseError) as err:
            lab.start()
    assert (err.value.service, err.value.port) == (service, port)
    assert f"port {port} for service '{service}' is already in use" in str(err.value)
    assert not lab.running
    assert nginx_children() == before
    lab.stop()


def test_port_taken_after_labkit_released_it_is_a_port_in_use_error(monkeypatch:
                                                                     pytest.MonkeyPatch) -> None:
    """labkit reserves nginx's port, then closes its socket just before nginx binds it; if another
    program takes it in that gap, nginx cannot listen. The learner should get the same error as
    for a port that was busy from the start, with nothing left running."""
    import labkit.serve.nginx as nginx_mod

    thief = socket.socket()
    real_exec = asyncio.create_subprocess_exec
    seen: dict[str, Any] = {}

    async def steal_then_exec(*args: Any, **kw: Any) -> Any:
        prefix = args[args.index("-p") + 1]
        port = int(re.findall(r"listen 127\.0\.0\.1:(\d+) ssl;",
                              Path(prefix, "nginx.conf").read_text())[0])
        thief.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        thief.bind(("127.0.0.1", port))
        thief.listen()
        seen.update(prefix=prefix, port=port)
        return await real_exec(*args, **kw)

    monkeypatch.setattr(nginx_mod.asyncio, "create_subprocess_exec", steal_then_exec)
    before = nginx_children()
    lab = Lab(topology("nginx-race-test"))
    err: Exception | None = None
    try:
        lab.start()
    except Exception as e:
        err = e
    finally:
        thief.close()
        lab.stop()
    assert err is not None, (
        "lab.start() reported a running lab although nginx could not bind its port: the "
        "readiness probe was answered by the program that took the port")
    assert not lab.running
    assert nginx_children() == before
    assert not os.path.exists(seen["prefix"])
    assert isinstance(err, PortInUseError), repr(err)
    assert err.port == seen["port"]


def test_tls_through_nginx_is_for_the_lab_name(nginx_lab: Lab) -> None:
    port = nginx_lab.info("proxy").port

    async def handshake(name: str) -> None:
        _, w = await asyncio.open_connection("127.0.0.1", port,
                                             ssl=nginx_lab.pki.client_context(),
                                             server_hostname=name)
        w.close()
        try:
            await w.wait_closed()
        except (OSError, ssl.SSLError):
            pass

    asyncio.run(handshake(HOST))
    with pytest.raises(ssl.SSLCertVerificationError):
        asyncio.run(handshake("example.com"))


# -- nginx in front of hand-made backends ---------------------------------------------------------
@contextmanager
def nginx_for(cfg: ProxyConfig, *, tls: bool = True,
              ca_pem: Path | None = None) -> Iterator[tuple[NginxServer, int]]:
    """Real nginx for ``cfg`` on a free port; ``tls=False`` starts it as the lab starts a plain
    service: with no SSL context."""
    pki = LabPKI().ensure()
    nginx = NginxServer(cfg, pki.cert("lab"), ca_pem=ca_pem)
    sock = bind_loopback("127.0.0.1", 0, "nginx")
    port = sock.getsockname()[1]
    runtime.run(nginx.start(sock, pki.server_context() if tls else None))
    try:
        yield nginx, port
    finally:
        runtime.run(nginx.stop())


class HeaderEcho:
    """An aiohttp backend answering with the request headers it got; TLS with ``cert``."""

    def __init__(self, cert: str | None = None, host: str = "localhost") -> None:
        self.cert, self.host, self.port = cert, host, 0
        self.server: AiohttpServer | None = None

    @staticmethod
    async def echo(request: web.Request) -> web.Response:
        return web.json_response(dict(request.headers))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.echo)
        sock = bind_loopback(self.host, 0, "echo")
        self.port = sock.getsockname()[1]
        self.server = AiohttpServer(app)
        ctx = LabPKI().cert(self.cert).server_context() if self.cert else None
        await self.server.start(sock, ctx)

    @property
    def origin(self) -> str:
        return f"{'https' if self.cert else 'http'}://{self.host}:{self.port}"

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()


class WsBackend:
    """A websockets echo server (the chat's library) recording every handshake's headers;
    TLS with ``cert``."""

    def __init__(self, cert: str | None = None) -> None:
        self.cert, self.port = cert, 0
        self.handshakes: list[dict[str, str]] = []
        self.server: Any = None

    def record(self, _conn: ServerConnection, request: Any) -> None:
        self.handshakes.append({k.lower(): v for k, v in request.headers.raw_items()})

    async def handler(self, ws: ServerConnection) -> None:
        try:
            async for msg in ws:
                await ws.send(msg)
        except ConnectionClosed:
            pass

    async def start(self) -> None:
        ctx = LabPKI().cert(self.cert).server_context() if self.cert else None
        self.server = await serve(self.handler, "127.0.0.1", 0, ssl=ctx,
                                  process_request=self.record)
        self.port = self.server.sockets[0].getsockname()[1]

    @property
    def origin(self) -> str:
        return f"{'https' if self.cert else 'http'}://localhost:{self.port}"

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


@contextmanager
def started(*backends: Any) -> Iterator[None]:
    for b in backends:
        runtime.run(b.start())
    try:
        yield
    finally:
        for b in backends:
            runtime.run(b.stop())


def location_block(conf: str, prefix: str) -> str:
    """The text of the location block for route ``prefix`` in a rendered config."""
    head = "location / {" if prefix == "/" else f"location ~ ^{prefix}(/|$) {{"
    start = conf.index(head)
    return conf[start:conf.index("\n        }", start)]


def server_block(conf: str) -> str:
    """The main server block, up to its first location."""
    start = conf.rindex("    server {")
    return conf[start:conf.index("\n        location ", start)]


def get(url: str) -> tuple[int, dict[str, Any] | str]:
    async def go() -> tuple[int, dict[str, Any] | str]:
        async with http_session(LabPKI()) as s:
            async with s.get(url) as r:
                text = await r.text()
                try:
                    return r.status, json.loads(text)
                except ValueError:
                    return r.status, text
    return asyncio.run(go())


# -- 1. a plain (tls=False) nginx service listens without TLS -------------------------------------
def test_plain_nginx_listens_without_tls_and_tells_the_backend_http() -> None:
    backend = HeaderEcho()
    with started(backend):
        cfg = ProxyConfig(name="nginx-plain", routes=(Route("/", "web"),), hosts=(HOST,),
                          upstreams={"web": backend.origin})
        with nginx_for(cfg, tls=False) as (nginx, port):
            conf = nginx.config_text
            status, seen = get(f"http://{HOST}:{port}/x")
    assert f"listen 127.0.0.1:{port};" in conf
    assert not re.search(r"^\s*(listen .*\bssl\b|ssl_)", conf, re.M), conf
    assert status == 200, seen
    assert isinstance(seen, dict)
    # The browser's name and port: a backend building a URL from Host keeps the port.
    assert (seen["Host"], seen["X-Forwarded-Proto"]) == (f"{HOST}:{port}", "http")


def test_tls_nginx_is_tls_and_refuses_plain_http() -> None:
    """The twin, and what the plain service used to get: a TLS listener, where a plain request
    is answered 400 (nginx: "The plain HTTP request was sent to HTTPS port")."""
    backend = HeaderEcho()
    with started(backend):
        cfg = ProxyConfig(name="nginx-tls", routes=(Route("/", "web"),), hosts=(HOST,),
                          upstreams={"web": backend.origin})
        with nginx_for(cfg, tls=True) as (nginx, port):
            conf = nginx.config_text
            plain_status, plain_body = get(f"http://{HOST}:{port}/x")
            status, seen = get(f"https://{HOST}:{port}/x")
    assert f"listen 127.0.0.1:{port} ssl;" in conf and "ssl_certificate " in conf
    assert plain_status == 400 and "plain HTTP request was sent to HTTPS port" in str(plain_body)
    assert status == 200 and isinstance(seen, dict)
    assert (seen["Host"], seen["X-Forwarded-Proto"]) == (f"{HOST}:{port}", "https")


def test_a_redirect_to_a_plain_nginx_is_refused_with_the_fix() -> None:
    cfg = ProxyConfig(name="nginx-plain-redirect", routes=(Route("/", "web"),), hosts=(HOST,),
                      upstreams={"web": "http://localhost:1"})
    with pytest.raises(ValueError, match=r"serves plain HTTP \(tls=False\): an HTTP->HTTPS "
                                         r"redirect to it cannot work"):
        render(cfg, port=2, cert=None, prefix="/tmp/x", redirect_ports=(3,), tls=False)


# -- 2. only websocket routes upgrade --------------------------------------------------------------
def test_only_websocket_locations_send_upgrade_and_they_repeat_the_forwarded_headers(
        nginx_lab: Lab) -> None:
    conf = nginx_lab.nginx_config("proxy")
    server, ws = server_block(conf), location_block(conf, "/ws")
    assert "proxy_set_header Upgrade" not in server
    assert "proxy_set_header Connection" not in server
    for prefix in ("/api", "/"):
        assert "proxy_set_header" not in location_block(conf, prefix), prefix
    # A location with a proxy_set_header of its own inherits none: the ws one repeats them all.
    for line in ("Host              $host:$server_port",
                 "X-Forwarded-For   $proxy_add_x_forwarded_for",
                 "X-Forwarded-Proto $scheme", "X-Forwarded-Host  $host:$server_port",
                 "Upgrade           $http_upgrade", "Connection        $connection_upgrade"):
        assert f"proxy_set_header {line};" in ws, line
        if not line.startswith(("Upgrade", "Connection")):
            assert f"proxy_set_header {line};" in server, line


@pytest.mark.parametrize("websocket", [False, True])
def test_a_websocket_handshake_upgrades_only_on_a_websocket_route(websocket: bool) -> None:
    """As labkit's own proxy: a route not declared websocket=True forwards the handshake without
    Upgrade (nginx sends Connection: close), and the chat's websockets server answers 426."""
    chat = WsBackend()
    with started(chat):
        cfg = ProxyConfig(name=f"nginx-ws-{websocket}", hosts=(HOST,),
                          routes=(Route("/ws", "chat", websocket=websocket),),
                          upstreams={"chat": chat.origin})
        with nginx_for(cfg) as (_, port):
            async def handshake() -> tuple[int, str | None]:
                try:
                    async with ws_connect(f"wss://{HOST}:{port}/ws", LabPKI()) as ws:
                        await ws.send("hi")
                        return 101, str(await asyncio.wait_for(ws.recv(), 5))
                except InvalidStatus as e:
                    return e.response.status_code, None

            status, echoed = asyncio.run(handshake())
    [seen] = chat.handshakes
    assert (seen["host"], seen["x-forwarded-proto"]) == (f"{HOST}:{port}", "https")
    if websocket:
        assert (status, echoed) == (101, "hi")
        assert (seen["upgrade"].lower(), seen["connection"].lower()) == ("websocket", "upgrade")
    else:
        assert status == 426
        assert "upgrade" not in seen and seen["connection"].lower() == "close"


# -- 3. https upstreams, verified against the lab CA ----------------------------------------------
def test_https_upstreams_render_verified_by_their_own_name() -> None:
    pki = LabPKI().ensure()
    cfg = ProxyConfig(name="nginx-https-render", routes=STORY_ROUTES, hosts=(HOST,),
                      upstreams={"web": "http://localhost:1", "api": "https://api.lab.test:2",
                                 "chat": "https://localhost:3"})
    conf = render(cfg, port=9, cert=pki.cert("lab"), prefix="/tmp/x", ca_pem=pki.ca_pem)
    api, chat, web_ = (location_block(conf, p) for p in ("/api", "/ws", "/"))
    assert "upstream api { server 127.0.0.1:2; }" in conf  # nginx cannot resolve lab names
    for block, name in ((api, "api.lab.test"), (chat, "localhost")):
        assert "proxy_ssl_verify on;" in block
        assert f"proxy_ssl_trusted_certificate {pki.ca_pem};" in block
        assert "proxy_ssl_server_name on;" in block
        assert f"proxy_ssl_name {name};" in block
    assert "proxy_pass https://api;" in api and "proxy_pass https://chat;" in chat
    assert "proxy_pass http://web;" in web_ and "proxy_ssl" not in web_


def test_an_https_upstream_without_a_ca_is_an_error_that_says_what_to_pass() -> None:
    cfg = ProxyConfig(name="nginx-no-ca", routes=(Route("/api", "api"),), hosts=(HOST,),
                      upstreams={"api": "https://localhost:2"})
    with pytest.raises(UpstreamCAMissingError) as err:
        render(cfg, port=9, cert=LabPKI().cert("lab"), prefix="/tmp/x")
    assert str(err.value) == (
        "nginx 'nginx-no-ca' forwards to https upstreams (api) and must verify their "
        "certificates, but no CA was given. Pass ca_pem= the lab CA (LabPKI().ca_pem) to "
        "NginxServer / render.")
    # NginxServer.start renders before anything runs: same error, nothing left behind.
    nginx = NginxServer(cfg, LabPKI().cert("lab"))
    sock = bind_loopback("127.0.0.1", 0, "nginx")
    with pytest.raises(UpstreamCAMissingError):
        runtime.run(nginx.start(sock, LabPKI().server_context()))
    assert nginx.proc is None and nginx.prefix is None and sock.fileno() == -1


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])
def test_an_https_upstream_by_ip_is_refused_with_the_reason(host: str) -> None:
    """nginx matches proxy_ssl_name against DNS names only: verifying an IP would 502 always."""
    cfg = ProxyConfig(name="nginx-ip", routes=(Route("/api", "api"),), hosts=(HOST,),
                      upstreams={"api": f"https://{host}:2"})
    with pytest.raises(UpstreamAddressError, match="checks an upstream certificate's DNS names "
                                                   "only, never its IP addresses"):
        render(cfg, port=9, cert=LabPKI().cert("lab"), prefix="/tmp/x", ca_pem=LabPKI().ca_pem)
    # Plain upstreams by IP need no name: they render.
    plain = replace(cfg, upstreams={"api": f"http://{host}:2"})
    assert f"server {host}:2;" in render(plain, port=9, cert=LabPKI().cert("lab"),
                                         prefix="/tmp/x")


@pytest.mark.parametrize(("cert", "status"), [("lab", 200), ("rogue", 502), ("wrong-name", 502)])
def test_an_https_upstream_is_verified_like_labkits_proxy(cert: str, status: int) -> None:
    """A lab certificate for the upstream's name: 200. The twins: a rogue CA's certificate, and a
    lab certificate for another name, are refused (502), as labkit's own proxy refuses them."""
    api, chat = HeaderEcho(cert), WsBackend(cert)
    pki = LabPKI().ensure()
    with started(api, chat):
        cfg = ProxyConfig(name=f"nginx-https-{cert}", hosts=(HOST,),
                          routes=(Route("/api", "api"), Route("/ws", "chat", websocket=True)),
                          upstreams={"api": api.origin, "chat": chat.origin})
        with nginx_for(cfg, ca_pem=pki.ca_pem) as (nginx, port):
            got, seen = get(f"https://{HOST}:{port}/api/hello")

            async def handshake() -> int:
                try:
                    async with ws_connect(f"wss://{HOST}:{port}/ws", pki) as ws:
                        await ws.send("hi")
                        assert await asyncio.wait_for(ws.recv(), 5) == "hi"
                        return 101
                except InvalidStatus as e:
                    return e.response.status_code

            ws_status = asyncio.run(handshake())
            time.sleep(0.1)  # let nginx write its error lines
            errors = "\n".join(nginx.log_tail())
    assert got == status, seen
    assert ws_status == (101 if status == 200 else 502)
    if status == 200:
        assert isinstance(seen, dict) and seen["Host"] == f"{HOST}:{port}"
    elif cert == "rogue":
        assert "upstream SSL certificate verify error" in errors, errors
    else:
        assert 'upstream SSL certificate does not match "localhost"' in errors, errors


# -- the browser in front of nginx ----------------------------------------------------------------
@pytest.mark.browser
def test_nginxs_502_for_a_stopped_backend_is_observed_at_once(browser: Browser) -> None:
    """nginx's own 502 page is not labkit's page: the visit reports the status without waiting
    out the page's timeout. The twin: with the backend up, the page runs its steps."""
    lab = Lab(topology("nginx-browser-502"), browser=browser, pki=browser.pki).start()
    try:
        ok = lab.visit("proxy")
        assert (ok.status, ok.navigation_error) == (200, None)
        assert ok.steps and all(s.state == "ok" for s in ok.steps.values()), ok.steps
        lab.stop_service("web")
        started = time.monotonic()
        obs = lab.visit("proxy")
        took = time.monotonic() - started
    finally:
        lab.stop()
    assert took < 5.0, f"the visit waited {took:.1f} s for nginx's 502 page"
    assert (obs.status, obs.navigation_error, obs.steps) == (502, None, {})


@pytest.mark.parametrize("size", [1024, 20 * 1024])
def test_bodies_over_nginxs_buffer_reach_the_api(nginx_lab: Lab, size: int) -> None:
    """nginx buffers a body over 8 KiB to its client_body/ temp folder. As root its workers run as
    nobody and used to get 'Permission denied' there: a 500 for every such body. 1 KiB is the
    twin that never touched the folder."""
    from labkit.serve.clients import http_session

    async def go() -> int:
        body = json.dumps({"user": "alice", "pad": "x" * size})
        async with http_session(nginx_lab.pki) as s, s.post(
                nginx_lab.url("proxy", "/api/login"), data=body,
                headers={"Content-Type": "application/json"}) as r:
            return r.status

    assert asyncio.run(go()) == 200


# -- nothing left behind, nothing held for ever ------------------------------------------------
def test_stop_with_a_websocket_open_finishes_quickly_and_leaves_no_nginx() -> None:
    """A browser-like client (no pings) joined through /ws; stopping the lab used to hang 120 s
    (nginx's graceful stop waits for the socket; asyncio waited on a pipe the worker held)."""
    lab = Lab(topology("nginx-stop-open-socket")).start()
    prefix, pids = nginx_pids(lab.nginx_config("proxy"))
    closed: list[int | None] = []

    async def client(ready: asyncio.Event) -> None:
        async with ws_connect(lab.ws_url("proxy"), lab.pki,
                              origin=lab.origin("proxy"), ping_interval=None) as ws:
            await ws.send(json.dumps({"type": "join", "room": "general"}))
            await ws.recv()
            ready.set()
            try:
                await asyncio.wait_for(ws.recv(), 30)
            except ConnectionClosed:
                pass
            closed.append(ws.close_code)

    async def go() -> float:
        ready = asyncio.Event()
        task = asyncio.ensure_future(client(ready))
        await asyncio.wait_for(ready.wait(), 10)
        t0 = time.monotonic()
        await asyncio.to_thread(lab.stop)
        seconds = time.monotonic() - t0
        await asyncio.wait_for(task, 10)
        return seconds

    seconds = asyncio.run(go())
    assert seconds < 5, f"stop took {seconds:.1f}s"
    assert closed == [1001]  # the chat server's "going away", through nginx
    assert not any(alive(p) for p in pids) and not Path(prefix).exists()


def test_a_killed_master_leaves_no_worker_after_stop() -> None:
    lab = Lab(topology("nginx-killed-master")).start()
    _, pids = nginx_pids(lab.nginx_config("proxy"))
    master = int(Path(nginx_pids(lab.nginx_config("proxy"))[0], "nginx.pid").read_text())
    os.kill(master, 9)
    time.sleep(0.2)
    t0 = time.monotonic()
    lab.stop()
    assert time.monotonic() - t0 < 5
    assert not survivors(pids, 3), "an nginx worker outlived its master and the lab"


@pytest.mark.parametrize("sig", [9, 1])
def test_nginx_dies_with_a_killed_labkit(sig: int) -> None:
    """SIGKILL (a killed kernel) or SIGHUP (a closed terminal) on `labkit up`: its nginx must not
    go on serving, and the next start finds nothing of it."""
    import subprocess
    import sys

    with child([sys.executable, "-m", "labkit", "up", "--scenario", "nginx-proxy", "--json"],
               stderr=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        port = next(s["port"] for s in info["services"] if s["name"] == "proxy")
        pids = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)
                if "nginx" in p.name()}
        assert pids
        os.kill(proc.pid, sig)
        proc.wait(10)
        assert not survivors(pids, 5), "nginx outlived the labkit that started it"
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0  # nobody listens there any more


def test_doctor_stops_an_nginx_whose_labkit_died() -> None:
    """The next start (or `labkit doctor`) finds a dead labkit's nginx through its pid file and
    stops it before its folder is swept; a live labkit's nginx is left alone (the twin)."""
    import subprocess
    import sys

    from labkit.serve import nginx as nginx_mod
    from labkit.serve.tempdirs import OWNER

    lab = Lab(topology("nginx-orphan")).start()
    try:
        prefix, pids = nginx_pids(lab.nginx_config("proxy"))
        assert nginx_mod.stop_leftovers() == 0 and all(alive(p) for p in pids)  # ours: alive
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout.strip()
        Path(prefix, OWNER).write_text(dead)  # as if the labkit that started it was killed
        assert nginx_mod.stop_leftovers() == 1
        assert not survivors(pids, 3) and not Path(prefix).exists()
    finally:
        lab.stop()
