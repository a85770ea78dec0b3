"""A real headless Chromium, driven by Playwright on labkit's loop, that trusts the lab CA.

Why these choices (each one verified against Chromium 156 on Debian 12):
- Playwright's *async* API on labkit's own loop: its sync API refuses to run inside Jupyter.
- Trust through an NSS db in a throwaway HOME (certutil), so a rogue-CA or wrong-name certificate
  still fails exactly as it would for a participant. The SPKI flag is only a fallback: it cannot
  show the wrong-name lesson. Never ``ignore_https_errors``.
- ``*.lab.test`` mapped to 127.0.0.1 with host resolver rules: nothing edits /etc/hosts.
- One browser reused; a fresh context per visit, so cookies and HSTS never leak between visits.
- One async core: ``astart``, ``astop`` and ``avisit`` run on labkit's loop whichever loop awaits
  them; ``start``, ``stop`` and ``visit`` are those, run from synchronous code. Nothing here may
  block the loop, where every lab server lives: certutil runs as an asyncio subprocess.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .. import runtime, system
from ..errors import (
    BrowserDriverError,
    BrowserMissingError,
    BrowserStartError,
)
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

log = logging.getLogger("labkit.browser")

#: Flags that keep headless Chromium quiet and deterministic on a closed network.
FLAGS = (
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Lab names, and the cross-site attacker's evil-lab.test, at loopback: no /etc/hosts edit.
    "--host-resolver-rules=MAP *.lab.test 127.0.0.1, MAP evil-lab.test 127.0.0.1, "
    "MAP *.evil-lab.test 127.0.0.1",
    # Chromium honours only the *last* --disable-features: this one list keeps Playwright's own
    # (copied from Playwright 1.65's defaults; a test checks they reach the renderers) and adds
    # labkit's. SpareRendererForSitePerProcess: a spare renderer is warmed for the context it was
    # made in, and every visit is a fresh context (labkit warms its own spare context instead).
    # WebUIOmniboxPopup, WebUIOmniboxAimPopup: full Chromium preloads its omnibox popup pages in
    # a renderer per window, about half of a visit's CPU (bench/tour.py).
    "--disable-features=" + ",".join((
        "AvoidUnnecessaryBeforeUnloadCheckSync", "DestroyProfileOnBrowserClose", "HttpsUpgrades",
        "HttpsFirstBalancedModeAutoEnable", "LensOverlay", "MediaRouter", "PaintHolding",
        "ThirdPartyStoragePartitioning", "AvoidCorsURLLoaderRestartOnRedirect",
        "TcpPortRandomizationWin", "OptimizationHints", "NetworkTimeServiceQuerying", "AimEnabled",
        "PreconnectToSearch", "SpareRendererForSitePerProcess", "WebUIOmniboxPopup",
        "WebUIOmniboxAimPopup")),
)

def spki_hash(cert_pem: bytes) -> str:
    """base64(sha256(SubjectPublicKeyInfo)) — the form ``--ignore-certificate-errors-spki-list``
    takes."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    der = cert.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


