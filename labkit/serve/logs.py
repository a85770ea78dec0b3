"""Where labkit's log output goes.

Servers run on the lab loop's thread; anything they wrote to stdout/stderr would land in whichever
notebook cell happens to be running (and break nbval's comparison of that cell). So records from the
lab thread go only to an in-memory ring (``Lab.logs()`` shows them); records from the caller's own
thread at WARNING or above also go to stderr, where the learner who ran the cell sees them.
"""

from __future__ import annotations

import logging
import sys
from collections import deque

RING: deque[str] = deque(maxlen=500)
_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
#: Third-party loggers that speak from the lab thread.
_CAPTURED = ("labkit", "aiohttp.server", "aiohttp.web", "aiohttp.access", "websockets")
_configured = False


class _RingHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            RING.append(_FORMAT.format(record))
        except Exception:  # logging must never break a server
            pass


class _NotFromLabThread(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.threadName or "").startswith("labkit-")


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is *now*: Jupyter swaps it per kernel, pytest per test."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def setup() -> None:
    """Idempotent: attach the ring (and the caller-thread stderr handler) once per process."""
    global _configured
    if _configured:
        return
    ring = _RingHandler(logging.INFO)
    for name in _CAPTURED:
        lg = logging.getLogger(name)
        lg.addHandler(ring)
        lg.propagate = False
        if lg.level == logging.NOTSET:
            lg.setLevel(logging.INFO)
    err = _CurrentStderr()
    err.setLevel(logging.WARNING)
    err.addFilter(_NotFromLabThread())
    err.setFormatter(logging.Formatter("labkit: %(message)s"))
    logging.getLogger("labkit").addHandler(err)
    _configured = True


def recent(n: int = 50) -> list[str]:
    return list(RING)[-n:]
