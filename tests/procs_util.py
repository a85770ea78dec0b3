"""Helpers for the "nothing left behind" tests: is a process still there, and a labkit child
process that is always reaped, whatever the test did to it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import psutil


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it is not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def survivors(pids: Iterable[int], timeout: float) -> list[int]:
    """The processes of ``pids`` still alive after waiting up to ``timeout`` seconds for them to
    end (processes die a little after the signal that ends them)."""
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


@contextmanager
def child(argv: list[str], **popen: Any) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` with its stdout piped; killed and reaped on the way out if still running."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, **popen)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def survivors_of_killed_starter(start: str, sig: int, name: str) -> list[str]:
    """Run ``start`` (Python that starts something, e.g. ``Firefox().start()``) in a child
    process, send the child ``sig`` once it is up (SIGKILL: a killed kernel; SIGHUP: a closed
    terminal), and return the names of what it started that is still alive 10 s later. Asserts
    that it did start a process whose name contains ``name``."""
    script = f"import time\n{start}\nprint('up', flush=True)\ntime.sleep(60)\n"
    with child([sys.executable, "-c", script]) as proc:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"up"
        kids = {c.pid: c.name() for c in psutil.Process(proc.pid).children(recursive=True)}
        assert any(name in n for n in kids.values()), kids
        os.kill(proc.pid, sig)
        proc.wait(10)
        return [kids[p] for p in survivors(kids, 10)]
