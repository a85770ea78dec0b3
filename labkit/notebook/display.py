"""What notebooks show: every HTML view of a labkit object, with its colours and tables, here.

One function per type. Notebook-floor classes keep a one-line ``_repr_html_`` that calls theirs.
The lower floors (model, observe, ``Lab``) know nothing of notebooks, so their classes carry no
``_repr_html_``: importing this module registers their views with the running IPython shell's
HTML formatter instead (``import labkit`` imports it). Outside IPython, registering does nothing
and imports nothing.

The HTML is compared byte for byte against the notebooks' stored outputs (nbval): change a view
here and re-run the notebooks.
"""

from __future__ import annotations

import base64
import html
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..lab import Lab
from ..model.explain import Explanation
from ..model.scenarios import Scenario
from ..observe.observation import Observation

if TYPE_CHECKING:  # notebook-floor types: they import this module for their _repr_html_
    from .checkup import Check as DoctorCheck
    from .costs import CostReport, Structure
    from .exercises import Check, Exercise
    from .lb import IdleDemo
    from .predict import Graded
    from .runner import BrowserRow, Result
    from .wire import Capture

# -- colours: the one palette of every view and diagram ------------------------------------------
GREEN = "#137333"  # it worked: allowed, ok, fixed, still open
RED = "#c5221f"  # the browser blocked it, or it failed
AMBER = "#b06000"  # a step errored (not a browser rule)
MUTED = "#888"  # a step the page skipped
GREY = "#9aa0a6"  # not tried; a route, not a request
BLUE = "#1a73e8"
INK = "#202124"  # diagram text
TEXT = "#222"  # a step state without a colour of its own
SUBTLE_INK = "#3c4043"  # diagram notes under a box
STROKE = "#5f6368"  # diagram box outlines
BROWSER_FILL = "#e8f0fe"
PROXY_FILL = "#fef7e0"  # proxies, nginx, redirects: infrastructure
SERVICE_FILL = "#f1f3f4"
FRAME = "#ccc"  # the screenshot's border
#: A page step's state (the page's own words: web app's data-state) -> its colour.
STATE_COLOURS = {"ok": GREEN, "blocked": RED, "error": AMBER, "skipped": MUTED}
#: The bars of the costs chart, one colour per deployment.
CHART_COLOURS = (GREY, GREEN, RED, BLUE)


def good_or_bad(good: bool) -> str:
    return GREEN if good else RED


# -- table helpers -------------------------------------------------------------------------------
def esc(s: object) -> str:
    return html.escape(str(s))


def td(content: str, style: str = "") -> str:
    """A cell of already-escaped HTML."""
    return f"<td style='{style}'>{content}</td>" if style else f"<td>{content}</td>"


def tr(*cells: str) -> str:
    return "<tr>" + "".join(cells) + "</tr>"


def field_row(name: str, value: str) -> str:
    """A ``name: value`` row (value already HTML)."""
    return tr(f"<th>{esc(name)}</th>", td(value))


def table(rows: Iterable[str], head: Sequence[str] = (), style: str = "") -> str:
    """Rows (``tr(...)`` strings) under an optional header of plain-text column names."""
    th = tr(*(f"<th>{esc(h)}</th>" for h in head)) if head else ""
    opening = f"<table style='{style}'>" if style else "<table>"
    return f"{opening}{th}{''.join(rows)}</table>"


def text_table(head: Sequence[str], body: Iterable[Sequence[str]], numeric: bool = False) -> str:
    """Plain-text cells; ``numeric``: every column after the first right-aligned."""
    return table((tr(*(td(esc(c), "text-align:right" if numeric and i else "")
                       for i, c in enumerate(r))) for r in body), head)


# -- model ---------------------------------------------------------------------------------------
def scenario_html(sc: Scenario) -> str:
    exp = sc.expected + (f" ({sc.reason})" if sc.reason else "")
    return (f"<b>{esc(sc.name)}</b> — expected <b>{esc(exp)}</b>"
            f"<br><i>{esc(sc.rule)}</i><br>{esc(sc.explanation)}")


