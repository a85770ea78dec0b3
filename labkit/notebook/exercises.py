"""Exercises: a broken configuration the participant repairs in a cell, checked in the real browser.

Each exercise builds its topology from the participant's settings, runs it in Chromium and judges it
like a scenario. Hints come one at a time on request; the reference solution lives here, out of the
notebook's sight, and ``check_reference()`` proves it passes without printing it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import TopologyError
from ..model.cors import CorsPolicy
from ..model.policy import Credentials
from ..model.routing import STORY_ROUTES, Route
from ..model.scenarios import GUEST, Scenario, _hijack, _ws
from ..model.topology import Page, Service, Topology, WsScheme
from . import display
from .runner import Result


@dataclass
class Check:
    passed: bool
    summary: str
    results: list[Result]

    def __repr__(self) -> str:
        return ("FIXED: " if self.passed else "NOT YET: ") + self.summary

    def _repr_html_(self) -> str:
        return display.check_html(self)


@dataclass
class Exercise:
    name: str
    task: str
    settings: str  # what the participant changes, as the cell shows it
    build: Callable[..., list[Scenario]]  # settings -> the scenarios that must all pass
    hints: list[str]
    reference: dict[str, Any]
    _hinted: int = field(default=0, repr=False)

    def __repr__(self) -> str:
        return f"Exercise {self.name}: {self.task}\nChange: {self.settings}"

    def _repr_html_(self) -> str:
        return display.exercise_html(self)

    def check(self, **settings: Any) -> Check:
        """Build the deployment from your settings, run it in the real browser, judge it."""
        from .runner import run_scenario
        from .session import shared_browser

        unknown = sorted(set(settings) - set(self.reference))
        missing = sorted(set(self.reference) - set(settings))
        if unknown or missing:
            raise TopologyError(
                f"exercise '{self.name}' takes {', '.join(self.reference)}"
                + (f"; not {', '.join(unknown)}" if unknown else "")
                + (f"; {', '.join(missing)} missing" if missing else ""),
                f"Write ex.check({self.settings}).")
        scenarios = self.build(**settings)
        for sc in scenarios:
            sc.topology.validate()  # a bad setting fails here, in one line, before any browser
        results = [run_scenario(sc, shared_browser()) for sc in scenarios]
        bad = [r for r in results if not r.ok]
        if not bad:
            return Check(True, "; ".join(f"{r.name}: {r.verdict}" for r in results), results)
        r = bad[0]
        return Check(False, f"{r.name}: the browser showed {r.verdict} "
                              f"({'; '.join(r.problems)})", results)

    def hint(self) -> str:
        """The next hint (call again for more)."""
        return _next_hint(self)

    def solution(self) -> str:
        return "Reference solution: " + ", ".join(f"{k}={v!r}" for k, v in self.reference.items())

    def check_reference(self) -> str:
        """Prove the exercise is solvable, without showing the solution."""
        v = self.check(**self.reference)
        return ("the reference solution passes in the real browser (ex.solution() shows it)"
                if v.passed else f"THE REFERENCE SOLUTION FAILS: {v.summary}")


def _next_hint(ex: Exercise | NginxExercise) -> str:
    """Hints come one at a time, each exercise counting its own."""
    if ex._hinted >= len(ex.hints):
        return "No more hints: ex.solution() shows the reference solution."
    ex._hinted += 1
    return f"Hint {ex._hinted}/{len(ex.hints)}: {ex.hints[ex._hinted - 1]}"


def _expect(name: str, topology: Topology, expected: str, reason: str | None,
            decisive: tuple[str, ...], **kw: Any) -> Scenario:
    return Scenario(name, topology, expected, reason, "exercise", "An exercise. Fix it. Then go.",
                    decisive=decisive, **kw)


def _only_this_page(name: str, api_cors: CorsPolicy, steps: tuple[str, ...],
                    credentials: Credentials, ports: dict[str, int] | None = None
                    ) -> list[Scenario]:
    """The real page must get in; a page on another origin and a sandboxed page (origin null)
    must not: so '*', a reflected Origin and 'null' all fail "only this page"."""
    def topo(suffix: str, evil_page: Page | None = None) -> Topology:
        services = [Service("web", "web"), Service("api", "api", cors=api_cors)]
        if evil_page is not None:
            services.append(Service("evil", "evil", host="127.0.0.1", page=evil_page))
        t = Topology(f"{name}{suffix}", services=tuple(services),
                     page=Page(ws=None, steps=steps, credentials=credentials))
        return t.with_ports({k: v for k, v in (ports or {}).items()
                             if k in {s.name for s in services}})

    other = Page(ws=None, steps=("hello",), credentials=credentials)
    return [
        _expect(name, topo(""), "allowed", None, steps),
        _expect(f"{name}: a page on another origin", topo("-other", other), "blocked", "cors",
                ("hello",), visit="evil"),
        _expect(f"{name}: a sandboxed page (Origin: null)",
                topo("-null", replace(other, sandboxed=True)), "blocked", "cors", ("hello",),
                visit="evil"),
    ]


def _cors_ex(api_cors: CorsPolicy) -> list[Scenario]:
    _setting("api_cors", api_cors, CorsPolicy, "labkit.CorsPolicy('allowlist', ('web',))")
    return _only_this_page("ex-cors", api_cors, ("hello", "login"), "omit")


def _credentials_ex(api_cors: CorsPolicy) -> list[Scenario]:
    _setting("api_cors", api_cors, CorsPolicy,
             "labkit.CorsPolicy('allowlist', ('web',), credentials=True)")
    return _only_this_page("ex-credentials", api_cors, ("login", "hello"), "include")


#: The attacker's page, as PortSwigger's labs have you write it: open the victim's chat socket,
#: join, read what comes back (the reference; not shown in the participant's notebook).
_ATTACK = """const ws = new WebSocket(cfg.ws);
await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = fail; });
ws.send(JSON.stringify({ type: "join", room: cfg.room }));
const m = await new Promise((ok) => { ws.onmessage = (e) => ok(JSON.parse(e.data)); });
return { state: "ok", detail: `read ${m.messages.length} messages as ${m.user}` };"""


def _attack_ex(script: str) -> list[Scenario]:
    """Your script on the attacker's page, after the victim logged in: from a same-site host it
    must read as the victim (the server says so, not the script); from another site it runs as
    a guest — the same script, the browser's cookie rules the difference."""
    _setting("script", script, str, "your JavaScript, as a string")
    out = []
    for host, who, label in (("evil.lab.test", "alice", "same-site"),
                             ("evil-lab.test", GUEST, "cross-site")):
        topo = _hijack(f"ex-attack-{label}", None, evil_host=host)
        topo = replace(topo, services=tuple(
            replace(s, page=Page(api=None, ws="chat", steps=("script",), script=script))
            if s.name == "evil" else s for s in topo.services))
        out.append(_expect(f"ex-attack from {host} ({label})", topo, "allowed", None,
                           ("script",), visit="evil", before=("web",),
                           before_ok=("login", "chat"), session=who))
    return out


