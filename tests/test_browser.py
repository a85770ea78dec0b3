"""The real browser: a headless Chromium that trusts the lab CA (and nothing else), visiting real
lab servers. Every failure has its passing twin, so a test that "proves a block" cannot pass because
the page was simply broken.

The session's one Chromium (the ``browser`` fixture) is shared; each visit gets a fresh context.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest
from procs_util import survivors_of_killed_starter

from labkit import (
    CorsPolicy,
    Lab,
    LabNotRunningError,
    Page,
    Service,
    Topology,
    messenger,
)
from labkit.model import scenarios
from labkit.notebook.display import observation_html
from labkit.observe.browser import Browser
from labkit.observe.observation import Observation
from labkit.serve.apps.store import Seen

pytestmark = pytest.mark.browser

#: A page that calls nothing: the lesson is the page's own certificate.
PAGE_ONLY = Page(api=None, ws=None, steps=())
#: A page that only opens the chat socket and says one thing on it.
SOCKET_ONLY = Page(api=None, steps=("socket", "chat"))
PNG = b"\x89PNG\r\n\x1a\n"


@contextmanager
def running(topology: Topology, browser: Browser) -> Iterator[Lab]:
    lab = Lab(topology, browser=browser, pki=browser.pki).start()
    try:
        yield lab
    finally:
        lab.stop()


def visit(topology: Topology, browser: Browser, **kw: Any) -> tuple[Observation, list[dict]]:
    """One visit of a freshly started lab: the observation and everything the servers saw."""
    with running(topology, browser) as lab:
        return lab.visit(**kw), lab.requests()


def chrome_processes() -> dict[int, psutil.Process]:
    """Chromium processes under this test process (Playwright's driver is our child)."""
    out = {}
    for p in psutil.Process().children(recursive=True):
        try:
            if "chrom" in p.name():
                out[p.pid] = p
        except psutil.NoSuchProcess:
            pass
    return out


def processes_of(b: Browser) -> dict[int, psutil.Process]:
    """The Chromium processes of browser ``b``: those running with its throwaway HOME. (Another
    browser may start renderers at any moment — its spare context — so "new since" is not
    enough to tell them apart.)"""
    out = {}
    for pid, p in chrome_processes().items():
        try:
            if p.environ().get("HOME") == b._home:
                out[pid] = p
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def gone(procs: dict[int, psutil.Process], within: float = 10.0) -> list[int]:
    """PIDs still alive after ``within`` seconds. A zombie has exited (this container's PID 1 may
    be slow to reap orphans), so it counts as gone."""
    deadline = time.monotonic() + within
    while True:
        alive = []
        for pid, p in procs.items():
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


# -- a trusted page ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def messenger_visit(browser: Browser) -> Iterator[tuple[Lab, Observation]]:
    with running(messenger(name="browser-messenger"), browser) as lab:
        yield lab, lab.visit()


def test_a_trusted_page_loads_and_runs_every_step(
        messenger_visit: tuple[Lab, Observation]) -> None:
    lab, obs = messenger_visit
    assert obs.navigation_error is None
    assert obs.status == 200
    assert list(obs.steps) == list(Page().steps)
    assert {k: s.state for k, s in obs.steps.items()} == dict.fromkeys(Page().steps, "ok")
    v = obs.verdict()
    assert (v.outcome, v.reason) == ("allowed", None)
    assert obs.screenshot.startswith(PNG)
    assert obs.browser_version and obs.browser_version[0].isdigit()
    # The page's calls across ports carry its Origin; the port changes the origin, not the site.
    page = lab.origin("web")
    api = [d for d in obs.seen if d["service"] == "api"]
    assert {(d["method"], d["path"]) for d in api} >= {
        ("GET", "/api/hello"), ("POST", "/api/login"), ("GET", "/api/rooms")}
    assert all(d["origin"] == page and d["sec_fetch_site"] == "same-site" for d in api), api
    # The WebSocket handshake is not CORS-checked, yet the browser still sends Origin.
    [ws] = [d for d in obs.seen if d["kind"] == "ws"]
    assert (ws["service"], ws["origin"], ws["status"]) == ("chat", page, 101)


def test_the_observation_shows_in_a_notebook(messenger_visit: tuple[Lab, Observation]) -> None:
    _, obs = messenger_visit
    html = observation_html(obs)
    assert ">allowed</b>" in html
    assert "<img src='data:image/png;base64," in html
    assert "Chromium " + obs.browser_version in html


def test_the_observation_names_ports_by_service(messenger_visit: tuple[Lab, Observation]) -> None:
    lab, obs = messenger_visit
    assert obs.url == lab.origin("web") + "/"
    assert obs.normalized()["url"] == "https://localhost:<web>/"


# -- the page's own certificate ------------------------------------------------------------------
def test_a_page_with_the_rogue_cas_certificate_is_refused(browser: Browser) -> None:
    topo = Topology("rogue-page", (Service("web", "web", cert="rogue"),), page=PAGE_ONLY)
    obs, seen = visit(topo, browser)
    assert obs.navigation_error is not None
    assert "ERR_CERT_AUTHORITY_INVALID" in obs.navigation_error
    v = obs.verdict()
    assert (v.outcome, v.reason) == ("blocked", "cert-authority")
    assert "blocked (cert-authority)" in observation_html(obs)
    # The TLS handshake failed, so the server never saw an HTTP request.
    assert seen == []


@pytest.mark.parametrize(("cert", "reason"), [("wrong-name", "cert-name"), ("lab", None)])
def test_a_lab_name_missing_from_the_certificate_is_refused(
        browser: Browser, cert: str, reason: str | None) -> None:
    topo = Topology(f"page-{cert}", (Service("web", "web", host="app.lab.test", cert=cert),),
                    page=PAGE_ONLY)
    obs, _ = visit(topo, browser)
    v = obs.verdict()
    if reason is None:  # the twin: the same name under the lab certificate loads
        assert obs.navigation_error is None and obs.status == 200
        assert obs.final_url.startswith("https://app.lab.test:")
        assert (v.outcome, v.reason) == ("allowed", None)
    else:
        assert obs.navigation_error is not None
        assert "ERR_CERT_COMMON_NAME_INVALID" in obs.navigation_error
        assert (v.outcome, v.reason) == ("blocked", reason)


def test_lab_names_resolve_to_loopback_without_touching_etc_hosts(browser: Browser) -> None:
    hosts = Path("/etc/hosts")
    before = hosts.read_bytes() if hosts.exists() else None
    topo = Topology("hosts", (Service("web", "web", host="app.lab.test"),), page=PAGE_ONLY)
    obs, seen = visit(topo, browser)
    assert obs.navigation_error is None and obs.status == 200
    # The servers listen on 127.0.0.1 only: the page loading proves where the name went.
    assert [(d["service"], d["path"]) for d in seen][:1] == [("web", "/")]
    assert (hosts.read_bytes() if hosts.exists() else None) == before


# -- wss:// from an https page on app.lab.test ----------------------------------------------------
WSS = {
    # name: (chat service options, page ws_scheme, reason, what the browser says)
    "untrusted": ({"cert": "rogue"}, None, "cert-authority", "ERR_CERT_AUTHORITY_INVALID"),
    "wrong-name": ({"cert": "wrong-name"}, None, "cert-name", "ERR_CERT_COMMON_NAME_INVALID"),
    "plain-server": ({"tls": False}, "wss", "tls-handshake", "net::ERR_"),
    "trusted": ({"cert": "lab"}, None, None, None),
}


@pytest.mark.parametrize("case", list(WSS))
def test_wss_needs_a_trusted_certificate_for_the_name(browser: Browser, case: str) -> None:
    chat, scheme, reason, said = WSS[case]
    topo = Topology(
        f"wss-{case}",
        (Service("web", "web", host="app.lab.test"),
         Service("chat", "chat", host="ws.lab.test", **chat)),
        page=Page(api=None, steps=("socket", "chat"), ws_scheme=scheme),
    )
    obs, seen = visit(topo, browser)
    assert obs.navigation_error is None, "the page itself must load: only the socket is judged"
    v = obs.verdict(["socket"])
    [sock] = obs.sockets
    assert sock.url.startswith("wss://ws.lab.test:")
    handshakes = [d for d in seen if d["kind"] == "ws"]
    if reason is None:  # the twin: same page, lab certificate on the chat
        assert (v.outcome, v.reason) == ("allowed", None)
        assert obs.steps["chat"].state == "ok"
        assert sock.opened and sock.error is None
        assert [d["origin"] for d in handshakes] == [obs.final_url.rstrip("/")]
    else:
        assert (v.outcome, v.reason) == ("blocked", reason), v.evidence
        assert obs.steps["socket"].state == "blocked"
        assert not sock.opened and sock.close_code == 1006
        assert sock.error is not None and said in sock.error
        assert handshakes == []  # no TLS, no HTTP upgrade request


# -- repeatability and isolation ------------------------------------------------------------------
def test_two_runs_of_the_same_visit_observe_the_same(browser: Browser) -> None:
    topo = messenger(name="browser-twice")
    first, _ = visit(topo, browser)
    second, _ = visit(topo, browser)
    assert first.verdict().outcome == "allowed"
    assert first.normalized() == second.normalized()


def test_each_visit_gets_a_fresh_context(browser: Browser) -> None:
    """A session cookie set during visit 1 is not sent in visit 2: no state leaks between visits
    (or between the scenarios of a tour)."""
    topo = Topology(
        "browser-fresh-context",
        (Service("web", "web"),
         Service("api", "api", cors=CorsPolicy("allowlist", ("web",), credentials=True)),
         Service("chat", "chat")),
        page=Page(steps=("rooms", "login", "socket"), credentials="include"),
    )
    with running(topo, browser) as lab:
        users = []
        for _ in range(2):
            obs = lab.visit()
            assert obs.verdict().outcome == "allowed", obs.steps
            users.append([(d["service"], d["method"], d["path"], d["user"]) for d in obs.seen
                          if d["service"] != "web" and d["method"] != "OPTIONS"])
    expected = [("api", "GET", "/api/rooms", None),  # before logging in: no cookie
                ("api", "POST", "/api/login", None),
                ("chat", "GET", "/ws", "alice")]  # after: the session cookie travels
    assert users == [expected, expected]


def test_a_visit_reports_its_requests_after_a_long_session(browser: Browser) -> None:
    """The servers' request log is a bounded ring: once it is full, a visit must still report the
    requests it made (not the slice after an index that no longer means anything)."""
    topo = messenger(name="browser-long-session", page=Page(ws=None, steps=("hello",)))
    with running(topo, browser) as lab:
        for _ in range(lab.store.seen.maxlen or 0):
            lab.store.record(Seen("api", "GET", "/api/old", None, None, status=200))
        obs = lab.visit()
    assert obs.verdict().outcome == "allowed"
    assert [d["path"] for d in obs.seen if d["service"] == "api"] == ["/api/hello"]


# -- lifecycle -----------------------------------------------------------------------------------
def test_stop_leaves_no_chromium_behind_and_is_idempotent(browser: Browser) -> None:
    b = Browser(browser.pki).start()
    try:
        assert b.running and b.version == browser.version
        ours = processes_of(b)
        assert ours, "the new browser's processes should be found under this process"
    finally:
        b.stop()
    assert not b.running
    assert gone(ours) == []
    b.stop()  # learners re-run cells
    assert browser.running, "another Browser's stop must not touch the shared one"


def test_a_lab_closes_its_own_browser_but_not_a_shared_one(browser: Browser) -> None:
    topo = messenger(name="browser-own", page=Page(ws=None, steps=("hello",)))
    lab = Lab(topo, pki=browser.pki).start()
    try:
        assert lab.visit().verdict().outcome == "allowed"
        own = lab.browser
        assert own is not browser and own.running
        ours = processes_of(own)
        assert ours
    finally:
        lab.stop()
    assert not own.running
    assert gone(ours) == []
    lab.stop()
    with running(topo, browser):
        pass
    assert browser.running


def test_visiting_a_stopped_lab_says_so(browser: Browser) -> None:
    topo = messenger(name="browser-stopped", page=Page(ws=None, steps=("hello",)))
    lab = Lab(topo, browser=browser, pki=browser.pki)
    with pytest.raises(LabNotRunningError, match=r"lab\.start\(\)"):
        lab.visit()
    lab.start()
    lab.stop()
    with pytest.raises(LabNotRunningError, match="the lab is not running"):
        lab.visit()
    with pytest.raises(LabNotRunningError):
        asyncio.run(lab.avisit())


def test_works_from_async_code(browser: Browser) -> None:
    """Jupyter cells run inside an event loop: the async API must work from any loop."""
    topo = messenger(name="browser-async", page=Page(ws=None, steps=("hello",)))

    async def cell() -> Observation:
        lab = Lab(topo, browser=browser, pki=browser.pki)
        await lab.astart()
        try:
            obs = await lab.avisit()
        finally:
            await lab.astop()
        assert not lab.running
        return obs

    obs = asyncio.run(cell())
    assert obs.steps["hello"].state == "ok"
    assert obs.verdict().outcome == "allowed"
    assert browser.running


# -- an error answer is the observation: no waiting for steps that never run ----------------------
#: A visit that waited for the page's steps would take the whole timeout (10 s); one that
#: returns at once takes about a second. The bound, half the timeout, leaves room for slow CI.
PROMPT = 5.0


def proxied(name: str) -> Topology:
    return replace(scenarios.get("reverse-proxy").topology, name=name)


def test_a_proxys_502_returns_at_once_with_its_status(browser: Browser) -> None:
    with running(proxied("browser-proxy-502"), browser) as lab:
        # The twin: the backend up, the same visit loads labkit's page and waits for its steps.
        ok = lab.visit("proxy")
        assert (ok.status, ok.navigation_error) == (200, None)
        assert ok.steps and all(s.state == "ok" for s in ok.steps.values()), ok.steps
        lab.stop_service("web")
        started = time.monotonic()
        obs = lab.visit("proxy")
        took = time.monotonic() - started
    assert took < PROMPT, f"the visit waited {took:.1f} s for a page that was a 502"
    assert obs.status == 502
    assert obs.navigation_error is None  # the status tells the story, not a timeout
    assert obs.steps == {}


def test_a_proxy_asked_for_another_host_returns_at_once_with_421(browser: Browser) -> None:
    """labkit's proxy serves app.lab.test only; its certificate also covers localhost, so the
    browser gets as far as the 421 (Misdirected Request)."""
    with running(proxied("browser-proxy-421"), browser) as lab:
        url = f"https://localhost:{lab.info('proxy').port}/"
        started = time.monotonic()
        obs = lab.browser.visit(url, seen=lab.store)
        took = time.monotonic() - started
    assert took < PROMPT, f"the visit waited {took:.1f} s for a page that was a 421"
    assert (obs.status, obs.navigation_error, obs.steps) == (421, None, {})


def test_an_error_answer_before_the_visit_does_not_wait_either(browser: Browser) -> None:
    """``before`` pages (a victim's page opened first) that are error answers: their steps are
    empty and the visit goes on at once (it used to time out after 10 s and fail the visit)."""
    with running(proxied("browser-proxy-before"), browser) as lab:
        ok = lab.visit("proxy", before=["proxy"])  # the twin: a real page waits for its steps
        assert ok.before and ok.before[0] and all(
            s.state == "ok" for s in ok.before[0].values()), ok.before
        lab.stop_service("web")
        started = time.monotonic()
        obs = lab.visit("proxy", before=["proxy"])
        took = time.monotonic() - started
    assert took < PROMPT, f"the visit waited {took:.1f} s for pages that were 502s"
    assert obs.before == [{}]
    assert (obs.status, obs.navigation_error) == (502, None)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP])
