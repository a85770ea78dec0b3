"""labkit's own asyncio loop, in a background thread.

Why a thread: a notebook cell that blocks (``requests.get(lab.url("api"))``, ``time.sleep``) must
not stop the servers from answering, and Jupyter's own loop is busy running the cell. Every server,
proxy and the browser driver live on this one loop; cells talk to it through :func:`run` (sync) or
:func:`arun` (async, from any other loop). Nothing here prints: servers log, so their output never
lands in whichever notebook cell happens to be running.

Importing this module starts nothing; the thread starts on first use.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("labkit.runtime")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_shutdown_hooks: list[Callable[[], None]] = []

#: A cell waits at most this long for one lab operation before giving up with a clear error.
DEFAULT_TIMEOUT = 120.0


def loop() -> asyncio.AbstractEventLoop:
    """The lab loop, started on first use."""
    global _loop, _thread
    with _lock:
        if _loop is None or _loop.is_closed() or _thread is None or not _thread.is_alive():
            ready = threading.Event()
            new_loop = asyncio.new_event_loop()
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