#: Fixed ports for the raw-headers exercise: the participant writes the page's origin out.
_RAW_PORTS = {"web": 31401, "api": 31402, "evil": 31403}


def _raw_ex(headers: dict[str, str]) -> list[Scenario]:
    _setting("headers", headers, dict, "{'Access-Control-Allow-Origin': '…', …}")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise TopologyError(f"headers={headers!r} must map header names to text values",
                            "Write e.g. {'Access-Control-Allow-Origin': 'https://…'}.")
    return _only_this_page("ex-cors-headers", CorsPolicy("raw", raw=tuple(headers.items())),
                           ("hello", "login"), "omit", _RAW_PORTS)


def _setting(name: str, value: Any, kind: type | tuple[type, ...], example: str) -> None:
    """A wrong type is the participant's slip, not a crash: one line saying what to write."""
    if not isinstance(value, kind):
        raise TopologyError(f"{name}={value!r} is a {type(value).__name__}",
                            f"Write {name}={example}.")


def _origin_ex(chat_origins: tuple[str, ...] | None) -> list[Scenario]:
    if chat_origins is not None:
        _setting("chat_origins", chat_origins, tuple, "('web',)")
    topo = _hijack("ex-origin", chat_origins)
    # Both must hold: the attacker refused, the real page still chatting — also when the
    # attacker's page runs in a sandboxed frame (Origin: null).
    evil = topo.service("evil")
    assert evil.page is not None
    sandboxed = replace(topo, name="ex-origin-null", services=tuple(
        replace(s, page=replace(evil.page, sandboxed=True)) if s.name == "evil" else s
        for s in topo.services))
    return [_expect("ex-origin", topo, "blocked", "origin-rejected", ("steal",), visit="evil",
                    before=("web",), before_ok=("login", "chat")),
            _expect("ex-origin: a sandboxed attacker (Origin: null)", sandboxed, "blocked",
                    "origin-rejected", ("steal",), visit="evil", before=("web",),
                    before_ok=("login", "chat"))]


