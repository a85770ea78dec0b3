"""A real headless Firefox, driven over WebDriver BiDi on labkit's loop, that trusts the lab CA.

Why this route (each point verified against Debian's Firefox ESR 153, see BROWSER-FACTS):
- Firefox speaks WebDriver BiDi itself (``--remote-debugging-port``): no geckodriver, which
  neither Debian 12 nor PyPI ships here. Playwright's ``moz-firefox`` channel drives the same
  protocol but 1.65 sends a command ESR 153 does not know, and labkit cannot pin Playwright below
  the version its Chromium lessons use. The client is the ``websockets`` package labkit already
  needs; the protocol part is one JSON command/response loop.
- Firefox keeps its trust store in the profile (NSS, on every OS): the lab CA goes into a
  throwaway profile with certutil, so an unknown issuer and a wrong name fail exactly as they
  would for a participant. The real trust store is never touched.
- Lab names resolve to loopback through ``network.dns.localDomains``, set before each visit to
  the names of that lab (it takes exact names only; ``network.dns.forceResolve`` would also turn
  ``[::1]`` into 127.0.0.1). Nothing edits /etc/hosts.
- One browser reused; a fresh *user context* per visit (its own cookies and storage). Firefox
  shares HSTS between user contexts (verified: hsts-ws then https-redirect failed), so visits
  run one at a time and each starts with HSTS forgotten, through Firefox's own site security
  service in its privileged (chrome) scope. That needs ``--remote-allow-system-access``; the
  BiDi port is on loopback and Firefox allows one session, which labkit holds.
- Firefox words failures differently from Chromium and keeps its certificate and WebSocket
  reasons in the network error, not the console: those errors (with the HTTP status Firefox
  received, if any) become ``failed_requests`` and the classifier reads them.
- The process is labkit's own child: stderr goes to a file (a pipe an orphaned content process
  still held would block for ever), it runs in its own process group, stops with labkit's
  process on Linux (parent-death signal), and the next labkit stops a leftover through its pid
  file before deleting its folder.
- Live mode (headed, ``devtools``): each visited tab gets its DevTools opened on the Console
  before the page loads (Firefox's own ``gDevTools.showToolboxForTab``, from the privileged
  scope), and the last visit's user context stays open on screen until the next visit, as in
  Chromium's live mode.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import itertools
import json
import logging
import os
import re
import shutil
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import runtime, system
from ..errors import (
    BrowserMissingError,
    BrowserStartError,
    FirefoxProtocolError,
    LabError,
)
from ..model.deployment import LAB_NAMES, WRONG_NAMES
from ..serve import tempdirs
from ..serve.apps.store import Store
from ..serve.pki import LabPKI
from .driver import READ_STEPS, SOCKET_PROBE, WAIT_DONE, Driver, certutil
from .observation import (
    ConsoleMessage,
    FailedRequest,
    Observation,
    PageError,
    SocketEvent,
    Step,
)

log = logging.getLogger("labkit.firefox")

#: The oldest Firefox whose BiDi has every command labkit sends (user contexts, preload
#: scripts, network events with the status of a refused WebSocket handshake).
MIN_VERSION = 128
PREFIX = "labkit-firefox-"

#: A quiet, closed-network profile. HTTPS-First would rewrite the lab's http:// lessons.
PREFS: dict[str, Any] = {
    "network.dns.localDomains": "",
    "dom.security.https_first": False,
    "dom.security.https_first_pbm": False,
    "dom.security.https_only_mode": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "app.update.enabled": False,
    "app.update.auto": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.enabled": False,
    "extensions.update.enabled": False,
    "security.enterprise_roots.enabled": False,  # the OS store must not decide a lesson
    "security.OCSP.enabled": 0,  # the lab CA has no responder; Chromium does not ask either
    "network.proxy.type": 0,
}

_EVENTS = ["browsingContext.contextCreated", "log.entryAdded", "network.beforeRequestSent",
           "network.responseStarted", "network.fetchError"]
_LISTENING = re.compile(rb"WebDriver BiDi listening on (ws://\S+)")
_VERSION = re.compile(r"(\d+)\.")
_JS_ERROR = re.compile(r"^(?:Uncaught )?([A-Z]\w*Error|Error): (.*)$", re.S)


class _Visit:
    """What one user context reported while a visit ran (events arrive on the reader task)."""

    def __init__(self) -> None:
        self.console: list[ConsoleMessage] = []
        self.page_errors: list[PageError] = []
        self.requests: dict[str, dict[str, Any]] = {}  # BiDi request id -> method, url, status
        self.failed: list[FailedRequest] = []
        self.navigations: dict[str, list[dict[str, Any]]] = {}  # navigation id -> its requests

    def on_event(self, method: str, p: dict[str, Any]) -> None:
        at = float(p.get("timestamp") or 0)  # ms since the epoch: orders console and network
        if method == "log.entryAdded":
            text = p.get("text") or ""
            if p.get("type") == "console":
                level = {"warn": "warning"}.get(p.get("level", "info"), p.get("level", "info"))
                self.console.append(ConsoleMessage(level, text, "console-api", at))
                return
            # Firefox reports its own errors (CORS, mixed content, a refused socket) and the
            # page's uncaught exceptions alike as "javascript" entries.
            self.console.append(ConsoleMessage("error", text, "javascript", at))
            m = _JS_ERROR.match(text)
            if m and p.get("stackTrace") is not None:
                self.page_errors.append(PageError(m.group(1), m.group(2)))
            return
        req = p.get("request", {})
        rid = req.get("request", "")
        if method == "network.beforeRequestSent":
            row = {"method": req.get("method", ""), "url": req.get("url", ""), "status": None}
            self.requests[rid] = row
            if p.get("navigation"):
                self.navigations.setdefault(p["navigation"], []).append(row)
        elif method == "network.responseStarted":
            status = p.get("response", {}).get("status")
            if rid in self.requests:
                self.requests[rid]["status"] = status
            if p.get("navigation"):
                rows = self.navigations.setdefault(p["navigation"], [])
                if rows and rows[-1]["url"] == req.get("url"):
                    rows[-1]["status"] = status
        elif method == "network.fetchError":
            row = self.requests.get(rid, {"method": req.get("method", ""), "status": None})
            self.failed.append(FailedRequest(req.get("url", ""),
                                             _failure(p.get("errorText", ""), row), at))


def _failure(error: str, row: dict[str, Any]) -> str:
    """Firefox's network error, with what else Firefox knew: ``NS_ERROR_…
    (OPTIONS, HTTP 405)``. A refused WebSocket handshake says only ..._CONNECTION_REFUSED;
    the status Firefox received is what tells a 403 (Origin refused) from a 308 or 404."""
    # "NS_ERROR_GENERATE_FAILURE(NS_ERROR_MODULE_SECURITY, SEC_ERROR_UNKNOWN_ISSUER)" -> the reason
    m = re.search(r"\b((?:SEC|SSL|MOZILLA_PKIX)_ERROR_[A-Z_]+)", error)
    words = m.group(1) if m else error
    extra = [row["method"]] if row.get("method") == "OPTIONS" else []
    if row.get("status"):
        extra.append(f"HTTP {row['status']}")
    return f"{words} ({', '.join(extra)})" if extra else words


def stop_leftover(folder: Path) -> None:
    """A dead labkit's Firefox (if its parent-death signal could not reach it): stop its group."""
    try:
        pid = int((folder / "firefox.pid").read_text())
        if "firefox" in Path(f"/proc/{pid}/comm").read_text():
            os.killpg(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass


class Firefox(Driver):
    """One headless (or headed) Firefox, started on first use, reused for every visit.

    >>> f = Firefox(LabPKI()).start()
    >>> obs = f.visit("https://localhost:43117/")
    >>> f.stop()
    """

    name = "firefox"
    label = "Firefox"

    def __init__(self, pki: LabPKI | None = None, *, executable: str | None = None,
                 headless: bool = True, devtools: bool = False) -> None:
        super().__init__(pki, executable=executable, headless=headless, devtools=devtools)
        self._proc: asyncio.subprocess.Process | None = None
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        # user context id -> its visit; browsing context id (tabs and their frames) -> user context
        self._visits: dict[str, _Visit] = {}
        self._owner: dict[str, str] = {}
        self._chrome: str | None = None  # the privileged window, where HSTS is forgotten
        self._one_visit = asyncio.Lock()
        self._kept: str | None = None  # live mode: the last visit's user context, on screen

    visits_at_once = 1  # see _observe

    @property
    def running(self) -> bool:
        return (self._ws is not None and self._proc is not None
                and self._proc.returncode is None and self._reader is not None
                and not self._reader.done())

    # -- the protocol ----------------------------------------------------------------------------
    async def _cmd(self, method: str, **params: Any) -> dict[str, Any]:
        if self._ws is None:
            raise ConnectionError("Firefox is not running")
        i = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[i] = fut
        try:
            await self._ws.send(json.dumps({"id": i, "method": method, "params": params}))
            msg = await fut
        finally:
            self._pending.pop(i, None)
        if msg.get("type") == "error":
            if msg.get("error") in ("unknown command", "unknown method", "unsupported operation"):
                raise FirefoxProtocolError(self.version or "?", method, msg.get("message", ""),
                                           MIN_VERSION)
            raise RuntimeError(f"{method}: {msg.get('error')}: {msg.get('message', '')}")
        return msg.get("result", {})

    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                msg = json.loads(raw)
                fut = self._pending.get(msg.get("id")) if "id" in msg else None
                if fut is not None:
                    if not fut.done():
                        fut.set_result(msg)
                    continue
                params = msg.get("params", {})
                if msg.get("method") == "browsingContext.contextCreated":
                    # A tab or a frame in it (the sandboxed page's iframe): its events count
                    # for the visit of its user context.
                    self._owner[params.get("context", "")] = params.get("userContext", "")
                    continue
                ctx = params.get("context") or params.get("source", {}).get("context")
                visit = self._visits.get(self._owner.get(ctx or "", ""))
                if visit is not None:
                    visit.on_event(msg.get("method", ""), params)
        except Exception as e:  # the connection went away: every waiting command fails now
            log.info("Firefox connection closed: %s", e)
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("Firefox went away"))

    # -- lifecycle ---------------------------------------------------------------------------------
    async def _launch(self) -> None:
        import websockets

        executable = self.executable or system.find_firefox()
        if executable is None:
            raise BrowserMissingError("firefox")
        self._home = tempdirs.make(PREFIX, before_removing=stop_leftover)
        profile = Path(self._home) / "profile"
        profile.mkdir()
        (profile / "user.js").write_text("".join(
            f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in PREFS.items()))
        self.trust = await self._trust(profile)
        args = [executable, "--remote-debugging-port=0", "--remote-allow-system-access",
                "--profile", str(profile), "--no-remote", "--new-instance"]
        if self.headless:
            args.insert(1, "--headless")
        # HOME and the caches in the throwaway folder too: nothing is written outside temp.
        env = dict(os.environ, HOME=self._home, XDG_CACHE_HOME=self._home,
                   XDG_CONFIG_HOME=self._home, MOZ_CRASHREPORTER_DISABLE="1")
        errlog = Path(self._home) / "stderr.log"
        with open(errlog, "wb") as errf:
            self._proc = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=errf, stderr=errf, env=env,
                start_new_session=True, preexec_fn=runtime.die_with_parent())
        (Path(self._home) / "firefox.pid").write_text(str(self._proc.pid))
        url = await self._wait_listening(errlog, executable)
        try:
            self._ws = await websockets.connect(url + "/session", max_size=None,
                                                ping_interval=None, open_timeout=10)
        except Exception as e:
            raise BrowserStartError(executable, f"WebDriver BiDi did not answer at {url}: {e}",
                                    "Firefox") from None
        self._reader = asyncio.ensure_future(self._read())
        caps = (await self._cmd("session.new", capabilities={
            "alwaysMatch": {"acceptInsecureCerts": False}}))["capabilities"]
        self.version = caps.get("browserVersion", "")
        m = _VERSION.match(self.version)
        if m is None or int(m.group(1)) < MIN_VERSION:
            raise BrowserStartError(executable, f"this is Firefox {self.version}; labkit drives "
                                    f"Firefox {MIN_VERSION} or newer over WebDriver BiDi",
                                    "Firefox")
        await self._cmd("session.subscribe", events=_EVENTS)
        tree = await self._cmd("browsingContext.getTree", **{"moz:scope": "chrome"})
        self._chrome = next((c["context"] for c in tree.get("contexts", [])
                             if c.get("url", "").startswith("chrome://browser/")), None)
        if self._chrome is None:
            raise BrowserStartError(executable, "Firefox opened no privileged browser window, "
                                    "where labkit forgets HSTS between visits", "Firefox")
        log.info("browser up: Firefox %s (%s), trust via %s", self.version, executable,
                 self.trust)

    async def _wait_listening(self, errlog: Path, executable: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = errlog.read_bytes()
            m = _LISTENING.search(text)
            if m:
                return m.group(1).decode()
            if self._proc is not None and self._proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        tail = errlog.read_bytes().decode(errors="replace").strip().splitlines()[-3:]
        raise BrowserStartError(executable, "no WebDriver BiDi address within "
                                f"{timeout:.0f} s: " + (" | ".join(tail) or "no output"),
                                "Firefox")

    async def _trust(self, profile: Path) -> str:
        self.pki.refresh()
        self._trusted_ca = self.pki.ca_digest()
        tool = system.find_certutil()
        if tool is None:
            # Firefox has no SPKI flag: without certutil it cannot trust the lab at all.
            raise BrowserStartError("certutil", "Firefox trusts the lab CA through its profile's "
                                    "NSS store, which certutil writes. Install: "
                                    + system.install_command(["certutil"]), "Firefox")
        await certutil(tool, profile, "-N", "--empty-password")
        await certutil(tool, profile, "-A", "-t", "C,,", "-n", "labkit lab CA",
                       "-i", str(self.pki.ca_pem))
        return "nss"

    async def _stop_unlocked(self) -> None:
        ws, proc, home, reader = self._ws, self._proc, self._home, self._reader
        self._ws = self._proc = self._home = self._reader = None
        self._visits.clear()
        self._owner.clear()
        self._chrome = None
        self._kept = None
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2)
        if proc is not None and proc.returncode is None:
            # Its content processes are in its group: stop them all, then make sure.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)

    # -- visits ------------------------------------------------------------------------------------
    async def _eval(self, ctx: str, fn: str, default: Any, *, wait: bool = False) -> Any:
        """Call ``fn`` in the page and return its JSON value (``default`` when the page is an
        error page without labkit's DOM)."""
        try:
            r = await self._cmd("script.callFunction", awaitPromise=True, target={"context": ctx},
                                functionDeclaration=f"async () => JSON.stringify(await ({fn})())")
        except FirefoxProtocolError:
            raise
        except Exception:
            return default
        if r.get("type") != "success":
            if wait:
                raise TimeoutError(str(r.get("exceptionDetails", {}).get("text", "")))
            return default
        value = r.get("result", {}).get("value")
        return json.loads(value) if isinstance(value, str) else default

    async def _open(self, uc: str, url: str, timeout: float) -> tuple[str, dict[str, Any]]:
        """A new tab in user context ``uc`` loading ``url``, waited until the page's steps are
        done. Returns the context id and what the navigation said."""
        # A fresh collector: the events of a page visited before this one are not this page's.
        visit = self._visits[uc] = _Visit()
        ctx = (await self._cmd("browsingContext.create", type="tab", userContext=uc))["context"]
        self._owner[ctx] = uc
        if self.devtools:
            await self._show_console()
        out: dict[str, Any] = {"nav_error": None, "status": None, "redirects": [], "visit": visit}
        try:
            nav = await asyncio.wait_for(self._cmd("browsingContext.navigate", context=ctx,
                                                   url=url, wait="complete"), timeout)
            rows = visit.navigations.get(nav.get("navigation", ""), [])
            out["redirects"] = [r["url"] for r in rows[:-1]]
            out["status"] = rows[-1]["status"] if rows else None
            if not (out["status"] is not None and out["status"] >= 400):
                await asyncio.wait_for(self._eval(ctx, WAIT_DONE, None, wait=True), timeout)
        except FirefoxProtocolError:
            raise
        except (asyncio.TimeoutError, TimeoutError):
            out["nav_error"] = "timeout: the page did not finish its steps"
        except RuntimeError as e:  # "unknown error: …NS_ERROR_…" from the navigation
            out["nav_error"] = _nav_error(str(e), visit)
        return ctx, out

    async def _forget_hsts(self) -> None:
        """HSTS learnt by an earlier visit must not upgrade this one (Firefox keeps it across
        user contexts): clear Firefox's site security state."""
        await self._privileged("Cc['@mozilla.org/ssservice;1']"
                               ".getService(Ci.nsISiteSecurityService).clearAll(); true")

    async def _show_console(self) -> None:
        """Live mode: DevTools on the Console for the tab just created (the selected one: it
        opened in the foreground, and visits run one at a time), before its page loads, so the
        Console shows every red line as it happens."""
        await self._privileged(
            "(async () => { const { require } = ChromeUtils.importESModule("
            "'resource://devtools/shared/loader/Loader.sys.mjs');"
            " const { gDevTools } = require('devtools/client/framework/devtools');"
            " const win = Services.wm.getMostRecentWindow('navigator:browser');"
            " await gDevTools.showToolboxForTab(win.gBrowser.selectedTab,"
            " { toolId: 'webconsole' }); return true; })()", wait=True)

    async def _privileged(self, expression: str, *, wait: bool = False) -> None:
        r = await self._cmd("script.evaluate", target={"context": self._chrome},
                            awaitPromise=wait, expression=expression)
        if r.get("type") != "success":
            raise RuntimeError(f"Firefox refused {expression[:60]}…: "
                               + str(r.get("exceptionDetails", {}).get("text", "")))

    async def _observe(self, url: str, *, hosts: Iterable[str] = (), **kw: Any) -> Observation:
        # One visit at a time: HSTS and the name list are browser-wide in Firefox (see the
        # module's docstring).
        async with self._one_visit:
            await self._restart_if_ca_changed()
            await self._forget_hsts()
            names = sorted({*lab_names(), *(h for h in hosts if _is_name(h))}
                           | {urlsplit(u).hostname or "" for u in (url, *kw.get("before", ()))
                              if _is_name(urlsplit(u).hostname or "")})
            await self._privileged("Services.prefs.setStringPref('network.dns.localDomains', "
                                   + json.dumps(",".join(names)) + "); true")
            return await self._observe_one(url, **kw)

    async def _observe_one(self, url: str, *, ports: dict[int, str] | None = None,
                       seen: Store | None = None, timeout: float = 10.0,
                       screenshot: bool = True, context_setup: Any = None,
                       before: Iterable[str] = ()) -> Observation:
        if context_setup is not None:
            raise LabError("context_setup is a Playwright (Chromium) hook; Firefox visits "
                           "take no context_setup")
        started = time.perf_counter()
        seen_from = seen.recorded if seen else 0
        uc = (await self._cmd("browser.createUserContext"))["userContext"]
        prior: list[dict[str, Step]] = []
        try:
            await self._cmd("script.addPreloadScript", userContexts=[uc],
                            functionDeclaration="() => {" + SOCKET_PROBE + "}")
            for earlier in before:
                ctx, _ = await self._open(uc, earlier, timeout)
                raw = await self._eval(ctx, READ_STEPS, {})
                prior.append({k: Step(v["state"], v["detail"]) for k, v in raw.items()})
            before_seen = (seen.recorded - seen_from) if seen else 0
            ctx, nav = await self._open(uc, url, timeout)
            visit = nav["visit"]
            steps_raw = await self._eval(ctx, READ_STEPS, {})
            sockets_raw = await self._eval(ctx, "() => window.__labkitSockets || []", [])
            shot = b""
            if screenshot:
                with contextlib.suppress(Exception):
                    data = (await self._cmd("browsingContext.captureScreenshot",
                                            context=ctx))["data"]
                    shot = base64.b64decode(data)
            else:
                await asyncio.sleep(0.05)  # the last log entries arrive asynchronously
            final = await self._eval(ctx, "() => location.href", url)
        finally:
            self._visits.pop(uc, None)
            for c in [c for c, u in self._owner.items() if u == uc]:
                self._owner.pop(c, None)
            if self.devtools:
                # Live mode: the page and its DevTools stay on screen until the next visit.
                uc, self._kept = self._kept, uc
            # Closing the user context closes its tabs and forgets its cookies and HSTS.
            if self.running and uc is not None:
                self._closing.add(asyncio.ensure_future(self._remove(uc)))
        messages = list(visit.console)
        sockets = [SocketEvent(s["url"], bool(s["opened"]), s["code"], s["reason"],
                               s["error"] or _socket_error(s["url"], visit.failed))
                   for s in sockets_raw]
        return Observation(
            url=url, final_url=final, redirects=nav["redirects"],
            navigation_error=nav["nav_error"], status=nav["status"],
            steps={k: Step(v["state"], v["detail"]) for k, v in steps_raw.items()},
            console=messages, page_errors=list(visit.page_errors),
            failed_requests=list(visit.failed), sockets=sockets,
            seen=seen.since(seen_from) if seen else [], browser_version=self.version,
            screenshot=shot, ports=dict(ports or {}), before=prior,
            before_seen=before_seen if before else 0,
            seconds=time.perf_counter() - started, browser=self.name,
        )

    async def _remove(self, uc: str) -> None:
        with contextlib.suppress(Exception):
            await self._cmd("browser.removeUserContext", userContext=uc)
        self._closing.discard(asyncio.current_task())  # type: ignore[arg-type]



