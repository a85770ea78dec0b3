"""What a WebSocket relay costs: round trips and throughput, direct vs labkit's proxy vs nginx.

Four paths to the same echo backend (a small ``websockets`` server), measured side by side in one
run, loopback only, TLS from a throwaway lab CA:

- direct:        client --wss--> echo (TLS on the backend itself);
- labkit proxy:  client --wss--> labkit.serve.proxy.ReverseProxy --ws--> echo;
- nginx:         client --wss--> nginx (labkit.serve.nginx.NginxServer, same route) --ws--> echo;
- python floor:  client --wss--> the least a Python relay on the same loop can do --ws--> echo:
                 TLS terminated by the loop, then every byte written on as it comes, nothing
                 parsed or checked (no routes, no Host check, no limits: not a proxy anyone
                 should run). It shows how much of labkit's gap to nginx is labkit's own code
                 and how much is the language and loop it runs on.

Latency: ``--round-trips`` echo round trips on one connection, one message in flight (p50, p99).
Throughput: ``--clients`` connections, each sending ``--messages`` messages one after the other
(each waits for its echo), all at once: echoed messages per second, connection set-up excluded.
Each measurement is repeated ``--repeats`` times, the paths' order rotating, on a machine shared
with other work: latency percentiles pool every repeat, throughput is the median of the repeats,
and each ratio is also given paired (the median of the ratios within one repeat), which the
verdicts use because it cancels most of the drift in the machine's load.

Process layout, for fairness: the echo backend, labkit's proxy and nginx each run in their own
process, and the clients in this one. nginx is a separate process anyway; had labkit's proxy shared
a Python process (one GIL, one loop) with the clients or the echo server, it would have competed
with them for CPU that nginx never has to share. The CPU each process used is printed, to show
which one limits the throughput (with a Python client and a Python echo server, the relay is not
always the bottleneck).

Clients offer no permessage-deflate (``--deflate`` to offer it, as browsers do: labkit's proxy then
compresses toward the client itself, while nginx passes the extension through to the backend).

``--one-core`` pins every process (clients, echo, relays) to one CPU: a round trip then costs the
sum of the CPU work along it, without the scheduler's choice of cores in it — a steadier view of
what each relay costs per message than the default, where the processes spread over the cores.

Targets (issue 12): through labkit's proxy, p50 no slower than through nginx and at most 2x
direct; throughput at least 0.8x nginx's. Prints a table and the ratios; exits 0.

    .venv/bin/python bench/ws_relay.py [--round-trips 2000] [--clients 200] [--messages 50]
                                       [--one-core]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

TARGET_P50_VS_NGINX = 1.0
TARGET_P50_VS_DIRECT = 2.0
TARGET_THROUGHPUT_VS_NGINX = 0.8
#: Connections opened at once: the listeners' backlog is 128, and a burst of TLS handshakes
#: beyond it would measure SYN retries, not the relay.
CONNECT_AT_ONCE = 25
PATHS = ("direct", "labkit proxy", "nginx", "python floor")


# -- the server processes ------------------------------------------------------------------------
async def _until_stdin_closes() -> None:
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def serve_echo() -> None:
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    from labkit.serve.pki import LabPKI

    async def echo(ws: ServerConnection) -> None:
        try:
            async for msg in ws:
                await ws.send(msg)
        except ConnectionClosed:  # a client or relay that went away is not the echo's problem
            pass

    ctx = LabPKI().cert("lab").server_context()
    async with serve(echo, "127.0.0.1", 0, ssl=ctx, max_size=2**20) as tls, \
            serve(echo, "127.0.0.1", 0, max_size=2**20) as plain:
        ports = {"tls": tls.sockets[0].getsockname()[1], "plain": plain.sockets[0].getsockname()[1]}
        print(json.dumps(ports), flush=True)
        await _until_stdin_closes()


def relay_config(echo_port: int) -> Any:
    from labkit.model.routing import Route
    from labkit.serve.proxy import ProxyConfig

    return ProxyConfig(name="relay", routes=(Route("/ws", "echo", websocket=True),),
                       upstreams={"echo": f"http://127.0.0.1:{echo_port}"}, hosts=("localhost",))


async def serve_proxy(echo_port: int) -> None:
    from labkit.lab import bind_loopback
    from labkit.serve.pki import LabPKI
    from labkit.serve.proxy import ReverseProxy

    cfg = relay_config(echo_port)
    proxy = ReverseProxy(cfg)
    sock = bind_loopback("localhost", 0, "proxy")  # as a Lab binds it
    port = sock.getsockname()[1]
    await proxy.start(sock, LabPKI().cert("lab").server_context())
    print(json.dumps({"port": port}), flush=True)
    try:
        await _until_stdin_closes()
    finally:
        await proxy.stop()


class _FloorUp(asyncio.Protocol):
    def __init__(self, down: asyncio.Transport) -> None:
        self.down = down

    def data_received(self, data: bytes) -> None:
        self.down.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.down.close()


class _FloorDown(asyncio.Protocol):
    """The python floor: bytes both ways, as they come (the handshake too), nothing checked."""

    def __init__(self, echo_port: int) -> None:
        self.echo_port = echo_port
        self.up: asyncio.Transport | None = None
        self.early: list[bytes] = []
        self.task: asyncio.Task[None] | None = None  # held: else it may be collected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.down: asyncio.Transport = transport  # type: ignore[assignment]
        self.task = asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        up, _ = await asyncio.get_running_loop().create_connection(
            lambda: _FloorUp(self.down), "127.0.0.1", self.echo_port)
        self.up = up  # type: ignore[assignment]
        for data in self.early:
            up.write(data)

    def data_received(self, data: bytes) -> None:
        if self.up is None:
            self.early.append(data)
        else:
            self.up.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.up is not None:
            self.up.close()


async def serve_floor(echo_port: int) -> None:
    from labkit.lab import bind_loopback
    from labkit.serve.pki import LabPKI

    sock = bind_loopback("localhost", 0, "floor")
    server = await asyncio.get_running_loop().create_server(
        lambda: _FloorDown(echo_port), sock=sock, ssl=LabPKI().cert("lab").server_context())
    print(json.dumps({"port": sock.getsockname()[1]}), flush=True)
    try:
        await _until_stdin_closes()
    finally:
        server.close()


class Child:
    """This script in another role (``--serve echo|proxy``); it stops when its stdin closes."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the {args} server did not start")
        self.info: dict[str, int] = json.loads(line)

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the clients ---------------------------------------------------------------------------------
@dataclass
class Result:
    rtts_us: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    cpu: dict[str, list[float]] = field(default_factory=dict)  # process -> share of a core


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile: one of the measured values."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered))) - 1))]


