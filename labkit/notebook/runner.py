"""Run scenarios for real and judge them: one browser, a fresh lab per scenario.

A result is ``ok`` when the browser's own verdict (outcome *and* reason) matches the scenario's
expectation, and the scenario's extra proof holds (the counter moved; the real page still chats).
A CORS scenario blocked for a certificate reason is a failure, not a pass.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import websockets

from .. import runtime
from ..lab import Lab
from ..model.scenarios import GUEST, Scenario, get, names
from ..observe import Browser, Driver
from ..observe.observation import NOISE, Observation, Step, Verdict, normalize_text
from ..serve.clients import http_session, ws_connect
from . import display


@dataclass
class Result:
    scenario: Scenario
    observation: Observation
    verdict: Verdict
    problems: list[str] = field(default_factory=list)
    counter: int | None = None

    @property
    def name(self) -> str:
        return self.scenario.name

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "expected": self.scenario.expected,
            "observed": self.verdict.outcome,
            "reason": self.verdict.reason,
            "rule": self.scenario.rule,
            "ok": self.ok,
            "messages": self.observation.messages(),
        }

    def __repr__(self) -> str:
        mark = "ok" if self.ok else "MISMATCH: " + "; ".join(self.problems)
        return f"<Result {self.name}: observed {self.verdict} — {mark}>"

    def _repr_html_(self) -> str:
        return display.result_html(self)


def judge(scenario: Scenario, obs: Observation, counter: int | None = None) -> Result:
    """Compare what the browser showed with what the scenario expects (no I/O)."""
    verdict = obs.verdict(scenario.decisive)
    problems = []
    if verdict.outcome != scenario.expected:
        problems.append(f"expected {scenario.expected}, observed {verdict.outcome}")
    elif verdict.reason != scenario.reason:
        problems.append(f"blocked for reason {verdict.reason!r}, expected {scenario.reason!r}")
    if scenario.redirected and not (obs.redirects and obs.final_url.startswith("https://")):
        problems.append("the visit was not redirected to the https origin")
    if scenario.session is not None:
        want = None if scenario.session == GUEST else scenario.session
        got = obs.session()
        if got != want:
            problems.append(f"the server took the page for {got or 'a guest'}, not for "
                            f"{want or 'a guest'}: "
                            + ("the browser sent no session cookie" if want else
                               "the browser sent the session cookie"))
    if scenario.side_effect and not counter:
        problems.append("the API's counter did not move: the side effect was not shown")
    for i, steps in enumerate(obs.before or ([{}] if scenario.before_ok else [])):
        bad = [s for s in scenario.before_ok if s not in steps or steps[s].state != "ok"]
        if bad:
            problems.append(f"the page visited first ({scenario.before[i]}) failed at {bad}")
    return Result(scenario, obs, verdict, problems, counter)


async def _python_client(lab: Lab) -> Observation:
    """Server to server: the same calls from Python. No browser, so no CORS and no Origin."""
    steps: dict[str, Step] = {}
    t0 = time.perf_counter()
    page = lab.topology.page
    async with http_session(lab.pki) as session:
        if page.api and "hello" in page.steps:
            try:
                async with session.get(lab.url(page.api, "/api/hello")) as r:
                    body = await r.json()
                    steps["hello"] = Step("ok" if r.status == 200 else "error",
                                          body.get("message", f"HTTP {r.status}"))
            except aiohttp.ClientError as e:
                steps["hello"] = Step("error", f"{type(e).__name__}: {e}")
    if page.ws and "socket" in page.steps:
        try:
            async with ws_connect(lab.url(page.ws), lab.pki) as ws:
                await ws.send(json.dumps({"type": "join", "room": page.room}))
                msg = json.loads(await ws.recv())
                steps["socket"] = Step("ok", f"joined {msg['room']} as {msg['user']}")
        except (OSError, websockets.exceptions.WebSocketException) as e:
            steps["socket"] = Step("error", f"{type(e).__name__}: {e}")
    return Observation(
        url="python client", final_url="python client", redirects=[], navigation_error=None,
        status=None, steps=steps, console=[], page_errors=[], failed_requests=[], sockets=[],
        seen=lab.requests(), browser_version=f"python aiohttp {aiohttp.__version__}",
        browser="python",
        ports={i.port: i.name for i in lab.services}, seconds=time.perf_counter() - t0)


@runtime.on_loop
async def arun_scenario(scenario: Scenario | str, browser: Driver | None = None,
                        nginx_configs: dict[str, str] | None = None, *,
                        screenshot: bool = True) -> Result:
    """Start the scenario's lab, observe it (browser or Python client), judge, stop the lab.
    Runs on labkit's loop, whichever loop awaits it; a lab of the same scenario still running (a
    learner started it by hand) is stopped first, as a re-run cell's would be. ``screenshot``:
    False skips the picture (no verdict reads it; it is a tenth of a Firefox visit)."""
    sc = get(scenario) if isinstance(scenario, str) else scenario
    owned = browser is None
    browser = browser or Browser()
    lab = Lab(sc.topology, browser=browser, nginx_configs=nginx_configs)
    try:
        await lab.astart()
        if sc.client == "python":
            obs = await _python_client(lab)
        else:
            obs = await lab.avisit(sc.visit, before=sc.before, screenshot=screenshot)
        return judge(sc, obs, lab.store.counter)
    finally:
        await lab.astop()
        if owned:
            await browser.astop()


def run_scenario(scenario: Scenario | str, browser: Driver | None = None,
                 nginx_configs: dict[str, str] | None = None) -> Result:
    """:func:`arun_scenario`, from synchronous code."""
    return runtime.run(arun_scenario(scenario, browser, nginx_configs))


#: Visits run side by side in one browser. A visit spends most of its time waiting (TLS, the
#: renderer, the servers), so two or three overlap well even on two cores; more only queue for the
#: CPU (measured in bench/tour.py).
TOUR_CONCURRENCY = 3
#: At most this many processes of a browser that visits one page at a time (Firefox: each
#: costs about 0.5 s to start; bench/tour.py --browser firefox measures the gain).
TOUR_LANES = 2


def tour(
    selected: Iterable[str] | None = None,
    *,
    progress: Callable[[str], None] | None = None,
    screenshots: Path | None = None,
    browser: Driver | None = None,
    concurrency: int = TOUR_CONCURRENCY,
) -> list[Result]:
    """Run scenarios (all by default) in one browser, with a progress line per scenario as each
    finishes; the results come back in catalogue order. Each scenario has its own lab (its own
    ports) and its own fresh browser context, so running several at once changes no verdict."""
    chosen = [get(n) for n in (selected or names())]  # unknown names fail before anything starts
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    owned = browser is None
    browser = browser or Browser()
    try:
        # No overall deadline: every visit has its own, and a whole tour on a busy machine
        # can take minutes.
        return runtime.run(_atour(chosen, browser, progress, screenshots, concurrency),
                           timeout=None)
    finally:
        if owned:
            browser.stop()


def tours(selected: Iterable[str] | None, browsers: Sequence[Driver], *,
          progress: Callable[[str], None] | None = None, screenshots: Path | None = None,
          concurrency: int = TOUR_CONCURRENCY) -> dict[str, list[Result]]:
    """:func:`tour` in several browsers at once (each its own labs): browser name -> results.
    Progress lines and screenshot names carry the browser's name."""
    chosen = [get(n) for n in (selected or names())]
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")

    async def all_of_them() -> list[list[Result]]:
        return list(await asyncio.gather(*[
            _atour(chosen, b, _tagged(progress, b.name, len(browsers)),
                   screenshots / b.name if screenshots and len(browsers) > 1 else screenshots,
                   concurrency) for b in browsers]))

    results = runtime.run(all_of_them(), timeout=None)
    return {b.name: rs for b, rs in zip(browsers, results, strict=True)}


