"""What notebook cells call: one shared browser per kernel, and small functions that return objects
which display themselves (tables, diagrams, screenshots). Machinery stays in the other modules.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from .. import runtime
from ..lab import Lab, stop_all
from ..model.deployment import Deployment
from ..model.explain import Explanation
from ..model.explain import explain as _explain
from ..model.scenarios import Scenario, get
from ..model.topology import Topology
from ..observe import BROWSERS, Driver, check_name, make_browser
from ..serve.apps.web import page_code
from ..serve.pki import CertSummary, LabPKI, default_home
from . import checkup as _doctor
from . import display  # also registers the HTML views of Lab, Scenario, Observation, ...
from .diagram import Diagram, render
from .predict import Graded, grade, parse_guess
from .runner import Result, browser_row, run_scenario
from .runner import tour as _tour

_lock = threading.Lock()
#: The kernel's browsers, one per kind ("chromium", "firefox"), each started on first use.
_browsers: dict[str, Driver] = {}


def shared_browser(headless: bool | None = None, devtools: bool | None = None,
                   name: str = "chromium") -> Driver:
    """The kernel's browser of that kind: started on first use, reused by every run, stopped at
    exit. ``headless=False`` (on a laptop with a display) shows the window, for live demos;
    ``devtools=True`` opens the developer tools with every page (headed only)."""
    name = check_name(name)
    if headless is None:
        # LABKIT_HEADED=1: instructors on a laptop see every visit in a real window, with
        # DevTools on the Console (where the room sees the red line).
        headless = os.environ.get("LABKIT_HEADED", "") in ("", "0")
    if devtools is None:
        devtools = not headless and os.environ.get("LABKIT_HEADED", "") not in ("", "0")
    devtools = devtools and not headless
    with _lock:
        b = _browsers.get(name)
        if b is not None and (b.headless, b.devtools) != (headless, devtools):
            b.stop()
            b = None
        if b is None:
            b = _browsers[name] = make_browser(name, headless=headless, devtools=devtools)
        return b


def _stop_browser() -> None:
    with _lock:
        browsers = list(_browsers.values())
        _browsers.clear()
    for b in browsers:
        b.stop()


runtime.on_shutdown(_stop_browser)


def scenario(name: str) -> Scenario:
    return get(name)


def explain(what: str | Scenario | Topology | Lab, *, visit: str | None = None,
            before: tuple[str, ...] | None = None, browser: str = "chromium") -> Explanation:
    """What the browser will do, and why, from the rules alone: for a scenario (or its name), a
    topology you built (``visit``: whose page the browser opens, default ``web``; ``before``:
    pages opened first in the same browser, e.g. a victim logging in), or a lab (real ports).
    ``browser``: "chromium" (Firefox's differences named in the text) or "firefox"."""
    browser = check_name(browser)
    if isinstance(what, Lab):
        deployment = what.deployment if what.running else None
        return _explain(what.topology, visit=visit, before=before, deployment=deployment,
                        browser=browser)
    return _explain(what, visit=visit, before=before, browser=browser)


def diagram(what: str | Scenario | Topology, lab: Lab | None = None,
            result: Result | None = None) -> Diagram:
    """A topology picture: of a scenario (by name), a topology, or a running lab (real ports)."""
    sc = get(what) if isinstance(what, str) else what
    topo = sc.topology if isinstance(sc, Scenario) else sc
    visit = sc.visit if isinstance(sc, Scenario) else "web"
    ports = {s.name: s.port for s in lab.services} if lab is not None and lab.running else {}
    obs = result.observation if result is not None else None
    if obs is not None and not ports:
        ports = {name: port for port, name in obs.ports.items()}
    client = sc.client if isinstance(sc, Scenario) else "browser"
    return Diagram(render(topo, visit=visit, ports=ports, obs=obs, client=client,
                          reason=result.verdict.reason if result else None))


class Run:
    """A scenario run for real, displayed as: your guess graded, expectation, diagram, what the
    browser showed, and the rule behind it."""

    def __init__(self, result: Result, graded: Graded | None = None,
                 asked: bool = False) -> None:
        self.result = result
        self.graded = graded
        #: A guess was asked for (``guess="?"`` left as is): the view says none was made.
        self.asked = asked

    def __getattr__(self, name: str) -> Any:
        return getattr(self.result, name)

    def __repr__(self) -> str:
        return (f"{self.graded}\n" if self.graded else "") + repr(self.result)

    @property
    def wire(self) -> str:
        """The requests of the visit with the headers that decided them (→ sent, ← answered)."""
        return self.result.observation.wire_text()

    @property
    def certificates(self) -> dict[str, CertSummary]:
        """The certificate each TLS server the page calls presents (its API, chat, socket.io)."""
        sc = self.result.scenario
        d = Deployment.plan(sc.topology)
        page_svc = d.page_service(sc.visit)
        if page_svc is None:
            return {}
        page = d.page(page_svc)
        pki = LabPKI()
        out = {}
        for name in (page.api, page.ws, page.sio):
            if name is not None and sc.topology.service(name).tls:
                svc = sc.topology.service(name)
                out[name] = pki.for_service(svc.cert, svc.host).summary()
        return out

    @property
    def code(self) -> str:
        """The page's JavaScript that made this visit's calls (from static/app.js)."""
        return page_code(tuple(self.result.observation.steps))

    def _repr_html_(self) -> str:
        sc = self.result.scenario
        cert_lesson = sc.name.startswith("wss-") or (sc.reason or "").startswith("cert")
        return display.run_html(self.result, diagram(sc, result=self.result).svg, self.code,
                                self.certificates if cert_lesson else {}, self.graded,
                                self.asked)


def run(name: str | Scenario, guess: Any = None, headless: bool | None = None,
        devtools: bool | None = None, browser: str = "chromium") -> Run:
    """Run one scenario in the kernel's browser and show what happened. ``guess``: your
    prediction, made before running — "allowed", or ("blocked", reason) — graded beside the
    browser's answer (``labkit.guesses()`` tallies them). ``browser``: "chromium" or
    "firefox"."""
    g = parse_guess(guess)  # a guess it cannot read fails before the browser starts
    result = run_scenario(name, shared_browser(headless, devtools, browser))
    return Run(result, grade(result.name, g, result.verdict) if g else None,
               asked=guess is not None)


class TourReport:
    def __init__(self, results: Sequence[Result]) -> None:
        self.results = list(results)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def __repr__(self) -> str:
        from .runner import table

        return table(self.results)

    def _repr_html_(self) -> str:
        return display.tour_html(self.results)


def tour(names: Iterable[str] | None = None, browser: str = "chromium") -> TourReport:
    """Every scenario (or those named) in one browser ("chromium" or "firefox")."""
    return TourReport(_tour(list(names) if names else None,
                            browser=shared_browser(name=browser)))


class Comparison:
    """One scenario in every browser labkit drives, side by side: what each decided, the words
    it used, the close codes, and what the page's own JavaScript was told."""

    def __init__(self, results: Sequence[Result]) -> None:
        self.results = list(results)
        self.rows = [browser_row(r) for r in self.results]

    @property
    def scenario(self) -> Scenario:
        return self.results[0].scenario

    @property
    def agree(self) -> bool:
        """Every browser reached the same outcome for the same reason."""
        return len({(r.outcome, r.reason) for r in self.rows}) == 1

    def __repr__(self) -> str:
        lines = [f"{self.scenario.name}: expected {self.scenario.expected}"
                 + (f" ({self.scenario.reason})" if self.scenario.reason else "")]
        for r in self.rows:
            lines.append(f"  {r.browser}: {r.outcome} ({r.reason})"
                         + ("" if r.as_expected else "  NOT AS EXPECTED"))
            lines += [f"    console: {c}" for c in r.console]
            lines += [f"    network error: {c}" for c in r.network]
            if r.close_codes:
                lines.append("    close code: " + ", ".join(map(str, r.close_codes)))
            lines += [f"    the page saw: {c}" for c in r.page_saw]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return display.comparison_html(self.scenario, self.rows)


def compare(name: str | Scenario) -> Comparison:
    """Run one scenario in Chromium and in Firefox and show them side by side."""
    sc = get(name) if isinstance(name, str) else name
    return Comparison([run_scenario(sc, shared_browser(name=b)) for b in BROWSERS])


class DoctorReport:
    def __init__(self, checks: list[_doctor.Check]) -> None:
        self.checks = checks

    def __repr__(self) -> str:
        return "\n".join(c.line() for c in self.checks)

    def _repr_html_(self) -> str:
        return display.doctor_html(self.checks)


def doctor() -> DoctorReport:
    return DoctorReport(_doctor.checks())


def reset(ca: bool = False) -> str:
    """Stop every lab and the browser. ``ca=True`` also deletes the lab state folder (the lab CA
    is recreated, with new keys, on the next start)."""
    stop_all()
    _stop_browser()
    if ca:
        shutil.rmtree(default_home() / "pki", ignore_errors=True)
        return "stopped every lab and the browser; deleted the lab CA (a new one comes next start)"
    return "stopped every lab and the browser"
