"""The triage drill: a browser's error message in front of you, name the cause.

Each card is a real run of a catalogue scenario in this machine's Chromium: the console line the
browser printed (what a developer sees in DevTools) and what the page's own JavaScript was told
(usually far less: ``TypeError: Failed to fetch``, a ``SecurityError``, a close event). The
participant names the cause; the answer is checked against the scenario's known cause, strictly.
One card is not in the catalogue: a load balancer that drops a quiet chat socket, run the same
way — Chromium prints nothing when that happens, only when the page then sends on the dead socket.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import GuessError
from ..model.routing import Route
from ..model.scenarios import Scenario
from ..model.topology import Page, Service, Topology
from ..observe.observation import normalize_text
from .exercises import QUIET_SECONDS, QUIET_SOCKET
from .runner import Result

#: Causes a participant may name, each with the words a hint gives.
CAUSES: dict[str, str] = {
    "cors": "the response has no (matching) Access-Control-Allow-Origin",
    "cors-preflight": "the OPTIONS preflight did not allow the request",
    "cors-credentials": "credentials with '*' or without Access-Control-Allow-Credentials: true",
    "mixed-content": "an https page asked for http:// or ws://",
    "cert-authority": "the certificate comes from a CA the browser does not trust",
    "cert-name": "the certificate does not name the host",
    "origin-rejected": "the WebSocket server refused the page's Origin (403, or socket.io's 400)",
    "idle-timeout": "a proxy or load balancer dropped a socket that was quiet for longer than "
                    "its timeout: no close frame, so the page sees 1006",
}

#: (scenario, the cause) in the order the cards are dealt: no two neighbours share a family.
DECK: tuple[tuple[str, str], ...] = (
    ("mixed-content-ws", "mixed-content"),
    ("cors-port-mismatch", "cors"),
    ("wss-name-mismatch", "cert-name"),
    ("ws-origin-allowlist", "origin-rejected"),
    ("cors-preflight", "cors-preflight"),
    ("wss-untrusted-cert", "cert-authority"),
    ("cors-credentials-wildcard", "cors-credentials"),
    ("socketio-websocket-only", "origin-rejected"),
    ("mixed-content-api", "mixed-content"),
    ("idle-timeout", "idle-timeout"),
)
#: The load balancer's idle timeout on the card: shorter than the page's silence
#: (exercises.QUIET_SECONDS), at least the 1 s labkit allows.
IDLE_TIMEOUT = 2.0


def idle_scenario() -> Scenario:
    """The page opens the chat socket through a load balancer (labkit's proxy; it drops a
    socket that carried nothing for ``IDLE_TIMEOUT`` s, as cloud load balancers do: no close
    frame), stays quiet for longer, then sends. RFC 6455 §7.1.5: closed without a Close frame,
    the close code is 1006."""
    services = (
        Service("web", "web", host="app.lab.test"),
        Service("chat", "chat", tls=False),
        Service("lb-ws", "proxy", host="ws.lab.test", cert="own",
                routes=(Route("/", "chat", websocket=True),), idle_timeout=IDLE_TIMEOUT),
    )
    topo = Topology("idle-timeout", services,
                    Page(api=None, ws="lb-ws", steps=("script",), script=QUIET_SOCKET),
                    title="a load balancer in front of the chat server")
    return Scenario(
        "idle-timeout", topo, "blocked", None,
        "RFC 6455 §7.1.5: a connection closed without a Close frame reports code 1006",
        f"The load balancer drops a socket that carried nothing for {IDLE_TIMEOUT:g} s; the "
        f"page stayed quiet for {QUIET_SECONDS:g} s. Nobody sent a Close frame: 1006.",
        decisive=("script",))


#: Cards whose run is not a catalogue scenario.
_OWN = {"idle-timeout": idle_scenario}


@dataclass
class Card:
    number: int
    console: str  # the browser's own line (ports shown as service names)
    page_saw: str  # what the page's JavaScript was told
    cause: str = field(repr=False)
    scenario: str = field(repr=False)
    answered: str | None = None

    def __str__(self) -> str:
        return (f"card {self.number}\n  console:   {self.console}\n"
                f"  page saw:  {self.page_saw}")


def card_from(number: int, result: Result, cause: str) -> Card:
    """A card from a real run: the deciding console line and the page's own step detail.
    Where no browser rule decided (a dropped socket), the console's first error, if any."""
    obs = result.observation
    errors = [normalize_text(m.text, obs.ports) for m in obs.console if m.type == "error"]
    console = (result.verdict.evidence if result.verdict.reason else
               errors[0] if errors else "") or "(no console line)"
    decisive = [s for s in result.scenario.decisive if s in obs.steps] or list(obs.steps)
    saw = "; ".join(f"{s}: {obs.steps[s].state} — {obs.normalized()['steps'][s]['detail']}"
                    for s in decisive[:1])
    return Card(number, console, saw or "(the page ran no step)", cause, result.name)


def judge_answer(card: Card, answer: object) -> tuple[bool, str]:
    """Right or not, and what to say (no I/O). Unknown words are a one-line error."""
    if not isinstance(answer, str) or answer not in CAUSES:
        raise GuessError(f"{answer!r} is not a cause. Causes: {', '.join(CAUSES)}.")
    if answer == card.cause:
        return True, f"card {card.number}: RIGHT — {CAUSES[answer]} ({card.scenario})"
    if card.cause == "idle-timeout":  # no browser rule, so no console line names one
        return False, (f"card {card.number}: not {answer} — look again at what the page saw "
                       f"(hint: which close code, after how long?)")
    return False, (f"card {card.number}: not {answer} — look again at the console line "
                   f"(hint: which words name the rule?)")


class Drill:
    """Cards dealt from real runs; ``answer(n, cause)`` checks one; ``repr`` lists the cards."""

    def __init__(self, cards: list[Card]) -> None:
        self.cards = cards

    def answer(self, number: int, cause: str) -> str:
        if not 1 <= number <= len(self.cards):
            raise GuessError(f"there is no card {number}: the cards are 1 to {len(self.cards)}.")
        card = self.cards[number - 1]
        right, text = judge_answer(card, cause)
        if right:
            card.answered = cause
        return text

    @property
    def score(self) -> str:
        done = sum(c.answered is not None for c in self.cards)
        return f"{done} of {len(self.cards)} cards named"

    def __repr__(self) -> str:
        lines = [f"Name the cause of each (drill.answer(n, cause)); causes: "
                 f"{', '.join(CAUSES)}"]
        lines += [str(c) + ("   [named]" if c.answered else "") for c in self.cards]
        return "\n".join(lines)


def triage() -> Drill:
    """Deal the cards: each scenario of :data:`DECK` runs now, in this kernel's browser."""
    from .runner import run_scenario
    from .session import shared_browser

    browser = shared_browser()
    return Drill([card_from(i, run_scenario(_OWN[name]() if name in _OWN else name, browser),
                            cause)
                  for i, (name, cause) in enumerate(DECK, 1)])


__all__ = ["CAUSES", "DECK", "Card", "Drill", "card_from", "idle_scenario", "judge_answer",
           "triage"]
