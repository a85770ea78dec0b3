"""Faults on purpose: a backend killed mid-conversation, a lab restarted under its clients, a lab
stopped while the browser is mid-visit. Nothing hangs, nothing leaks, the lab recovers without a
restart."""

from __future__ import annotations

import asyncio
import glob
import json
import os
import tempfile
import threading
import time

import psutil
import pytest
from websockets.exceptions import ConnectionClosed

from labkit import Lab, LabError, messenger, runtime
from labkit.model import scenarios
from labkit.observe.browser import Browser
from labkit.serve.clients import http_session, ws_connect


def _joined(lab: Lab, service: str, path: str = "/ws"):  # type: ignore[no-untyped-def]
    # As the real page would: its Origin is the proxy's (the chat server allow-lists it).
    origin = lab.origin(service).replace("wss://", "https://").replace("ws://", "http://")
    return ws_connect(lab.ws_url(service, path), lab.pki, origin=origin)


async def _get(lab: Lab, service: str, path: str) -> int:
    async with http_session(lab.pki) as s, s.get(lab.url(service, path)) as r:
        await r.read()
        return r.status


def test_killed_backend_closes_the_proxied_socket_with_1014_and_recovers() -> None:
    with Lab(scenarios.get("reverse-proxy").topology) as lab:
        async def go() -> tuple[int | None, float]:
            async with _joined(lab, "proxy") as ws:
                await ws.send(json.dumps({"type": "join", "room": "general"}))
                await ws.recv()
                t0 = time.monotonic()
                await asyncio.get_running_loop().run_in_executor(
                    None, lambda: lab.stop_service("chat", abrupt=True))
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
                return ws.close_code, time.monotonic() - t0

        code, took = asyncio.run(go())
        assert code == 1014 and took < 3
        # Its twin: with the backend back, a new connection works — no lab restart.
        lab.start_service("chat")

        async def again() -> str:
            async with _joined(lab, "proxy") as ws:
                await ws.send(json.dumps({"type": "join", "room": "general"}))
                return json.loads(await ws.recv())["type"]

        assert asyncio.run(again()) == "history"


def test_a_down_api_gives_502_then_recovers() -> None:
    with Lab(scenarios.get("reverse-proxy").topology) as lab:
        assert asyncio.run(_get(lab, "proxy", "/api/hello")) == 200
        lab.stop_service("api")
        assert asyncio.run(_get(lab, "proxy", "/api/hello")) == 502
        lab.start_service("api")
        assert asyncio.run(_get(lab, "proxy", "/api/hello")) == 200


def test_the_faults_from_async_code() -> None:
    """A Jupyter cell runs in its own event loop: the async twins work from any loop, and a
    service stopped there is down for every client until it is started again."""
    async def cell() -> list[int]:
        async with Lab(scenarios.get("reverse-proxy").topology) as lab:
            codes = [await _get(lab, "proxy", "/api/hello")]
            await lab.astop_service("api")
            codes.append(await _get(lab, "proxy", "/api/hello"))
            await lab.astart_service("api")
            codes.append(await _get(lab, "proxy", "/api/hello"))
            return codes

    assert asyncio.run(cell()) == [200, 502, 200]


@pytest.mark.browser
def test_the_browser_sees_a_down_chat_backend_and_its_return(browser: Browser) -> None:
    with Lab(scenarios.get("reverse-proxy").topology, browser=browser) as lab:
        lab.stop_service("chat", abrupt=True)
        down = lab.visit("proxy")
        assert down.steps["socket"].state == "blocked"
        assert any("Unexpected response code: 502" in m for m in down.messages())
        lab.start_service("chat")
        assert lab.visit("proxy").verdict().outcome == "allowed"