def _tagged(progress: Callable[[str], None] | None, name: str, n: int
            ) -> Callable[[str], None] | None:
    if progress is None or n == 1:
        return progress
    return lambda line: progress(f"{name:8} {line}")


def side_by_side(tours: dict[str, list[Result]], versions: dict[str, str]) -> str:
    """The tour of several browsers as one table: a scenario a row, a browser a column."""
    names_ = list(tours)
    by_name = {n: {r.name: r for r in rs} for n, rs in tours.items()}
    first = tours[names_[0]]
    rows = [["scenario", "expected", *[versions[n] for n in names_]]]
    for r in first:
        want = r.scenario.expected + (f" ({r.scenario.reason})" if r.scenario.reason else "")
        cells = []
        for n in names_:
            o = by_name[n][r.name]
            cells.append(str(o.verdict) + ("" if o.ok else "  MISMATCH"))
        rows.append([r.name, want, *cells])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


@runtime.on_loop
async def _atour(chosen: list[Scenario], browser: Driver,
                 progress: Callable[[str], None] | None, screenshots: Path | None,
                 concurrency: int) -> list[Result]:
    workers = min(concurrency, len(chosen)) or 1
    # A browser that visits one page at a time (Firefox) gets twins, one per worker up to
    # TOUR_LANES: otherwise the workers only queue behind its one visit.
    lanes = [browser] + ([browser.twin() for _ in range(min(workers, TOUR_LANES) - 1)]
                         if browser.visits_at_once == 1 else [])
    results: dict[str, Result] = {}
    queue = list(chosen)

    async def worker(lane: Driver) -> None:
        while queue:
            sc = queue.pop(0)
            t0 = time.perf_counter()
            # A picture only where one is kept: it costs Firefox a tenth of a visit.
            r = await arun_scenario(sc, lane, screenshot=screenshots is not None)
            results[sc.name] = r
            if screenshots is not None and r.observation.screenshot:
                screenshots.mkdir(parents=True, exist_ok=True)
                (screenshots / f"{sc.name}.png").write_bytes(r.observation.screenshot)
            if progress:
                mark = "ok" if r.ok else "MISMATCH"
                progress(f"[{len(results)}/{len(chosen)}] {sc.name:28} {str(r.verdict):30} "
                         f"{mark:8} {time.perf_counter() - t0:.1f}s")

    tasks: list[asyncio.Future[None]] = []
    try:
        # Started once, before the workers (they would otherwise race to start one browser).
        await asyncio.gather(*[b.astart() for b in lanes])
        tasks = [asyncio.ensure_future(worker(lanes[i % len(lanes)])) for i in range(workers)]
        await asyncio.gather(*tasks)
    finally:  # one worker failed (or Ctrl-C): the others stop and stop their labs too
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*[b.astop() for b in lanes[1:]], return_exceptions=True)
    return [results[sc.name] for sc in chosen]


