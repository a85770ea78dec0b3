"""Firefox, driven over WebDriver BiDi: every scenario as expected, in Firefox's own words; visits
isolated (cookies and HSTS); nothing outlives labkit; a Firefox that labkit cannot drive says so
in one line."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from procs_util import survivors, survivors_of_killed_starter

from labkit import FirefoxProtocolError, Lab, LabError, explain, runtime
from labkit.model import scenarios
from labkit.notebook.runner import run_scenario
from labkit.observe.firefox import Firefox, stop_leftover
from labkit.observe.observation import classify

pytestmark = pytest.mark.firefox


@pytest.mark.parametrize("name", scenarios.names())
def test_scenario_in_firefox(name: str, firefox) -> None:  # type: ignore[no-untyped-def]
    result = run_scenario(name, firefox)
    obs = result.observation
    if scenarios.get(name).client == "browser":
        assert obs.browser == "firefox" and obs.browser_version.split(".")[0].isdigit()
    assert result.ok, f"{name}: {result.problems}\n{json.dumps(obs.normalized(), indent=1)}"
    e = explain(name)
    assert (e.outcome, e.reason) == (result.verdict.outcome, result.verdict.reason), str(e)
    # What explain says Firefox says, Firefox said in this run.
    said = "\n".join([m.text for m in obs.console] + [r.failure for r in obs.failed_requests]
                     + [s.error or "" for s in obs.sockets]
                     + [st.detail for st in obs.steps.values()])
    for d in e.browser_differences:
        assert re.search(d.evidence, said), (d, said)
        if "TypeError: NetworkError" in d.text:
            assert "TypeError: NetworkError when attempting to fetch resource." in said, said
        if d.close_code is not None:
            assert d.close_code in [s.close_code for s in obs.sockets], (d, obs.sockets)


def test_firefox_words_and_codes_differ_from_chromium(firefox, browser) -> None:  # type: ignore[no-untyped-def]
    """The same untrusted certificate: Firefox closes with 1015 and keeps the reason in the
    network error; Chromium closes with 1006 and says it in the console."""
    ff = run_scenario("wss-untrusted-cert", firefox).observation
    ch = run_scenario("wss-untrusted-cert", browser).observation
    assert [s.close_code for s in ff.sockets] == [1015]
    assert [s.close_code for s in ch.sockets] == [1006]
    assert any(r.failure.startswith("SEC_ERROR_UNKNOWN_ISSUER") for r in ff.failed_requests)
    assert any(m.text.startswith("Firefox can’t establish a connection") for m in ff.console)
    assert not any("ERR_CERT" in m.text for m in ff.console)
    assert any("ERR_CERT_AUTHORITY_INVALID" in m.text for m in ch.console)
    # Mixed content: Firefox throws a SecurityError and logs no error-level line.
    mixed = run_scenario("mixed-content-ws", firefox).observation
    assert [s.error for s in mixed.sockets] == ["SecurityError: The operation is insecure."]
    assert not [m for m in mixed.console if m.type == "error"]


def test_hsts_from_one_visit_does_not_upgrade_the_next(firefox) -> None:  # type: ignore[no-untyped-def]
    """Firefox keeps HSTS across user contexts; labkit forgets it before every visit, so a
    lesson never depends on the one run before it."""
    assert run_scenario("hsts-ws", firefox).ok  # app.lab.test sends HSTS
    r = run_scenario("https-redirect", firefox)  # then http://app.lab.test must stay http
    assert r.ok, r.problems


def test_twin_without_forgetting_hsts_the_next_visit_is_upgraded(
        lab_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit import LabPKI

    async def remember() -> None:
        return None

    f = Firefox(LabPKI(lab_home))
    monkeypatch.setattr(f, "_forget_hsts", remember)
    try:
        assert run_scenario("hsts-ws", f).ok
        r = run_scenario("https-redirect", f)
        assert not r.ok and r.verdict.reason == "tls-handshake", r.verdict  # https on the http port
    finally:
        f.stop()


def test_cookies_stay_in_their_visit(firefox) -> None:  # type: ignore[no-untyped-def]
    """The victim logs in in one visit; a later visit (a fresh user context) has no session."""
    assert run_scenario("ws-hijack", firefox).ok  # the victim's session, read as alice
    lab = Lab(scenarios.get("ws-origin-allowlist").topology).start()
    try:
        obs = lab.visit("evil", browser=firefox)
        assert obs.session() is None, obs.seen
    finally:
        lab.stop()


def test_lab_visit_by_name_starts_and_stops_its_own_firefox() -> None:
    lab = Lab(scenarios.get("cors-port-mismatch").topology).start()
    try:
        obs = lab.visit(browser="firefox")
        assert obs.browser == "firefox" and obs.verdict().reason == "cors"
        own = lab._extra_browsers["firefox"]
        assert own.running
    finally:
        lab.stop()
    assert not own.running


def test_an_unknown_browser_name_is_one_line() -> None:
    lab = Lab(scenarios.get("cors-port-mismatch").topology).start()
    try:
        with pytest.raises(LabError, match="labkit drives 'chromium' and 'firefox'"):
            lab.visit(browser="safari")
    finally:
        lab.stop()


def test_compare_shows_both_browsers(firefox, browser, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from labkit.notebook import session

    monkeypatch.setattr(session, "_browsers", {"chromium": browser, "firefox": firefox})
    c = session.compare("wss-name-mismatch")
    assert c.agree and [r.browser.split()[0] for r in c.rows] == ["Chromium", "Firefox"]
    ch, ff = c.rows
    assert ch.close_codes == (1006,) and ff.close_codes == (1015,)
    assert any("ERR_CERT_COMMON_NAME_INVALID" in line for line in ch.console)
    assert any(line.startswith("SSL_ERROR_BAD_CERT_DOMAIN") for line in ff.network)
    assert "Firefox" in repr(c) and "close code: 1015" in repr(c)
    assert "<table" in c._repr_html_()


def test_tour_both_browsers_from_the_command_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "labkit", "tour", "--browser", "all", "--json",
         "--scenario", "ws-origin-allowlist"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) == {"chromium", "firefox"}
    for d in data.values():
        assert [(s["ok"], s["reason"]) for s in d["scenarios"]] == [(True, "origin-rejected")]
    assert "firefox" in out.stderr and "chromium" in out.stderr  # progress says which



def test_a_firefox_tour_runs_two_firefox_processes_and_stops_the_second(
        firefox: Firefox, monkeypatch: pytest.MonkeyPatch) -> None:
    """One Firefox visits one page at a time (HSTS is browser-wide), so a tour with several
    workers starts a twin (TOUR_LANES), visits in both, and stops the twin at the end."""
    from labkit.notebook.runner import TOUR_LANES, tour
    twins: list[Firefox] = []
    visited_by: list[int] = []
    make_twin, observe = Firefox.twin, Firefox._observe

    def twin(self: Firefox) -> Firefox:
        twins.append(make_twin(self))
        return twins[-1]

    async def counted(self: Firefox, url: str, **kw: object) -> object:
        visited_by.append(id(self))
        return await observe(self, url, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Firefox, "twin", twin)
    monkeypatch.setattr(Firefox, "_observe", counted)
    chosen = ["cors-port-mismatch", "cors-allow-origin", "ws-origin-allowlist", "wss-trusted"]
    results = tour(chosen, browser=firefox, concurrency=3)
    assert [r.ok for r in results] == [True] * 4, [str(r.verdict) for r in results]
    assert len(twins) == TOUR_LANES - 1 == 1
    assert {id(firefox), id(twins[0])} == set(visited_by)  # both processes visited
    assert firefox.running and not twins[0].running  # the caller's stays; the twin is stopped
    assert all(not r.observation.screenshot for r in results)  # no picture unless one is kept


def test_a_firefox_tour_one_at_a_time_starts_no_twin(firefox: Firefox,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit.notebook.runner import tour
    monkeypatch.setattr(Firefox, "twin", lambda self: pytest.fail("a twin for one worker"))
    assert tour(["cors-allow-origin"], browser=firefox, concurrency=1)[0].ok


def test_a_tour_keeps_a_screenshot_only_when_asked(firefox: Firefox, tmp_path: Path) -> None:
    from labkit.notebook.runner import tour
    r, = tour(["cors-allow-origin"], browser=firefox, screenshots=tmp_path)
    assert r.observation.screenshot.startswith(b"\x89PNG")
    assert (tmp_path / "cors-allow-origin.png").read_bytes() == r.observation.screenshot


# -- nothing left behind ------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP])
def test_firefox_dies_with_a_killed_labkit(sig: int) -> None:
    assert not survivors_of_killed_starter(
        "from labkit.observe.firefox import Firefox\nFirefox().start()", sig, "firefox"), \
        "Firefox outlived labkit"


def test_a_dead_labkits_firefox_is_stopped_through_its_pid_file(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        (tmp_path / "firefox.pid").write_text(str(sleeper.pid))
        stop_leftover(tmp_path)  # not a firefox: the number was reused; left alone (the twin)
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
    f = Firefox()
    f.start()
    try:
        pid = f._proc.pid  # type: ignore[union-attr]
        stop_leftover(Path(f._home or ""))
        assert not survivors([pid], 5)
    finally:
        f.stop()


def test_nothing_is_written_outside_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    f = Firefox()
    try:
        lab = Lab(scenarios.get("wss-trusted").topology).start()
        try:
            assert lab.visit(browser=f).verdict().outcome == "allowed"
        finally:
            lab.stop()
        folder = Path(f._home or "")
    finally:
        f.stop()
    assert list(home.iterdir()) == []
    assert not folder.exists()


# -- a Firefox labkit cannot drive says so --------------------------------------------------------
FAKE_BIDI = r'''
import asyncio, json, sys
import websockets

VERSION, REFUSE = sys.argv[1], sys.argv[2]

async def serve(ws):
    async for raw in ws:
        msg = json.loads(raw)
        if msg["method"] == REFUSE:
            out = {"type": "error", "id": msg["id"], "error": "unknown command",
                   "message": msg["method"]}
        elif msg["method"] == "session.new":
            out = {"type": "success", "id": msg["id"], "result": {"capabilities": {
                "browserName": "firefox", "browserVersion": VERSION}}}
        else:
            out = {"type": "success", "id": msg["id"], "result": {}}
        await ws.send(json.dumps(out))

async def main():
    async with websockets.serve(serve, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"WebDriver BiDi listening on ws://127.0.0.1:{port}", file=sys.stderr, flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
'''


def _fake_firefox(tmp_path: Path, version: str, refuse: str) -> str:
    server = tmp_path / "bidi.py"
    server.write_text(FAKE_BIDI)
    exe = tmp_path / "firefox"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} {server} {version} {refuse}\n")
    exe.chmod(0o755)
    return str(exe)


def test_a_firefox_missing_a_bidi_command_fails_in_one_line(tmp_path: Path) -> None:
    f = Firefox(executable=_fake_firefox(tmp_path, "153.0", "session.subscribe"))
    with pytest.raises(FirefoxProtocolError) as e:
        f.start()
    assert "does not understand the WebDriver BiDi command 'session.subscribe'" in str(e.value)
    assert "Firefox 128 or newer" in str(e.value)
    assert not f.running and f._proc is None


def test_an_old_firefox_fails_in_one_line(tmp_path: Path) -> None:
    f = Firefox(executable=_fake_firefox(tmp_path, "115.0", "none"))
    with pytest.raises(LabError, match=r"this is Firefox 115\.0; labkit drives Firefox 128"):
        f.start()
    assert not f.running


def test_a_firefox_that_never_listens_fails_in_one_line(tmp_path: Path) -> None:
    exe = tmp_path / "firefox"
    exe.write_text("#!/bin/sh\necho 'Error: no DISPLAY environment variable specified' >&2\n")
    exe.chmod(0o755)
    with pytest.raises(LabError, match="no DISPLAY environment variable"):
        Firefox(executable=str(exe)).start()


# -- the classifier reads Firefox's words (no browser) ------------------------------------------
def test_firefox_reasons_come_from_its_own_words() -> None:
    from labkit.observe.observation import ConsoleMessage, FailedRequest, Observation, Step

    def obs(console=(), failed=(), socket_error=None):  # type: ignore[no-untyped-def]
        from labkit.observe.observation import SocketEvent

        return Observation(
            url="https://app.lab.test/", final_url="https://app.lab.test/", redirects=[],
            navigation_error=None, status=200, steps={"socket": Step("blocked", "x")},
            console=list(console), page_errors=[], failed_requests=list(failed),
            sockets=[SocketEvent("wss://ws.lab.test/ws", False, 1006, "", socket_error)],
            seen=[], browser_version="153.8.0", browser="firefox")

    refused = "NS_ERROR_WEBSOCKET_CONNECTION_REFUSED"
    cases = [
        (obs(failed=[FailedRequest("https://ws.lab.test/ws", f"{refused} (HTTP 403)")]),
         "origin-rejected"),
        (obs(failed=[FailedRequest("https://ws.lab.test/ws", f"{refused} (HTTP 308)")]),
         "http-error"),
        (obs(failed=[FailedRequest("https://x/socket.io/?EIO=4", f"{refused} (HTTP 400)")]),
         "origin-rejected"),
        (obs(failed=[FailedRequest("https://ws.lab.test/ws", f"{refused} (HTTP 400)")]),
         "http-error"),
        (obs(failed=[FailedRequest("https://ws.lab.test/ws", "SSL_ERROR_BAD_CERT_DOMAIN")]),
         "cert-name"),
        (obs(socket_error="SecurityError: The operation is insecure."), "mixed-content"),
        # The preflight's own error comes before the CORS line about the same URL.
        (obs(console=[ConsoleMessage("error", "Cross-Origin Request Blocked: The Same Origin "
                                     "Policy disallows reading the remote resource at "
                                     "https://api/x. (Reason: CORS header ‘Access-Control-Allow-"
                                     "Origin’ missing). Status code: 405.", "", 1.0)],
             failed=[FailedRequest("https://api/x", "NS_ERROR_DOM_BAD_URI (OPTIONS, HTTP 405)",
                                   2.0)]), "cors-preflight"),
        (obs(console=[ConsoleMessage("error", "Cross-Origin Request Blocked: The Same Origin "
                                     "Policy disallows reading the remote resource at "
                                     "https://api/x. (Reason: CORS header "
                                     "‘Access-Control-Allow-Origin’ missing). Status code: "
                                     "200.", "", 1.0)],
             failed=[FailedRequest("https://api/x", "NS_ERROR_DOM_BAD_URI (HTTP 200)", 2.0)]),
         "cors"),
    ]
    # A network failure's "did not succeed" line is not CORS: the failure's own error decides.
    cases.append((obs(console=[ConsoleMessage("error", "Cross-Origin Request Blocked: The Same "
                                              "Origin Policy disallows reading the remote "
                                              "resource at https://api/x. (Reason: CORS request "
                                              "did not succeed). Status code: (null).", "", 1.0)],
                      failed=[FailedRequest("https://api/x", "SEC_ERROR_UNKNOWN_ISSUER", 2.0)]),
                  "cert-authority"))
    # An HTTP error status: Firefox logs no line; the page's step got the status.
    o404 = obs()
    o404.steps = {"hello": Step("error", "HTTP 404")}
    cases.append((o404, "http-error"))
    for o, want in cases:
        assert classify(o).reason == want, (want, o.failed_requests, o.console)
    # The same words from Chromium are not Firefox's: no Firefox rule applies to them.
    o = cases[0][0]
    o.browser = "chromium"
    assert classify(o).reason is None


def test_runtime_stays_usable_after_a_failed_start(tmp_path: Path) -> None:
    with pytest.raises(LabError):
        Firefox(executable=_fake_firefox(tmp_path, "115.0", "none")).start()
    assert runtime.run(_ok()) == 1


async def _ok() -> int:
    return 1


def _loopback_upgrade(steps: tuple[str, ...], upgrade: bool) -> object:
    from labkit import Page, Service, Topology

    return Topology("loopback-upgrade", services=(
        Service("web", "web", host="127.0.0.1", tls=False, upgrade_insecure=upgrade,
                page=Page(ws=None, steps=steps)),
        Service("api", "api", host="127.0.0.1", tls=False),
        Service("chat", "chat", host="127.0.0.1", tls=False, origins=("web",)),
    ))


@pytest.mark.parametrize("steps", [("hello",), ("bearer",)])
def test_firefox_skips_cors_on_loopback_with_upgrade_insecure(steps, firefox,  # type: ignore[no-untyped-def]
                                                              browser) -> None:
    """Observed on Firefox ESR 153: an http page on 127.0.0.1 that sets upgrade-insecure-requests
    reads another loopback port's http answer with no CORS header and no preflight; Chromium
    blocks it. explain names the difference, and predicts each browser."""
    from labkit.notebook.runner import check

    topo = _loopback_upgrade(steps, True)
    ff = check(topo, browser=firefox)
    ch = check(topo, browser=browser)
    assert ff.ok and ch.ok, (ff.problems, ch.problems)
    assert ff.verdict.outcome == "allowed" and ch.verdict.outcome == "blocked"
    assert not [d for d in ff.observation.seen if d["method"] == "OPTIONS"]
    e = explain(topo)
    assert e.firefox == ("allowed", None) and "in Firefox: allowed" in str(e)


def test_twin_without_upgrade_insecure_firefox_checks_cors(firefox) -> None:  # type: ignore[no-untyped-def]
    from labkit.notebook.runner import check

    a = check(_loopback_upgrade(("hello",), False), browser=firefox)
    assert a.ok and str(a.verdict) == "blocked (cors)"
    assert explain(_loopback_upgrade(("hello",), False)).firefox is None
