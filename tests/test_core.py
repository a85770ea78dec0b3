"""One async core on labkit's loop, with the synchronous API a thin edge around it.

Each bug the single core removed has a test here, and a twin that proves the failure it guards
against still reproduces when the rule is broken on purpose (so the test cannot pass because its
rig was too gentle to ever fail).
"""

from __future__ import annotations

import ast
import asyncio
import http.client
import inspect
import os
import shutil
import socket
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.cookies import CookieError, SimpleCookie
from pathlib import Path

import aiohttp
import pytest

from labkit import Browser, Lab, Page, Service, Topology, runtime
from labkit.model import scenarios
from labkit.notebook import runner
from labkit.observe.driver import Driver
from labkit.observe.driver import certutil as _certutil
from labkit.serve.apps.store import SESSION_COOKIE, Store

NO_PAGE = Page(api=None, ws=None, steps=())


def plain_api(name: str) -> Topology:
    """One plain-HTTP API: the cheapest server to load, and to ping."""
    return Topology(name, (Service("api", "api", tls=False),), page=NO_PAGE)


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# -- a scenario run while a lab of the same scenario runs ----------------------------------------
@pytest.mark.browser
def test_running_a_scenario_replaces_a_running_lab_of_the_same_scenario(
        browser: Browser) -> None:
    """A learner starts the scenario's lab by hand, then runs the scenario. Running it starts a
    lab of the same topology on labkit's loop, which stops the old one first: that stop used to
    be the sync ``stop()``, called inside labkit's own loop, and the run died with a RuntimeError
    about the sync API."""
    sc = scenarios.get("cors-allow-origin")
    old = Lab(sc.topology, pki=browser.pki).start()
    ports = [s.port for s in old.services]
    try:
        result = runner.run_scenario(sc.name, browser)
        assert result.ok, result
        assert not old.running and "stopped" in repr(old)
        assert all(port_is_free(p) for p in ports), "the old lab's ports are still held"
    finally:
        old.stop()


def test_the_sync_api_still_refuses_inside_labkits_loop() -> None:
    """The twin: what the old start did, calling the sync ``stop()`` from a coroutine on labkit's
    loop, still fails with the readable error (and leaves the lab running, not half-stopped)."""
    lab = Lab(plain_api("core-sync-inside")).start()
    try:
        async def inside() -> None:
            lab.stop()

        with pytest.raises(RuntimeError, match="sync API was called from inside labkit's own "
                                                "loop; use the async API"):
            runtime.run(inside())
        assert lab.running
    finally:
        lab.stop()


# -- reading what the servers saw while they see more -------------------------------------------
@contextmanager
def load(lab: Lab, workers: int = 8) -> Iterator[list[int]]:
    """Clients hammering the lab's API from their own thread until the block ends; yields the
    running count of answers."""
    done = threading.Event()
    answers = [0]
    url = lab.url("api", "/api/hello")

    async def client(http: aiohttp.ClientSession) -> None:
        while not done.is_set():
            async with http.get(url) as r:
                await r.read()
            answers[0] += 1

    async def clients() -> None:
        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(client(http) for _ in range(workers)))

    t = threading.Thread(target=asyncio.run, args=(clients(),), name="core-load")
    t.start()
    try:
        deadline = time.monotonic() + 10
        while answers[0] < 200 and time.monotonic() < deadline:  # the log has filled up
            time.sleep(0.01)
        yield answers
    finally:
        done.set()
        t.join(10)


def hammer(read: Callable[[], object], calls: int = 5000, seconds: float = 20.0) -> int:
    """Call ``read`` up to ``calls`` times (or for ``seconds``); return how many calls ran."""
    deadline = time.monotonic() + seconds
    for i in range(calls):
        read()
        if time.monotonic() > deadline:
            return i + 1
    return calls


def test_requests_can_be_read_while_the_servers_record_more() -> None:
    """``requests()`` used to iterate the servers' request log (a deque the loop appends to) on
    the caller's thread: under load it raised 'deque mutated during iteration' (run against the
    old code, five times: after 69 to 336 calls). Now the snapshot is taken on labkit's loop."""
    with Lab(plain_api("core-requests")) as lab, load(lab) as answers:
        before = answers[0]
        calls = hammer(lambda: (lab.requests(), lab.requests("api"), lab.logs()), calls=400)
        assert answers[0] > before, "the clients stopped answering: the test proved nothing"
        assert calls > 100
        assert lab.requests("api")[-1]["path"] == "/api/hello"


def test_reading_the_request_log_on_the_callers_thread_fails_under_load() -> None:
    """The twin: the same load, the same reads, but iterating the loop's deque on this thread as
    the old ``requests()`` did. It fails — so the test above is under real load."""
    with Lab(plain_api("core-requests-twin")) as lab, load(lab):
        with pytest.raises(RuntimeError, match="deque mutated during iteration"):
            hammer(lambda: [s.as_dict() for s in lab.store.seen], calls=200_000)