def _wss_ex(chat_tls: bool, ws_scheme: WsScheme) -> list[Scenario]:
    _setting("chat_tls", chat_tls, bool, "True")
    if ws_scheme not in ("ws", "wss"):
        raise TopologyError(f"ws_scheme={ws_scheme!r} is not a WebSocket scheme",
                            "Write ws_scheme='ws' or ws_scheme='wss'.")
    topo = _ws("ex-wss", Service("chat", "chat", host="ws.lab.test", tls=chat_tls),
               ws_scheme=ws_scheme)
    return [_expect("ex-wss", topo, "allowed", None, ("socket", "chat"))]


def _proxy_ex(routes: tuple[Route, ...]) -> list[Scenario]:
    if not isinstance(routes, tuple) or not all(isinstance(r, Route) for r in routes):
        raise TopologyError(f"routes={routes!r} is not a tuple of Route objects",
                            "Write routes=(Route('/api', 'api'), ..., Route('/', 'web')).")
    topo = Topology(
        "ex-proxy",
        services=(Service("web", "web", tls=False), Service("api", "api", tls=False),
                  Service("chat", "chat", tls=False),
                  Service("proxy", "proxy", host="app.lab.test", routes=routes)),
        page=Page(api=None, ws=None, same_origin=True, credentials="same-origin"))
    return [_expect("ex-proxy", topo, "allowed", None, ("hello", "login", "socket", "chat"),
                    visit="proxy")]


EXERCISES: dict[str, Exercise] = {e.name: e for e in (
    Exercise("cors", "The page on https://localhost:A cannot call the API on https://localhost:B. "
             "Give the API a CORS policy that lets this page (and only this page) in — the JSON "
             "login included.",
             "api_cors=labkit.CorsPolicy(...)", _cors_ex,
             ["Which origin does the page have? The API must name it exactly (or name the "
              "service 'web').",
              "CorsPolicy(mode, origins, ...): the modes are 'none', 'allowlist', 'wildcard'.",
              "The login is a JSON POST: its preflight must be answered too (preflight=True)."],
             {"api_cors": CorsPolicy("allowlist", ("web",))}),
    Exercise("cors-headers", "The API sends no CORS headers. Write the response headers "
             "yourself, as a dict, so that the page at https://localhost:31401 can call the API "
             "(the JSON login included), and no other page can. The API sends your headers on "
             "every answer, preflights included.",
             "headers={}", _raw_ex,
             ["Which header names the origin that may read? Write the page's origin exactly: "
              "scheme, host and port, no trailing slash.",
              "The login is a JSON POST: its preflight asks whether the content-type header may "
              "be sent (POST itself is a CORS-safelisted method). Which header answers that?",
              "'*' or 'null' would let other pages in."],
             {"headers": {"Access-Control-Allow-Origin": "https://localhost:31401",
                          "Access-Control-Allow-Methods": "GET, POST",
                          "Access-Control-Allow-Headers": "content-type"}}),
    Exercise("attack", "Write the attacker's page: JavaScript that opens the chat socket "
             "(cfg.ws), joins the room (send {type: 'join', room: cfg.room}) and reads the "
             "history the server sends back. It runs on https://evil.lab.test after the victim "
             "logged in on the real page, then on https://evil-lab.test. The checker asks the "
             "chat server whose session each socket had: the victim's from the first, nobody's "
             "from the second — the same script.",
             "script='return \"not yet\";'", _attack_ex,
             ["new WebSocket(cfg.ws); wait for its open event before you send.",
              "The server answers a join with one JSON message: {type: 'history', user, "
              "messages}.",
              "Return {state: 'ok', detail: ...}: the checker asks the server whose session "
              "your socket had, so the script cannot fake it."],
             {"script": _ATTACK}),
    Exercise("credentials", "The page logs in with credentials: 'include', and the API answers "
             "Access-Control-Allow-Origin: *. Make the browser accept the answers.",
             "api_cors=labkit.CorsPolicy(...)", _credentials_ex,
             ["With credentials the browser refuses the wildcard '*'.",
              "Name the page's origin, and allow credentials explicitly."],
             {"api_cors": CorsPolicy("allowlist", ("web",), credentials=True)}),
    Exercise("origin", "An attacker's page on https://evil.lab.test reads the victim's chat "
             "history through the chat socket. Stop it without breaking the real page.",
             "chat_origins=None  # or a tuple of allowed origins / service names", _origin_ex,
             ["Browsers send Origin on every WebSocket handshake; CORS does not apply.",
              "Give the chat server an allow-list with just the real page's origin (the "
              "service 'web')."],
             {"chat_origins": ("web",)}),
    Exercise("wss", "The https page at app.lab.test opens ws://ws.lab.test and the browser blocks "
             "it. Make the chat work.",
             "chat_tls=False, ws_scheme='ws'", _wss_ex,
             ["An https page may only open wss:// sockets (localhost excepted).",
              "wss:// needs the chat server to speak TLS, with a certificate for ws.lab.test."],
             {"chat_tls": True, "ws_scheme": "wss"}),
    Exercise("proxy", "The reverse proxy serves the page and the API, but the chat fails. Fix "
             "its routes.",
             "routes=(Route('/api', 'api'), Route('/', 'web'))", _proxy_ex,
             ["Which path does the page open its socket on?",
              "A WebSocket route must say websocket=True so the proxy relays the upgrade."],
             {"routes": (Route("/api", "api"), Route("/ws", "chat", websocket=True),
                         Route("/", "web"))}),
)}




