"""Exercise checkers judge in the real browser and reject every wrong answer: a wildcard, a
reflected Origin and 'null' fail "only this page"; a wrong type is one LabError line."""

from __future__ import annotations

from typing import Any

import pytest

import labkit
from labkit import CorsPolicy, LabError, Route
from labkit.notebook.exercises import EXERCISES

WRONG: list[tuple[str, dict[str, Any], str]] = [
    ("cors", {"api_cors": CorsPolicy("wildcard")}, "another origin"),
    ("cors", {"api_cors": CorsPolicy("reflect")}, "another origin"),
    ("cors", {"api_cors": CorsPolicy("allowlist", ("null", "web"))}, "sandboxed"),
    ("cors", {"api_cors": CorsPolicy("allowlist", ("web",), preflight=False)}, "cors-preflight"),
    ("credentials", {"api_cors": CorsPolicy("reflect", credentials=True)}, "another origin"),
    ("credentials", {"api_cors": CorsPolicy("allowlist", ("web",))}, "cors-credentials"),
    ("origin", {"chat_origins": None}, "expected blocked"),
    ("origin", {"chat_origins": ("web", "null")}, "sandboxed"),
    ("origin", {"chat_origins": ("web", "evil")}, "expected blocked"),
    ("wss", {"chat_tls": True, "ws_scheme": "ws"}, "mixed-content"),
    ("proxy", {"routes": (Route("/api", "api"), Route("/ws", "chat"), Route("/", "web"))},
     "http-error"),
]


@pytest.mark.browser
@pytest.mark.parametrize(("name", "settings", "why"), WRONG,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(WRONG)])
def test_a_wrong_answer_is_rejected(name: str, settings: dict[str, Any], why: str) -> None:
    check = labkit.exercise(name).check(**settings)
    assert not check.passed, check
    assert why in check.summary, check.summary


@pytest.mark.browser
@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_the_reference_passes(name: str) -> None:
    ex = labkit.exercise(name)
    assert ex.check(**ex.reference).passed


@pytest.mark.parametrize(("name", "settings", "fix"), [
    ("cors", {"api_cors": "web"}, "Write api_cors=labkit.CorsPolicy("),
    ("cors", {"api_corz": CorsPolicy()}, "exercise 'cors' takes api_cors; not api_corz"),
    ("origin", {"chat_origins": "web"}, "Write chat_origins=('web',)"),
    ("wss", {"chat_tls": "yes", "ws_scheme": "wss"}, "Write chat_tls=True"),
    ("wss", {"chat_tls": True, "ws_scheme": "https"}, "ws_scheme='wss'"),
    ("proxy", {"routes": ["/api"]}, "tuple of Route objects"),
])
def test_a_wrong_type_is_one_line(name: str, settings: dict[str, Any], fix: str) -> None:
    with pytest.raises(LabError) as e:
        labkit.exercise(name).check(**settings)
    assert fix in str(e.value) and "\n" not in str(e.value)
