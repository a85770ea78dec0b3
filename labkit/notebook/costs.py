"""What each deployment of the story costs, measured: ``compare()`` runs the three side by side.

- **direct**: web, api and chat on three TLS ports (:func:`~labkit.model.topology.messenger`),
  the API with CORS;
- **reverse proxy**: one TLS origin in front of plain backends (scenario ``reverse-proxy``);
- **load balancers**: one load balancer with its own certificate per server (``lb-managed-certs``).

How each figure is obtained (the decisions are the plain functions below, tested without I/O):

- *entry points*: the TLS listeners the browser actually reached in a page session — every
  ``https://`` request URL (Playwright ``request`` events) and every ``wss://`` socket the page
  opened, mapped to the lab's listeners by port;
- *certificates*: distinct certificates those entry points present, by SHA-256 of the DER a real TLS
  connection received (one certificate on three ports counts once, as it is issued once);
- *listeners*: every listening socket, HTTP->HTTPS redirects included;
- *processes*: what a real deployment would run, one per server, proxy or load balancer. labkit runs
  them all in the kernel, but a real deployment runs each as its own process or instance. A redirect
  listener is served by the proxy or load balancer it redirects to (nginx does exactly that), so it
  adds a listener, not a process;
- *TLS handshakes per page session*: counted at the servers — every TLS listener's SSL context gets
  an ``sni_callback``, which OpenSSL calls once per ClientHello, with or without SNI. Counted from
  just before to just after one visit in a fresh browser context (cold: no pooled connections, no
  session tickets). Listeners that labkit does not terminate itself (nginx) are not counted;
- *page load -> first chat message*: ``performance.now()`` (ms since navigation start) when the
  page's ``chat`` step turns ok, i.e. its own message came back from the chat server. Read by a
  MutationObserver on the step rows, reported to Python through an exposed function;
- *memory*: resident memory a fresh Python process gains by starting the deployment (psutil RSS,
  child processes such as nginx included), after a one-server lab has started and stopped there so
  one-time costs (loop thread, TLS and aiohttp set-up) are left out. Measured in a fresh process per
  deployment because in this kernel the allocator reuses memory freed by earlier labs. The servers
  share that process, so this is small; a real deployment pays a whole process per server, and the
  report notes what one costs.

Medians throughout: the lab shares a machine with everything else that runs on it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import hashlib
import json
import os
import pickle
import statistics
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .. import runtime
from ..lab import Lab
from ..model import scenarios
from ..model.topology import Page, Service, Topology, messenger
from ..observe.browser import Browser
from . import display

#: The step whose success means "the first chat message was delivered".
FIRST_MESSAGE_STEP = "chat"

#: Reports each page step's final state with performance.now() (ms since navigation start).
_STEP_CLOCK = """
(() => {
  const seen = new Set();
  new MutationObserver((records) => {
    for (const r of records) {
      const el = r.target, state = el.dataset && el.dataset.state;
      if (!el.id || !el.id.startsWith("step-") || seen.has(el.id)) continue;
      if (state !== "ok" && state !== "blocked" && state !== "error") continue;
      seen.add(el.id);
      window.__labkitStepClock(el.id.slice(5), state, performance.now());
    }
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-state"] });
})();
"""


# -- the deployments -----------------------------------------------------------------------------
#: What :func:`compare` measures unless told otherwise ("nginx proxy" needs nginx installed).
DEFAULT = ("direct", "reverse proxy", "load balancers")


def deployments() -> dict[str, tuple[Topology, str]]:
    """name -> (topology, the page service the browser visits). Renamed ``costs-*`` so measuring
    never stops a learner's running lab of the same scenario."""
    picked = {"reverse proxy": "reverse-proxy", "load balancers": "lb-managed-certs",
              "nginx proxy": "nginx-proxy"}
    out = {"direct": (messenger(name="costs-direct"), "web")}
    for name, scenario in picked.items():
        sc = scenarios.get(scenario)
        out[name] = (dataclasses.replace(sc.topology, name=f"costs-{scenario}"), sc.visit)
    return out


# -- decisions, without I/O ----------------------------------------------------------------------
def count_listeners(topology: Topology) -> int:
    return len(topology.services)


def count_processes(topology: Topology) -> int:
    """One per server, proxy or load balancer; a redirect listener runs inside its target."""
    return sum(1 for s in topology.services if s.kind != "redirect")


def api_cors(topology: Topology) -> str:
    """The CORS mode of the topology's API server(s): ``none``, ``allowlist`` or ``wildcard``."""
    modes = sorted({s.cors.mode for s in topology.services if s.kind == "api"})
    return "/".join(modes) or "none"


def entry_points(urls: Iterable[str], tls_ports: Mapping[int, str]) -> tuple[str, ...]:
    """The TLS listeners (by name) that ``urls`` reached: ``https``/``wss`` URLs whose port is one
    of ``tls_ports``. Sorted, each once."""
    out = set()
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme in ("https", "wss"):
            port = parts.port or 443
            if port in tls_ports:
                out.add(tls_ports[port])
    return tuple(sorted(out))


def origins(urls: Iterable[str]) -> tuple[str, ...]:
    """The distinct origins among ``urls``, a ``wss://`` socket counted as its ``https`` origin (the
    browser treats them as the same server, Fetch §3.1)."""
    out = set()
    for url in urls:
        p = urlsplit(url)
        if p.scheme in ("http", "https", "ws", "wss") and p.hostname:
            scheme = {"ws": "http", "wss": "https"}.get(p.scheme, p.scheme)
            port = p.port or (443 if scheme == "https" else 80)
            out.add(f"{scheme}://{p.hostname}:{port}")
    return tuple(sorted(out))


def distinct_certificates(fingerprints: Mapping[str, str]) -> int:
    """How many different certificates the listeners (name -> SHA-256 of the DER) present."""
    return len(set(fingerprints.values()))


def handshakes_between(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """Per listener, the handshakes counted between two snapshots (listeners with none left out)."""
    diff = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return {k: v for k, v in sorted(diff.items()) if v}


def median(values: Iterable[float | None]) -> float | None:
    """The median of the measured values (None entries are failed measurements), None if none."""
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


@dataclass(frozen=True)
class Visit:
    """One measured page session."""

    handshakes: dict[str, int]  # listener -> TLS handshakes it accepted during the visit
    steps: dict[str, tuple[str, float]]  # step -> (final state, ms since navigation start)
    urls: tuple[str, ...]  # every https/wss URL the page requested or opened
    verdict: str

    @property
    def first_message_ms(self) -> float | None:
        state, ms = self.steps.get(FIRST_MESSAGE_STEP, ("missing", 0.0))
        return ms if state == "ok" else None


@dataclass(frozen=True)
class DeploymentCost:
    name: str
    topology: str
    entry_points: tuple[str, ...]
    listeners: int
    processes: int
    certificates: int
    origins: int
    cors: str
    handshakes: float | None  # None: an entry point's handshakes could not be counted (nginx)
    handshakes_by_listener: dict[str, float]
    first_message_ms: float | None
    first_message_samples: tuple[float | None, ...]
    steps_ms: dict[str, float]
    memory_mib: float | None  # RSS added by starting it, child processes included
    external_mib: float | None  # of which in child processes (nginx)
    process_mib: float | None  # RSS of a fresh Python process running one labkit server
    visits: int
    failed: int  # visits whose first chat message never arrived

    @property
    def n_entry_points(self) -> int:
        return len(self.entry_points)


def summarise(name: str, topology: Topology, visits: Sequence[Visit],
              fingerprints: Mapping[str, str], tls_ports: Mapping[int, str], *,
              uncounted: Iterable[str] = (),
              memory: Sequence[Mapping[str, float]] = ()) -> DeploymentCost:
    """One deployment's figures: entry points over every visit, medians of the per-visit
    handshake counts, timings and memory samples. ``uncounted`` names TLS listeners whose
    handshakes nobody counted (nginx): reaching one makes the handshake total unknown."""
    urls = [u for v in visits for u in v.urls]
    reached = entry_points(urls, tls_ports)
    listeners = sorted({k for v in visits for k in v.handshakes})
    by_listener = {k: median(v.handshakes.get(k, 0) for v in visits) or 0.0 for k in listeners}
    steps = sorted({s for v in visits for s in v.steps})
    steps_ms = {s: m for s in steps  # when each step turned ok (a failure has no such time)
                if (m := median(v.steps[s][1] for v in visits
                                if v.steps.get(s, ("",))[0] == "ok")) is not None}
    samples = tuple(v.first_message_ms for v in visits)
    blind = set(uncounted) & set(reached)
    return DeploymentCost(
        name=name, topology=topology.name, entry_points=reached,
        listeners=count_listeners(topology), processes=count_processes(topology),
        certificates=distinct_certificates({k: fingerprints[k] for k in reached
                                            if k in fingerprints}),
        origins=len(origins(urls)), cors=api_cors(topology),
        handshakes=None if blind else median(sum(v.handshakes.values()) for v in visits),
        handshakes_by_listener=by_listener,
        first_message_ms=median(samples), first_message_samples=samples, steps_ms=steps_ms,
        memory_mib=median(m["total_mib"] for m in memory),
        external_mib=median(m["child_mib"] for m in memory),
        process_mib=median(m["process_mib"] for m in memory),
        visits=len(visits), failed=sum(1 for s in samples if s is None),
    )


#: (key, label, how to read it from a DeploymentCost) — the table rows, in order.
METRICS: tuple[tuple[str, str, Any], ...] = (
    ("entry_points", "TLS entry points the browser reaches", lambda d: d.n_entry_points),
    ("certificates", "certificates presented to the browser", lambda d: d.certificates),
    ("origins", "origins the page talks to", lambda d: d.origins),
    ("cors", "API CORS policy", lambda d: d.cors),
    ("processes", "processes / instances to run", lambda d: d.processes),
    ("listeners", "listeners (redirects included)", lambda d: d.listeners),
    ("handshakes", "TLS handshakes per page session (median)", lambda d: d.handshakes),
    ("first_message_ms", "page load -> first chat message, ms (median)",
     lambda d: d.first_message_ms),
    ("memory_mib", "memory added, MiB RSS", lambda d: d.memory_mib),
)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.1f}" if value < 100 else f"{value:.0f}"
    return str(value)


def ratios(a: DeploymentCost, b: DeploymentCost) -> dict[str, float | None]:
    """``a``'s numeric figures divided by ``b``'s (None where either is missing or ``b`` is 0)."""
    out: dict[str, float | None] = {}
    for key, _, get in METRICS:
        x, y = get(a), get(b)
        if isinstance(x, str) or isinstance(y, str):
            continue
        out[key] = None if x is None or not y else x / y
    return out


#: The rows that depend only on the deployment's shape.
STRUCTURE = ("entry_points", "certificates", "origins", "cors", "processes", "listeners")


class Structure:
    def __init__(self, table: list[list[str]]) -> None:
        self.table = table

    def __repr__(self) -> str:
        widths = [max(len(r[i]) for r in self.table) for i in range(len(self.table[0]))]
        return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                         for r in self.table)

    def _repr_html_(self) -> str:
        return display.structure_html(self)


@dataclass(frozen=True)
class CostReport:
    deployments: tuple[DeploymentCost, ...]
    rounds: int
    browser_version: str = ""
    notes: tuple[str, ...] = field(default=())

    def __getitem__(self, name: str) -> DeploymentCost:
        for d in self.deployments:
            if d.name == name:
                return d
        raise KeyError(f"no deployment '{name}'; measured: "
                       f"{', '.join(d.name for d in self.deployments)}")

    def rows(self) -> list[dict[str, Any]]:
        """One dict per deployment, for ``pandas.DataFrame(report.rows())`` or a bar chart."""
        return [{"deployment": d.name, **{k: get(d) for k, _, get in METRICS},
                 "steps_ms": dict(d.steps_ms)} for d in self.deployments]

    def ratios(self, a: str = "load balancers", b: str = "reverse proxy"
               ) -> dict[str, float | None]:
        """Deployment ``a``'s figures as multiples of ``b``'s."""
        return ratios(self[a], self[b])

    def _table(self, keys: Iterable[str] | None = None) -> list[list[str]]:
        wanted = set(keys) if keys is not None else {k for k, _, _ in METRICS}
        head = ["", *(d.name for d in self.deployments)]
        return [head, *([label, *(_fmt(get(d)) for d in self.deployments)]
                        for key, label, get in METRICS if key in wanted)]

    def structure(self) -> Structure:
        """Only what follows from the deployment's shape (the same on every machine)."""
        return Structure(self._table(STRUCTURE))

    def plot(self) -> Any:
        """A bar chart of the measured figures (matplotlib figure)."""
        import matplotlib.pyplot as plt

        names = [d.name for d in self.deployments]
        panels = [("TLS entry points", [d.n_entry_points for d in self.deployments]),
                  ("TLS handshakes per page", [d.handshakes or 0 for d in self.deployments]),
                  ("page load → first message (ms)",
                   [d.first_message_ms or 0 for d in self.deployments])]
        fig, axes = plt.subplots(1, len(panels), figsize=(11, 3.2))
        colours = list(display.CHART_COLOURS[:len(names)])
        for ax, (title, values) in zip(axes, panels, strict=True):
            ax.bar(names, values, color=colours)
            ax.set_title(title, fontsize=10)
            ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        fig.suptitle(f"What each deployment costs ({self.rounds} page sessions each, medians)",
                     fontsize=11)
        fig.tight_layout()
        plt.close(fig)  # displayed by the notebook as the cell's value, not twice
        return fig

    def __repr__(self) -> str:
        table = self._table()
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                 for r in table]
        lines.append(f"({self.rounds} page sessions per deployment, Chromium "
                     f"{self.browser_version or '?'}; medians, on a shared machine)")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return display.cost_report_html(self)