# -- exercises on the real artefact: the nginx.conf labkit generated -----------------------------
#: Fixed ports (below Linux's ephemeral range): the config a participant edits names them.
_NGINX_PORTS = {"web": 31301, "api": 31302, "chat": 31303, "proxy": 31304}
#: What each exercise breaks in the generated config: the lines it removes...
_NGINX_BUGS = {
    "nginx-upgrade": ("proxy_set_header Upgrade", "proxy_set_header Connection"),
    "nginx-forwarded-proto": ("proxy_set_header X-Forwarded-Proto",),
}
#: ... or the line it rewrites (old, new). nginx closes a proxied socket when nothing was read
#: for proxy_read_timeout; the generated config waits an hour on /ws.
_NGINX_REWRITES = {
    "nginx-read-timeout": ("proxy_read_timeout 1h;", "proxy_read_timeout 2s;"),
}
#: The chat server's keepalive: websockets pings every 20 s by default (chat.py keeps it), and
#: each ping is a read for nginx. A read timeout longer than that never fires on a live socket.
CHAT_PING_INTERVAL = 20.0
#: How long the page's socket stays silent in the read-timeout check: longer than the broken
#: 2 s, well inside the browser's 10 s for a page.
QUIET_SECONDS = 3.0

#: A user who reads and does not type: the page opens the chat socket, joins, stays silent for
#: QUIET_MS, then sends a message (on a dropped socket the message is lost, and Chromium's console
#: says so). Run by the page's ``script`` step; it reports what the page itself could tell.
QUIET_SOCKET = """const url = cfg.ws.startsWith("/")
  ? `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${cfg.ws}` : cfg.ws;
const ws = new WebSocket(url);
const closed = new Promise((ok) => ws.addEventListener("close", ok));
await new Promise((ok, fail) => {
  ws.addEventListener("open", ok);
  ws.addEventListener("error", () => fail(new Error("the chat socket did not open")));
});
const next = () => new Promise((ok) => ws.addEventListener(
  "message", (e) => ok(JSON.parse(e.data)), { once: true }));
const history = next();
ws.send(JSON.stringify({ type: "join", room: cfg.room }));
await history;
const t0 = performance.now();
const cut = await Promise.race([closed, new Promise((ok) => setTimeout(ok, QUIET_MS, null))]);
// Whole seconds: the same words on every run.
const quiet = Math.round((performance.now() - t0) / 1000);
const echo = next();
ws.send(JSON.stringify({ type: "say", text: cfg.message }));
if (cut) {
  return { state: "blocked", detail: `connection closed (code ${cut.code}) after ${quiet} s ` +
    "of silence; the next message was lost" };
}
const m = await Promise.race([echo, new Promise((ok) => setTimeout(ok, 2000, null))]);
return m && m.type === "message"
  ? { state: "ok", detail: `still open after ${quiet} s of silence; message #${m.seq} delivered` }
  : { state: "error", detail: `no answer to a message after ${quiet} s of silence` };
""".replace("QUIET_MS", f"{QUIET_SECONDS * 1000:.0f}")