@dataclass(frozen=True)
class BrowserRow:
    """One browser's answer to one scenario, as ``labkit.compare`` shows it (no I/O)."""

    browser: str  # "Chromium 156.0.8078.114"
    outcome: str
    reason: str
    as_expected: bool
    console: tuple[str, ...]  # the error-level console lines, ports as service names
    network: tuple[str, ...]  # the network errors the browser reported (Firefox's reasons)
    close_codes: tuple[int, ...]  # the WebSockets' close codes
    page_saw: tuple[str, ...]  # what the page's own JavaScript was told, per failing step


def browser_row(r: Result) -> BrowserRow:
    obs = r.observation
    n = lambda s: normalize_text(s, obs.ports)  # noqa: E731
    label = {"chromium": "Chromium", "firefox": "Firefox"}.get(obs.browser, obs.browser)
    return BrowserRow(
        browser=f"{label} {obs.browser_version}".strip(),
        outcome=r.verdict.outcome, reason=r.verdict.reason or "-", as_expected=r.ok,
        console=tuple(n(m.text) for m in obs.console
                      if m.type == "error" and not any(p.search(m.text) for p in NOISE)),
        network=tuple(f"{r.failure} at {n(r.url)}" for r in obs.failed_requests
                      if obs.browser == "firefox" and r.failure != "NS_ERROR_DOM_BAD_URI"),
        close_codes=tuple(s.close_code for s in obs.sockets if s.close_code is not None),
        page_saw=tuple(f"{k}: {n(v.detail)}" for k, v in obs.steps.items()
                       if v.state not in ("ok", "pending")),
    )


