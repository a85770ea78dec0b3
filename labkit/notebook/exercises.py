"""Exercises: a broken configuration the participant repairs in a cell, checked in the real browser.

Each exercise builds its topology from the participant's settings, runs it in Chromium and judges it
like a scenario. Hints come one at a time on request; the reference solution lives here, out of the
notebook's sight, and ``check_reference()`` proves it passes without printing it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..model.cors import CorsPolicy
from ..model.routing import Route
from ..model.scenarios import Scenario, _hijack, _ws
from ..model.topology import Page, Service, Topology, WsScheme
from . import display
from .runner import Result


@dataclass
class Check:
    passed: bool
    summary: str
    results: list[Result]

    def __repr__(self) -> str:
        return ("✅ fixed: " if self.passed else "❌ not yet: ") + self.summary

    def _repr_html_(self) -> str:
        return display.check_html(self)


@dataclass
class Exercise:
    name: str
    task: str
    settings: str  # what the participant changes, as the cell shows it
    build: Callable[..., list[Scenario]]  # settings -> the scenarios that must all pass
    hints: list[str]
    reference: dict[str, Any]
    _hinted: int = field(default=0, repr=False)

    def __repr__(self) -> str:
        return f"Exercise {self.name}: {self.task}\nChange: {self.settings}"

    def _repr_html_(self) -> str:
        return display.exercise_html(self)

    def check(self, **settings: Any) -> Check:
        """Build the deployment from your settings, run it in the real browser, judge it."""
        from .runner import run_scenario
        from .session import shared_browser

        try:
            scenarios = self.build(**settings)
        except TypeError as e:
            return Check(False, f"{e} — the settings are: {self.settings}", [])
        results = [run_scenario(sc, shared_browser()) for sc in scenarios]
        bad = [r for r in results if not r.ok]
        if not bad:
            return Check(True, "; ".join(f"{r.name}: {r.verdict}" for r in results), results)
        r = bad[0]
        return Check(False, f"{r.name}: the browser showed {r.verdict} "
                              f"({'; '.join(r.problems)})", results)

    def hint(self) -> str:
        """The next hint (call again for more)."""
        if self._hinted >= len(self.hints):
            return "No more hints: ex.solution() shows the reference solution."
        self._hinted += 1
        return f"Hint {self._hinted}/{len(self.hints)}: {self.hints[self._hinted - 1]}"

    def solution(self) -> str:
        return "Reference solution: " + ", ".join(f"{k}={v!r}" for k, v in self.reference.items())

    def check_reference(self) -> str:
        """Prove the exercise is solvable, without showing the solution."""
        v = self.check(**self.reference)
        return ("✅ the reference solution passes in the real browser (ex.solution() shows it)"
                if v.passed else f"❌ the reference solution fails: {v.summary}")


def _expect(name: str, topology: Topology, expected: str, reason: str | None,
            decisive: tuple[str, ...], **kw: Any) -> Scenario:
    return Scenario(name, topology, expected, reason, "exercise", "An exercise. Fix it. Then go.",
                    decisive=decisive, **kw)


def _cors_ex(api_cors: CorsPolicy) -> list[Scenario]:
    topo = Topology("ex-cors",
                    services=(Service("web", "web"), Service("api", "api", cors=api_cors)),
                    page=Page(ws=None, steps=("hello", "login")))
    return [_expect("ex-cors", topo, "allowed", None, ("hello", "login"))]


def _credentials_ex(api_cors: CorsPolicy) -> list[Scenario]:
    topo = Topology("ex-credentials",
                    services=(Service("web", "web"), Service("api", "api", cors=api_cors)),
                    page=Page(ws=None, steps=("login", "hello"), credentials="include"))
    return [_expect("ex-credentials", topo, "allowed", None, ("login", "hello"))]


def _origin_ex(chat_origins: tuple[str, ...] | None) -> list[Scenario]:
    topo = _hijack("ex-origin", chat_origins)
    # Both must hold: the attacker refused, the real page still chatting.
    return [_expect("ex-origin", topo, "blocked", "origin-rejected", ("steal",), visit="evil",
                    before=("web",), before_ok=("login", "chat"))]


def _wss_ex(chat_tls: bool, ws_scheme: WsScheme) -> list[Scenario]:
    topo = _ws("ex-wss", Service("chat", "chat", host="ws.lab.test", tls=chat_tls),
               ws_scheme=ws_scheme)
    return [_expect("ex-wss", topo, "allowed", None, ("socket", "chat"))]


def _proxy_ex(routes: tuple[Route, ...]) -> list[Scenario]:
    topo = Topology(
        "ex-proxy",
        services=(Service("web", "web", tls=False), Service("api", "api", tls=False),
                  Service("chat", "chat", tls=False),
                  Service("proxy", "proxy", host="app.lab.test", routes=routes)),
        page=Page(api=None, ws=None, same_origin=True, credentials="same-origin"))
    return [_expect("ex-proxy", topo, "allowed", None, ("hello", "login", "socket", "chat"),
                    visit="proxy")]


EXERCISES: dict[str, Exercise] = {e.name: e for e in (
    Exercise("cors", "The page on https://localhost:A cannot call the API on https://localhost:B. "
             "Give the API a CORS policy that lets this page (and only this page) in — the JSON "
             "login included.",
             "api_cors=labkit.CorsPolicy(...)", _cors_ex,
             ["Which origin does the page have? The API must name it exactly (or name the "
              "service 'web').",
              "CorsPolicy(mode, origins, ...): the modes are 'none', 'allowlist', 'wildcard'.",
              "The login is a JSON POST: its preflight must be answered too (preflight=True)."],
             {"api_cors": CorsPolicy("allowlist", ("web",))}),
    Exercise("credentials", "The page logs in with credentials: 'include', and the API answers "
             "Access-Control-Allow-Origin: *. Make the browser accept the answers.",
             "api_cors=labkit.CorsPolicy(...)", _credentials_ex,
             ["With credentials the browser refuses the wildcard '*'.",
              "Name the page's origin, and allow credentials explicitly."],
             {"api_cors": CorsPolicy("allowlist", ("web",), credentials=True)}),
    Exercise("origin", "An attacker's page on https://evil.lab.test reads the victim's chat "
             "history through the chat socket. Stop it without breaking the real page.",
             "chat_origins=None  # or a tuple of allowed origins / service names", _origin_ex,
             ["Browsers send Origin on every WebSocket handshake; CORS does not apply.",
              "Give the chat server an allow-list with just the real page's origin (the "
              "service 'web')."],
             {"chat_origins": ("web",)}),
    Exercise("wss", "The https page at app.lab.test opens ws://ws.lab.test and the browser blocks "
             "it. Make the chat work.",
             "chat_tls=False, ws_scheme='ws'", _wss_ex,
             ["An https page may only open wss:// sockets (localhost excepted).",
              "wss:// needs the chat server to speak TLS, with a certificate for ws.lab.test."],
             {"chat_tls": True, "ws_scheme": "wss"}),
    Exercise("proxy", "The reverse proxy serves the page and the API, but the chat fails. Fix "
             "its routes.",
             "routes=(Route('/api', 'api'), Route('/', 'web'))", _proxy_ex,
             ["Which path does the page open its socket on?",
              "A WebSocket route must say websocket=True so the proxy relays the upgrade."],
             {"routes": (Route("/api", "api"), Route("/ws", "chat", websocket=True),
                         Route("/", "web"))}),
)}


def exercise(name: str) -> Exercise:
    try:
        return EXERCISES[name]
    except KeyError:
        raise KeyError(f"no exercise {name!r}; exercises: {', '.join(EXERCISES)}") from None


__all__ = ["EXERCISES", "Check", "Exercise", "exercise"]