def _nginx_topology(name: str, page: Page | None = None) -> Topology:
    """The one-origin deployment through real nginx; the API forces https (so it must be told
    the browser's scheme), and the chat checks Origin against the proxy's origin."""
    return Topology(name, services=(
        Service("web", "web", tls=False), Service("api", "api", tls=False, https_only=True),
        Service("chat", "chat", tls=False, origins=("proxy",)),
        Service("proxy", "nginx", host="app.lab.test", routes=STORY_ROUTES)),
        page=page or Page(api=None, ws=None, same_origin=True, credentials="same-origin"),
    ).with_ports(_NGINX_PORTS)


# -- reading an nginx.conf: just enough to find the read timeout of the chat's location ---------
_Stmt = tuple[list[str], list[Any] | None]  # (the directive's words, its block's statements)
_TOKEN = re.compile(r"""\s+|#[^\n]*|"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'"""
                    r"""|([{};])|([^\s{};"'#]+)""")
#: nginx's time units (ngx_parse_time), in seconds; a bare number is seconds.
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400,
          "M": 30 * 86400, "y": 365 * 86400}
_TIME = re.compile(r"(\d+)(ms|[smhdwMy])?")
#: nginx's own default for proxy_read_timeout.
NGINX_DEFAULT_READ_TIMEOUT = 60.0


def _parse_nginx(text: str) -> list[_Stmt]:
    """The statements of an nginx config, blocks nested (comments dropped, quotes removed)."""
    stack: list[list[_Stmt]] = [[]]
    words: list[str] = []
    for m in _TOKEN.finditer(text):
        quoted = m.group(1) if m.group(1) is not None else m.group(2)
        if quoted is not None or m.group(4) is not None:
            words.append(quoted if quoted is not None else m.group(4))
        elif m.group(3) == ";":
            stack[-1].append((words, None))
            words = []
        elif m.group(3) == "{":
            block: list[_Stmt] = []
            stack[-1].append((words, block))
            stack.append(block)
            words = []
        elif m.group(3) == "}" and len(stack) > 1:
            stack.pop()
    return stack[0]


def nginx_seconds(value: str) -> float | None:
    """An nginx time ("2s", "1h", "1m30s", "500ms", "90") in seconds; None if nginx would not
    read it either."""
    v = value.replace(" ", "")
    if not v or _TIME.sub("", v):
        return None
    return sum(int(n) * _UNITS[u or "s"] for n, u in _TIME.findall(v))


def chat_read_timeouts(config: str, chat_port: int) -> list[tuple[str, str]]:
    """(location, proxy_read_timeout) for each location that proxies to the chat server at
    ``chat_port`` — directly or through an upstream block — with the value it inherits when it
    sets none (location, then enclosing blocks, then nginx's default of 60 s)."""
    tree = _parse_nginx(config)
    targets = {f"127.0.0.1:{chat_port}", f"localhost:{chat_port}"}

    def walk(stmts: list[_Stmt], inherited: str, where: str, out: list[tuple[str, str]]) -> None:
        own = [w[1] for w, b in stmts if b is None and w[:1] == ["proxy_read_timeout"]
               and len(w) > 1]
        here = own[-1] if own else inherited
        for w, b in stmts:
            if b is None and w[:1] == ["proxy_pass"] and len(w) > 1:
                host = re.sub(r"^\w+://", "", w[1]).split("/", 1)[0]
                if host in targets:
                    out.append((where, here))
            elif b is not None:
                if w[:1] == ["upstream"] and len(w) > 1:
                    if any(sw[:1] == ["server"] and len(sw) > 1 and sw[1] in targets
                           for sw, sb in b if sb is None):
                        targets.add(w[1])
                    continue
                walk(b, here, " ".join(w) if w[:1] == ["location"] else where, out)

    # Upstream blocks come first in the file as labkit writes it; a second pass catches any
    # written after the servers that use them.
    found: list[tuple[str, str]] = []
    for _ in range(2):
        found = []
        walk(tree, f"{NGINX_DEFAULT_READ_TIMEOUT:g}s", "server", found)
    return found


