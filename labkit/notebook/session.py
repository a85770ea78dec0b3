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
from ..observe.browser import Browser
from ..serve.apps.web import page_code
from ..serve.pki import CertSummary, LabPKI, default_home
from . import checkup as _doctor
from . import display  # also registers the HTML views of Lab, Scenario, Observation, ...
from .diagram import Diagram, render
from .predict import Graded, grade, parse_guess
from .runner import Result, run_scenario
from .runner import tour as _tour

_lock = threading.Lock()
_browser: Browser | None = None


def shared_browser(headless: bool | None = None, devtools: bool | None = None) -> Browser:
    """The kernel's browser: started on first use, reused by every run, stopped at exit.
    ``headless=False`` (on a laptop with a display) shows the window, for live demos;
    ``devtools=True`` opens DevTools on the Console with every page (headed only)."""
    global _browser
    if headless is None:
        # LABKIT_HEADED=1: instructors on a laptop see every visit in a real window, with
        # DevTools on the Console (where the room sees the red line).
        headless = os.environ.get("LABKIT_HEADED", "") in ("", "0")
    if devtools is None:
        devtools = not headless and os.environ.get("LABKIT_HEADED", "") not in ("", "0")
    devtools = devtools and not headless
    with _lock:
        if _browser is not None and (_browser.headless, _browser.devtools) != (headless,
                                                                               devtools):
            _browser.stop()
            _browser = None
        if _browser is None:
            _browser = Browser(headless=headless, devtools=devtools)
        return _browser


def _stop_browser() -> None:
    global _browser
    with _lock:
        b, _browser = _browser, None
    if b is not None:
        b.stop()


runtime.on_shutdown(_stop_browser)


def scenario(name: str) -> Scenario:
    return get(name)


def explain(what: str | Scenario | Topology | Lab, *, visit: str | None = None,
            before: tuple[str, ...] | None = None) -> Explanation:
    """What the browser will do, and why, from the rules alone: for a scenario (or its name), a
    topology you built (``visit``: whose page the browser opens, default ``web``; ``before``:
    pages opened first in the same browser, e.g. a victim logging in), or a lab (real ports)."""
    if isinstance(what, Lab):
        deployment = what.deployment if what.running else None
        return _explain(what.topology, visit=visit, before=before, deployment=deployment)
    return _explain(what, visit=visit, before=before)


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
        devtools: bool | None = None) -> Run:
    """Run one scenario in the kernel's browser and show what happened. ``guess``: your
    prediction, made before running — "allowed", or ("blocked", reason) — graded beside the
    browser's answer (``labkit.guesses()`` tallies them)."""
    g = parse_guess(guess)  # a guess it cannot read fails before the browser starts
    result = run_scenario(name, shared_browser(headless, devtools))
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


def tour(names: Iterable[str] | None = None) -> TourReport:
    return TourReport(_tour(list(names) if names else None, browser=shared_browser()))


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
