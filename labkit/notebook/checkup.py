"""``labkit doctor`` (and ``labkit.doctor()``): is this machine ready for the lab?

One line per piece, with the exact fix.
"""

from __future__ import annotations

import concurrent.futures
import importlib.metadata as md
import os
import platform
import shutil
import socket
import subprocess
from dataclasses import dataclass

from .. import runtime, system
from ..errors import LabError
from ..observe import Driver, make_browser
from ..observe.firefox import PREFIX as FIREFOX_PREFIX
from ..observe.firefox import stop_leftover as stop_firefox_leftover
from ..serve import tempdirs
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
    out += _browser_checks()
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


#: Lessons whose failure needs the browser to check the certificate's *name* against a CA it
#: trusts: trusting the lab's keys instead (SPKI) accepts a lab key under any name.
NAME_LESSONS = ("wss-name-mismatch", "wss-wildcard-depth")


def _launch(kind: str) -> tuple[Driver | None, str]:
    """Start the browser once (and its driver), as a visit would, then stop it: a browser that
    is installed but cannot start is not ok. Returns the stopped browser and the error, if any."""
    b = make_browser(kind)
    try:
        b.start()
    except LabError as e:
        return None, str(e)
    except Exception as e:  # anything else the launch raised: say it, do not hide it
        return None, f"{type(e).__name__}: {e}"
    finally:
        b.stop()
    return b, ""


def lessons_line(kind: str, trust: str) -> str:
    """Which lessons that browser shows exactly with that trust (pure)."""
    if trust == "nss":
        return "every certificate lesson is exact (the lab CA is in a throwaway NSS store)"
    if trust == "spki":
        return ("trusts the lab's keys (SPKI), not its CA: " + ", ".join(NAME_LESSONS)
                + " will not fail as they should. Use Firefox (its profile keeps its own trust "
                "store on every OS) or the container (README)")
    return "cannot trust the lab CA without certutil"


def _browser_checks() -> list[Check]:
    out = []
    found = (("chromium", "Chromium", system.find_browser(headless=True)),
             ("firefox", "Firefox", system.find_firefox()))
    # Both start at once: each spends most of its launch waiting for its own processes.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        launched = {kind: pool.submit(_launch, kind) for kind, _, path in found if path}
    for kind, label, path in found:
        name = "browser" if kind == "chromium" else "firefox"
        if path is None:
            out.append(Check(name, False, f"no {label} found", system.install_command([kind])))
            continue
        b, error = launched[kind].result()
        if b is None:
            out.append(Check(name, False, f"{path} did not start: {error}",
                             "fix what the message says, then run `labkit doctor` again"))
            continue
        out.append(Check(name, True, f"{label} {b.version} started ({path}); "
                         + lessons_line(kind, b.trust)))
        if kind == "chromium":
            out.append(Check("sandbox", True, f"Chromium's sandbox {system.chromium_sandbox()[1]}"))
    return out


def _leftovers_check() -> Check:
    """An nginx whose labkit was killed keeps its ports: find it by its pid file and stop it."""
    from ..serve.nginx import stop_leftovers

    n = stop_leftovers()
    f = tempdirs.sweep(FIREFOX_PREFIX, before_removing=stop_firefox_leftover)
    left = [f"{n} nginx"] * bool(n) + [f"{f} Firefox"] * bool(f)
    return Check("leftovers", True, f"stopped {' and '.join(left)} left running by a killed "
                 "labkit" if left else "no nginx or Firefox left running by an earlier labkit")


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
        required |= {"nginx", "firefox"}
    return all(c.ok for c in items if c.name in required)