# -- measuring ----------------------------------------------------------------------------------
async def _visit(lab: Lab, service: str) -> Visit:
    urls: list[str] = []
    steps: dict[str, tuple[str, float]] = {}

    async def setup(context: Any) -> None:
        await context.expose_function(
            "__labkitStepClock", lambda step, state, ms: steps.setdefault(step, (state, ms)))
        await context.add_init_script(_STEP_CLOCK)
        context.on("request", lambda r: urls.append(r.url))

    before = dict(lab.tls_hellos)
    obs = await lab.avisit(service, context_setup=setup, screenshot=False)
    return Visit(handshakes_between(before, lab.tls_hellos), dict(steps),
                 tuple(u for u in [*urls, *(s.url for s in obs.sockets)]
                       if urlsplit(u).scheme in ("https", "wss")),
                 str(obs.verdict()))


async def _fingerprint(lab: Lab, name: str) -> str:
    info = lab.info(name)
    _, writer = await asyncio.open_connection(
        "::1" if info.host == "::1" else "127.0.0.1", info.port,
        ssl=lab.pki.client_context(), server_hostname=info.host)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
    return hashlib.sha256(der).hexdigest()


def _measure_memory(topology: Topology, home: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", "from labkit.notebook.costs import _memory_child; _memory_child()"],
        input=pickle.dumps(topology), capture_output=True, timeout=60,
        env=dict(os.environ, LABKIT_HOME=home), check=False)
    if out.returncode != 0:
        raise RuntimeError(f"measuring the memory of '{topology.name}' failed:\n"
                           f"{out.stderr.decode(errors='replace')[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return result


def _rss(proc: Any) -> tuple[int, int]:
    """RSS of ``proc`` and of all its descendants (nginx master and worker)."""
    children = 0
    for c in proc.children(recursive=True):
        try:
            children += c.memory_info().rss
        except Exception:  # exited meanwhile
            pass
    return proc.memory_info().rss, children


def _memory_child() -> None:
    """In a fresh process: start a one-server lab and stop it (loop thread, logging, aiohttp and TLS
    set-up are paid once, by any lab), then report what starting the topology on stdin adds."""
    import psutil

    topology = pickle.loads(sys.stdin.buffer.read())
    proc = psutil.Process()
    warm = Topology("costs-baseline", (Service("web", "web"),),
                    page=Page(api=None, ws=None, steps=()))
    Lab(warm).start().stop()
    gc.collect()
    own0, kids0 = _rss(proc)
    lab = Lab(topology).start()
    try:
        gc.collect()
        own1, kids1 = _rss(proc)
    finally:
        lab.stop()
    mib = 1024 * 1024
    print(json.dumps({"total_mib": (own1 + kids1 - own0 - kids0) / mib,
                      "child_mib": (kids1 - kids0) / mib, "process_mib": own0 / mib}))


async def _measure(browser: Browser | None, names: Sequence[str], rounds: int, warmup: int,
                   memory: int) -> CostReport:
    catalogue = deployments()
    unknown = [n for n in names if n not in catalogue]
    if unknown:
        raise ValueError(f"unknown deployments {unknown}; choose from {', '.join(catalogue)}")
    own = browser is None
    b = browser or Browser()
    labs: dict[str, tuple[Lab, str]] = {}
    try:
        await b.astart()
        for name in names:
            topo, service = catalogue[name]
            labs[name] = (Lab(topo, browser=b, pki=b.pki), service)
            await labs[name][0].astart()
        visits: dict[str, list[Visit]] = {n: [] for n in labs}
        # Rounds interleave the deployments, so a burst of load elsewhere hits all of them alike.
        for r in range(warmup + rounds):
            for name, (lab, service) in labs.items():
                v = await _visit(lab, service)
                if r >= warmup:
                    visits[name].append(v)
        measured = []
        for name, (lab, _) in labs.items():
            tls_ports = {i.port: i.name for i in lab.services if i.tls}
            reached = entry_points((u for v in visits[name] for u in v.urls), tls_ports)
            prints = {n: await _fingerprint(lab, n) for n in reached}
            nginx = [s.name for s in lab.topology.services if s.kind == "nginx"]
            measured.append((name, lab.topology, prints, tls_ports, nginx))
        for lab, _ in labs.values():  # free the CPU before the memory measurements
            await lab.astop()
        mem: dict[str, list[dict[str, float]]] = {n: [] for n in labs}
        for _ in range(memory):
            for name, topo, *_rest in measured:
                mem[name].append(await asyncio.to_thread(_measure_memory, topo, str(b.pki.home)))
        costs = tuple(summarise(name, topo, visits[name], prints, ports, uncounted=nginx,
                                memory=mem[name])
                      for name, topo, prints, ports, nginx in measured)
        process = median(d.process_mib for d in costs)
        notes = ["processes: one per server, proxy or load balancer (a redirect listener runs in "
                 "its target); labkit runs them all in one kernel",
                 "memory: RSS a fresh Python process gains by starting the whole deployment"
                 + (f"; that process itself (Python, labkit, one server) is {process:.0f} MiB, "
                    f"which a deployment of separate processes pays once per process"
                    if process else "")]
        if any(nginx for *_rest, nginx in measured):
            notes.append("nginx's TLS handshakes are not counted (labkit does not terminate them)")
        return CostReport(costs, rounds=rounds, browser_version=b.version, notes=tuple(notes))
    finally:
        for lab, _ in labs.values():
            await lab.astop()
        if own:
            await b.astop()


def compare(browser: Browser | None = None, *, rounds: int = 5, warmup: int = 1,
            memory: int = 3, deployments: Sequence[str] = DEFAULT) -> CostReport:
    """Start the deployments, open each one's page ``rounds`` times in the real browser (after
    ``warmup`` unmeasured visits; rounds interleave the deployments), measure each one's memory
    ``memory`` times in a fresh process (0: skip), and report what each costs.

    >>> report = compare()
    >>> report                      # a table
    >>> report.ratios()             # load balancers as multiples of the reverse proxy
    """
    return runtime.run(_measure(browser, deployments, rounds, warmup, memory), timeout=None)


async def acompare(browser: Browser | None = None, *, rounds: int = 5, warmup: int = 1,
                   memory: int = 3, deployments: Sequence[str] = DEFAULT) -> CostReport:
    """:func:`compare` for async code (a notebook cell with ``await``)."""
    return await runtime.arun(_measure(browser, deployments, rounds, warmup, memory))
