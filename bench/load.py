"""Chat under load, every delivery checked: direct vs labkit's reverse proxy vs nginx.

``--clients`` chat clients (200) join ``--rooms`` rooms (10, so 20 members each; client i joins
room i mod rooms) and each says ``--messages`` messages (100). A message's text carries its sender
and sequence number ("17:42"), so every client checks what it receives: each message of its room
exactly once, each sender's messages in the order they were sent, nothing from another room, and
the server's ``seq`` increasing (the chat's promise that all members see one order). A client says
its next message when its previous one came back to it: one message in flight per client, so the
run measures throughput at saturation with a latency that means something, not a queue that grows
for as long as the run lasts.

Three paths, side by side in one run, each served by its own ``labkit up --json`` process:

- direct: wss:// to the chat server of the default messenger topology (TLS on the chat server);
- proxy:  wss://app.lab.test:P/ws through labkit's reverse proxy (scenario reverse-proxy) to a
  plain chat backend that checks Origin (the clients send the proxy's origin, as the page does);
- nginx:  the same through real nginx running labkit's generated config (scenario nginx-proxy).

Per path: messages/s said and deliveries/s (connection set-up excluded); latency p50/p99 from
"say" to the delivery back to the sender ("own") and to the last member of the room ("all") — at
saturation, so mostly queueing: bench/ws_relay.py measures an idle relay's round trip; the CPU
each process used, and the servers' CPU per delivery, which is what a path costs whatever share
of the cores other work on the machine left it; the load average. Then proxy/direct and
proxy/nginx ratios. With ``--repeats`` above 1 the paths' order rotates, rates are medians of the
repeats, latency percentiles pool them, and ratios are paired (median of the ratios within a
repeat). Clients offer no permessage-deflate. Limits met before the chat is measured (open files,
nginx's worker_connections) are printed as notes; see check_limits().

Exit status 1 if any message was lost, duplicated, reordered or misrouted (or a path could not
connect, or timed out: then nothing is proven), 0 otherwise.

    .venv/bin/python bench/load.py [--clients 200] [--messages 100] [--rooms 10]
                                   [--paths direct,proxy,nginx] [--quick] [--timeout 180]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import psutil

DEFAULT_CLIENTS, DEFAULT_MESSAGES, DEFAULT_ROOMS = 200, 100, 10
QUICK_CLIENTS, QUICK_MESSAGES = 50, 20
#: path -> the `labkit up --scenario` serving it (None: the default messenger topology).
SCENARIOS: dict[str, str | None] = {"direct": None, "proxy": "reverse-proxy",
                                    "nginx": "nginx-proxy"}
#: Connections opened at once: labkit's listeners have a backlog of 128, and a burst of TLS
#: handshakes beyond it would measure SYN retries, not the chat.
CONNECT_AT_ONCE = 25
START_TIMEOUT = 30.0  # for `labkit up` to print its JSON line
STOP_TIMEOUT = 15.0  # for it to stop after SIGTERM (it stops nginx with SIGQUIT first)
#: A sender waiting this long for its own message gives up on it and says the next one: the loss
#: is reported by the check, and one lost echo does not stall the whole run until --timeout.
ECHO_TIMEOUT = 10.0
#: After the last expected delivery, how long clients keep reading so that a late duplicate is
#: caught; not part of the measured time.
GRACE = 0.5
CLOSE_TIMEOUT = 15.0
#: Concurrent WebSockets labkit's nginx.conf holds (measured: 479 of 560 connected).
NGINX_CLIENTS = 470


# -- the servers ---------------------------------------------------------------------------------
# Process layout. Each path's servers run in a `labkit up --json --scenario ...` subprocess, the
# clients in this process, and the processes stop on SIGTERM. Not in-process (a Lab on labkit's
# loop thread here): 200 websockets clients keep an asyncio loop busy — the client side is the
# heaviest part of this bench — and sharing one GIL with them would steal the servers' time and
# make every path look alike. `labkit up` rather than a hand-built layout like bench/ws_relay.py
# (proxy and backend in separate processes) because it runs exactly what a learner runs: the
# scenario's topology, routes and Origin allow-list, and labkit's proxy on the same lab loop as
# the chat server, as in a notebook kernel. Keep the cost of that choice in mind when reading
# proxy/nginx: through labkit's proxy, relay and chat share one Python thread, while nginx is a
# process of its own. The CPU columns show which process limits each path.
class Servers:
    """One path's `labkit up --json` process: its chat WebSocket URL and the Origin to send."""

    def __init__(self, path: str, env: dict[str, str]) -> None:
        scenario = SCENARIOS[path]
        cmd = [sys.executable, "-m", "labkit", "up", "--json"]
        cmd += ["--scenario", scenario] if scenario else []
        self.path = path
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, text=True)
        try:
            services = {s["name"]: s for s in json.loads(self._json_line())["services"]}
        except BaseException:
            self.stop()
            raise
        if scenario is None:
            self.url = services["chat"]["url"]  # wss://localhost:P/ws
            self.origin = services["web"]["origin"]  # what the page would send (chat accepts any)
        else:
            self.origin = services["proxy"]["origin"]  # https://app.lab.test:P
            self.url = "wss" + self.origin[len("https"):] + "/ws"

    def _json_line(self) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            status = self.proc.poll()
            raise RuntimeError(f"`labkit up` for {self.path} printed nothing in "
                               f"{START_TIMEOUT:.0f} s" if status is None else
                               f"`labkit up` for {self.path} exited with {status} (see stderr)")
        return line

    def processes(self) -> dict[str, list[psutil.Process]]:
        """This path's server processes by role: labkit (and nginx, a child of labkit up)."""
        me = psutil.Process(self.proc.pid)
        out = {"labkit": [me]}
        children = me.children(recursive=True)
        if children:
            out["nginx"] = children
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# -- one measured run ----------------------------------------------------------------------------
@dataclass
class Run:
    path: str
    wall: float = math.nan
    said: int = 0
    deliveries: int = 0
    expected: int = 0
    own_ms: list[float] = field(default_factory=list)
    all_ms: list[float] = field(default_factory=list)
    problems: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)  # process role -> CPU seconds
    load: float = math.nan  # 1-minute load average when the run started

    def problem(self, kind: str, n: int = 1, example: str = "") -> None:
        self.problems[kind] += n
        if example and len(self.examples) < 5:
            self.examples.append(example)


