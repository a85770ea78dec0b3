"""Errors a learner can act on: what broke, which rule, what to do next.

One class per failure, with the facts as fields; the message is built in ``__str__`` so tests can
assert on the text and notebooks show one readable sentence instead of a traceback into labkit.
Every error labkit raises on purpose is defined here, and ``labkit`` exports each one (a test walks
labkit's modules to keep it so): ``except labkit.LabError`` catches them all.
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
            f"::1, a name ending in .lab.test (e.g. app.lab.test), or evil-lab.test (another site, "
            f"for cross-site lessons)."
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
class UnsafeFolderError(LabError):
    """The lab state folder (or its pki/) can be written by other users: anyone on the machine
    could swap the lab CA that the lab's browser trusts."""

    path: str
    mode: int

    def __str__(self) -> str:
        return (
            f"the lab state folder {self.path} can be written by other users (mode "
            f"{self.mode:o}), so another user could swap the lab CA. labkit will not load a CA "
            f"from it. Run: chmod 700 {self.path}  (or set LABKIT_HOME to a private folder)."
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


# -- the browser (labkit.observe.browser) --------------------------------------------------------
class BrowserMissingError(LabError):
    def __init__(self, browser: str = "chromium") -> None:
        super().__init__(browser)
        self.browser = browser

    def __str__(self) -> str:
        from .system import install_command  # lazily: importing errors must stay import-free

        cmd = install_command([self.browser])
        if self.browser == "firefox":
            return (f"no Firefox was found, and this visit asked for Firefox. Install it:  {cmd}"
                    f"  (or set LABKIT_FIREFOX to its path).")
        return (f"no Chromium or Chrome was found, and the lab's claims are checked in a real "
                f"browser. Install one:  {cmd}  (or set LABKIT_BROWSER to its path).")


class BrowserStartError(LabError):
    def __init__(self, executable: str, error: str, label: str = "Chromium") -> None:
        super().__init__(executable, error, label)
        self.executable, self.error, self.label = executable, error, label

    def __str__(self) -> str:
        return (f"{self.label} at {self.executable} did not start: {self.error.strip()[:400]}. "
                f"Run `labkit doctor`; without a display the browser must be headless.")


class BrowserDriverError(LabError):
    """Playwright's browser driver (a Node.js program inside the playwright package) died before
    any browser was launched: the browser is not the problem."""

    def __init__(self, error: str, diagnosis: str) -> None:
        super().__init__(error, diagnosis)
        self.error, self.diagnosis = error, diagnosis

    def __str__(self) -> str:
        hint = ""
        if "libatomic" in self.diagnosis:
            from .system import install_command

            hint = f" Install the missing library:  {install_command(['libatomic'])}"
        return (f"Playwright's browser driver could not start, so no browser was launched: "
                f"{self.diagnosis}.{hint}")


class FirefoxProtocolError(LabError):
    """Firefox refused a WebDriver BiDi command labkit needs: the installed Firefox and labkit
    disagree."""

    def __init__(self, version: str, method: str, error: str, minimum: int) -> None:
        super().__init__(version, method, error, minimum)
        self.version, self.method, self.error, self.minimum = version, method, error, minimum

    def __str__(self) -> str:
        return (f"Firefox {self.version} does not understand the WebDriver BiDi command "
                f"'{self.method}' ({self.error[:200]}): labkit drives Firefox {self.minimum} or "
                f"newer (tested with ESR 153). Update Firefox, or set LABKIT_FIREFOX to a newer "
                f"one; `labkit doctor` shows which one labkit found.")


class VisitInterruptedError(LabError):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url

    def __str__(self) -> str:
        return (f"the browser was stopped while visiting {self.url} (was the lab stopped?). "
                f"Start the lab again and visit once more.")


# -- real nginx (labkit.serve.nginx) -------------------------------------------------------------
class NginxMissingError(LabError):
    def __str__(self) -> str:
        from .system import install_command

        return ("nginx is not installed, and this lesson runs real nginx. Install it:  "
                + install_command(["nginx"]))


class NginxStartError(LabError):
    def __init__(self, error: str, conf: str) -> None:
        super().__init__(error, conf)
        self.error, self.conf = error, conf

    def __str__(self) -> str:
        return (f"nginx did not start: {self.error.strip()[-600:]}\n(config: {self.conf}). "
                f"Check it with: nginx -t -p <folder> -c {self.conf}")


class UpstreamCAMissingError(LabError, ValueError):
    """An https upstream, but no CA to verify it against: nginx would either refuse to start
    (``proxy_ssl_verify on`` without ``proxy_ssl_trusted_certificate``) or, verification off,
    accept any certificate — the very mistake the lab warns about."""

    def __init__(self, proxy: str, upstreams: list[str]) -> None:
        super().__init__(proxy, upstreams)
        self.proxy, self.upstreams = proxy, upstreams

    def __str__(self) -> str:
        return (f"nginx '{self.proxy}' forwards to https upstreams ({', '.join(self.upstreams)}) "
                f"and must verify their certificates, but no CA was given. Pass ca_pem= the lab "
                f"CA (LabPKI().ca_pem) to NginxServer / render.")


class UpstreamAddressError(LabError, ValueError):
    """An https upstream addressed by IP. nginx matches ``proxy_ssl_name`` against the
    certificate's DNS names only (OpenSSL's X509_check_host): the IP addresses a lab certificate
    carries are never matched, so every request would be a 502."""

    def __init__(self, proxy: str, upstream: str, ip: str) -> None:
        super().__init__(proxy, upstream, ip)
        self.proxy, self.upstream, self.ip = proxy, upstream, ip

    def __str__(self) -> str:
        return (f"nginx '{self.proxy}' cannot verify the https upstream '{self.upstream}' at "
                f"{self.ip}: nginx checks an upstream certificate's DNS names only, never its IP "
                f"addresses. Give service '{self.upstream}' a host name (localhost or a "
                f".lab.test name), or serve it without TLS behind nginx.")


class GuessError(LabError):
    """A prediction labkit cannot read (``labkit.run(name, guess=...)``): the message says what
    to write."""
