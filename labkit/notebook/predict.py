"""Predict, then run: a participant's guess for a scenario, graded against what the browser did.

A guess is an outcome and, when blocked, the reason: ``"allowed"``, ``("blocked", "cors")`` or the
same as one string, ``"blocked cors"``. Parsing and grading are plain functions; the only state is
this kernel's list of graded guesses, which :func:`guesses` tallies for the participant (and for an
instructor who asks the room to call it out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import GuessError
from ..model.policy import REASONS
from ..observe.observation import Verdict

#: The notebook's placeholder before the participant has guessed.
NO_GUESS = "?"


@dataclass(frozen=True)
class Guess:
    outcome: str  # "allowed" | "blocked"
    reason: str | None = None  # for "blocked": one of policy.REASONS, or None (any reason)

    def __str__(self) -> str:
        return self.outcome + (f" ({self.reason})" if self.reason else "")


def parse_guess(guess: Any) -> Guess | None:
    """``None`` or ``"?"``: no guess yet. Otherwise a :class:`Guess`, or one line saying what to
    write (no I/O)."""
    if guess is None or guess == NO_GUESS:
        return None
    if isinstance(guess, str):
        parts = guess.replace("(", " ").replace(")", " ").replace(",", " ").split()
    elif isinstance(guess, (tuple, list)) and all(isinstance(p, str) for p in guess):
        parts = list(guess)
    else:
        parts = []
    if not parts or parts[0] not in ("allowed", "blocked") or len(parts) > 2 \
            or (parts[0] == "allowed" and len(parts) == 2):
        raise GuessError(f"guess={guess!r} is not a guess. Write guess=\"allowed\", or "
                         "guess=(\"blocked\", REASON), e.g. (\"blocked\", \"cors\").")
    if len(parts) == 2 and parts[1] not in REASONS:
        raise GuessError(f"{parts[1]!r} is not a reason labkit knows. Reasons: "
                         f"{', '.join(REASONS)}.")
    return Guess(parts[0], parts[1] if len(parts) == 2 else None)


@dataclass(frozen=True)
class Graded:
    scenario: str
    guess: Guess
    verdict: Verdict

    @property
    def outcome_right(self) -> bool:
        return self.guess.outcome == self.verdict.outcome

    @property
    def right(self) -> bool:
        """Outcome right, and the reason too when the guess named one."""
        return self.outcome_right and (self.guess.reason is None
                                       or self.guess.reason == self.verdict.reason)

    def __str__(self) -> str:
        if self.right:
            extra = "" if self.guess.reason or self.verdict.reason is None else \
                f" (the reason: {self.verdict.reason})"
            return f"your guess {self.guess}: RIGHT{extra}"
        return f"your guess {self.guess}: WRONG — the browser said {self.verdict}"


_GRADED: list[Graded] = []


def grade(scenario: str, guess: Guess, verdict: Verdict, *, keep: bool = True) -> Graded:
    g = Graded(scenario, guess, verdict)
    if keep:
        _GRADED.append(g)
    return g


@dataclass(frozen=True)
class Tally:
    graded: tuple[Graded, ...]

    @property
    def right(self) -> int:
        return sum(g.right for g in self.graded)

    def __repr__(self) -> str:
        if not self.graded:
            return "no guesses yet: labkit.run(name, guess=...)"
        lines = [f"{self.right} of {len(self.graded)} guesses right"]
        lines += [f"  {g.scenario:30} {'RIGHT' if g.right else 'WRONG':5}  guessed {g.guess}, "
                  f"the browser said {g.verdict}" for g in self.graded]
        return "\n".join(lines)


def guesses() -> Tally:
    """This kernel's guesses so far, graded: how many were right, and which."""
    return Tally(tuple(_GRADED))


__all__ = ["NO_GUESS", "Graded", "Guess", "GuessError", "Tally", "grade", "guesses",
           "parse_guess"]