def explanation_html(e: Explanation) -> str:
    return "<pre>" + esc(e) + "</pre>"


# -- observe -------------------------------------------------------------------------------------
def observation_html(obs: Observation) -> str:
    norm = obs.normalized()
    v = obs.verdict()
    rows = [field_row("verdict", f"<b style='color:{good_or_bad(v.outcome == 'allowed')}'>"
                                 f"{esc(v)}</b>"),
            field_row("page", f"<code>{esc(norm['final_url'])}</code>")]
    if norm["redirects"]:
        rows.append(field_row("redirects", f"<code>{esc(' → '.join(norm['redirects']))}</code>"))
    if obs.navigation_error:
        rows.append(field_row("navigation", f"<code>{esc(obs.navigation_error)}</code>"))
    for name, step in norm["steps"].items():
        c = STATE_COLOURS.get(step["state"], TEXT)
        rows.append(field_row(name, f"<b style='color:{c}'>{esc(step['state'])}</b> "
                                    f"<small>{esc(step['detail'])}</small>"))
    if norm["console"]:
        lines = "<br>".join(esc(m) for m in norm["console"])
        rows.append(field_row("console", "<small><code style='display:block;text-align:left;"
                                         f"white-space:pre-wrap;word-break:break-word'>{lines}"
                                         "</code></small>"))
    client = obs.browser_version if obs.browser_version.startswith("python") \
        else f"Chromium {obs.browser_version}"
    rows.append(field_row("client", esc(client)))
    img = ""
    if obs.screenshot:
        b64 = base64.b64encode(obs.screenshot).decode()
        # The page's own width (680 px): legible on a projector, not a thumbnail.
        img = (f"<img src='data:image/png;base64,{b64}' style='width:680px;max-width:100%;"
               f"border:1px solid "
               f"{FRAME}' alt='screenshot of the page'>")
    # Stacked, not side by side: the table and the full-width screenshot each stay legible.
    return f"<div>{table(rows, style='font-size:13px;max-width:680px')}{img}</div>"


# -- lab -----------------------------------------------------------------------------------------
def lab_html(lab: Lab) -> str:
    """A lab as a table: each service, its real URL, TLS, and the policy that matters."""
    rows = []
    for svc in lab.topology.services:
        info = lab.services_by_name().get(svc.name)
        url = esc(info.url) if info else "—"
        rows.append(tr(td(f"<b>{esc(svc.name)}</b>"), td(svc.kind), td(f"<code>{url}</code>"),
                       td(esc("; ".join(svc.notes())))))
    state = "running" if lab.running else "stopped"
    head = (f"<b>Lab '{esc(lab.topology.name)}'</b> — {state}"
            f" — lab CA: <code>{esc(lab.pki.ca_pem)}</code>")
    return f"<div>{head}{table(rows, ('service', 'kind', 'URL', 'TLS and policy'))}</div>"


# -- notebook: runs, tours, exercises ------------------------------------------------------------
def verdict_colour(outcome: str) -> str:
    """One meaning per colour: green, the browser allowed it; red, the browser blocked it
    (whether that is the lesson's good or bad news is said in words, not colour)."""
    return GREEN if outcome == "allowed" else RED


def as_expected(ok: bool) -> str:
    """"As expected" is its own mark, in words (a successful attack is allowed, and expected)."""
    return ("<span style='border:1px solid #555;padding:0 4px'>as expected</span>" if ok else
            f"<span style='border:2px solid {AMBER};color:{AMBER};padding:0 4px'>"
            "NOT as expected</span>")


def result_head(r: Result) -> str:
    """One line: what the scenario expected and what the browser showed."""
    return (f"<p><b>{esc(r.name)}</b>: the browser showed "
            f"<b style='color:{verdict_colour(r.verdict.outcome)}'>{esc(r.verdict)}</b> "
            f"{as_expected(r.ok)} — <i>{esc(r.scenario.rule)}</i></p>")