class Browser(Driver):
    """One headless (or headed) Chromium, started on first use, reused for every visit.

    >>> b = Browser(LabPKI()).start()
    >>> obs = b.visit("https://localhost:43117/")
    >>> b.stop()
    """

    name = "chromium"
    label = "Chromium"

    def __init__(self, pki: LabPKI | None = None, *, executable: str | None = None,
                 headless: bool = True, devtools: bool = False) -> None:
        super().__init__(pki, executable=executable, headless=headless, devtools=devtools)
        self._consoles: set[str] = set()
        self._kept: Any = None  # live mode: the last visit's context, left open on screen
        self._pw: Any = None
        self._browser: Any = None
        self._spare: asyncio.Future[tuple[Any, Any, Any]] | None = None

    @property
    def running(self) -> bool:
        return self._browser is not None and self._browser.is_connected()

    # -- lifecycle ------------------------------------------------------------------------------
    async def _launch(self) -> None:
        from playwright.async_api import async_playwright

        executable = self.executable or system.find_browser(headless=self.headless)
        self._home = tempdirs.make("labkit-browser-")
        args = list(FLAGS)
        if self.devtools:
            args.append("--auto-open-devtools-for-tabs")
        self.trust = await self._setup_trust(Path(self._home), args)
        env = dict(os.environ, HOME=self._home)
        try:
            self._pw = await async_playwright().start()
        except Exception as e:
            raise BrowserDriverError(str(e), await _driver_diagnosis()) from None
        try:
            self._browser = await self._pw.chromium.launch(
                executable_path=executable, headless=self.headless, args=args, env=env,
                # On wherever it can work; off as root, or in a container that forbids user
                # namespaces (system.chromium_sandbox says which, and doctor shows it).
                chromium_sandbox=system.chromium_sandbox()[0],
            )
        except Exception as e:
            if executable is None:
                raise BrowserMissingError() from None
            raise BrowserStartError(executable, str(e)) from None
        self.version = self._browser.version
        log.info("browser up: Chromium %s (%s), trust via %s", self.version, executable, self.trust)
        self._prepare_spare()  # the first visit need not wait for a renderer either

    async def _setup_trust(self, home: Path, args: list[str]) -> str:
        self.pki.refresh()
        self._trusted_ca = self.pki.ca_digest()
        tool = system.find_certutil()
        if tool and system.chromium_uses_nss():
            db = home / ".pki" / "nssdb"
            db.mkdir(parents=True)
            await certutil(tool, db, "-N", "--empty-password")
            await certutil(tool, db, "-A", "-t", "C,,", "-n", "labkit lab CA",
                            "-i", str(self.pki.ca_pem))
            return "nss"
        # Fallback: trust the lab leaves' keys. Weaker: a lab key under a wrong name is accepted.
        if system.chromium_uses_nss():
            log.warning("certutil not found: trusting lab certificates by key (SPKI); the "
                        "wrong-name lesson cannot fail as it should. Install: %s",
                        system.install_command(["certutil"]))
        else:
            log.warning("Chromium ignores NSS on this system: trusting lab certificates by key "
                        "(SPKI); the wrong-name lesson cannot fail as it should. Firefox keeps "
                        "its own store: labkit.run(name, browser='firefox') shows it exactly")
        hashes = [spki_hash(self.pki.cert(k).cert.read_bytes()) for k in ("lab", "wrong-name")]
        args.append("--ignore-certificate-errors-spki-list=" + ",".join(hashes))
        return "spki"

    async def _stop_unlocked(self) -> None:
        self._kept = None  # closed with the browser below
        self._consoles.clear()
        await self._drop_spare()
        browser, pw, home = self._browser, self._pw, self._home
        self._browser = self._pw = self._home = None
        if browser is not None:
            try:
                await asyncio.wait_for(browser.close(), 10)
            except Exception:  # a crashed browser is already gone; the driver cleans up below
                pass
        if pw is not None:
            try:
                await asyncio.wait_for(pw.stop(), 10)
            except Exception:
                pass
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)

    # -- a spare fresh context ------------------------------------------------------------------
    # Opening a page starts a renderer process (about 0.15 s). A never-used context and page are
    # prepared while each visit runs, so the next visit starts at once — still perfectly fresh.
    async def _new_blank(self) -> tuple[Any, Any, Any]:
        context = await self._browser.new_context(viewport=VIEWPORT)
        try:
            await context.add_init_script(SOCKET_PROBE)
            page = await context.new_page()
            cdp = await context.new_cdp_session(page)
            await cdp.send("Log.enable")
        except BaseException:
            await context.close()
            raise
        return context, page, cdp

    async def _close_then_prepare(self, context: Any) -> None:
        try:
            await context.close()
        except Exception:  # the browser may be stopping: it closes every context anyway
            pass
        self._closing.discard(asyncio.current_task())  # type: ignore[arg-type]
        self._prepare_spare()

    def _prepare_spare(self) -> None:
        if self._spare is None and self.running:
            self._spare = asyncio.ensure_future(self._new_blank())

    async def _take_spare(self) -> tuple[Any, Any, Any]:
        spare, self._spare = self._spare, None
        # Start on the next one at once: it is ready by the time this visit is over.
        self._prepare_spare()
        if spare is not None:
            try:
                return await spare
            except Exception:  # the browser restarted or the spare broke: make one now
                pass
        return await self._new_blank()

    async def _drop_spare(self) -> None:
        spare, self._spare = self._spare, None
        if spare is None:
            return
        spare.cancel()
        try:
            context, _, _ = await spare
            await context.close()
        except BaseException:
            pass

    # -- visits ----------------------------------------------------------------------------------
    @runtime.on_loop
    async def _show_console(self) -> None:
        """Live mode: every DevTools window shows the Console (where the red line is). DevTools
        opens on the panel used last, and Playwright owns the profile that remembers it; the
        DevTools front end's own embedder API, ``DevToolsAPI.showPanel``, switches it."""
        if self._browser is None:
            return
        cdp = await self._browser.new_browser_cdp_session()
        try:
            targets = (await cdp.send("Target.getTargets"))["targetInfos"]
            for t in targets:
                if not t["url"].startswith("devtools://") or t["targetId"] in self._consoles:
                    continue
                self._consoles.add(t["targetId"])
                sid = (await cdp.send("Target.attachToTarget",
                                      {"targetId": t["targetId"], "flatten": False}))["sessionId"]
                show = {"id": 1, "method": "Runtime.evaluate",
                        "params": {"expression": "DevToolsAPI.showPanel('console')"}}
                await cdp.send("Target.sendMessageToTarget",
                               {"sessionId": sid, "message": json.dumps(show)})
        finally:
            await cdp.detach()

    async def _observe(
        self,
        url: str,
        *,
        ports: dict[int, str] | None = None,
        seen: Store | None = None,
        timeout: float = 10.0,
        screenshot: bool = True,
        context_setup: Any = None,
        before: Iterable[str] = (),
        hosts: Iterable[str] = (),  # noqa: ARG002 - the resolver rules map every lab name
    ) -> Observation:
        """Load ``url`` in a fresh context, wait for the page to finish its steps, report.

        ``seen`` is the lab's store, whose request log gives the requests of this visit;
        ``context_setup`` an async callable given the context before the visit;
        ``before`` pages visited first in the same context (a victim logging in before an
        attacker's page is opened), whose step states are kept in ``Observation.before``.
        """
        await self._restart_if_ca_changed()
        started = time.perf_counter()
        seen_from = seen.recorded if seen else 0
        console: list[ConsoleMessage] = []
        page_errors: list[PageError] = []
        failed: list[FailedRequest] = []
        sources: dict[str, str] = {}
        nav_error: str | None = None
        status: int | None = None
        redirects: list[str] = []
        prior: list[dict[str, Step]] = []
        before_seen = 0
        if context_setup is None and not before:
            context, page, cdp = await self._take_spare()
        else:
            context = await self._browser.new_context(viewport=VIEWPORT)
        try:
            if context_setup is not None or before:
                if context_setup is not None:
                    await context_setup(context)
                await context.add_init_script(SOCKET_PROBE)
                for earlier in before:
                    prior.append(await _run_page(context, earlier, timeout))
                before_seen = (seen.recorded - seen_from) if seen else 0
                page = await context.new_page()
                cdp = await context.new_cdp_session(page)
                await cdp.send("Log.enable")
            cdp.on("Log.entryAdded", lambda e: sources.setdefault(e["entry"]["text"],
                                                                  e["entry"]["source"]))
            page.on("console", lambda m: console.append(ConsoleMessage(m.type, m.text)))
            page.on("pageerror", lambda e: page_errors.append(PageError(e.name, e.message)))
            page.on("requestfailed", lambda r: failed.append(
                FailedRequest(r.url, r.failure or "")))
            try:
                resp = await page.goto(url, timeout=timeout * 1000)
                if self.devtools:
                    await self._show_console()
                if resp is not None:
                    status = resp.status
                    req = resp.request.redirected_from
                    while req is not None:
                        redirects.insert(0, req.url)
                        req = req.redirected_from
                if not _is_error_answer(resp):
                    await _wait_done(page, timeout)
            except Exception as e:  # navigation failures are observations, not crashes
                nav_error = _nav_error(str(e))
            steps_raw = await _safe_eval(page, READ_STEPS, {})
            sockets_raw = await _safe_eval(page, "() => window.__labkitSockets || []", [])
            # The last console messages arrive asynchronously: the screenshot (about 50 ms)
            # gives them time to land; without one, wait as long.
            shot = await page.screenshot() if screenshot else b""
            if not screenshot:
                await asyncio.sleep(0.05)
            final_url = page.url
        finally:
            if self.devtools:
                # Live mode: the page and its DevTools stay on screen until the next visit.
                context, self._kept = self._kept, context
            # Closing a context takes 20-70 ms; nothing waits for it but the next spare.
            if context is not None:
                self._closing.add(asyncio.ensure_future(self._close_then_prepare(context)))
        # Copies: the page lives on for a moment (its context closes in the background) and its
        # listeners keep appending to the lists above; the observation is of this visit only.
        messages = [ConsoleMessage(m.type, m.text, sources.get(m.text, _guess_source(m)))
                    for m in list(console)]
        sockets = [SocketEvent(s["url"], bool(s["opened"]), s["code"], s["reason"],
                               s["error"] or _socket_error(s["url"], messages))
                   for s in sockets_raw]
        return Observation(
            url=url, final_url=final_url, redirects=redirects, navigation_error=nav_error,
            status=status,
            steps={k: Step(v["state"], v["detail"]) for k, v in steps_raw.items()},
            console=messages, page_errors=list(page_errors), failed_requests=list(failed),
            sockets=sockets,
            seen=seen.since(seen_from) if seen else [], browser_version=self.version,
            screenshot=shot, ports=dict(ports or {}), before=prior, before_seen=before_seen,
            seconds=time.perf_counter() - started, browser=self.name,
        )