def _connect(url: str, deflate: bool) -> Any:
    from labkit.serve.clients import ws_connect

    return ws_connect(url, host="127.0.0.1", compression="deflate" if deflate else None,
                      max_size=2**20, ping_interval=None)


async def latency(url: str, n: int, message: str, deflate: bool) -> list[float]:
    async with _connect(url, deflate) as ws:
        for _ in range(min(200, n)):  # warm up: caches, the relay's first-frame paths
            await ws.send(message)
            await ws.recv()
        out = []
        for _ in range(n):
            t = time.perf_counter_ns()
            await ws.send(message)
            await ws.recv()
            out.append((time.perf_counter_ns() - t) / 1000)
        return out


async def throughput(url: str, clients: int, messages: int, message: str, deflate: bool,
                     procs: dict[str, list[psutil.Process]]) -> tuple[float, dict[str, float]]:
    gate = asyncio.Semaphore(CONNECT_AT_ONCE)

    async def open_one() -> Any:
        async with gate:
            return await _connect(url, deflate)

    opened = await asyncio.gather(*(open_one() for _ in range(clients)), return_exceptions=True)
    conns = [c for c in opened if not isinstance(c, BaseException)]
    if len(conns) < clients:
        await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
        error = next(c for c in opened if isinstance(c, BaseException))
        raise SystemExit(f"{url}: only {len(conns)} of {clients} clients connected ({error})")

    async def run(ws: Any) -> None:
        for _ in range(messages):
            await ws.send(message)
            await ws.recv()

    try:
        cpu0 = {k: _cpu(ps) for k, ps in procs.items()}
        t = time.perf_counter()
        await asyncio.gather(*(run(ws) for ws in conns))
        wall = time.perf_counter() - t
        cpu = {k: (_cpu(ps) - cpu0[k]) / wall for k, ps in procs.items()}
    finally:
        await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    return clients * messages / wall, cpu


def _cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