def guess_html(g: Graded | None) -> str:
    if g is None:
        from ..model.policy import REASONS

        return ("<p style='color:#555'>No guess made: next time, write your prediction in "
                "<code>guess=</code> before running: <code>\"allowed\"</code>, or "
                "<code>(\"blocked\", reason)</code> with a reason from "
                f"<code>{esc(', '.join(REASONS))}</code>.</p>")
    mark = "RIGHT" if g.right else "WRONG"
    colour = GREEN if g.right else AMBER
    return (f"<p style='font-size:15px'>Your guess <b>{esc(g.guess)}</b>: "
            f"<b style='color:{colour}'>{mark}</b>"
            + ("" if g.right else f" — the browser said <b>{esc(g.verdict)}</b>") + "</p>")


def result_html(r: Result) -> str:
    return result_head(r) + observation_html(r.observation)


def run_html(r: Result, svg: str, code: str = "", certificates: Any = None,
             graded: Graded | None = None, asked: bool = False) -> str:
    """A run: expectation, the scenario's explanation, its diagram (``svg``), the observation,
    then the wire (the headers that decided it) beside the page's code that made the calls, and
    for a certificate lesson the certificates the servers presented."""
    certs = "".join(
        f"<p style='font-size:12px'><b>{esc(name)}</b> presents: <code>{esc(str(c))}</code></p>"
        for name, c in (certificates or {}).items())
    return ((guess_html(graded) if graded is not None or asked else "") + result_head(r)
            + f"<p><small>{esc(r.scenario.explanation)}</small></p>"
            + svg + observation_html(r.observation) + certs + wire_html(r.observation, code))


def wire_html(obs: Observation, code: str = "") -> str:
    """What travelled: each request of the visit as the lab's servers saw it (→ sent by the
    browser, ← answered), and the page's JavaScript that made the calls."""
    if obs.browser_version.startswith("python"):
        return ""
    rows = []
    for w in obs.wire():
        kind = "WebSocket " if w["kind"] == "ws" else ""
        heads = [f"→ {esc(k)}: {esc(v)}" for k, v in w["request"].items()]
        heads += [f"<b>← {esc(k)}: {esc(v)}</b>" for k, v in w["response"].items()]
        rows.append(tr(td(f"<code>{esc(w['service'])}</code>"),
                       td(f"<code>{kind}{esc(w['method'])} {esc(w['path'])}</code>"),
                       td(f"<b>{esc(w['status'])}</b>"
                          + (f" ×{w['times']}" if w["path"].startswith("/socket.io/") else "")),
                       td("<small><code>" + "<br>".join(heads) + "</code></small>")))
    wire = (table(rows, ("server", "request", "status", "headers (→ sent, ← answered)"),
                  style="font-size:12px") if rows else
            "<p><small>No request reached a lab server: the browser stopped it first.</small></p>")
    js = (f"<div><b>the page's code</b> <small>(static/app.js)</small>"
          f"<pre style='font-size:11px'>{esc(code)}</pre></div>" if code else "")
    return ("<details open><summary><b>on the wire</b></summary>"
            f"<div style='display:flex;gap:16px;align-items:flex-start'>{wire}{js}</div>"
            "</details>")


def tour_html(results: Iterable[Result]) -> str:
    rows = (tr(td(f"<code>{esc(r.name)}</code>"), td(r.scenario.expected),
               td(f"<b>{r.verdict.outcome}</b>",
                  f"color:{good_or_bad(r.verdict.outcome == 'allowed')}"),
               td(esc(r.verdict.reason or "-")),
               td("yes" if r.ok else "<b>NO</b>: " + esc("; ".join(r.problems))),
               td(f"<small>{esc(r.scenario.rule)}</small>")) for r in results)
    return table(rows, ("scenario", "expected", "observed", "reason", "as expected", "rule"))