def test_chromium_dies_with_a_killed_labkit(sig: int) -> None:
    """SIGKILL on the process that started the browser (a killed kernel), or SIGHUP (a closed
    terminal): Playwright's driver sees its pipe close and takes Chromium with it — nothing of
    the browser outlives labkit."""
    assert not survivors_of_killed_starter(
        "from labkit.observe.browser import Browser\nBrowser().start()", sig, "chrom"), \
        "the browser outlived labkit"


@pytest.mark.parametrize("omnibox_off", [True, False])
def test_full_chromium_preloads_no_omnibox_popup(omnibox_off: bool, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Full Chromium (headed-capable, the live mode's) opens a window per fresh context and
    preloads its omnibox popup in a renderer of its own, unless labkit's one --disable-features
    list turns it off; that list also keeps Playwright's defaults (HttpsUpgrades among them).
    The twin (the flag without the omnibox features) shows the popup page appear."""
    from labkit import runtime, system
    from labkit.observe import browser as browser_mod

    full = next((p for p in (shutil.which(n) for n in system.BROWSER_NAMES) if p), None)
    assert full is not None
    if not omnibox_off:
        monkeypatch.setattr(browser_mod, "FLAGS", tuple(
            f.replace(",WebUIOmniboxPopup,WebUIOmniboxAimPopup", "") for f in browser_mod.FLAGS))
    assert any("HttpsUpgrades" in f for f in browser_mod.FLAGS)
    b = browser_mod.Browser(executable=full).start()
    try:
        b.visit("data:text/html,<p>hi</p>", screenshot=False, timeout=5)

        @runtime.on_loop
        async def targets() -> list[str]:
            await asyncio.sleep(0.5)
            cdp = await b._browser.new_browser_cdp_session()
            try:
                infos = (await cdp.send("Target.getTargets"))["targetInfos"]
            finally:
                await cdp.detach()
            return [t["url"] for t in infos]

        urls = runtime.run(targets())
        popups = [u for u in urls if "omnibox" in u]
        assert (popups == []) == omnibox_off, urls
    finally:
        b.stop()


def test_a_chromium_tour_shares_one_browser(browser, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Chromium runs visits side by side in one process (a context each): no twin is started."""
    from labkit.notebook.runner import tour
    from labkit.observe.browser import Browser
    monkeypatch.setattr(Browser, "twin", lambda self: pytest.fail("a twin for Chromium"))
    results = tour(["cors-port-mismatch", "cors-allow-origin", "ws-origin-allowlist"],
                   browser=browser, concurrency=3)
    assert all(r.ok for r in results)