async def capacity(url: str, n: int, deflate: bool) -> tuple[int, str | None]:
    """How many of ``n`` concurrent WebSockets the relay holds open; the first refusal (and how
    long it took) if it did not hold them all. Stops opening more after the first refusal."""
    gate, refused = asyncio.Semaphore(CONNECT_AT_ONCE), asyncio.Event()
    first: list[str] = []

    async def one() -> Any:
        async with gate:
            if refused.is_set():
                return None
            t = time.perf_counter()
            try:
                return await _connect(url, deflate)
            except Exception as e:
                refused.set()
                first.append(f"{e} after {time.perf_counter() - t:.1f} s")
                return None

    conns = [c for c in await asyncio.gather(*(one() for _ in range(n))) if c is not None]
    await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
    return len(conns), (first[0] if first else None)


async def measure(args: argparse.Namespace, echo: Child, proxies: dict[str, Child]
                  ) -> tuple[dict[str, Result], str]:
    from labkit.lab import bind_loopback
    from labkit.serve.nginx import NginxServer
    from labkit.serve.pki import LabPKI

    pki = LabPKI()
    nginx = NginxServer(relay_config(echo.info["plain"]), pki.cert("lab"))
    sock = bind_loopback("localhost", 0, "nginx")
    nginx_port = sock.getsockname()[1]
    # The context only says "this listener speaks TLS": nginx reads the certificate files.
    await nginx.start(sock, pki.server_context("lab"))
    try:
        assert nginx.proc is not None
        me, echo_p = psutil.Process(), psutil.Process(echo.proc.pid)
        wss = lambda port: f"wss://localhost:{port}/ws"  # noqa: E731
        urls = {"direct": wss(echo.info["tls"]), "labkit proxy": wss(proxies["as is"].info["port"]),
                "nginx": wss(nginx_port), "python floor": wss(proxies["floor"].info["port"])}
        relays = {"direct": [], "labkit proxy": [psutil.Process(proxies["as is"].proc.pid)],
                  "nginx": [master := psutil.Process(nginx.proc.pid), *master.children()],
                  "python floor": [psutil.Process(proxies["floor"].proc.pid)]}
        if args.one_core:
            for p in (me, echo_p, *(p for ps in relays.values() for p in ps)):
                p.cpu_affinity([min(me.cpu_affinity())])
        held, refusal = await capacity(urls["labkit proxy"], args.clients, args.deflate)
        note = f"labkit proxy as shipped held {held} of {args.clients} concurrent WebSockets"
        if refusal:  # the proxy has no connection cap (a relayed socket opens its own)
            note += f"; the next was refused: {refusal}"
        print(note, flush=True)
        message = json.dumps({"type": "say", "text": "x" * max(0, args.size - 30)})
        results = {p: Result() for p in PATHS}
        for r in range(args.repeats):
            shift = r % len(PATHS)
            for path in PATHS[shift:] + PATHS[:shift]:  # rotate: no path always goes first
                res = results[path]
                res.rtts_us += await latency(urls[path], args.round_trips, message, args.deflate)
                procs = {"client": [me], "relay": relays[path], "echo": [echo_p]}
                rate, cpu = await throughput(urls[path], args.clients, args.messages,
                                             message, args.deflate, procs)
                res.rates.append(rate)
                for k, v in cpu.items():
                    res.cpu.setdefault(k, []).append(v)
                print(f"  repeat {r + 1}/{args.repeats} {path:<13} p50 "
                      f"{statistics.median(res.rtts_us[-args.round_trips:]):7.0f} µs  "
                      f"{rate:8.0f} msg/s", flush=True)
        return results, note
    finally:
        await nginx.stop()


#: (label, path a, path b, metric, target as (comparison, bound) or None) for the ratio a / b.
RATIOS: tuple[tuple[str, str, str, str, tuple[str, float] | None], ...] = (
    ("p50 labkit proxy / direct", "labkit proxy", "direct", "p50", ("<=", TARGET_P50_VS_DIRECT)),
    ("p50 labkit proxy / nginx", "labkit proxy", "nginx", "p50", ("<=", TARGET_P50_VS_NGINX)),
    ("p50 nginx / direct", "nginx", "direct", "p50", None),
    ("p50 python floor / nginx", "python floor", "nginx", "p50", None),
    ("p50 labkit proxy / floor", "labkit proxy", "python floor", "p50", None),
    ("msg/s labkit proxy / nginx", "labkit proxy", "nginx", "rate",
     (">=", TARGET_THROUGHPUT_VS_NGINX)),
    ("msg/s labkit proxy / direct", "labkit proxy", "direct", "rate", None),
    ("msg/s nginx / direct", "nginx", "direct", "rate", None),
    ("msg/s python floor / nginx", "python floor", "nginx", "rate", None),
)