def _keeps_quiet_sockets(config: str) -> str | None:
    """Why ``config`` still cuts a quiet chat socket that the chat server keeps alive, or None.
    Read from the text: the browser check waits QUIET_SECONDS, not the 20 s between pings."""
    found = chat_read_timeouts(config, _NGINX_PORTS["chat"])
    if not found:
        return (f"no location of your config proxies to the chat server "
                f"(127.0.0.1:{_NGINX_PORTS['chat']})")
    for where, value in found:
        secs = nginx_seconds(value)
        if secs is None:
            return f"proxy_read_timeout {value!r} in {where} is not an nginx time"
        if secs <= CHAT_PING_INTERVAL:
            return (f"proxy_read_timeout {value} in {where} is not longer than the "
                    f"{CHAT_PING_INTERVAL:g} s between the chat server's pings: nginx can still "
                    f"close a quiet socket after {secs:g} s (read from your config: the browser "
                    f"stayed quiet for {QUIET_SECONDS:g} s only)")
    return None


@dataclass
class NginxExercise:
    """Edit the nginx.conf labkit generated (a line is missing or wrong), run it in the real
    browser."""

    name: str
    task: str
    hints: list[str]
    #: The page's steps that decide (it runs the story's steps, then these if not among them):
    #: for the read timeout, a socket that then stays quiet (``script``: :data:`QUIET_SOCKET`).
    steps: tuple[str, ...] = ("hello", "login", "socket", "chat")
    script: str | None = None
    #: A rule read from the config text, for what the browser cannot wait for: why the config
    #: still fails (None: it does not).
    rule: Callable[[str], str | None] | None = field(default=None, repr=False)
    _texts: tuple[str, str] | None = field(default=None, repr=False)
    _hinted: int = field(default=0, repr=False)

    def _topology(self) -> Topology:
        story = Page().steps
        return _nginx_topology(self.name, Page(
            api=None, ws=None, same_origin=True, credentials="same-origin",
            steps=story + tuple(s for s in self.steps if s not in story), script=self.script))

    def _generate(self) -> tuple[str, str]:
        """(broken, working): the generated config, read from a real nginx run, and the same
        with the bug's lines removed or rewritten."""
        if self._texts is None:
            from ..lab import Lab

            with Lab(self._topology()) as lab:
                working = lab.nginx_config("proxy", editable=True)
            gone = _NGINX_BUGS.get(self.name, ())
            broken = "\n".join(ln for ln in working.splitlines()
                               if not (gone and ln.strip().startswith(gone))) + "\n"
            if self.name in _NGINX_REWRITES:
                old, new = _NGINX_REWRITES[self.name]
                assert broken.count(old) == 1, f"the generated config has no single {old!r}"
                broken = broken.replace(old, new)
            self._texts = (broken, working)
        return self._texts

    @property
    def config(self) -> str:
        """The broken nginx.conf to edit (PREFIX stands for the run's own folder)."""
        return self._generate()[0]

    def __repr__(self) -> str:
        return (f"Exercise {self.name}: {self.task}\nChange: ex.config (a string), then "
                "ex.check(config=your_text)")

    def save(self, path: str | Path) -> Path:
        """Write the broken config to ``path`` for you to edit (in JupyterLab's editor) — only
        if the file is not there yet: your edits are never overwritten."""
        p = Path(path)
        if not p.exists():
            p.write_text(self.config)
        return p

    def check(self, config: str | Path) -> Check:
        """Run nginx with your config (the text, or the file you edited) in front of the
        backends and judge the page in Chromium; then the exercise's rule on the text, if any."""
        from .runner import run_scenario
        from .session import shared_browser

        if isinstance(config, Path):
            config = config.read_text()
        _setting("config", config, str, "the file you edited (a Path) or its text")
        sc = _expect(self.name, self._topology(), "allowed", None, self.steps, visit="proxy")
        r = run_scenario(sc, shared_browser(), nginx_configs={"proxy": config})
        if not r.ok:
            # No browser rule to name (a socket dropped by the proxy): say what the page saw.
            saw = "" if r.verdict.reason else "".join(
                f"; {n}: {st.detail}" for n, st in r.observation.steps.items()
                if n in self.steps and st.state != "ok")
            return Check(False, f"{r.name}: the browser showed {r.verdict} "
                                f"({'; '.join(r.problems)}{saw})", [r])
        why = self.rule(config) if self.rule is not None else None
        if why is not None:
            return Check(False, f"{r.name}: the browser showed {r.verdict}, but {why}", [r])
        return Check(True, f"{r.name}: {r.verdict}", [r])

    def hint(self) -> str:
        """The next hint (call again for more)."""
        return _next_hint(self)

    def solution(self) -> str:
        """The lines the working config has and this one lacks (not the whole file)."""
        broken, working = self._generate()
        missing = [ln for ln in working.splitlines() if ln not in broken.splitlines()]
        return "Reference solution: the generated config has\n" + "\n".join(missing)

    def check_reference(self) -> str:
        v = self.check(self._generate()[1])
        return ("the reference solution passes in the real browser (ex.solution() shows it)"
                if v.passed else f"THE REFERENCE SOLUTION FAILS: {v.summary}")