def table(results: Sequence[Result]) -> str:
    rows = [("scenario", "expected", "observed", "reason", "rule")]
    rows += [(r.name, r.scenario.expected, r.verdict.outcome, r.verdict.reason or "-",
              r.scenario.rule) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
             for row in rows]
    return "\n".join(lines)


def as_json(results: Sequence[Result], browser_version: str) -> str:
    return json.dumps({"browser": browser_version, "scenarios": [r.as_dict() for r in results]})


def as_json_all(tours: dict[str, tuple[str, Sequence[Result]]]) -> str:
    """``tour --browser all --json``: one object per browser name, as :func:`as_json` gives."""
    return json.dumps({name: {"browser": version, "scenarios": [r.as_dict() for r in results]}
                       for name, (version, results) in tours.items()})


# -- explain against the browser, on any configuration ----------------------------------------
@dataclass
class Agreement:
    """One configuration, predicted by :func:`labkit.explain` and observed in the real browser."""

    topology: Any
    visit: str
    before: tuple[str, ...]
    explanation: Any
    observation: Observation
    verdict: Verdict
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __repr__(self) -> str:
        mark = "agree" if self.ok else "DISAGREE: " + "; ".join(self.problems)
        return (f"<Agreement {self.topology.name} visit={self.visit}: explain "
                f"{self.explanation.outcome}({self.explanation.reason}) browser {self.verdict} "
                f"— {mark}>")


def agree(explanation: Any, obs: Observation, verdict: Verdict) -> list[str]:
    """What differs between a prediction and an observation (no I/O): outcome, reason and the
    session the chat server saw on the visited page's sockets."""
    problems = []
    if (explanation.outcome, explanation.reason) != (verdict.outcome, verdict.reason):
        problems.append(f"explain says {explanation.outcome} ({explanation.reason}), the browser "
                        f"showed {verdict} [{verdict.evidence}]")
    want = getattr(explanation, "session", "unknown")
    if want != "unknown":
        got = obs.session()
        if got != want:
            problems.append(f"explain says the socket runs as {want!r}, the server saw {got!r}")
    return problems


@runtime.on_loop
async def acheck(topology: Any, visit: str = "web", before: Sequence[str] = (),
                 browser: Driver | None = None) -> Agreement:
    """Explain ``topology`` visited at ``visit`` (after ``before`` pages in the same browser
    context), then start it and observe it in the real browser; report whether they agree."""
    from ..model.explain import explain

    expl = explain(topology, visit=visit, before=tuple(before),
                   browser=browser.name if browser is not None else "chromium")
    owned = browser is None
    browser = browser or Browser()
    lab = Lab(topology, browser=browser)
    try:
        await lab.astart()
        obs = await lab.avisit(visit, before=before)
    finally:
        await lab.astop()
        if owned:
            await browser.astop()
    verdict = obs.verdict()
    return Agreement(topology, visit, tuple(before), expl, obs, verdict,
                     agree(expl, obs, verdict))


def check(topology: Any, visit: str = "web", before: Sequence[str] = (),
          browser: Driver | None = None) -> Agreement:
    """:func:`acheck`, from synchronous code."""
    return runtime.run(acheck(topology, visit, before, browser))