def test_restarting_the_lab_under_connected_clients() -> None:
    lab = Lab(messenger(name="faults-restart")).start()
    try:
        async def clients() -> list[int | None]:
            socks = [await _joined(lab, "chat") for _ in range(3)]
            for ws in socks:
                await ws.send(json.dumps({"type": "join", "room": "general"}))
                await ws.recv()
            await asyncio.get_running_loop().run_in_executor(None, lab.stop)
            codes = []
            for ws in socks:
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
                codes.append(ws.close_code)
            return codes

        assert asyncio.run(clients()) == [1001, 1001, 1001]  # going away, promptly
        lab.start()
        assert asyncio.run(_get(lab, "api", "/api/hello")) == 200
    finally:
        lab.stop()


def test_stopping_the_lab_mid_visit_neither_hangs_nor_leaks() -> None:
    lab = Lab(messenger(name="faults-midvisit")).start()
    outcome: list[object] = []

    def visit() -> None:
        try:
            outcome.append(lab.visit(timeout=8))
        except LabError as e:
            outcome.append(e)

    t = threading.Thread(target=visit)
    t.start()
    time.sleep(0.4)  # the browser is starting or loading the page
    lab.stop()
    t.join(30)
    assert not t.is_alive(), "the visit hung after the lab stopped"
    assert outcome, "the visit neither returned nor raised a LabError"
    assert not lab.browser.running


def test_fault_cycles_leak_nothing() -> None:
    def snapshot() -> tuple[int, int, int, int]:
        # What these cycles start: nginx processes and their temp folders. (A shared browser of
        # this test session may start renderers at any time, so Chromium is not counted here.)
        me = psutil.Process()
        temps = len(glob.glob(os.path.join(tempfile.gettempdir(), "labkit-nginx-*")))
        kids = []
        for p in me.children(recursive=True):
            try:  # a browser renderer may exit between the listing and the look
                if p.status() != psutil.STATUS_ZOMBIE and p.name() == "nginx":
                    kids.append(p)
            except psutil.NoSuchProcess:
                pass
        return len(os.listdir("/proc/self/fd")), threading.active_count(), len(kids), temps

    runtime.loop()  # the one labkit thread exists before counting
    # One cycle first: the loop's executor keeps the one worker thread a lab start uses (to
    # load the CA off the loop) for later starts; a leak is growth from cycle to cycle.
    with Lab(scenarios.get("nginx-proxy").topology):
        pass
    before = snapshot()
    for _ in range(3):
        with Lab(scenarios.get("nginx-proxy").topology) as lab:
            lab.stop_service("chat", abrupt=True)
            assert asyncio.run(_get(lab, "proxy", "/api/hello")) == 200
            lab.start_service("chat")
    time.sleep(0.5)
    after = snapshot()
    assert after[1:] == before[1:], (before, after)
    assert after[0] <= before[0] + 2, (before, after)  # fds: no growth beyond noise


def test_stopping_the_lab_sends_the_browser_exactly_one_close_frame() -> None:
    """The proxy says goodbye (1001) when the lab stops; the backend's own close frame must not
    follow it, or Chromium reports 'Close received after close'."""
    import base64
    import ssl

    from labkit.notebook.wire import parse_frames

    lab = Lab(scenarios.get("reverse-proxy").topology).start()
    try:
        port = lab.info("proxy").port

        async def go() -> bytes:
            ctx = lab.pki.client_context()
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                           server_hostname="app.lab.test")
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write((f"GET /ws HTTP/1.1\r\nHost: app.lab.test:{port}\r\n"
                          f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                          f"Origin: {lab.origin('proxy')}\r\n\r\n").encode())
            head = await reader.readuntil(b"\r\n\r\n")
            assert b" 101 " in head.split(b"\r\n")[0]
            await asyncio.get_running_loop().run_in_executor(None, lab.stop)
            data = b""
            try:
                while chunk := await asyncio.wait_for(reader.read(65536), 5):
                    data += chunk
            except (ConnectionError, ssl.SSLError):
                pass
            writer.close()
            return data

        frames = parse_frames(asyncio.run(go()))
        closes = [f for f in frames if f.opcode == 8]
        assert len(closes) == 1, [str(f) for f in frames]
        assert int.from_bytes(closes[0].payload[:2], "big") == 1001
    finally:
        lab.stop()
