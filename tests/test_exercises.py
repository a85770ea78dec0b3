"""Exercise checkers judge in the real browser and reject every wrong answer: a wildcard, a
reflected Origin and 'null' fail "only this page"; a wrong type is one LabError line."""

from __future__ import annotations

import re
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
@pytest.mark.parametrize("name", ["nginx-upgrade", "nginx-forwarded-proto", "nginx-read-timeout"])
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


@pytest.mark.browser
def test_a_quiet_socket_through_nginx_is_cut_at_its_read_timeout() -> None:
    """As given: the page's chat works, then its socket, quiet for longer than nginx's 2 s, is
    closed without a close frame (1006) — the console has only Chromium's line about the
    message sent after it."""
    check = labkit.exercise("nginx-read-timeout").check(config=labkit.exercise(
        "nginx-read-timeout").config)
    assert not check.passed
    # 2 s, read by the page's clock (a loaded machine may deliver the close event late).
    assert re.search(r"connection closed \(code 1006\) after [23] s of silence", check.summary)
    obs = check.results[0].observation
    assert obs.steps["chat"].state == "ok"  # it worked until the silence
    assert [m.text for m in obs.console] == ["WebSocket is already in CLOSING or CLOSED state."]


@pytest.mark.browser
@pytest.mark.parametrize(("value", "why"), [
    ("2500ms", "connection closed (code 1006)"),  # the browser sees it: 2.5 s < 3 s quiet
    ("10s", "not longer than the 20 s between the chat server's pings: nginx can still close "
            "a quiet socket after 10 s"),  # read from the text: the browser waits 3 s only
    ("20s", "after 20 s"),  # a ping every 20 s races a 20 s timeout: not longer than it
])
def test_a_read_timeout_still_too_short_is_rejected(value: str, why: str) -> None:
    ex = labkit.exercise("nginx-read-timeout")
    check = ex.check(config=ex.config.replace("proxy_read_timeout 2s;",
                                              f"proxy_read_timeout {value};"))
    assert not check.passed and why in check.summary, check.summary


@pytest.mark.browser
def test_a_long_timeout_set_where_the_location_overrides_it_is_rejected() -> None:
    """proxy_read_timeout at the server level does not reach a location that sets its own."""
    ex = labkit.exercise("nginx-read-timeout")
    config = ex.config.replace("proxy_http_version 1.1;",
                               "proxy_http_version 1.1;\n        proxy_read_timeout 1h;", 1)
    check = ex.check(config=config)
    assert not check.passed and "code 1006" in check.summary, check.summary


@pytest.mark.browser
def test_nginx_default_read_timeout_is_an_answer_too() -> None:
    """Deleting the line leaves nginx's 60 s, longer than the 20 s between the server's pings:
    the checker judges the behaviour, not the text '1h'."""
    ex = labkit.exercise("nginx-read-timeout")
    assert ex.check(config=ex.config.replace("proxy_read_timeout 2s;", "")).passed


def test_the_read_timeout_rule_reads_nginx_as_nginx_does() -> None:
    from labkit.notebook.exercises import chat_read_timeouts, nginx_seconds

    assert [nginx_seconds(v) for v in ("2s", "1h", "1m30s", "500ms", "90", "x", "")] == [
        2, 3600, 90, 0.5, 90, None, None]
    config = """
    http {
        proxy_read_timeout 5m;
        upstream talk { server 127.0.0.1:31303; }
        upstream web { server 127.0.0.1:31301; }
        server {
            location /a { proxy_pass http://talk; }   # inherits 5m from http
            location /b { proxy_read_timeout "2s"; proxy_pass http://talk; }
            location /c { proxy_read_timeout 2s; proxy_pass http://web; }  # not the chat
            location /d { location /d/e { proxy_pass http://127.0.0.1:31303/x; } }
        }
    }"""
    assert chat_read_timeouts(config, 31303) == [
        ("location /a", "5m"), ("location /b", "2s"), ("location /d/e", "5m")]
    assert chat_read_timeouts("http { server { location / { proxy_pass http://127.0.0.1:31303; "
                              "} } }", 31303) == [("location /", "60s")]  # nginx's default


def test_the_rule_uses_the_chat_servers_real_ping_interval() -> None:
    """20 s is websockets' default keepalive, and labkit's chat server keeps the default."""
    import inspect

    from websockets.asyncio.server import ServerConnection

    from labkit.notebook.exercises import CHAT_PING_INTERVAL
    from labkit.serve.apps.chat import ChatServer

    default = inspect.signature(ServerConnection.__init__).parameters["ping_interval"].default
    assert default == CHAT_PING_INTERVAL
    assert "ping_interval" not in inspect.getsource(ChatServer.start)


def test_the_servers_pings_keep_a_quiet_socket_open_past_nginx_read_timeout() -> None:
    """Why a timeout just over 20 s is an answer: a silent Python client through nginx with
    proxy_read_timeout 21s is still open at 23 s — the chat server's ping at 20 s was a read
    for nginx. (About 25 s: the pings come when they come.)"""
    import asyncio
    import json

    from websockets.exceptions import ConnectionClosed

    from labkit import Lab, runtime
    from labkit.notebook.exercises import _nginx_topology
    from labkit.serve.clients import ws_connect

    ex = labkit.exercise("nginx-read-timeout")
    config = ex.config.replace("proxy_read_timeout 2s;", "proxy_read_timeout 21s;")

    async def quiet_for(seconds: float) -> bool:
        lab = Lab(_nginx_topology("nginx-pings"), nginx_configs={"proxy": config})
        await lab.astart()
        try:
            url = lab.origin("proxy").replace("https://", "wss://") + "/ws"
            async with ws_connect(url, lab.pki, ping_interval=None,
                                  origin=lab.origin("proxy")) as ws:
                await ws.send(json.dumps({"type": "join", "room": "general"}))
                await ws.recv()
                try:
                    await asyncio.wait_for(ws.recv(), seconds)
                except asyncio.TimeoutError:
                    pass  # nothing to read: the socket is quiet, and still open
                except ConnectionClosed:
                    return False  # nginx cut it at 21 s: no ping had reached it
                return bool(ws.state.name == "OPEN")
        finally:
            await lab.astop()

    assert runtime.run(quiet_for(23.0))


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
