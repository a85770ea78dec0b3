"""The scenario catalogue (../shared/SCENARIOS.md): each failure and fix of the story as data.

A scenario is a topology, what the page does, the outcome a real Chromium shows, and the rule
behind it. The names are an interface: ``labkit up --scenario NAME``, ``labkit tour`` and the
notebooks refer to them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .apps.cors import CorsPolicy
from .errors import UnknownScenarioError
from .topology import Page, Service, Topology


@dataclass(frozen=True)
class Scenario:
    name: str
    topology: Topology
    expected: str  # "allowed" | "blocked"
    reason: str | None  # the expected block reason (policy.REASONS), None when allowed
    rule: str
    explanation: str
    #: The page steps whose states decide the outcome (all ok: allowed; any blocked: blocked).
    decisive: tuple[str, ...] = ()
    #: Which service's page the browser visits.
    visit: str = "web"


def _cors(name: str, cors: CorsPolicy, steps: tuple[str, ...], credentials: str = "omit") -> Topology:
    return Topology(
        name=name,
        title=f"labkit messenger — {name}",
        services=(
            Service("web", "web"),
            Service("api", "api", cors=cors),
            Service("chat", "chat"),
        ),
        page=Page(ws=None, steps=steps, credentials=credentials),
    )


_CATALOGUE: tuple[Scenario, ...] = (
    Scenario(
        "cors-port-mismatch",
        _cors("cors-port-mismatch", CorsPolicy("none"), ("hello",)),
        "blocked", "cors", "origin = scheme+host+port; no ACAO",
        "The page at https://localhost:A and the API at https://localhost:B differ only by port, "
        "which makes them different origins. The API sends no Access-Control-Allow-Origin header, "
        "so the browser hides the answer from the page.",
        decisive=("hello",),
    ),
    Scenario(
        "cors-allow-origin",
        _cors("cors-allow-origin", CorsPolicy("allowlist", ("web",)), ("hello",)),
        "allowed", None, "ACAO matches origin",
        "The API now answers with Access-Control-Allow-Origin set to the page's exact origin. "
        "The browser compares it with the page's origin and lets the page read the answer.",
        decisive=("hello",),
    ),
)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in _CATALOGUE}


def names() -> list[str]:
    return list(SCENARIOS)


def get(name: str) -> Scenario:
    """The scenario called ``name``; an unknown name lists the known ones."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise UnknownScenarioError(name, names()) from None
