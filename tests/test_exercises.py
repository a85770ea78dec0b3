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
    ("cors-headers", {"headers": {}}, "expected allowed"),
    ("cors-headers", {"headers": {"Access-Control-Allow-Origin": "*",
                                  "Access-Control-Allow-Headers": "content-type"}},
     "another origin"),
    ("cors-headers", {"headers": {"Access-Control-Allow-Origin": "null",
                                  "Access-Control-Allow-Headers": "content-type"}},
     "expected allowed"),
    ("cors-headers", {"headers": {"Access-Control-Allow-Origin": "https://localhost:31401/",
                                  "Access-Control-Allow-Headers": "content-type"}}, "(cors)"),
    ("cors-headers", {"headers": {"Access-Control-Allow-Origin": "https://localhost:31401"}},
     "cors-preflight"),
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
    ("cors-headers", {"headers": [("a", "b")]}, "Write headers={"),
    ("cors-headers", {"headers": {"Access-Control-Allow-Origin": 1}}, "text values"),
])
def test_a_wrong_type_is_one_line(name: str, settings: dict[str, Any], fix: str) -> None:
    with pytest.raises(LabError) as e:
        labkit.exercise(name).check(**settings)
    assert fix in str(e.value) and "\n" not in str(e.value)


# -- the real artefact: the generated nginx.conf, edited ------------------------------------
@pytest.mark.browser
@pytest.mark.parametrize("name", ["nginx-upgrade", "nginx-forwarded-proto"])
def test_an_nginx_config_exercise_fails_as_given_and_passes_when_fixed(name: str) -> None:
    ex = labkit.exercise(name)
    assert "PREFIX" in ex.config and "listen 127.0.0.1:31304 ssl;" in ex.config
    assert not ex.check(config=ex.config).passed  # the twin: the bug still reproduces
    assert "passes" in ex.check_reference()


@pytest.mark.browser
def test_half_a_websocket_fix_is_rejected() -> None:
    ex = labkit.exercise("nginx-upgrade")
    half = ex.config.replace("proxy_read_timeout 1h;",
                             "proxy_set_header Upgrade $http_upgrade;\n"
                             "            proxy_read_timeout 1h;", 1)
    assert half != ex.config
    check = ex.check(config=half)  # no Connection: upgrade, so nginx sends Connection: close
    assert not check.passed, check


def test_an_nginx_config_must_be_text() -> None:
    with pytest.raises(LabError) as e:
        labkit.exercise("nginx-upgrade").check(config=None)  # type: ignore[arg-type]
    assert "Write config=" in str(e.value) and "\n" not in str(e.value)


# -- the attacker's page, written by the participant -----------------------------------------
@pytest.mark.browser
def test_the_attack_must_ride_the_victims_session_and_fail_cross_site() -> None:
    ex = labkit.exercise("attack")
    assert not ex.check(script='return "not yet";').passed  # no socket: no session
    assert not ex.check(script="throw new Error('boom')").passed
    assert ex.check(**ex.reference).passed


def test_explain_refuses_to_guess_what_a_script_does() -> None:
    from labkit.notebook.exercises import _attack_ex

    with pytest.raises(LabError) as e:
        labkit.explain(_attack_ex("return 1;")[0])
    assert "Run it instead" in str(e.value)