VIEWPORT = {"width": 680, "height": 420}


async def _driver_diagnosis() -> str:
    """Why Playwright's driver (its own Node.js) died at start: run that Node alone and keep the
    first line it complains with (``libatomic.so.1: cannot open shared object file`` on a
    minimal Debian)."""
    try:
        from playwright._impl._driver import compute_driver_executable

        node, _ = compute_driver_executable()
        proc = await asyncio.create_subprocess_exec(
            node, "--version", stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    except Exception as e:  # the diagnosis must never hide the first error
        return f"{type(e).__name__}: {e}"
    if proc.returncode == 0:
        return f"its Node.js ({node}) runs ({out.decode().strip()}); see the error above"
    lines = err.decode(errors="replace").strip().splitlines()
    return f"{node} exits with {proc.returncode}: " + (lines[0] if lines else "no message")


async def _run_page(context: Any, url: str, timeout: float) -> dict[str, Step]:
    page = await context.new_page()
    try:
        try:
            resp = await page.goto(url, timeout=timeout * 1000)
            if not _is_error_answer(resp):
                await _wait_done(page, timeout)
        except Exception as e:  # a page visited first that fails (certificate, refused) ran
            if not context.browser or not context.browser.is_connected():  # no step: say so
                raise
            log.info("page visited first failed: %s", _nav_error(str(e)))
        raw = await _safe_eval(page, READ_STEPS, {})
        return {k: Step(v["state"], v["detail"]) for k, v in raw.items()}
    finally:
        await page.close()


async def _wait_done(page: Any, timeout: float) -> None:
    try:
        await asyncio.wait_for(page.evaluate(WAIT_DONE), timeout)
    except asyncio.TimeoutError:
        raise TimeoutError(f"Timeout {timeout * 1000:.0f}ms exceeded waiting for the page's "
                           "steps") from None


def _is_error_answer(resp: Any) -> bool:
    """An HTTP error status (a proxy's 502 for a stopped backend, 421 for another Host, a 404):
    the answer is not labkit's page, whose steps would never run; waiting for them would only
    burn the whole timeout. The status is the observation (the classifier reads it)."""
    return resp is not None and resp.status >= 400


async def _safe_eval(page: Any, script: str, default: Any) -> Any:
    try:
        return await page.evaluate(script)
    except Exception:  # an error page (certificate interstitial) has none of our DOM
        return default


def _nav_error(message: str) -> str:
    # Playwright: "Page.goto: net::ERR_CERT_AUTHORITY_INVALID at https://…\nCall log: …"
    first = message.splitlines()[0] if message else message
    for token in first.split():
        if token.startswith("net::"):
            return token
    if "Timeout" in first:
        return "timeout: the page did not finish its steps"
    return first


def _guess_source(m: ConsoleMessage) -> str:
    return "console-api" if m.type in ("log", "info", "debug") else "javascript"


def _socket_error(url: str, console: Iterable[ConsoleMessage]) -> str | None:
    prefix = f"WebSocket connection to '{url}' failed: "
    for m in console:
        if m.text.startswith(prefix):
            return m.text[len(prefix):]
    return None
