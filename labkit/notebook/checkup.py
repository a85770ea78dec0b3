"""``labkit doctor`` (and ``labkit.doctor()``): is this machine ready for the lab?

One line per piece, with the exact fix.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import shutil
import socket
import subprocess
from dataclasses import dataclass

from .. import runtime, system
from ..serve.pki import LabPKI, default_home

PACKAGES = ("aiohttp", "websockets", "trustme", "playwright", "python-socketio", "jupyterlab",
            "nbval", "pytest")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = "ok     " if self.ok else "MISSING"
        fix = f"  -> {self.fix}" if (self.fix and not self.ok) else ""
        return f"{mark} {self.name:12} {self.detail}{fix}"


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown version"


def checks() -> list[Check]:
    out = [Check("python", True, f"{platform.python_version()} ({platform.system()})")]
    for pkg in PACKAGES:
        try:
            out.append(Check(pkg, True, md.version(pkg)))
        except md.PackageNotFoundError:
            out.append(Check(pkg, False, "not installed",
                             "make lab (or pip install -e '.[lab,test]')"))
    browser = system.find_browser()
    if browser:
        out.append(Check("browser", True, f"{browser} — {_version([browser, '--version'])}"))
    else:
        out.append(Check("browser", False, "no Chromium or Chrome found",
                         system.install_command(["chromium"])))
    certutil = shutil.which("certutil")
    out.append(Check(
        "trust", bool(certutil),
        "lab CA in a throwaway NSS db (certutil): every certificate lesson is exact" if certutil
        else "certutil missing: falls back to trusting the lab leaf's key (SPKI); the wrong-name "
             "lesson cannot fail as it should",
        system.install_command(["certutil"])))
    nginx = shutil.which("nginx")
    out.append(Check("nginx", bool(nginx), _version([nginx, "-v"]) if nginx else "not found",
                     system.install_command(["nginx"])))
    kind = runtime.loop_kind()
    out.append(Check("event loop", True,
                     f"{kind} runs labkit's servers" + ("" if kind == "uvloop" else
                                                        " (uvloop not installed: a bit slower)")))
    out.append(_leftovers_check())
    out.append(_port_check())
    out.append(_files_check())
    out.append(_ca_check())
    return out


def _leftovers_check() -> Check:
    """An nginx whose labkit was killed keeps its ports: find it by its pid file and stop it."""
    from ..serve.nginx import stop_leftovers

    n = stop_leftovers()
    return Check("leftovers", True, f"stopped {n} nginx left running by a killed labkit" if n
                 else "no nginx left running by an earlier labkit")


def _port_check() -> Check:
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return Check("ports", True, f"loopback ports free (e.g. {port})")
    except OSError as e:
        return Check("ports", False, f"cannot bind 127.0.0.1: {e}", "check the loopback interface")


def _files_check() -> Check:
    from ..runtime import raise_open_files_limit

    soft, hard = raise_open_files_limit()
    if soft == 0:
        return Check("open files", True, "no limit to check on this system")
    # Three descriptors per proxied chat client; a room of 30 needs few, a load test many.
    ok = soft >= 1024
    return Check("open files", ok, f"{soft} per process (hard limit {hard})",
                 "ulimit -n 4096 before starting Jupyter")


def _ca_check() -> Check:
    home = default_home()
    try:
        pki = LabPKI(home).ensure()
    except OSError as e:
        return Check("lab CA", False, f"{home}: {e}", "set LABKIT_HOME to a writable folder")
    detail = f"{pki.status}: {pki.ca_pem}"
    if pki.message and pki.status == "replaced":
        detail += f" ({pki.message})"
    return Check("lab CA", True, detail)


def report() -> str:
    return "\n".join(c.line() for c in checks())


def ok(items: list[Check]) -> bool:
    required = {"python", "browser", "ports", "lab CA", *PACKAGES}
    if system.in_ci() or os.environ.get("LABKIT_STRICT"):
        required |= {"trust", "nginx"}
    return all(c.ok for c in items if c.name in required)
