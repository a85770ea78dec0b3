"""Every scenario of the catalogue, run for real in Chromium, judged from what the browser
said, and cross-checked with labkit.explain's prediction. Fix scenarios and their failing twins
both run here, so a fix that stopped fixing and a failure that stopped failing are both caught."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from labkit.model import scenarios
from labkit.model.explain import explain
from labkit.notebook.runner import judge, run_scenario

#: The catalogue's names: an interface, none may be dropped or renamed.
SHARED_NAMES = [
    "cors-port-mismatch", "cors-allow-origin", "cors-preflight", "cors-preflight-fixed",
    "cors-credentials-wildcard", "cors-simple-post", "server-to-server", "ws-cross-port",
    "ws-hijack", "ws-origin-allowlist", "mixed-content-ws", "mixed-content-localhost",
    "mixed-content-api", "wss-trusted", "wss-untrusted-cert", "wss-name-mismatch",
    "wss-to-plain-server", "reverse-proxy", "reverse-proxy-ws-scheme", "https-redirect",
    "nginx-proxy", "lb-managed-certs", "socketio-polling-cors", "socketio-fixed",
    # the second round (../shared/SCENARIOS.md)
    "cors-reflect-origin", "cors-null-origin", "cors-authorization-preflight",
    "ws-hijack-cross-site", "ws-redirect", "csp-upgrade-insecure", "hsts-ws",
    "proxy-missing-forwarded-proto", "wss-wildcard-cert", "wss-wildcard-depth",
]

#: fix -> the failing twin it fixes
TWINS = {
    "cors-allow-origin": "cors-port-mismatch",
    "cors-preflight-fixed": "cors-preflight",
    "cors-credentials-allowlist": "cors-credentials-wildcard",
    "ws-origin-allowlist": "ws-hijack",
    "mixed-content-localhost": "mixed-content-ws",
    "wss-trusted": "wss-untrusted-cert",
    "reverse-proxy": "cors-port-mismatch",
    "socketio-fixed": "socketio-polling-cors",
    "lb-managed-certs": "lb-managed-certs-no-cors",
    "cors-authorization-preflight-fixed": "cors-authorization-preflight",
    "cors-reflect-origin-fixed": "cors-reflect-origin",
    "cors-null-origin-fixed": "cors-null-origin",
    "csp-upgrade-insecure": "mixed-content-ws",
    "csp-upgrade-insecure-no-tls": "csp-upgrade-insecure",
    "wss-wildcard-cert": "wss-wildcard-depth",
    "proxy-forwarded-proto": "proxy-missing-forwarded-proto",
}


def test_catalogue_has_every_shared_scenario() -> None:
    assert set(SHARED_NAMES) <= set(scenarios.names())
    for fix, twin in TWINS.items():
        assert scenarios.get(fix).expected != scenarios.get(twin).expected or \
            scenarios.get(fix).reason != scenarios.get(twin).reason


def test_each_scenario_explains_itself() -> None:
    for name in scenarios.names():
        sc = scenarios.get(name)
        assert sc.rule and sc.explanation.count(".") >= 2, name
        e = explain(sc)
        assert (e.outcome, e.reason) == (sc.expected, sc.reason), str(e)


@pytest.mark.browser
@pytest.mark.parametrize("name", scenarios.names())
def test_scenario_in_chromium(name: str, browser) -> None:  # type: ignore[no-untyped-def]
    result = run_scenario(name, browser)
    obs = result.observation
    assert result.ok, f"{name}: {result.problems}\n{json.dumps(obs.normalized(), indent=1)}"
    # The prediction from labkit.model.policy agrees with what the browser did.
    e = explain(name)
    assert (e.outcome, e.reason) == (result.verdict.outcome, result.verdict.reason), str(e)


@pytest.mark.browser
def test_simple_post_was_executed_although_blocked(browser) -> None:  # type: ignore[no-untyped-def]
    r = run_scenario("cors-simple-post", browser)
    assert r.verdict.reason == "cors" and r.counter == 1


@pytest.mark.browser
def test_hijack_reads_history_as_the_victim(browser) -> None:  # type: ignore[no-untyped-def]
    r = run_scenario("ws-hijack", browser)
    assert r.observation.steps["steal"].state == "ok"
    assert "as alice" in r.observation.steps["steal"].detail
    assert "hello from alice" in r.observation.steps["steal"].detail
    # The twin: the allow-list refuses the attacker with 403 while the real page still chats.
    fixed = run_scenario("ws-origin-allowlist", browser)
    assert fixed.verdict.reason == "origin-rejected"
    assert fixed.observation.before[0]["chat"].state == "ok"
    statuses = {(s["origin"] or "").split("://")[1].split(":")[0]: s["status"]
                for s in fixed.observation.seen if s["service"] == "chat"}
    assert statuses == {"evil.lab.test": 403, "app.lab.test": 101}


@pytest.mark.browser
def test_cross_port_socket_sends_origin_without_cors(browser) -> None:  # type: ignore[no-untyped-def]
    r = run_scenario("ws-cross-port", browser)
    hs = [s for s in r.observation.seen if s["service"] == "chat"]
    assert hs and hs[0]["origin"].startswith("https://localhost:") and hs[0]["status"] == 101


@pytest.mark.browser
def test_mixed_content_hides_on_localhost(browser) -> None:  # type: ignore[no-untyped-def]
    blocked = run_scenario("mixed-content-ws", browser)
    assert any(m.startswith("error: Mixed Content:") for m in blocked.observation.messages())
    # The constructor throws: the socket never exists, so no handshake reaches the server.
    assert blocked.observation.steps["socket"].detail.startswith("SecurityError:")
    assert [s.error.split(":")[0] for s in blocked.observation.sockets] == ["SecurityError"]
    assert not [s for s in blocked.observation.seen if s["service"] == "chat"]
    exempt = run_scenario("mixed-content-localhost", browser)
    assert exempt.verdict.outcome == "allowed" and not exempt.observation.messages()


def test_judge_reports_a_wrong_reason_as_a_mismatch() -> None:
    # A CORS scenario blocked for a certificate reason is a failure, not a pass.
    from labkit.observe.observation import ConsoleMessage, Observation, Step

    obs = Observation(
        url="u", final_url="u", redirects=[], navigation_error=None, status=200,
        steps={"hello": Step("blocked", "TypeError: Failed to fetch")},
        console=[ConsoleMessage("error",
                                "Failed to load resource: net::ERR_CERT_AUTHORITY_INVALID")],
        page_errors=[], failed_requests=[], sockets=[], seen=[], browser_version="x")
    r = judge(scenarios.get("cors-port-mismatch"), obs)
    assert not r.ok and "cert-authority" in r.problems[0]


def test_unknown_scenario_lists_the_known_ones() -> None:
    out = subprocess.run([sys.executable, "-m", "labkit", "tour", "--scenario", "nope"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "unknown scenario 'nope'" in out.stderr and "cors-port-mismatch" in out.stderr


@pytest.mark.browser
def test_tour_json_and_exit_status() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "labkit", "tour", "--json", "--scenario", "cors-port-mismatch",
         "--scenario", "cors-allow-origin"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["browser"].count(".") == 3
    assert [s["name"] for s in data["scenarios"]] == ["cors-port-mismatch", "cors-allow-origin"]
    first = data["scenarios"][0]
    assert set(first) == {"name", "expected", "observed", "reason", "rule", "ok", "messages"}
    assert first["ok"] and first["reason"] == "cors"
    assert any("has been blocked by CORS policy" in m for m in first["messages"])
    # Progress, kept off stdout; both run at once, so either may finish first.
    assert re.search(r"\[[12]/2\] cors-port-mismatch", out.stderr), out.stderr


@pytest.mark.browser
def test_tour_one_at_a_time_reports_in_catalogue_order() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "labkit", "tour", "--jobs", "1", "--scenario", "mixed-content-ws",
         "--scenario", "server-to-server"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr.index("[1/2] mixed-content-ws") < out.stderr.index("[2/2] server-to-server")


def test_tour_refuses_zero_jobs() -> None:
    out = subprocess.run([sys.executable, "-m", "labkit", "tour", "--jobs", "0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--jobs takes a whole number of 1 or more" in out.stderr


@pytest.mark.browser
def test_tour_exits_non_zero_on_a_mismatch(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A scenario whose expectation is wrong must make the tour fail.
    script = (
        "import dataclasses, sys\n"
        "from labkit import cli\nfrom labkit.model import scenarios\n"
        "sc = scenarios.get('cors-allow-origin')\n"
        "scenarios.SCENARIOS['cors-allow-origin'] = dataclasses.replace(sc, expected='blocked',"
        " reason='cors')\n"
        "sys.exit(cli.main(['tour', '--scenario', 'cors-allow-origin']))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "MISMATCH cors-allow-origin" in out.stdout