def lab_names() -> list[str]:
    """The story's names (the certificate's, without wildcards): always resolvable."""
    return [n for n in (*LAB_NAMES, *WRONG_NAMES) if _is_name(n)]


def _is_name(host: str) -> bool:
    """A DNS name to map to loopback: not an IP literal, not localhost (Firefox knows it)."""
    h = host.strip("[]").lower()
    if not h or "*" in h or h == "localhost" or h.endswith(".localhost"):
        return False
    try:
        ipaddress.ip_address(h)
    except ValueError:
        return True
    return False


def _nav_error(message: str, visit: _Visit) -> str:
    # "unknown error: Error: NS_ERROR_…" — the certificate reason is in the network error.
    for r in visit.failed:
        if re.match(r"(SEC|SSL|MOZILLA_PKIX)_ERROR_|NS_ERROR_", r.failure):
            return r.failure.split(" (")[0]
    m = re.search(r"\b((?:NS|SEC|SSL)_ERROR_[A-Z_]+)", message)
    return m.group(1) if m else message.splitlines()[0]


def _socket_error(url: str, failed: Iterable[FailedRequest]) -> str | None:
    """Firefox's network error for a socket: its handshake request has the same URL with the
    http(s) scheme."""
    want = re.sub(r"^ws", "http", url)
    for r in failed:
        if r.url == want:
            return r.failure
    return None