def _cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


class Load:
    """The clients of one run and what they received."""

    def __init__(self, args: argparse.Namespace, url: str, origin: str, ssl: Any, tag: str
                 ) -> None:
        self.url, self.origin, self.ssl = url, origin, ssl
        self.n, self.m, self.tag = args.clients, args.messages, tag
        self.room_of = [i % args.rooms for i in range(self.n)]
        self.members: dict[int, list[int]] = {}
        for i, r in enumerate(self.room_of):
            self.members.setdefault(r, []).append(i)
        total = self.n * self.m
        # Indexed by sender * m + seq: when it was said, when it came back to its sender, when the
        # last member got it, and how many members have yet to get it.
        self.t_said = [math.nan] * total
        self.t_own = [math.nan] * total
        self.t_all = [math.nan] * total
        self.pending = [len(self.members[self.room_of[k // self.m]]) for k in range(total)]
        #: receiver -> sender -> the sequence numbers received, in arrival order.
        self.got: list[dict[int, list[int]]] = [{} for _ in range(self.n)]
        self.counts = [0] * self.n
        self.waiting = [-1] * self.n  # the seq each sender is waiting to see come back
        #: Resolved True when that message came back, False when ECHO_TIMEOUT passed first.
        self.echo: list[asyncio.Future[bool] | None] = [None] * self.n
        self.complete = [asyncio.Event() for _ in range(self.n)]
        self.closing = False

    def expected(self, i: int) -> int:
        return len(self.members[self.room_of[i]]) * self.m

    async def open(self, i: int, gate: asyncio.Semaphore) -> Any:
        from labkit.serve.clients import ws_connect

        async with gate:
            ws = await ws_connect(self.url, ssl=self.ssl, origin=self.origin, compression=None,
                                  ping_interval=None, max_size=2**16)
            try:
                await ws.send(json.dumps({"type": "join", "room": f"{self.tag}-{self.room_of[i]}"}))
                reply = json.loads(await ws.recv())
                if reply.get("type") != "history":
                    raise RuntimeError(f"join answered {reply}")
            except BaseException:
                await ws.close()
                raise
            return ws

    async def read(self, i: int, ws: Any, res: Run) -> None:
        from websockets.exceptions import ConnectionClosed

        got, room, last, m = self.got[i], self.room_of[i], 0, self.m
        try:
            async for raw in ws:
                now = time.perf_counter()
                try:
                    msg = json.loads(raw)
                    sender, seq = (int(x) for x in msg["text"].split(":"))
                    server_seq = int(msg["seq"])
                    if msg["type"] != "message":
                        raise ValueError
                except (ValueError, KeyError, TypeError, AttributeError):
                    res.problem("unexpected frames", example=f"client {i} got {str(raw)[:80]}")
                    continue
                if not (0 <= sender < self.n and 0 <= seq < m) or self.room_of[sender] != room:
                    res.problem("misrouted", example=f"client {i} (room {room}) got {raw}")
                    continue
                if server_seq <= last:
                    res.problem("server order broken",
                                example=f"client {i}: server seq {server_seq} after {last}")
                last = server_seq
                got.setdefault(sender, []).append(seq)
                k = sender * m + seq
                self.pending[k] -= 1
                if self.pending[k] == 0:
                    self.t_all[k] = now
                echo = self.echo[i]
                if sender == i and self.waiting[i] == seq and echo and not echo.done():
                    self.t_own[k] = now
                    echo.set_result(True)
                self.counts[i] += 1
                if self.counts[i] == self.expected(i):
                    self.complete[i].set()
        except ConnectionClosed:
            pass
        if not self.closing:
            res.problem("connections closed early",
                        example=f"client {i}: closed with {ws.close_code} {ws.close_reason!r} "
                                f"after {self.counts[i]} of {self.expected(i)} messages")

    async def say(self, i: int, ws: Any, res: Run) -> None:
        loop = asyncio.get_running_loop()
        for seq in range(self.m):
            # A future and a timer per message rather than wait_for(): the client process is the
            # busiest one here, and wait_for() would add a task per message.
            echo = self.echo[i] = loop.create_future()
            timer = loop.call_later(ECHO_TIMEOUT, _resolve, echo, False)
            self.waiting[i] = seq
            self.t_said[i * self.m + seq] = time.perf_counter()
            await ws.send(json.dumps({"type": "say", "text": f"{i}:{seq}"}))
            res.said += 1
            if not await echo:
                res.problem("echoes waited for in vain",
                            example=f"client {i}: message {seq} not back after {ECHO_TIMEOUT} s")
            timer.cancel()

    def check(self, res: Run) -> None:
        """Every member got every message of its room exactly once, in each sender's order."""
        full = set(range(self.m))
        lost = dup = reordered = 0
        for i in range(self.n):
            for sender in self.members[self.room_of[i]]:
                seqs = self.got[i].get(sender, [])
                seen = set(seqs)
                lost += len(full - seen)
                dup += len(seqs) - len(seen)
                firsts = list(dict.fromkeys(seqs))
                bad = sum(1 for a, b in pairwise(firsts) if b < a)
                reordered += bad
                if (len(seen) < self.m or bad) and len(res.examples) < 5:
                    res.examples.append(f"client {i} from {sender}: {len(seen)} of {self.m}, "
                                        f"first seqs {firsts[:8]}")
        for kind, count in (("lost", lost), ("duplicated", dup), ("reordered", reordered)):
            if count:
                res.problem(kind, count)


async def run_path(args: argparse.Namespace, servers: Servers, ssl: Any, repeat: int) -> Run:
    res = Run(servers.path, load=os.getloadavg()[0])
    load = Load(args, servers.url, servers.origin, ssl, tag=f"load{repeat}")
    res.expected = sum(load.expected(i) for i in range(load.n))
    deadline = time.monotonic() + args.timeout
    gate = asyncio.Semaphore(CONNECT_AT_ONCE)
    tries = [asyncio.ensure_future(load.open(i, gate)) for i in range(load.n)]
    done, _ = await asyncio.wait(tries, timeout=args.timeout)
    conns = [t.result() for t in tries if t in done and t.exception() is None]
    if len(conns) < load.n:
        errors = [repr(t.exception()) for t in done if t.exception() is not None]
        for t in tries:
            t.cancel()
        await asyncio.gather(*tries, return_exceptions=True)
        await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
        res.problem("clients that could not connect and join", load.n - len(conns),
                    example=errors[0] if errors else "connect timed out")
        return res
    readers = [asyncio.ensure_future(load.read(i, ws, res)) for i, ws in enumerate(conns)]
    procs = {"client": [psutil.Process()], **servers.processes()}
    try:
        cpu0 = {k: _cpu(ps) for k, ps in procs.items()}
        t0 = time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.gather(
                *(load.say(i, ws, res) for i, ws in enumerate(conns)),
                *(c.wait() for c in load.complete)), max(1.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            res.problem("runs timed out", example=f"{servers.path}: not done after "
                                                  f"--timeout {args.timeout:.0f} s")
        res.wall = time.perf_counter() - t0
        res.cpu_s = {k: _cpu(ps) - cpu0[k] for k, ps in procs.items()}
        await asyncio.sleep(GRACE)  # a late duplicate shows up here
    finally:
        load.closing = True
        await asyncio.wait([asyncio.ensure_future(ws.close()) for ws in conns],
                           timeout=CLOSE_TIMEOUT)
        for r in readers:
            r.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    res.deliveries = sum(load.counts)
    res.own_ms = [(b - a) * 1e3 for a, b in zip(load.t_said, load.t_own, strict=True)
                  if not math.isnan(b)]
    res.all_ms = [(b - a) * 1e3 for a, b in zip(load.t_said, load.t_all, strict=True)
                  if not math.isnan(b)]
    load.check(res)
    return res


# -- report --------------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile: one of the measured values (nan if there are none)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered))) - 1))]


#: (label, attribute, format) of each reported metric.
METRICS = (("said/s", "said", "10.0f"), ("deliv/s", "delivered", "10.0f"),
           ("own p50", "own50", "10.1f"), ("own p99", "own99", "10.1f"),
           ("all p50", "all50", "10.1f"), ("all p99", "all99", "10.1f"),
           ("srv µs/dl", "server_us", "10.1f"))
RATIOS = (("proxy", "direct"), ("proxy", "nginx"), ("nginx", "direct"))


@dataclass
class Summary:
    said: float  # messages said per second (median of the repeats)
    delivered: float  # deliveries per second (median of the repeats)
    own50: float  # latency percentiles, ms, pooled over the repeats
    own99: float
    all50: float
    all99: float
    #: Server-side CPU (labkit up, and nginx) per delivery, µs: what the path costs, whatever
    #: share of the cores the other work on the machine left to it.
    server_us: float


def summarize(runs: list[Run]) -> Summary:
    own = [x for r in runs for x in r.own_ms]
    every = [x for r in runs for x in r.all_ms]
    return Summary(statistics.median(r.said / r.wall for r in runs),
                   statistics.median(r.deliveries / r.wall for r in runs),
                   pct(own, 50), pct(own, 99), pct(every, 50), pct(every, 99),
                   statistics.median(1e6 * sum(v for k, v in r.cpu_s.items() if k != "client")
                                     / max(1, r.deliveries) for r in runs))


def measured(runs: list[Run]) -> list[Run]:
    return [r for r in runs if not math.isnan(r.wall) and r.said]


def paired_ratio(results: dict[str, list[Run]], a: str, b: str, attr: str) -> float:
    """The median over repeats of a/b within one repeat: the two paths ran back to back there,
    so the ratio cancels most of the drift in what else the machine is doing."""
    per = [getattr(summarize([ra]), attr) / getattr(summarize([rb]), attr)
           for ra, rb in zip(results[a], results[b], strict=True) if measured([ra, rb]) == [ra, rb]]
    return statistics.median(per) if per else math.nan


def report(results: dict[str, list[Run]], args: argparse.Namespace, notes: list[str]) -> bool:
    sizes = Counter(i % args.rooms for i in range(args.clients)).values()
    room = f"{min(sizes)}" if min(sizes) == max(sizes) else f"{min(sizes)}-{max(sizes)}"
    print(f"\nchat load: {args.clients} clients x {args.messages} messages in {len(sizes)} rooms "
          f"of {room}, one message in flight per client, {args.repeats} repeat(s); "
          f"{os.cpu_count()} cores, load average now {os.getloadavg()[0]:.2f}")
    print("latency in ms: own = say -> back to the sender; all = say -> the room's last member; "
          "srv µs/dl: server CPU per delivery")
    head = "".join(f"{label:>10}" for label, _, _ in METRICS)
    print(f"\n{'path':<8}{head}{'wall s':>8}{'load':>6}   CPU, share of a core")
    ok = True
    for path, runs in results.items():
        done = measured(runs)
        if not done:
            print(f"{path:<8}{'(not measured)':>20}")
            continue
        s = summarize(done)
        values = "".join(f"{getattr(s, attr):{fmt}}" for _, attr, fmt in METRICS)
        cpu = ", ".join(f"{k} {statistics.median(r.cpu_s.get(k, 0) / r.wall for r in done):.2f}"
                        for k in done[0].cpu_s)
        print(f"{path:<8}{values}{statistics.median(r.wall for r in done):8.1f}"
              f"{statistics.median(r.load for r in done):6.2f}   {cpu}")
    pairs = [(a, b) for a, b in RATIOS
             if measured(results.get(a, [])) and measured(results.get(b, []))]
    if pairs:
        print(f"\n{'ratio':<14}{head}")
        for a, b in pairs:
            values = "".join(f"{paired_ratio(results, a, b, attr):10.2f}" for _, attr, _ in METRICS)
            print(f"{a + '/' + b:<14}{values}")
        print("(paired: median over repeats of the ratio within a repeat; rates below 1 and "
              "latencies or costs above 1 mean the first path is slower)")
    print()
    for path, runs in results.items():
        problems: Counter[str] = Counter()
        examples: list[str] = []
        for r in runs:
            problems.update(r.problems)
            examples += r.examples
        deliveries = sum(r.deliveries for r in runs)
        expected = sum(r.expected for r in runs)
        if problems:
            ok = False
            listed = ", ".join(f"{n} {kind}" for kind, n in problems.items())
            print(f"{path}: FAILED — {listed} ({deliveries} of {expected} deliveries)")
            for e in examples[:5]:
                print(f"    e.g. {e}")
        else:
            print(f"{path}: ok — {deliveries} deliveries: every member got every message of its "
                  f"room exactly once, in each sender's order")
    for note in notes:
        print(f"note: {note}")
    return ok


# -- main ----------------------------------------------------------------------------------------
def parse(argv: list[str] | None) -> argparse.Namespace:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--clients", type=int, help=f"chat clients (default {DEFAULT_CLIENTS})")
    parser.add_argument("--messages", type=int,
                        help=f"messages each client says (default {DEFAULT_MESSAGES})")
    parser.add_argument("--rooms", type=int, default=DEFAULT_ROOMS,
                        help="rooms; client i joins room i mod ROOMS (default %(default)s)")
    parser.add_argument("--paths", default="direct,proxy,nginx",
                        help="comma-separated, from direct,proxy,nginx (default %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK_CLIENTS} clients x {QUICK_MESSAGES} messages "
                             f"(unless --clients/--messages say otherwise): checks delivery; "
                             f"its sub-second runs are too short for meaningful figures")
    parser.add_argument("--repeats", type=int, default=1, help="runs per path (default 1)")
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="seconds per path and repeat, connecting included (default 180)")
    args = parser.parse_args(argv)
    if args.clients is None:
        args.clients = QUICK_CLIENTS if args.quick else DEFAULT_CLIENTS
    if args.messages is None:
        args.messages = QUICK_MESSAGES if args.quick else DEFAULT_MESSAGES
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = [p for p in paths if p not in SCENARIOS]
    if unknown or not paths:
        parser.error(f"--paths takes a comma-separated list of {', '.join(SCENARIOS)}")
    args.paths = list(dict.fromkeys(paths))
    for name in ("clients", "messages", "rooms", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    return args


async def measure(args: argparse.Namespace, servers: dict[str, Servers]) -> dict[str, list[Run]]:
    from labkit.serve.pki import LabPKI

    ssl = LabPKI().client_context()  # one context for every client: trusts the lab CA only
    paths = list(servers)
    results: dict[str, list[Run]] = {p: [] for p in paths}
    for r in range(args.repeats):
        for path in paths[r % len(paths):] + paths[:r % len(paths)]:  # no path always first
            res = await run_path(args, servers[path], ssl, r)
            results[path].append(res)
            status = "ok" if not res.problems else "PROBLEMS: " + ", ".join(
                f"{n} {k}" for k, n in res.problems.items())
            figures = (f"{res.said / res.wall:8.0f} said/s  own p50 {pct(res.own_ms, 50):7.1f} ms  "
                       f"wall {res.wall:6.1f} s" if measured([res]) else f"{'not measured':>43}")
            print(f"  repeat {r + 1}/{args.repeats} {path:<7}{figures}  load {res.load:.2f}  "
                  f"{status}", flush=True)
    return results


def check_limits(args: argparse.Namespace) -> list[str]:
    """Limits that would fail connections before the chat is measured; see the notes printed."""
    notes = []
    # Through labkit's proxy the `labkit up` process holds three descriptors per chat client (the
    # client's socket, the proxy's upstream socket, the chat server's end of it), and labkit
    # leaves the soft limit as it found it (1024 on many Linux systems, 256 in a macOS shell):
    # past it, the proxy answers 502 and accepts fail. The servers inherit this process's limit.
    need = 3 * args.clients + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard == resource.RLIM_INFINITY or hard >= need:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
            notes.append(f"raised the open-files soft limit from {soft} to {need} for the "
                         f"servers (labkit's proxy process needs 3 per client)")
        else:
            notes.append(f"the open-files limit ({soft}, hard {hard}) is below the {need} "
                         f"labkit's proxy process needs (3 per client): expect 502s")
    # labkit's nginx.conf: one worker, worker_connections 1024, two per proxied WebSocket.
    if "nginx" in args.paths and args.clients > NGINX_CLIENTS:
        notes.append(f"labkit's nginx.conf allows 1024 connections (worker_connections), two per "
                     f"WebSocket: expect resets past ~{NGINX_CLIENTS} clients through nginx")
    return notes


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    notes = check_limits(args)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if "nginx" in args.paths and shutil.which("nginx") is None \
            and not os.path.exists("/usr/sbin/nginx"):
        args.paths.remove("nginx")
        notes.append("nginx is not installed: its path was skipped")
        if not args.paths:
            print("bench/load.py: nothing to measure without nginx", file=sys.stderr)
            return 1
    home = tempfile.mkdtemp(prefix="labkit-load-")
    # A throwaway lab CA, shared by every `labkit up` (they inherit LABKIT_HOME) and the clients:
    # a participant's real lab state is never touched.
    os.environ["LABKIT_HOME"] = home
    from labkit.serve.pki import LabPKI

    LabPKI().ensure().cert("lab")  # created once, here, before the servers read it
    servers: dict[str, Servers] = {}
    failed: list[str] = []
    print(f"load average before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores",
          flush=True)
    try:
        for path in args.paths:  # one at a time, so no two of them write the same leaf cert
            try:
                servers[path] = Servers(path, dict(os.environ))
            except RuntimeError as e:
                failed.append(path)
                notes.append(f"{path} not measured: {e}")
        results = asyncio.run(measure(args, servers)) if servers else {}
    finally:
        for s in servers.values():
            s.stop()
        shutil.rmtree(home, ignore_errors=True)
    ok = report(results, args, notes)
    return 0 if ok and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
