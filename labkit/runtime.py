"""labkit's own asyncio loop, in a background thread.

Why a thread: a notebook cell that blocks (``requests.get(lab.url("api"))``, ``time.sleep``) must
not stop the servers from answering, and Jupyter's own loop is busy running the cell. Every server,
proxy and the browser driver live on this one loop; cells talk to it through :func:`run` (sync) or
:func:`arun` (async, from any other loop). Nothing here prints: servers log, so their output never
lands in whichever notebook cell happens to be running.

One async core, sync only at the edge: each operation of ``Lab`` and ``Browser`` is one coroutine
marked :func:`on_loop` (it runs on this loop whichever loop awaits it), and its synchronous twin is
the single line ``runtime.run(self.aop(...))``. State the loop mutates (a request log the servers
append to) is read through :func:`call`, on the loop. Nothing on the loop may block: a blocking
call there stalls every server of every lab.

Importing this module starts nothing; the thread starts on first use.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import functools
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")
log = logging.getLogger("labkit.runtime")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_shutdown_hooks: list[Callable[[], None]] = []

#: A cell waits at most this long for one lab operation before giving up with a clear error.
DEFAULT_TIMEOUT = 120.0


#: Which event loop runs the lab: "uvloop" where it is installed (Linux, macOS), else "asyncio".
LOOP_KIND = "asyncio"


def loop_kind() -> str:
    """The event loop labkit runs (or will run) its servers on: "uvloop" or "asyncio"."""
    if os.environ.get("LABKIT_LOOP", "") == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop where the platform has it (it halves what labkit's proxy adds to a WebSocket round
    trip: ``bench/ws_relay.py``; this is labkit's own thread, not the kernel's loop); asyncio's
    loop elsewhere (Windows), or with LABKIT_LOOP=asyncio."""
    global LOOP_KIND
    if os.environ.get("LABKIT_LOOP", "") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            LOOP_KIND = "uvloop"
            return uvloop.new_event_loop()
    LOOP_KIND = "asyncio"
    return asyncio.new_event_loop()


def loop() -> asyncio.AbstractEventLoop:
    """The lab loop, started on first use."""
    global _loop, _thread
    with _lock:
        if _loop is None or _loop.is_closed() or _thread is None or not _thread.is_alive():
            ready = threading.Event()
            new_loop = _new_loop()
            new_loop.set_exception_handler(_log_exception)
            raise_open_files_limit()

            def _run() -> None:
                asyncio.set_event_loop(new_loop)
                new_loop.call_soon(ready.set)
                new_loop.run_forever()

            _thread = threading.Thread(target=_run, name="labkit-loop", daemon=True)
            _loop = new_loop
            _thread.start()
            ready.wait()
        return _loop


def _log_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # asyncio's default handler writes tracebacks to stderr from this thread — into whichever
    # notebook cell is running. Send them to labkit's log instead (see Lab.logs()).
    log.error("lab loop: %s", context.get("message", "error"),
              exc_info=context.get("exception"))


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft open-files limit to the hard one: each proxied chat client holds three
    descriptors, and 1024 (Linux) or 256 (macOS) would cap a room well below its size."""
    try:
        import resource
    except ImportError:  # Windows
        return (0, 0)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft, hard


def in_lab_loop() -> bool:
    try:
        return asyncio.get_running_loop() is _loop
    except RuntimeError:
        return False


def run(coro: Coroutine[Any, Any, T], timeout: float | None = DEFAULT_TIMEOUT) -> T:
    """Run ``coro`` on the lab loop and wait for it (for notebook cells and scripts)."""
    if in_lab_loop():
        coro.close()
        raise RuntimeError(
            "labkit's sync API was called from inside labkit's own loop; use the async API "
            "(await lab.astart(), await lab.astop(), ...) there."
        )
    future = asyncio.run_coroutine_threadsafe(coro, loop())
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(
            f"a lab operation took longer than {timeout:.0f} s and was cancelled. "
            f"Run `labkit doctor` to check the machine, then try again."
        ) from None


async def arun(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` on the lab loop from any loop (Jupyter's, pytest's, or the lab loop)."""
    if in_lab_loop():
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop()))


def on_loop(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Make an async function run on the lab loop whichever loop awaits it: the one core of an
    operation. On the lab loop itself it is awaited directly, so cores call each other freely
    (a lab's start awaits the stop of the lab it replaces) and never go through the sync API."""

    @functools.wraps(fn)
    async def on_labkit_loop(*args: P.args, **kwargs: P.kwargs) -> T:
        return await arun(fn(*args, **kwargs))

    return on_labkit_loop


def call(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` — quick, never blocking — called on the lab loop, from any thread or loop.

    How a caller reads state the loop mutates: a copy of the servers' request log made on the
    caller's thread races the servers appending to it ("deque mutated during iteration"); made on
    the loop, it is consistent. Called on the lab loop itself, ``fn`` runs at once; so it does
    when the loop never started (nothing can be mutating, and a read must not start a thread).
    """
    if in_lab_loop() or _loop is None:
        return fn(*args)
    return run(_call(fn, *args))


async def _call(fn: Callable[..., T], *args: Any) -> T:
    return fn(*args)


def die_with_parent() -> Callable[[], None] | None:
    """A preexec function that asks Linux to SIGTERM a child (nginx, Firefox) when labkit's
    process dies (killed kernel, closed terminal): what labkit starts must not outlive it. None
    elsewhere. The signal follows the *thread* that forked, which is this loop's thread: it lives
    as long as the process. libc is loaded here, before the fork: the child only makes the call."""
    import sys

    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return preexec


def on_shutdown(hook: Callable[[], None]) -> None:
    """Register a hook run at interpreter exit (kernel shutdown), before the loop stops."""
    _shutdown_hooks.append(hook)


def _shutdown() -> None:
    for hook in reversed(_shutdown_hooks):
        try:
            hook()
        except Exception:  # exiting anyway: one failing hook must not keep others from running
            pass
    if _loop is not None and not _loop.is_closed() and _thread is not None and _thread.is_alive():
        # Cancel what is still running (a relay mid-close, say) so nothing is destroyed pending.
        try:
            asyncio.run_coroutine_threadsafe(_cancel_all(), _loop).result(5)
        except Exception:
            pass
        _loop.call_soon_threadsafe(_loop.stop)
        _thread.join(timeout=5)


async def _cancel_all() -> None:
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for t in tasks:
        t.cancel()
    await asyncio.wait(tasks, timeout=3) if tasks else None


atexit.register(_shutdown)

