"""Errors a learner can act on: what broke, which rule, what to do next.

One class per failure, with the facts as fields; the message is built in ``__str__`` so tests can
assert on the text and notebooks show one readable sentence instead of a traceback into labkit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


class LabError(Exception):
    """Base class of every error labkit raises on purpose."""

    def __init__(self, *args: object) -> None:
        # dataclass subclasses never call this; keep Exception.args useful for pickling/logging
        super().__init__(*args)

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of the stack: a learner needs the message, not labkit's
        # internals. (Scripts still get the full traceback.)
        return [f"\x1b[1;31m{type(self).__name__}\x1b[0m: {self}"]


@dataclass
class PortInUseError(LabError):
    service: str
    port: int

    def __str__(self) -> str:
        return (
            f"port {self.port} for service '{self.service}' is already in use by another program. "
            f"Pick another port, or leave the port out (port=0) so labkit chooses a free one. "
            f"Nothing was left running."
        )


@dataclass
class UnknownHostError(LabError):
    host: str
    service: str = ""

    def __str__(self) -> str:
        where = f" for service '{self.service}'" if self.service else ""
        return (
            f"host name '{self.host}'{where} is not a lab name. labkit only serves names it can "
            f"resolve without touching /etc/hosts and has certificates for: localhost, 127.0.0.1, "
            f"::1, or a name ending in .lab.test (e.g. app.lab.test)."
        )


@dataclass
class InvalidOriginError(LabError):
    value: str
    why: str = ""

    def __str__(self) -> str:
        why = f" ({self.why})" if self.why else ""
        return (
            f"'{self.value}' is not a valid origin{why}. An origin is scheme://host[:port] with "
            f"no path, e.g. 'https://localhost:8443' (RFC 6454)."
        )


@dataclass
class CAFileMissingError(LabError):
    path: str

    def __str__(self) -> str:
        return (
            f"the lab CA file {self.path} is missing. Run `labkit doctor` (or start a Lab) to "
            f"recreate the lab CA in the lab state folder; set LABKIT_HOME to use another folder."
        )


@dataclass
class UnknownScenarioError(LabError):
    name: str
    known: Sequence[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"unknown scenario '{self.name}'. Known scenarios: {', '.join(self.known)}."


@dataclass
class TopologyError(LabError):
    problem: str
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.problem}. {self.fix}".strip()


@dataclass
class LabNotRunningError(LabError):
    action: str

    def __str__(self) -> str:
        return f"cannot {self.action}: the lab is not running. Call lab.start() first."


@dataclass
class AssetMissingError(LabError):
    path: str

    def __str__(self) -> str:
        return (
            f"the socket.io browser client is missing ({self.path}). It comes from the npm "
            f"registry at set-up: run `make lab` (or `npm ci` in the labkit folder). If npm itself "
            f"is missing: sudo apt-get install -y npm (Debian/Ubuntu) or install Node.js."
        )
