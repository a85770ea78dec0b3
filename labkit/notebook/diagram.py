"""Topology diagrams as SVG: the browser, each origin (scheme, host, port), and arrows coloured by
what the real browser did (green: it worked; red: blocked, with the reason; grey: not tried).

Pure: a topology (plus, optionally, the started lab's ports and an observation) in, SVG text out.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..model.deployment import Deployment
from ..model.topology import API_STEPS, PAGE_KINDS, SOCKET_STEPS, Service, Topology
from .display import (
    BROWSER_FILL,
    GREEN,
    GREY,
    INK,
    PROXY_FILL,
    RED,
    SERVICE_FILL,
    STROKE,
    SUBTLE_INK,
)

if TYPE_CHECKING:
    from ..observe.observation import Observation

_BOX_W, _BOX_H, _ROW, _GAP = 250, 62, 78, 160


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    label: str
    colour: str


def _edge_colour(states: list[str]) -> str:
    if not states:
        return GREY
    if any(s in ("blocked", "error") for s in states):
        return RED
    return GREEN if all(s == "ok" for s in states) else GREY


def edges(topology: Topology, visit: str = "web", obs: Observation | None = None,
          reason: str | None = None, ports: dict[str, int] | None = None, *,
          deployment: Deployment | None = None) -> list[Edge]:
    """Who talks to whom, and how it went."""
    visited = topology.service(visit)
    d = deployment or Deployment.plan(topology, ports)
    page_host = d.landing(visit)
    out: list[Edge] = []
    nav = RED if obs is not None and obs.navigation_error else (GREEN if obs else GREY)
    if visited.kind == "redirect":
        out.append(Edge("browser", visit, "http:// → 308", nav))
    if obs is None or not obs.url.startswith("python"):
        out.append(Edge("browser", page_host, "load the page", nav))
    page_svc = d.page_service(visit) or page_host
    page = topology.page_for(page_svc) if topology.service(page_svc).kind in PAGE_KINDS \
        else topology.page
    socket_url = d.socket_url(page_svc, d.page_origin(visit)) \
        if topology.service(page_svc).kind in PAGE_KINDS else None
    ws_scheme = urlsplit(socket_url).scheme if socket_url else "wss"
    steps = obs.steps if obs is not None else {}
    # "×" is Latin-1: every font has it (✗ shows as a box on a projector's fonts).
    blocked = f" × {reason}" if reason else ""

    def states(names: tuple[str, ...]) -> list[str]:
        return [steps[n].state for n in names if n in steps]

    api_states, ws_states = states(tuple(API_STEPS)), states(SOCKET_STEPS)
    sio_states = states(("sio",))
    if page.same_origin:
        if any(s in page.steps for s in API_STEPS):
            out.append(Edge("browser", page_host, "/api (same origin)", _edge_colour(api_states)))
        if any(s in page.steps for s in SOCKET_STEPS):
            out.append(Edge("browser", page_host, f"{ws_scheme}:// {page.ws_path}",
                            _edge_colour(ws_states)))
    else:
        if page.api and any(s in page.steps for s in API_STEPS):
            c = _edge_colour(api_states)
            out.append(Edge("browser", page.api, "fetch /api/…" + (blocked if c == RED else ""), c))
        if page.ws and any(s in page.steps for s in SOCKET_STEPS):
            c = _edge_colour(ws_states)
            out.append(Edge("browser", page.ws,
                            f"{ws_scheme}:// WebSocket" + (blocked if c == RED else ""), c))
        if page.sio and "sio" in page.steps:
            c = _edge_colour(sio_states)
            out.append(Edge("browser", page.sio,
                            ("socket.io WebSocket" if page.sio_websocket_only
                             else "socket.io polling") + (blocked if c == RED else ""), c))
    for s in topology.services:
        if s.kind in ("proxy", "nginx"):
            for r in s.routes:
                out.append(Edge(s.name, r.upstream, f"{r.prefix} →", GREY))

    return out


def _depths(topology: Topology, es: list[Edge]) -> dict[str, int]:
    depth = {"browser": 0}
    for _ in range(4):
        for e in es:
            if e.src in depth:
                depth[e.dst] = max(depth.get(e.dst, 0), depth[e.src] + 1)
    for s in topology.services:
        depth.setdefault(s.name, 1)
    return depth


def _label(s: Service, d: Deployment, ports: dict[str, int]) -> tuple[str, str]:
    li = d.listener(s.name)
    where = li.ws_url("") if s.kind == "chat" else li.origin
    if not (ports.get(s.name) or s.port):  # a placeholder: the real port comes at start
        where = where.removesuffix(f":{li.port}") + ":<port>"
    return where, "; ".join(s.notes())


def render(topology: Topology, *, visit: str = "web", ports: dict[str, int] | None = None,
           obs: Observation | None = None, reason: str | None = None, title: str = "",
           client: str = "browser") -> str:
    """The topology as an SVG picture (``ports``: service -> real port, when the lab runs)."""
    ports = ports or {}
    plan = Deployment.plan(topology, ports)  # one set of addresses for arrows and boxes alike
    es = edges(topology, visit, obs, reason, ports, deployment=plan)
    depth = _depths(topology, es)
    cols: dict[int, list[str]] = {}
    for name in ["browser", *[s.name for s in topology.services]]:
        cols.setdefault(depth[name], []).append(name)
    ncols = max(cols) + 1
    width = 40 + ncols * (_BOX_W + _GAP)
    height = 60 + max(len(v) for v in cols.values()) * _ROW
    pos: dict[str, tuple[float, float]] = {}
    for d, names in cols.items():
        for i, name in enumerate(names):
            pos[name] = (20 + d * (_BOX_W + _GAP), 40 + i * _ROW)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="system-ui,sans-serif" font-size="12">',
        '<defs>' + "".join(
            f'<marker id="a{c[1:]}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{c}"/></marker>'
            for c in (GREEN, RED, GREY)) + '</defs>',
        f'<text x="20" y="22" font-size="14" font-weight="600" fill="{INK}">'
        f'{html.escape(title or topology.name)}</text>',
    ]
    seen_pairs: dict[tuple[str, str], int] = {}
    for e in es:
        x1, y1 = pos[e.src]
        x2, y2 = pos[e.dst]
        k = seen_pairs.get((e.src, e.dst), 0)
        seen_pairs[(e.src, e.dst)] = k + 1
        off = 10 + k * 14
        sx, sy, tx, ty = x1 + _BOX_W, y1 + off, x2, y2 + off
        parts.append(f'<line x1="{sx}" y1="{sy}" x2="{tx}" y2="{ty}" stroke="{e.colour}" '
                     f'stroke-width="2" marker-end="url(#a{e.colour[1:]})"/>')
        # Labels halfway along: edges fan out from one box, so their middles are apart.
        lx, ly = (sx + tx) / 2, (sy + ty) / 2 - 4
        parts.append(f'<text x="{lx}" y="{ly}" fill="{e.colour}" text-anchor="middle" '
                     f'font-size="10">{html.escape(e.label)}</text>')
    for name, (x, y) in pos.items():
        if name == "browser":
            head, where, sub = (("browser (Chromium)", "", "the participant's page")
                                if client == "browser" else
                                ("Python client", "", "server to server: no browser"))
            fill = BROWSER_FILL
        else:
            s = topology.service(name)
            head = f"{name} ({s.kind})"
            where, sub = _label(s, plan, ports)
            fill = PROXY_FILL if s.kind in ("proxy", "nginx", "redirect") else SERVICE_FILL
        parts.append(f'<rect x="{x}" y="{y}" width="{_BOX_W}" height="{_BOX_H}" rx="6" '
                     f'fill="{fill}" stroke="{STROKE}"/>')
        parts.append(f'<text x="{x + 8}" y="{y + 16}" font-weight="600" fill="{INK}">'
                     f'{html.escape(head)}</text>')
        parts.append(f'<text x="{x + 8}" y="{y + 31}" fill="{INK}" font-family="monospace" '
                     f'font-size="11">{html.escape(where)}</text>')
        for i, chunk in enumerate((sub[:50], sub[50:100])):
            if chunk:
                parts.append(f'<text x="{x + 8}" y="{y + 45 + 12 * i}" fill="{SUBTLE_INK}" '
                             f'font-size="10">{html.escape(chunk)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


class Diagram:
    """Displays as SVG in a notebook; ``str()`` is the SVG text."""

    def __init__(self, svg: str) -> None:
        self.svg = svg

    def _repr_svg_(self) -> str:
        return self.svg

    def __str__(self) -> str:
        return self.svg

    def __repr__(self) -> str:
        return f"<Diagram {len(self.svg)} bytes of SVG>"
