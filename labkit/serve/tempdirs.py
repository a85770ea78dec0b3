"""Temporary folders that do not outlive their owner.

The browser's throwaway HOME and nginx's prefix live in the system temp folder. A kernel that is
killed cannot clean up after itself, so each folder records its owner's PID, and the next labkit
to make one sweeps away the folders of owners that are gone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

OWNER = "labkit-owner.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, and not ours to judge
        return True
    return True


def sweep(prefix: str, before_removing: Callable[[Path], None] | None = None) -> int:
    """Remove ``prefix*`` folders whose owner process has exited. Returns how many.
    ``before_removing`` gets each such folder first (to stop what still runs from it)."""
    removed = 0
    for path in Path(tempfile.gettempdir()).glob(prefix + "*"):
        try:
            pid = int((path / OWNER).read_text())
        except (OSError, ValueError):
            continue  # not made by this module (or being made right now): leave it
        if pid != os.getpid() and not _alive(pid):
            if before_removing is not None:
                before_removing(path)
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def make(prefix: str, before_removing: Callable[[Path], None] | None = None) -> str:
    """A new private folder owned by this process (after sweeping orphans of the same kind;
    ``before_removing`` stops what an orphan still runs from its folder)."""
    sweep(prefix, before_removing)
    path = tempfile.mkdtemp(prefix=prefix)
    Path(path, OWNER).write_text(str(os.getpid()))
    return path