NGINX_EXERCISES: dict[str, NginxExercise] = {e.name: e for e in (
    NginxExercise("nginx-upgrade", "nginx serves the page and the API, but the chat socket "
                  "fails. Fix the config.",
                  ["Look at the /ws location: what does a WebSocket handshake need that nginx "
                   "does not forward by default?",
                   "Upgrade and Connection are hop-by-hop headers (RFC 9110 §7.6.1): nginx "
                   "forwards them only where told to, with proxy_set_header.",
                   "The map at the top defines $connection_upgrade for you."]),
    NginxExercise("nginx-forwarded-proto", "The page loads, but every API call fails. Fix the "
                  "config (the API redirects any request it believes came over http).",
                  ["Open the browser's console in your head: how many redirects?",
                   "Behind nginx the API only ever sees plain http. Who can tell it the "
                   "browser used https?",
                   "nginx's $scheme is the browser's side of the connection."]),
    NginxExercise("nginx-read-timeout", "The chat works, until a user stops typing: then "
                  "their socket dies. Fix the config so that a quiet socket stays open for as "
                  "long as the chat server keeps it alive (it pings every "
                  f"{CHAT_PING_INTERVAL:g} s). The check keeps the page's socket quiet for "
                  f"{QUIET_SECONDS:g} s, then sends a message.",
                  ["The page saw close code 1006 and the console said nothing about why: who "
                   "closed the connection without a closing handshake?",
                   "nginx closes a proxied connection when it has read nothing from the "
                   "upstream for proxy_read_timeout (nginx's default is 60 s).",
                   f"Each of the chat server's pings (every {CHAT_PING_INTERVAL:g} s) restarts "
                   "nginx's timer, and so does any message from the page: the timeout must be "
                   "longer than the longest silence between them. A page that sent a message "
                   "every half second would survive 2 s too, but here you fix the proxy."],
                  steps=("hello", "login", "socket", "chat", "script"), script=QUIET_SOCKET,
                  rule=_keeps_quiet_sockets),
)}


def exercise(name: str) -> Exercise | NginxExercise:
    if name in NGINX_EXERCISES:
        return NGINX_EXERCISES[name]
    try:
        return EXERCISES[name]
    except KeyError:
        raise TopologyError(f"no exercise {name!r}",
                            f"Exercises: {', '.join([*EXERCISES, *NGINX_EXERCISES])}.") from None


__all__ = ["EXERCISES", "NGINX_EXERCISES", "Check", "Exercise", "NginxExercise", "exercise"]