def comparison_html(sc: Scenario, rows: Sequence[BrowserRow]) -> str:
    """``labkit.compare``: a row per browser; colour only for allowed (green), blocked (red)."""
    def lines(items: Sequence[str]) -> str:
        return "<br>".join(f"<code style='white-space:pre-wrap'>{esc(i)}</code>"
                           for i in items) or "-"

    body = (tr(td(f"<b>{esc(r.browser)}</b>"),
               td(f"<b>{r.outcome}</b>", f"color:{good_or_bad(r.outcome == 'allowed')}"),
               td(esc(r.reason)), td(as_expected(r.as_expected)),
               td(lines(r.console), "text-align:left"), td(lines(r.network), "text-align:left"),
               td(", ".join(map(str, r.close_codes)) or "-"),
               td(lines(r.page_saw), "text-align:left")) for r in rows)
    want = sc.expected + (f" ({sc.reason})" if sc.reason else "")
    return (f"<p><b>{esc(sc.name)}</b> in every browser — expected: {esc(want)}</p>"
            + table(body, ("browser", "outcome", "reason", "", "console (error level)",
                           "network error", "close code", "what the page's JavaScript saw")))


def doctor_html(checks: Iterable[DoctorCheck]) -> str:
    return table(tr(td("ok" if c.ok else f"<b style='color:{RED}'>MISSING</b>"),
                    td(f"<b>{esc(c.name)}</b>"), td(esc(c.detail)),
                    td(f"<code>{esc('' if c.ok else c.fix)}</code>")) for c in checks)


def exercise_html(ex: Exercise) -> str:
    return (f"<p><b>Exercise {esc(ex.name)}</b>: {esc(ex.task)}</p>"
            f"<p>Change: <code>{esc(ex.settings)}</code></p>")


def check_html(check: Check) -> str:
    return f"<p style='color:{good_or_bad(check.passed)};font-weight:600'>{esc(repr(check))}</p>"


# -- notebook: demos and measurements ------------------------------------------------------------
def capture_html(cap: Capture) -> str:
    verdict = ("an eavesdropper reads the message" if cap.readable
               else "an eavesdropper sees only TLS records")
    return (f"<p><b>{cap.scheme}://</b> — {len(cap.to_server)} bytes to the server, "
            f"{len(cap.to_client)} back — "
            f"<b style='color:{good_or_bad(not cap.readable)}'>{verdict}</b></p>"
            f"<pre style='white-space:pre-wrap;font-size:11px'>{esc(cap.dump())}</pre>")


def idle_demo_html(demo: IdleDemo) -> str:
    rows = (tr(td(esc(r.client)), td(esc(r.row()[33:]), f"color:{good_or_bad(not r.closed)}"))
            for r in demo.results)
    return (f"<p>Load balancer idle timeout: <b>{demo.idle_timeout:g} s</b></p>"
            f"{table(rows)}")


def structure_html(s: Structure) -> str:
    head, *body = s.table
    return text_table(head, body)


def cost_report_html(report: CostReport) -> str:
    head, *body = report._table()
    notes = "".join(f"<br><i>{esc(n)}</i>" for n in report.notes)
    return (f"<div><b>What each deployment costs</b> — {report.rounds} page sessions each, "
            f"medians{text_table(head, body, numeric=True)}{notes}</div>")


# -- IPython: the lower floors' types get their views here ---------------------------------------
FORMATTERS: dict[type, Callable[[Any], str]] = {
    Scenario: scenario_html,
    Explanation: explanation_html,
    Observation: observation_html,
    Lab: lab_html,
}


def register(shell: Any = None) -> bool:
    """Register the HTML views of :data:`FORMATTERS` with ``shell`` (default: the running IPython
    shell). Idempotent. False, doing nothing, outside IPython — and without importing it: a
    process that never imported IPython runs no shell."""
    if shell is None:
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return False
    formatter = shell.display_formatter.formatters["text/html"]
    for cls, fn in FORMATTERS.items():
        formatter.for_type(cls, fn)
    return True


register()
