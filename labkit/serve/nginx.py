"""The same one-origin topology as a real nginx.conf, and real nginx running it.

:func:`render` is pure: the config a participant can paste into a deployment (routes, TLS, the
redirect server, the WebSocket ``map``/Upgrade idiom, ``proxy_read_timeout``, forwarded headers).
:class:`NginxServer` runs it unprivileged on loopback ports with every path in a temp folder, and
stops it by its PID (SIGQUIT: finish requests, then exit).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from .. import runtime
from ..errors import (
    NginxMissingError,
    NginxStartError,
    PortInUseError,
    UpstreamAddressError,
    UpstreamCAMissingError,
)
from ..model.policy import Origin
from . import tempdirs
from .pki import CertFiles
from .proxy import ProxyConfig

log = logging.getLogger("labkit.nginx")
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def _location(prefix: str) -> str:
    # A regex location matches "/api" and "/api/..." but not "/apix", like labkit's router.
    # The prefix is escaped: "/a.b" must not match "/aXb" (a regex dot), as it does not in labkit.
    p = prefix.rstrip("/")
    return "location / " if p == "" else f"location ~ ^{re.escape(p)}(/|$) "


@dataclass(frozen=True)
class _Upstream:
    """One backend as nginx sees it: ``address`` for the ``upstream`` block (an IP: nginx
    resolves names once at start, and lab names are not in DNS), ``name`` the host a TLS
    upstream's certificate must carry (the host of its origin, as labkit's proxy checks)."""

    scheme: str
    address: str
    name: str


def _upstream(proxy: str, service: str, origin: str) -> _Upstream:
    u = urlsplit(origin)
    if u.scheme not in ("http", "https") or not u.hostname or u.port is None:
        raise ValueError(f"upstream {service} must be http(s)://host:port, not {origin!r}")
    if u.scheme == "https" and _is_ip(u.hostname):
        raise UpstreamAddressError(proxy, service, u.hostname)
    # Every lab name (localhost, *.lab.test) serves on 127.0.0.1, ::1 on itself (lab.bind_loopback).
    ip = u.hostname if u.hostname in ("127.0.0.1", "::1") else "127.0.0.1"
    address = f"[{ip}]:{u.port}" if ":" in ip else f"{ip}:{u.port}"
    return _Upstream(u.scheme, address, u.hostname)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


#: Sent upstream by every location. nginx's own default would send Host = the upstream block's
#: name ("api") and hide who called; the backends need the browser's Host and scheme.
#: ``$host`` alone drops the port, and a backend that builds a URL from Host (a redirect to
#: https) would send the browser to port 443; ``$host:$server_port`` is the name the browser used
#: (validated and normalised by nginx, unlike ``$http_host``) with the port it connected to, as
#: labkit's own proxy sends it.
_FORWARDED = (
    ("Host", "$host:$server_port"),
    ("X-Forwarded-For", "$proxy_add_x_forwarded_for"),
    ("X-Forwarded-Proto", "$scheme"),
    ("X-Forwarded-Host", "$host:$server_port"),
)
#: RFC 6455 §4.1: the handshake needs Upgrade and Connection: upgrade. Both are hop-by-hop
#: (RFC 9110 §7.6.1), so nginx forwards them only where told to.
_UPGRADE = (
    ("Upgrade", "$http_upgrade"),
    ("Connection", "$connection_upgrade"),
)


def _headers(indent: str, headers: tuple[tuple[str, str], ...]) -> list[str]:
    return [f"{indent}proxy_set_header {k:<17} {v};" for k, v in headers]


def render(cfg: ProxyConfig, *, port: int, cert: CertFiles | None, prefix: str,
           redirect_ports: tuple[int, ...] = (), tls: bool = True,
           ca_pem: Path | str | None = None, redirect_hosts: tuple[str, ...] = ()) -> str:
    """nginx.conf for ``cfg``: TLS on ``port`` (plain HTTP with ``tls=False``), HTTP->HTTPS
    redirects on ``redirect_ports``. https upstreams are verified against ``ca_pem``."""
    host = cfg.hosts[0]
    upstreams = {name: _upstream(cfg.name, name, origin) for name, origin in cfg.upstreams.items()}
    needs_ca = sorted(n for n, u in upstreams.items() if u.scheme == "https")
    if needs_ca and ca_pem is None:
        raise UpstreamCAMissingError(cfg.name, needs_ca)
    if tls and cert is None:
        raise ValueError(f"nginx '{cfg.name}' serves TLS and needs a certificate (cert=)")
    if redirect_ports and not tls:
        # labkit's redirect listeners send browsers to https: a plain nginx has no https origin.
        raise ValueError(f"nginx '{cfg.name}' serves plain HTTP (tls=False): an HTTP->HTTPS "
                         f"redirect to it cannot work. Give the nginx service TLS, or drop the "
                         f"redirect listener.")
    lines = [
        f"# labkit: '{cfg.name}' — one origin in front of "
        f"{', '.join(sorted(cfg.upstreams))}, generated by labkit.",
        "# To deploy: change the listen addresses, server_name and certificate paths;",
        "# drop 'daemon off', 'pid' and the temp paths (labkit runs nginx unprivileged).",
        "worker_processes 1;",
        "# Each proxied WebSocket holds two connections: room for a workshop's worth of them.",
        "worker_rlimit_nofile 16384;",
        "daemon off;",
        "# On stop, connections still open (a quiet WebSocket) are closed after this long.",
        "worker_shutdown_timeout 2s;",
        f"pid {prefix}/nginx.pid;",
        "error_log stderr warn;",
        "events { worker_connections 8192; }",
        "",
        "http {",
        f"    access_log {prefix}/access.log;",
        *[f"    {d}_temp_path {prefix}/{d};" for d in TEMP_DIRS],
        f"    client_max_body_size {cfg.max_body // 1024}k;",
        "    # The lab's rule for every listener: headers, then the body, each within 10 s.",
        "    client_header_timeout 10s;",
        "    client_body_timeout 10s;",
        "",
        "    # WebSocket: ask the upstream to upgrade only when the browser did.",
        "    map $http_upgrade $connection_upgrade {",
        "        default upgrade;",
        "        ''      close;",
        "    }",
        "",
    ]
    for name, up in sorted(upstreams.items()):
        lines += [f"    upstream {name} {{ server {up.address}; }}"]
    for i, rport in enumerate(redirect_ports):
        # Each redirect listener sends browsers to the https origin under its own host name,
        # as labkit's RedirectServer does (a name the proxy does not serve then gets 421).
        rhost = redirect_hosts[i] if i < len(redirect_hosts) else host
        lines += [
            "",
            "    # Plain HTTP: send every request to the https origin, path and query kept.",
            "    server {",
            f"        listen 127.0.0.1:{rport};",
            f"        server_name {rhost};",
            f"        return 308 {Origin('https', rhost, port)}$request_uri;",
            "    }",
        ]
    forwarded = tuple(h for h in _FORWARDED if cfg.proto or h[0] != "X-Forwarded-Proto")
    lines += ["", "    server {"]
    if tls:
        assert cert is not None
        lines += [
            f"        listen 127.0.0.1:{port} ssl;",
            f"        server_name {host};",
            f"        ssl_certificate     {cert.cert};",
            f"        ssl_certificate_key {cert.key};",
            "        ssl_protocols TLSv1.2 TLSv1.3;",
        ]
    else:
        lines += [
            "        # Plain HTTP, no TLS: the backends are told X-Forwarded-Proto http.",
            f"        listen 127.0.0.1:{port};",
            f"        server_name {host};",
        ]
    lines += [
        "",
        "        # Every location inherits these, unless it sets a proxy_set_header of its own:",
        "        # then it inherits none of them (the WebSocket locations repeat them).",
        "        proxy_http_version 1.1;",
        *([] if cfg.proto else ["        # X-Forwarded-Proto is NOT sent: the misconfiguration "
                                "proxy-missing-forwarded-proto", "        # teaches."]),
        *_headers("        ", forwarded),
        "        # No Upgrade here: nginx forwards it only in WebSocket locations, and elsewhere",
        "        # sends Connection: close, so a handshake on another route is refused (426),",
        "        # as labkit's own proxy does.",
        "        # Origin and Cookie pass through untouched: chat's Origin allow-list needs them.",
        "",
        "        # Only this name: never proxy for a Host we do not serve.",
        f'        if ($host != "{host}") {{ return 421; }}',
    ]
    for r in sorted(cfg.routes, key=lambda r: -len(r.prefix)):
        up = upstreams[r.upstream]
        lines += ["", f"        {_location(r.prefix)}{{",
                  f"            proxy_pass {up.scheme}://{r.upstream};"]
        if up.scheme == "https":
            lines += [
                "            # Verify the backend as a browser would: the lab CA, the backend's",
                "            # own name (nginx would check the upstream block's name otherwise).",
                "            proxy_ssl_verify on;",
                f"            proxy_ssl_trusted_certificate {ca_pem};",
                "            proxy_ssl_server_name on;",
                f"            proxy_ssl_name {up.name};",
            ]
        if r.websocket:
            lines += [
                "            # Setting a header here drops every server-level proxy_set_header:",
                "            # repeat them, or the backend would see Host: " + r.upstream + ".",
                *_headers("            ", forwarded + _UPGRADE),
                "            # The default 60 s closes a socket whose backend sends nothing for a",
                "            # minute (labkit's chat pings every 20 s; many servers never do).",
                "            proxy_read_timeout 1h;",
                "            proxy_send_timeout 1h;",
            ]
        lines += ["        }"]
    lines += ["    }", "}", ""]
    return "\n".join(lines)


def _group_alive(pgid: int) -> bool:
    for p in psutil.process_iter(["name"]):
        try:
            if os.getpgid(p.pid) == pgid and "nginx" in (p.info["name"] or ""):
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def _signal_group(pgid: int, sig: int) -> None:
    """Signal nginx's process group, if any nginx of it is left (never another program that
    happens to reuse the number)."""
    if _group_alive(pgid):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def stop_leftovers() -> int:
    """Stop nginx instances whose labkit died without stopping them (SIGKILL, a killed kernel),
    found through the pid files in their folders, then remove the folders. Returns how many."""
    stopped = 0

    def stop(folder: Path) -> None:
        nonlocal stopped
        try:
            pid = int((folder / "nginx.pid").read_text().strip())
        except (OSError, ValueError):
            return
        if _group_alive(pid):
            _signal_group(pid, signal.SIGKILL)
            stopped += 1

    tempdirs.sweep("labkit-nginx-", before_removing=stop)
    return stopped


def _let_workers_write(prefix: str) -> None:
    """As root, nginx's workers run as ``nobody``: they must reach the temp folders (bodies over
    8 KiB are buffered to client_body/), or every such request is a 500. The prefix stays
    unlistable (0711); only the temp folders are handed to the workers."""
    if os.geteuid() != 0:
        return  # unprivileged: the workers are this user and own everything already
    import pwd

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        return
    os.chmod(prefix, 0o711)
    for d in TEMP_DIRS:
        os.chown(os.path.join(prefix, d), nobody.pw_uid, nobody.pw_gid)


#: Stands for the run's own folder (pid file, temp dirs) in an nginx.conf a participant edits.
PREFIX = "PREFIX"


def editable(config_text: str, prefix: str) -> str:
    """A running config as a participant edits it: its run folder replaced by :data:`PREFIX`."""
    return config_text.replace(prefix, PREFIX)


class NginxServer:
    """Real nginx for one proxy service. The lab bound the ports to reserve them; they are
    released just before nginx binds them itself."""

    def __init__(self, cfg: ProxyConfig, cert: CertFiles,
                 redirect_socks: list[socket.socket] | None = None, *,
                 ca_pem: Path | str | None = None,
                 redirect_hosts: tuple[str, ...] = (), edited: str | None = None) -> None:
        self.cfg, self.cert, self.ca_pem = cfg, cert, ca_pem
        #: A participant's own nginx.conf (the generated one, edited), with ``PREFIX`` where
        #: this run's folder goes: what nginx runs instead of the generated text.
        self.edited = edited
        self.redirect_hosts = redirect_hosts
        self.redirect_socks = redirect_socks or []
        self.proc: asyncio.subprocess.Process | None = None
        self.prefix: str | None = None
        self.conf_path: Path | None = None
        self.config_text = ""
        self.stderr_tail: deque[str] = deque(maxlen=40)
        self._drain: asyncio.Future[None] | None = None
        self._errlog: Path | None = None
        self._errpos = 0

    async def start(self, sock: socket.socket, ssl_context: ssl.SSLContext | None) -> None:
        exe = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                        else None)
        if exe is None:
            sock.close()
            raise NginxMissingError()
        port = sock.getsockname()[1]
        redirect_ports = tuple(s.getsockname()[1] for s in self.redirect_socks)
        stop_leftovers()  # a dead labkit's nginx, before its folder is swept away
        prefix = tempdirs.make("labkit-nginx-")
        try:
            # nginx terminates TLS from the certificate files; the context only says whether
            # this service has TLS at all (None: a plain-HTTP service).
            self.config_text = render(self.cfg, port=port, cert=self.cert, prefix=prefix,
                                      redirect_ports=redirect_ports,
                                      tls=ssl_context is not None, ca_pem=self.ca_pem,
                                      redirect_hosts=self.redirect_hosts)
            if self.edited is not None:
                self.config_text = self.edited.replace(PREFIX, prefix)
        except BaseException:
            shutil.rmtree(prefix, ignore_errors=True)
            for s in [sock, *self.redirect_socks]:
                s.close()
            raise
        self.prefix = prefix
        for d in TEMP_DIRS:
            os.mkdir(os.path.join(self.prefix, d))
        _let_workers_write(self.prefix)
        self.conf_path = Path(self.prefix) / "nginx.conf"
        self.conf_path.write_text(self.config_text)
        for s in [sock, *self.redirect_socks]:
            s.close()
        # stderr goes to a file, not a pipe: a pipe an orphaned worker still holds open would
        # make asyncio's proc.wait() wait for ever. Its own session (process group): stop
        # signals the whole group, workers included. And it dies with labkit (Linux).
        self._errlog = Path(self.prefix) / "stderr.log"
        with open(self._errlog, "wb") as errf:
            self.proc = await asyncio.create_subprocess_exec(
                exe, "-p", self.prefix, "-c", str(self.conf_path), "-e", "stderr",
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=errf, start_new_session=True, preexec_fn=runtime.die_with_parent())
        self._drain = asyncio.ensure_future(self._follow_log())
        try:
            await self._wait_ready([port, *redirect_ports])
        except BaseException:
            await self.stop()
            raise

    async def _follow_log(self) -> None:
        """nginx logs to stderr (a file): follow it into the lab log, keeping the tail for
        error messages."""
        while True:
            self._read_log()
            await asyncio.sleep(0.2)

    def log_tail(self) -> list[str]:
        """nginx's latest error-log lines (read now, not at the next poll)."""
        self._read_log()
        return list(self.stderr_tail)

    def _read_log(self) -> None:
        if self._errlog is None:
            return
        try:
            with open(self._errlog, "rb") as f:
                f.seek(self._errpos)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1  # whole lines only; a partial one waits for the next read
        self._errpos += end
        for line in data[:end].splitlines():
            text = line.decode(errors="replace").rstrip()
            self.stderr_tail.append(text)
            log.info("nginx: %s", text)

    async def _wait_ready(self, ports: list[int], timeout: float = 10.0) -> None:
        """Ready once nginx wrote its pid file: it does so only after binding every listen
        socket. If it exits first, say why — a port taken by someone else in particular."""
        assert self.proc is not None and self.prefix is not None
        pidfile = Path(self.prefix) / "nginx.pid"
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.returncode is not None:
                self._read_log()
                err = "\n".join(self.stderr_tail)
                if "Address already in use" in err:
                    port = next((p for p in ports if f":{p}" in err), ports[0])
                    raise PortInUseError(self.cfg.name, port)
                raise NginxStartError(err or f"exit code {self.proc.returncode}",
                                      str(self.conf_path))
            try:
                if int(pidfile.read_text().strip() or 0) == self.proc.pid:
                    return
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise NginxStartError(f"no pid file after {timeout:.0f} s", str(self.conf_path))
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Graceful, then certain, within a few seconds in every state: SIGQUIT to the whole
        process group (workers finish within worker_shutdown_timeout), then SIGKILL to whatever
        of the group is left — an orphaned worker of a master killed earlier included."""
        proc, self.proc = self.proc, None
        if proc is not None:
            _signal_group(proc.pid, signal.SIGQUIT)
            try:
                await asyncio.wait_for(proc.wait(), 3)
            except asyncio.TimeoutError:
                pass
            _signal_group(proc.pid, signal.SIGKILL)
            if proc.returncode is None:
                await proc.wait()
            self._read_log()
        if self._drain is not None:
            self._drain.cancel()
            await asyncio.gather(self._drain, return_exceptions=True)
            self._drain = None
        if self.prefix is not None:
            shutil.rmtree(self.prefix, ignore_errors=True)
            self.prefix = None
