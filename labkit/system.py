"""The system pieces labkit needs beyond Python packages, found without side effects.

``python -m labkit.system --install`` is what ``make lab`` / ``make test`` run: on Debian as root it
apt-gets what is missing; anywhere else it stops with the exact command to run. ``labkit doctor``
reuses the same findings.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

#: Debian package for each piece, and whether the lab can run without it (outside CI).
DEBIAN_PACKAGES = {"chromium": "chromium", "certutil": "libnss3-tools", "nginx": "nginx",
                   "npm": "npm", "Xvfb": "xvfb", "firefox": "firefox-esr",
                   "headless-shell": "chromium-headless-shell",
                   # Playwright's bundled Node.js needs it; a minimal Debian lacks it.
                   "libatomic": "libatomic1"}
BROWSER_NAMES = ("chromium", "google-chrome", "google-chrome-stable", "chromium-browser")


@dataclass(frozen=True)
class Piece:
    name: str
    path: str | None
    required: bool
    why: str


def _is_snap_shim(path: str) -> bool:
    # Ubuntu's chromium-browser is a shell script that asks to install a snap; Playwright cannot
    # drive that shim, so it does not count as a browser.
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head.startswith(b"#!") and b"snap" in head


#: Debian's package ``chromium-headless-shell``: the same Chromium build without the browser UI.
#: Full Chromium in headless mode still makes a window per fresh context, and each window
#: preloads its omnibox popup in a renderer of its own: about half of every visit's CPU
#: (bench/tour.py). Playwright's own headless default is the shell too.
HEADLESS_SHELL = "/usr/lib/chromium/chromium-headless-shell"


def find_headless_shell() -> str | None:
    return HEADLESS_SHELL if os.path.exists(HEADLESS_SHELL) else None


def find_browser(headless: bool = False) -> str | None:
    """``$LABKIT_BROWSER``, else (headless) Chromium's headless shell where installed, else a
    system Chromium/Chrome that is not a snap shim."""
    env = os.environ.get("LABKIT_BROWSER")
    if env:
        return env if os.path.exists(env) else None
    if headless and find_headless_shell():
        return HEADLESS_SHELL
    for name in BROWSER_NAMES:
        path = shutil.which(name)
        if path and not _is_snap_shim(path):
            return path
    return None


FIREFOX_NAMES = ("firefox-esr", "firefox")


def find_firefox() -> str | None:
    """``$LABKIT_FIREFOX``, else a Firefox on PATH that is not a snap shim (Ubuntu's
    ``firefox`` is one; its sandbox cannot read a profile in /tmp), else the usual macOS and
    Windows install paths."""
    env = os.environ.get("LABKIT_FIREFOX")
    if env:
        return env if os.path.exists(env) else None
    for name in FIREFOX_NAMES:
        path = shutil.which(name)
        if path and not _is_snap_shim(path) and not os.path.realpath(path).startswith("/snap/"):
            return path
    for path in ("/Applications/Firefox.app/Contents/MacOS/firefox",
                 r"C:\Program Files\Mozilla Firefox\firefox.exe"):
        if os.path.exists(path):
            return path
    return None


def chromium_uses_nss() -> bool:
    """Chromium reads an NSS store (``~/.pki/nssdb``) only on Linux; on macOS and Windows it asks
    the operating system's store, which labkit never touches."""
    return sys.platform.startswith("linux")


def find_certutil() -> str | None:
    return shutil.which("certutil")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pieces() -> list[Piece]:
    ci = in_ci()
    shell = [
        # Debian only, and optional: headless visits fall back to full Chromium, at about
        # twice the CPU (the shell is a Debian package of the same Chromium build).
        Piece("headless-shell", find_headless_shell(), False,
              "a lighter Chromium for headless visits: the tour takes about half the CPU"),
    ] if is_debian() else []
    return [
        Piece("chromium", find_browser(), True, "the lab's claims are checked in a real browser"),
        *shell,
        Piece("firefox", find_firefox(), ci,
              "the second browser: every scenario in Firefox too, side by side with Chromium"),
        Piece("certutil", find_certutil(), ci,
              "trusts the lab CA in a throwaway NSS db; without it the wrong-name lesson is weak"),
        Piece("nginx", shutil.which("nginx"), ci, "the nginx reverse-proxy lesson runs real nginx"),
        Piece("npm", shutil.which("npm"), True,
              "set-up fetches the real socket.io browser client from the npm registry"),
        Piece("Xvfb", shutil.which("Xvfb"), ci,
              "a virtual display, on which the tests show the instructor's live mode (a visible "
              "browser with DevTools)"),
    ]