# -- the browser starts without stalling the servers --------------------------------------------
@contextmanager
def pinging(lab: Lab) -> Iterator[list[float]]:
    """A tight ping loop against the lab from its own thread; yields the gaps between answers
    (the largest gap is how long the servers stalled)."""
    gaps: list[float] = []
    done = threading.Event()
    port = lab.info("api").port

    def ping() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        last = time.perf_counter()
        while not done.is_set():
            conn.request("GET", "/api/hello")
            conn.getresponse().read()
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
        conn.close()

    t = threading.Thread(target=ping, name="core-ping")
    t.start()
    try:
        while len(gaps) < 20:
            time.sleep(0.01)
        yield gaps
    finally:
        done.set()
        t.join(10)


#: A lab server on labkit's loop answers a ping in about a millisecond; a stall is a blocking call.
STALL = 0.2


@pytest.fixture
def slow_certutil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> float:
    """certutil as slow as on a participant's laptop (two runs, ~0.8 s), here where it takes
    milliseconds: a wrapper first on PATH that sleeps, then runs the real one."""
    real = shutil.which("certutil")
    if real is None:
        pytest.skip("no certutil: the browser trusts the lab by key and runs no subprocess")
    delay = 0.4
    wrapper = tmp_path / "certutil"
    wrapper.write_text(f'#!/bin/sh\nsleep {delay}\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert shutil.which("certutil") == str(wrapper)
    return delay


@pytest.mark.browser
def test_starting_a_browser_does_not_stall_the_lab(browser: Browser, slow_certutil: float
                                                   ) -> None:
    """Trusting the lab CA runs ``certutil`` twice. It used to run as a blocking
    ``subprocess.run`` on labkit's loop, where every lab server lives: each one stopped
    answering until both runs finished (run against the old code: a 0.8 s gap here)."""
    b = Browser(browser.pki)
    with Lab(plain_api("core-ping")) as lab, pinging(lab) as gaps:
        try:
            asyncio.run(b.astart())
            assert b.trust == "nss"
        finally:
            b.stop()
        during = list(gaps)
    assert max(during) < STALL, f"the lab stalled {max(during):.2f} s while the browser started"


def test_certutil_off_the_loop_fails_as_subprocess_run_did(tmp_path: Path) -> None:
    """Moving certutil to an asyncio subprocess kept its failures: a non-zero exit is a
    CalledProcessError carrying certutil's own words; a hung run is killed at the timeout."""
    certutil = shutil.which("certutil")
    if certutil is None:
        pytest.skip("no certutil")
    db = tmp_path / "nssdb"
    db.mkdir()
    asyncio.run(_certutil(certutil, db, "-N", "--empty-password"))  # the twin: it works
    with pytest.raises(subprocess.CalledProcessError) as err:
        asyncio.run(_certutil(certutil, db, "-A", "-t", "C,,", "-n", "x",
                              "-i", str(tmp_path / "missing.pem")))
    assert err.value.returncode and err.value.stderr
    hung = tmp_path / "hung"
    hung.write_text(f"#!/bin/sh\necho $$ > {tmp_path / 'pid'}\nexec sleep 30\n")
    hung.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        asyncio.run(_certutil(str(hung), db, "-L", timeout=0.5))
    assert time.monotonic() - started < 5
    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped, not left behind


def test_a_blocking_call_on_the_loop_does_stall_the_lab() -> None:
    """The twin: the ping rig sees a stall when something does block labkit's loop."""
    async def block() -> None:
        time.sleep(0.5)  # deliberately blocking: what _setup_trust's subprocess.run did

    with Lab(plain_api("core-ping-twin")) as lab, pinging(lab) as gaps:
        runtime.run(block())
        time.sleep(0.05)
        during = list(gaps)
    assert max(during) > 0.4


# -- the session cookie -------------------------------------------------------------------------
@pytest.fixture
def store() -> Store:
    s = Store()
    s.sessions.update({"tok-alice": "alice", "tok-bob": "bob"})
    return s


@pytest.mark.parametrize("header, user", [
    (f"{SESSION_COOKIE}=tok-alice", "alice"),
    (f"theme=dark; {SESSION_COOKIE}=tok-alice", "alice"),
    (f"{SESSION_COOKIE}=tok-alice; {SESSION_COOKIE}=tok-bob", "alice"),  # the first valid wins
    (f"{SESSION_COOKIE}=stale; {SESSION_COOKIE}=tok-bob", "bob"),  # ... skipping stale ones
    (f"{SESSION_COOKIE}=tok-alice; {SESSION_COOKIE}=stale", "alice"),
    (f'{SESSION_COOKIE}="tok-alice"', "alice"),  # a quoted value is the same value
    (f"junk; a@b=1; ==; {SESSION_COOKIE}=tok-bob", "bob"),  # malformed parts are skipped
    (f"Path=/; {SESSION_COOKIE}=tok-bob", "bob"),
])
def test_the_session_cookie_names_the_user(store: Store, header: str, user: str) -> None:
    assert store.user_for(header) == user


@pytest.mark.parametrize("header", [
    None, "", ";", ";;;", "=", "==", f"{SESSION_COOKIE}", f"{SESSION_COOKIE}=",
    f"{SESSION_COOKIE}=stale", f"other={'tok-alice'}", f"tok-alice={SESSION_COOKIE}",
    f"{SESSION_COOKIE}=tok alice", f'{SESSION_COOKIE}="tok-alice', "a@b=1", "é=1; ü",
    "\x00\x01", f"{SESSION_COOKIE.upper()}=tok-alice", '"' * 50, "=" * 10_000,
])
def test_no_valid_session_is_a_guest_and_never_an_error(store: Store, header: str | None
                                                         ) -> None:
    assert store.user_for(header) is None


def test_parsing_the_whole_header_at_once_would_lose_the_session() -> None:
    """The twin, and why ``user_for`` loads each cookie on its own: ``SimpleCookie`` on the whole
    header raises on one illegal name, drops everything after a bare word, and keeps the last of
    two sessions (the first valid one must win)."""
    with pytest.raises(CookieError):
        SimpleCookie(f"a@b=1; {SESSION_COOKIE}=tok-bob")
    assert SESSION_COOKIE not in SimpleCookie(f"junk; {SESSION_COOKIE}=tok-bob")
    two = SimpleCookie(f"{SESSION_COOKIE}=tok-alice; {SESSION_COOKIE}=tok-bob")
    assert two[SESSION_COOKIE].value == "tok-bob"


# -- the shape: sync methods are one line around their async twin ---------------------------------
def _sync_twins(cls: type) -> list[tuple[str, str]]:
    return [(name, "a" + name) for name in vars(cls)
            if not name.startswith("_") and callable(vars(cls)[name])
            and inspect.iscoroutinefunction(getattr(cls, "a" + name, None))]


@pytest.mark.parametrize("cls", [Lab, Driver])
def test_every_sync_method_only_runs_its_async_twin(cls: type) -> None:
    twins = _sync_twins(cls)
    assert {"start", "stop"} <= {s for s, _ in twins}
    for sync, asyn in twins:
        body = ast.parse(textwrap.dedent(inspect.getsource(getattr(cls, sync)))).body[0]
        assert isinstance(body, ast.FunctionDef)
        stmts = [s for s in body.body if not (isinstance(s, ast.Expr)
                                              and isinstance(s.value, ast.Constant))]
        calls = [n for s in stmts for n in ast.walk(s) if isinstance(n, ast.Call)]
        called = {ast.unparse(c.func) for c in calls}
        assert "runtime.run" in called and f"self.{asyn}" in called, (
            f"{cls.__name__}.{sync} must be runtime.run(self.{asyn}(...))")
        assert len(stmts) == 1, f"{cls.__name__}.{sync} carries logic of its own"


# -- one rule for a visit that fails, in both browsers (Driver.avisit) ----------------------------
def _failing_driver(error: Exception, running: bool):  # type: ignore[no-untyped-def]
    """A Driver whose visit fails as told, with the browser up or gone."""
    from labkit.observe.driver import Driver

    class Failing(Driver):
        @property
        def running(self) -> bool:
            return running

        async def _observe(self, url: str, **kw: object) -> object:
            raise error

    return Failing()


@pytest.mark.parametrize("error, running, expected", [
    (ConnectionError("pipe closed"), False, "VisitInterruptedError"),  # the browser went away
    (ConnectionError("pipe closed"), True, "ConnectionError"),  # up: the real error, unchanged
    (ValueError("bad timeout"), False, "ValueError"),  # a bad argument stays one
])
def test_a_failed_visit_says_the_browser_went_away_only_when_it_did(
        error: Exception, running: bool, expected: str) -> None:
    from labkit import runtime
    with pytest.raises(Exception) as e:
        runtime.run(_failing_driver(error, running).avisit("https://app.lab.test/"))
    assert type(e.value).__name__ == expected


def test_a_lab_error_from_a_visit_passes_through() -> None:
    from labkit import runtime
    from labkit.errors import BrowserStartError
    err = BrowserStartError("/usr/bin/chromium", "it could not start")
    with pytest.raises(BrowserStartError):
        runtime.run(_failing_driver(err, False).avisit("https://app.lab.test/"))
