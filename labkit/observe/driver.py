"""What every browser labkit drives shares: the synchronous edge, one-at-a-time start and stop,
the page scripts that read a visit, and certutil for the lab CA.

Chromium (``browser.Browser``, Playwright) and Firefox (``firefox.Firefox``, WebDriver BiDi) each
implement ``_launch``, ``_stop_unlocked`` and ``_observe``; everything a caller sees is here, so
``Lab``, the tour and the notebooks take either.
"""

from __future__ import annotations

import asyncio
import subprocess
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .. import runtime
from ..errors import LabError, VisitInterruptedError
from ..serve.pki import LabPKI
from .observation import Observation

#: Records every WebSocket the page opens — URL, opened, close code and reason, constructor error —
#: without changing what the socket does (the native object is returned as is).
SOCKET_PROBE = """
(() => {
  const Native = window.WebSocket;
  const log = (window.__labkitSockets = []);
  function LabkitWebSocket(url, protocols) {
    const rec = { url: String(url), opened: false, code: null, reason: null, error: null };
    log.push(rec);
    let ws;
    try { ws = protocols === undefined ? new Native(url) : new Native(url, protocols); }
    catch (e) { rec.error = `${e.name}: ${e.message}`; throw e; }
    rec.url = ws.url;
    ws.addEventListener("open", () => { rec.opened = true; });
    ws.addEventListener("close", (ev) => { rec.code = ev.code; rec.reason = ev.reason; });
    return ws;
  }
  LabkitWebSocket.prototype = Native.prototype;
  for (const k of ["CONNECTING", "OPEN", "CLOSING", "CLOSED"]) LabkitWebSocket[k] = Native[k];
  window.WebSocket = LabkitWebSocket;
})();
"""

READ_STEPS = """
() => Object.fromEntries([...document.querySelectorAll("tr.step")].map(tr => [
  tr.id.replace(/^step-/, ""),
  { state: tr.dataset.state, detail: tr.querySelector(".detail").textContent }]))
"""

#: labkit's page sets ``data-done="true"`` on <html> once its last step has settled. A promise
#: resolved by a MutationObserver, rather than Playwright's ``wait_for_function``: that one loads
#: Playwright's injected script (about 1 MB of JavaScript) into every fresh renderer, which cost
#: more CPU than the whole page on a two-core machine (bench/tour.py).
WAIT_DONE = """() => new Promise((resolve) => {
  const root = document.documentElement;
  if (root.dataset.done === "true") return resolve(true);
  new MutationObserver((_, observer) => {
    if (root.dataset.done === "true") { observer.disconnect(); resolve(true); }
  }).observe(root, { attributes: true, attributeFilter: ["data-done"] });
})"""

_live: weakref.WeakSet[Driver] = weakref.WeakSet()


def _stop_live_browsers() -> None:
    for b in list(_live):
        try:
            b.stop()
        except Exception:  # exiting anyway
            pass


runtime.on_shutdown(_stop_live_browsers)