def is_debian() -> bool:
    return os.path.exists("/etc/debian_version") and shutil.which("apt-get") is not None


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def user_namespaces() -> bool:
    """Whether this process may create the namespaces Chromium's Linux sandbox needs (user, pid,
    net). Docker's default seccomp profile forbids them to an unprivileged process; podman's
    allows them. (Debian installs no setuid sandbox helper by default to fall back on.)"""
    unshare = shutil.which("unshare")
    if unshare is None or platform.system() != "Linux":
        return True  # cannot tell here: let Chromium try
    try:
        return subprocess.run([unshare, "--user", "--map-root-user", "--pid", "--net", "--fork",
                               "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def sandbox_decision(mode: str, root: bool, namespaces: Callable[[], bool]) -> tuple[bool, str]:
    """Whether Chromium keeps its sandbox, and why: the rule, without I/O (``namespaces`` is
    asked only when the answer depends on it).

    ``mode`` is ``LABKIT_CHROMIUM_SANDBOX``: ``1`` or ``0`` decides. ``auto`` (the lab's container
    image sets it) keeps the sandbox wherever user namespaces can be created and turns it off
    where the container forbids them: there the browser loads only the lab's own loopback pages
    and the container is the boundary. Empty: on, except as root, where Chromium refuses it."""
    mode = mode.strip().lower()
    if mode in ("1", "on", "true", "yes"):
        return True, "on (LABKIT_CHROMIUM_SANDBOX=1)"
    if mode in ("0", "off", "false", "no"):
        return False, "off (LABKIT_CHROMIUM_SANDBOX=0)"
    if mode not in ("", "auto"):
        raise ValueError(f"LABKIT_CHROMIUM_SANDBOX={mode!r} is not a setting: use 1 (sandbox on), "
                         "0 (off) or auto (off only where the container forbids it)")
    if root:
        return False, "off: running as root, where Chromium refuses its sandbox"
    if mode == "auto" and not namespaces():
        return False, ("off: this container forbids user namespaces (Docker's default seccomp "
                       "profile); the browser loads only the lab's loopback pages, and the "
                       "container is the boundary")
    return True, "on"


def chromium_sandbox() -> tuple[bool, str]:
    """:func:`sandbox_decision` for this process (``labkit doctor`` shows the reason)."""
    return sandbox_decision(os.environ.get("LABKIT_CHROMIUM_SANDBOX", ""), is_root(),
                            user_namespaces)


def install_command(missing: list[str]) -> str:
    """The exact command a participant runs to get the missing pieces on this kind of machine."""
    if is_debian():
        pkgs = " ".join(DEBIAN_PACKAGES[m] for m in missing)
        return f"sudo apt-get update && sudo apt-get install -y {pkgs}"
    if platform.system() == "Darwin":
        parts = []
        for cask in ("chromium", "firefox"):
            if cask in missing:
                parts.append(f"brew install --cask {cask}")
        brew = [p for p in missing if p not in ("chromium", "firefox")]
        if brew:
            brew_names = {"certutil": "nss", "npm": "node"}
            parts.append("brew install " + " ".join(brew_names.get(p, p) for p in brew))
        return " && ".join(parts)
    if shutil.which("dnf"):
        names = {"chromium": "chromium", "certutil": "nss-tools", "nginx": "nginx",
                 "npm": "npm", "Xvfb": "xorg-x11-server-Xvfb", "firefox": "firefox",
                 "libatomic": "libatomic"}
        return "sudo dnf install -y " + " ".join(names[m] for m in missing)
    return ("install " + ", ".join(missing) + " with your system's package manager, or set "
            "LABKIT_BROWSER to the path of a Chromium or Chrome binary")


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    install = "--install" in args
    missing = [p for p in pieces() if p.path is None]
    if missing and install and is_debian() and is_root():
        pkgs = [DEBIAN_PACKAGES[p.name] for p in missing]
        print(f"labkit set-up: installing {' '.join(pkgs)} with apt-get", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", *pkgs], check=True, env=env)
        missing = [p for p in pieces() if p.path is None]
    for p in pieces():
        state = p.path or "missing"
        print(f"labkit set-up: {p.name:9} {state}")
    needed = [p for p in missing if p.required]
    if missing:
        cmd = install_command([p.name for p in missing])
        for p in missing:
            print(f"labkit set-up: {p.name} is missing ({p.why}).", file=sys.stderr)
        print(f"labkit set-up: run:  {cmd}", file=sys.stderr)
    if needed:
        print("labkit set-up: stopping: " + ", ".join(p.name for p in needed)
              + (" (required in CI)" if in_ci() else "") + " must be installed first.",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