def report(results: dict[str, Result], note: str, args: argparse.Namespace) -> None:
    print(f"\nWebSocket relay, {args.repeats} repeats; latency: {args.round_trips} round trips "
          f"per repeat; throughput: {args.clients} clients x {args.messages} messages "
          f"({args.size} B, deflate {'on' if args.deflate else 'off'})"
          f"{'; every process on one CPU' if args.one_core else ''}")
    print(f"{'path':<14}{'p50 µs':>9}{'p99 µs':>9}{'msg/s':>10}   CPU, share of a core "
          f"(client / relay / echo)")
    for path, res in results.items():
        cpu = " / ".join(f"{statistics.median(res.cpu[k]):.2f}" if k != "relay" or res.cpu[k][0]
                         else "  - " for k in ("client", "relay", "echo"))
        print(f"{path:<14}{pct(res.rtts_us, 50):9.0f}{pct(res.rtts_us, 99):9.0f}"
              f"{statistics.median(res.rates):10.0f}   {cpu}")
    print(f"\nnote: {note}")
    # Paired: each repeat measured the paths back to back, so a ratio within one repeat cancels
    # most of the load that other work on the machine adds; the verdict uses the paired median.
    print(f"\n{'ratio':<30}{'pooled':>8}{'paired':>8}  target")
    n = args.round_trips
    for label, a, b, metric, target in RATIOS:
        ra, rb = results[a], results[b]
        if metric == "p50":
            pooled = pct(ra.rtts_us, 50) / pct(rb.rtts_us, 50)
            per = [pct(ra.rtts_us[k * n:(k + 1) * n], 50) / pct(rb.rtts_us[k * n:(k + 1) * n], 50)
                   for k in range(args.repeats)]
        else:
            pooled = statistics.median(ra.rates) / statistics.median(rb.rates)
            per = [x / y for x, y in zip(ra.rates, rb.rates, strict=True)]
        paired = statistics.median(per)
        verdict = ""
        if target is not None:
            op, bound = target
            ok = paired <= bound if op == "<=" else paired >= bound
            verdict = f"{op} {bound}: {'met' if ok else 'NOT met'}"
        print(f"{label:<30}{pooled:8.2f}{paired:8.2f}  {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--messages", type=int, default=50, help="per client")
    parser.add_argument("--size", type=int, default=64, help="message size in bytes")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--deflate", action="store_true", help="offer permessage-deflate")
    parser.add_argument("--one-core", action="store_true",
                        help="pin every process to one CPU (steadier; see the docstring)")
    parser.add_argument("--serve", choices=("echo", "proxy", "floor"), help=argparse.SUPPRESS)
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve == "echo":
        asyncio.run(serve_echo())
        return 0
    if args.serve in ("proxy", "floor"):
        # The loop labkit's own thread runs (uvloop where installed; LABKIT_LOOP=asyncio to
        # compare with the standard loop); the floor runs on the same one.
        from labkit import runtime

        serve = serve_proxy if args.serve == "proxy" else serve_floor
        if runtime.loop_kind() == "uvloop":
            import uvloop

            uvloop.run(serve(args.upstream))
        else:
            asyncio.run(serve(args.upstream))
        return 0

    home = tempfile.mkdtemp(prefix="labkit-bench-")
    os.environ["LABKIT_HOME"] = home  # children inherit it: one throwaway lab CA for all
    from labkit import LabPKI, system

    if shutil.which("nginx") is None and not os.path.exists("/usr/sbin/nginx"):
        print(f"nginx is not installed, and this bench compares against it. Install it:  "
              f"{system.install_command(['nginx'])}", file=sys.stderr)
        return 1
    LabPKI().ensure().cert("lab")  # created once, before the children read it
    echo = Child("--serve", "echo")
    proxies: dict[str, Child] = {}
    try:
        upstream = ("--upstream", str(echo.info["plain"]))
        proxies["as is"] = Child("--serve", "proxy", *upstream)
        proxies["floor"] = Child("--serve", "floor", *upstream)
        results, note = asyncio.run(measure(args, echo, proxies))
    finally:
        for child in proxies.values():
            child.stop()
        echo.stop()
        shutil.rmtree(home, ignore_errors=True)
    report(results, note, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