class Driver:
    """A browser labkit starts on first use and reuses for every visit, each visit in a fresh
    context. Subclasses say how to launch, stop and observe."""

    name = "browser"
    label = "Browser"
    #: How many visits one browser process runs at once (None: as many as asked). Firefox keeps
    #: HSTS and the name list browser-wide, so it runs one; a tour then starts :meth:`twin`s.
    visits_at_once: int | None = None
    #: One visit, in the subclass's own terms (its keywords are the visit's options).
    _observe: Callable[..., Awaitable[Observation]]

    def __init__(self, pki: LabPKI | None = None, *, executable: str | None = None,
                 headless: bool = True, devtools: bool = False) -> None:
        self.pki = pki or LabPKI()
        self.executable = executable
        self.headless = headless
        #: Live mode (headed only): each page opens with the browser's developer tools.
        self.devtools = devtools and not headless
        self.trust = "not started"  # "nss" | "spki"
        self.version = ""
        self._home: str | None = None
        # Start and stop run one at a time; only ever awaited on labkit's loop.
        self._lock = asyncio.Lock()
        self._trusted_ca = ""
        # Contexts closing in the background after a visit; stop waits for them.
        self._closing: set[asyncio.Future[None]] = set()

    def __repr__(self) -> str:
        state = (f"{self.label} {self.version}, trust: {self.trust}" if self.running
                 else "not started")
        return f"<{type(self).__name__} {state}>"

    @property
    def running(self) -> bool:
        raise NotImplementedError

    def twin(self) -> Driver:
        """Another browser like this one (same CA, binary, mode), not started: a second lane for
        a browser that visits one page at a time."""
        return type(self)(self.pki, executable=self.executable, headless=self.headless,
                          devtools=self.devtools)

    # -- the synchronous edge: each runs its async twin on labkit's loop, and nothing more -------
    def start(self) -> Driver:
        """Launch the browser (a no-op when it runs). Returns the browser for chaining."""
        return runtime.run(self.astart())

    def stop(self) -> None:
        """Close the browser and delete its throwaway folder; safe to call any number of times."""
        return runtime.run(self.astop())

    def visit(self, url: str, **kw: Any) -> Observation:
        """Load ``url`` in a fresh context (starting the browser if needed) and report what the
        page did: its steps, console, sockets, and the requests the lab saw (``seen=lab.store``)."""
        return runtime.run(self.avisit(url, **kw))

    # -- lifecycle: the async core, on labkit's loop ----------------------------------------------
    @runtime.on_loop
    async def astart(self) -> Driver:
        """:meth:`start`, awaitable from any loop."""
        async with self._lock:
            if self.running:
                return self
            await self._stop_all()
            try:
                await self._launch()
            except BaseException:
                await self._stop_all()
                raise
            _live.add(self)  # stopped at interpreter exit if nobody else does
        return self

    @runtime.on_loop
    async def astop(self) -> None:
        """:meth:`stop`, awaitable from any loop."""
        async with self._lock:
            await self._stop_all()

    async def _stop_all(self) -> None:
        closing, self._closing = self._closing, set()
        if closing:
            await asyncio.wait(closing, timeout=5)
        await self._stop_unlocked()

    async def _restart_if_ca_changed(self) -> None:
        if self.running and self.pki.refresh().ca_digest() != self._trusted_ca:
            # The lab CA was deleted and recreated: this browser trusts the old one.
            await self.astop()
        if not self.running:
            await self.astart()

    async def avisit(self, url: str, **kw: Any) -> Observation:
        """:meth:`visit`, awaitable from any loop."""
        try:
            return await self._observe(url, **kw)
        except (LabError, ValueError, TypeError):  # already say what went wrong: a browser that
            raise                                  # cannot start, a bad argument
        except Exception as e:
            if self.running:
                raise
            # The browser went away under the visit (the lab was stopped, the kernel is
            # shutting down): say so plainly instead of the driver's protocol error.
            raise VisitInterruptedError(url) from e

    async def _launch(self) -> None:
        raise NotImplementedError

    async def _stop_unlocked(self) -> None:
        raise NotImplementedError


async def certutil(tool: str, db: Path, *args: str, timeout: float = 30) -> None:
    """Run NSS's certutil on database ``db`` without blocking labkit's loop (two runs take up to
    a second on a busy machine, during which every lab server would stop answering). Fails as
    ``subprocess.run(check=True, timeout=...)`` would."""
    cmd = [tool, "-d", f"sql:{db}", *args]
    proc = await asyncio.create_subprocess_exec(*cmd, stdin=subprocess.DEVNULL,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException as e:  # timed out or cancelled: never leave certutil behind
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if isinstance(e, asyncio.TimeoutError):
            raise subprocess.TimeoutExpired(cmd, timeout) from None
        raise
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd, out, err)
