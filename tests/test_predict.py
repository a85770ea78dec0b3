"""Predict, then run: guesses are read strictly, graded against the browser's verdict, tallied."""

from __future__ import annotations

import pytest

import labkit
from labkit import GuessError
from labkit.notebook import predict
from labkit.notebook.predict import Guess, grade, parse_guess
from labkit.observe.observation import Verdict


@pytest.mark.parametrize(("text", "want"), [
    ("allowed", Guess("allowed")),
    ("blocked", Guess("blocked")),
    (("blocked", "cors"), Guess("blocked", "cors")),
    (["blocked", "mixed-content"], Guess("blocked", "mixed-content")),
    ("blocked cert-name", Guess("blocked", "cert-name")),
    ("blocked (origin-rejected)", Guess("blocked", "origin-rejected")),
    (None, None), ("?", None),
])
def test_guesses_are_read(text: object, want: Guess | None) -> None:
    assert parse_guess(text) == want


@pytest.mark.parametrize("bad", ["denied", "allowed cors", ("blocked", "corz"), 3, ("blocked",
                                 "cors", "extra"), "", ("blocked", 1)])
def test_an_unreadable_guess_is_one_line(bad: object) -> None:
    with pytest.raises(GuessError) as e:
        parse_guess(bad)
    assert "\n" not in str(e.value) and ("Write guess=" in str(e.value)
                                         or "Reasons:" in str(e.value))


def test_grading_needs_the_reason_only_when_named() -> None:
    blocked = Verdict("blocked", "cors")
    assert grade("x", Guess("blocked"), blocked, keep=False).right
    assert grade("x", Guess("blocked", "cors"), blocked, keep=False).right
    assert not grade("x", Guess("blocked", "cors-preflight"), blocked, keep=False).right
    assert not grade("x", Guess("allowed"), blocked, keep=False).right
    assert "the browser said blocked (cors)" in str(grade("x", Guess("allowed"), blocked,
                                                          keep=False))


def test_the_tally_counts_this_kernels_guesses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(predict, "_GRADED", [])
    assert "no guesses yet" in repr(labkit.guesses())
    grade("a", Guess("allowed"), Verdict("allowed", None))
    grade("b", Guess("allowed"), Verdict("blocked", "cors"))
    t = labkit.guesses()
    assert t.right == 1 and repr(t).startswith("1 of 2 guesses right")


@pytest.mark.browser
def test_a_run_grades_the_guess_beside_the_browsers_answer() -> None:
    r = labkit.run("cors-port-mismatch", guess=("blocked", "cors"))
    assert r.graded is not None and r.graded.right
    html = r._repr_html_()
    assert "RIGHT" in html and "as expected" in html
    with pytest.raises(GuessError):
        labkit.run("cors-port-mismatch", guess="nope")


# -- the triage drill ------------------------------------------------------------------------
def test_a_triage_answer_is_checked_strictly() -> None:
    from labkit.notebook.triage import Card, judge_answer

    card = Card(1, "Mixed Content: …", "SecurityError: …", "mixed-content", "mixed-content-ws")
    assert judge_answer(card, "mixed-content")[0]
    for wrong in ("cors", "cert-name", "origin-rejected"):
        right, text = judge_answer(card, wrong)
        assert not right and "not " + wrong in text
    with pytest.raises(GuessError):
        judge_answer(card, "Mixed Content")  # a cause's name, exactly
    idle = Card(10, "WebSocket is already in CLOSING or CLOSED state.",
                "script: blocked — connection closed (code 1006) after 2 s of silence",
                "idle-timeout", "idle-timeout")
    assert judge_answer(idle, "idle-timeout")[0]
    right, text = judge_answer(idle, "origin-rejected")  # 1006 alone is not the answer
    assert not right and "what the page saw" in text


@pytest.mark.browser
def test_the_drill_deals_real_messages_and_each_card_has_one_right_cause() -> None:
    from labkit.notebook.triage import CAUSES, DECK

    drill = labkit.triage()
    assert len(drill.cards) == len(DECK)
    for card, (_, cause) in zip(drill.cards, DECK, strict=True):
        if cause == "idle-timeout":
            # Chromium prints nothing when a proxy drops an open socket; its only line comes
            # when the page then sends on it. The page itself saw 1006 after its silence.
            assert card.console == "WebSocket is already in CLOSING or CLOSED state."
            assert "connection closed (code 1006) after " in card.page_saw, card.page_saw
        else:
            assert card.console != "(no console line)" and "<" in card.console  # ports as names
        for other in CAUSES:
            assert ("RIGHT" in drill.answer(card.number, other)) == (other == cause)
    assert drill.score == f"{len(DECK)} of {len(DECK)} cards named"


@pytest.mark.browser
def test_the_idle_card_is_the_timeout_and_not_the_page() -> None:
    """The twin of the idle-timeout card: the same page, the same silence, through a load
    balancer whose idle timeout is longer than the silence — the socket stays up and the
    message after it is delivered."""
    from dataclasses import replace

    from labkit.notebook.exercises import QUIET_SECONDS
    from labkit.notebook.runner import run_scenario
    from labkit.notebook.session import shared_browser
    from labkit.notebook.triage import IDLE_TIMEOUT, idle_scenario

    assert IDLE_TIMEOUT < QUIET_SECONDS
    cut = run_scenario(idle_scenario(), shared_browser())
    assert cut.ok and cut.verdict.outcome == "blocked", cut
    assert [s.close_code for s in cut.observation.sockets] == [1006]
    sc = idle_scenario()
    patient = replace(sc, expected="allowed", topology=replace(sc.topology, services=tuple(
        replace(s, idle_timeout=QUIET_SECONDS + 5) if s.name == "lb-ws" else s
        for s in sc.topology.services)))
    kept = run_scenario(patient, shared_browser())
    assert kept.ok, kept
    assert kept.observation.steps["script"].detail.startswith("still open after ")
