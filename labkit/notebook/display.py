"""What notebooks show: observation tables with the screenshot beside them."""

from __future__ import annotations

import base64
import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..lab import Lab
    from ..observe.observation import Observation

_STATE_COLOURS = {"ok": "#137333", "blocked": "#c5221f", "error": "#b06000", "skipped": "#888"}


def _esc(s: object) -> str:
    return html.escape(str(s))


def observation_html(obs: Observation) -> str:
    norm = obs.normalized()
    v = obs.verdict()
    colour = "#137333" if v.outcome == "allowed" else "#c5221f"
    rows = [f"<tr><th>verdict</th><td><b style='color:{colour}'>{_esc(v)}</b></td></tr>",
            f"<tr><th>page</th><td><code>{_esc(norm['final_url'])}</code></td></tr>"]
    if norm["redirects"]:
        rows.append(f"<tr><th>redirects</th><td><code>{_esc(' → '.join(norm['redirects']))}"
                    f"</code></td></tr>")
    if obs.navigation_error:
        rows.append(f"<tr><th>navigation</th><td><code>{_esc(obs.navigation_error)}</code></td></tr>")
    for name, step in norm["steps"].items():
        c = _STATE_COLOURS.get(step["state"], "#222")
        rows.append(f"<tr><th>{_esc(name)}</th><td><b style='color:{c}'>{_esc(step['state'])}</b> "
                    f"<small>{_esc(step['detail'])}</small></td></tr>")
    if norm["console"]:
        lines = "<br>".join(_esc(m) for m in norm["console"])
        rows.append(f"<tr><th>console</th><td><small><code>{lines}</code></small></td></tr>")
    client = obs.browser_version if obs.browser_version.startswith("python") \
        else f"Chromium {obs.browser_version}"
    rows.append(f"<tr><th>client</th><td>{_esc(client)}</td></tr>")
    table = f"<table style='font-size:13px;max-width:560px'>{''.join(rows)}</table>"
    img = ""
    if obs.screenshot:
        b64 = base64.b64encode(obs.screenshot).decode()
        img = (f"<img src='data:image/png;base64,{b64}' style='width:340px;border:1px solid #ccc'"
               f" alt='screenshot of the page'>")
    return (f"<div style='display:flex;gap:12px;align-items:flex-start'>{table}{img}</div>")


def lab_html(lab: Lab) -> str:
    """A lab as a table: each service, its real URL, TLS, and the policy that matters."""
    rows = []
    for svc in lab.topology.services:
        info = lab.services_by_name().get(svc.name)
        url = _esc(info.url) if info else "—"
        rows.append(
            f"<tr><td><b>{_esc(svc.name)}</b></td><td>{svc.kind}</td>"
            f"<td><code>{url}</code></td><td>{_esc('; '.join(svc.notes()))}</td></tr>")
    state = "running" if lab.running else "stopped"
    head = (f"<b>Lab '{_esc(lab.topology.name)}'</b> — {state}"
            f" — lab CA: <code>{_esc(lab.pki.ca_pem)}</code>")
    return (f"<div>{head}<table><tr><th>service</th><th>kind</th><th>URL</th>"
            f"<th>TLS and policy</th></tr>{''.join(rows)}</table></div>")
