"""The cloud load balancer's idle timeout, shown for real: a silent WebSocket is dropped, one that
pings stays up. Cloud load balancers close connections that carry no data for their idle timeout
(60 s by default on the big clouds); WebSocket pings (RFC 6455 §5.5.2) count as data.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from websockets.exceptions import ConnectionClosed

from .. import runtime
from ..lab import Lab
from ..model.routing import Route
from ..model.topology import Page, Service, Topology
from ..serve.clients import ws_connect
from . import display


@dataclass(frozen=True)
class IdleResult:
    client: str
    ping_every: float | None
    alive_after: float  # seconds the socket stayed open (capped at the wait)
    closed: bool
    close_code: int | None

    def row(self) -> str:
        fate = (f"dropped after {self.alive_after:.1f} s (close code {self.close_code})"
                if self.closed else f"still open after {self.alive_after:.1f} s")
        return f"{self.client:32} {fate}"


class IdleDemo:
    def __init__(self, idle_timeout: float, results: list[IdleResult]) -> None:
        self.idle_timeout, self.results = idle_timeout, results

    def __repr__(self) -> str:
        return (f"load balancer idle timeout: {self.idle_timeout:g} s\n"
                + "\n".join(r.row() for r in self.results))

    def _repr_html_(self) -> str:
        return display.idle_demo_html(self)


def topology(idle_timeout: float) -> Topology:
    return Topology(
        name="lb-idle", title="a load balancer in front of the chat server",
        services=(
            Service("chat", "chat", tls=False),
            Service("lb-ws", "proxy", host="ws.lab.test", cert="own",
                    routes=(Route("/", "chat", websocket=True),), idle_timeout=idle_timeout),
        ),
        page=Page(api=None, ws=None, steps=()),
    )


async def _client(lab: Lab, ping_every: float | None, wait: float) -> IdleResult:
    name = "silent chat client" if ping_every is None else f"client pinging every {ping_every:g} s"
    t0 = time.monotonic()
    # websockets' own keepalive off: this demo decides who pings.
    async with ws_connect(lab.ws_url("lb-ws"), lab.pki, ping_interval=None) as ws:
        await ws.send(json.dumps({"type": "join", "room": "general"}))
        await ws.recv()
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < wait:
                if ping_every is None:
                    await asyncio.wait_for(ws.recv(), timeout=wait)
                else:
                    await asyncio.sleep(ping_every)
                    await asyncio.wait_for(await ws.ping(), timeout=2)
        except (ConnectionClosed, asyncio.TimeoutError):
            pass
        closed = ws.close_code is not None or ws.state.name != "OPEN"
        code = ws.close_code if closed else None
        if closed and code is None:
            code = 1006
        alive = min(time.monotonic() - t0, wait)
    return IdleResult(name, ping_every, alive, closed, code)


def idle_demo(idle_timeout: float = 1.0, wait: float = 2.5, ping_every: float = 0.3) -> IdleDemo:
    """Two clients through a load balancer with a short idle timeout: one silent, one pinging."""

    async def go() -> list[IdleResult]:
        lab = Lab(topology(idle_timeout))
        await lab.astart()
        try:
            return list(await asyncio.gather(_client(lab, None, wait),
                                             _client(lab, ping_every, wait)))
        finally:
            await lab.astop()

    return IdleDemo(idle_timeout, runtime.run(go()))
