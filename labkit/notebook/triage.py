"""The triage drill: a browser's error message in front of you, name the cause.

Each card is a real run of a catalogue scenario in this machine's Chromium: the console line the
browser printed (what a developer sees in DevTools) and what the page's own JavaScript was told
(usually far less: ``TypeError: Failed to fetch``, a ``SecurityError``, a close event). The
participant names the cause; the answer is checked against the scenario's known cause, strictly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import GuessError
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
)


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
    """A card from a real run: the deciding console line and the page's own step detail."""
    obs = result.observation
    console = result.verdict.evidence or "(no console line)"
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
    return Drill([card_from(i, run_scenario(name, browser), cause)
                  for i, (name, cause) in enumerate(DECK, 1)])


__all__ = ["CAUSES", "DECK", "Card", "Drill", "card_from", "judge_answer", "triage"]
