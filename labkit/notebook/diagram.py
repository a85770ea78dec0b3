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

#: Layout, in SVG pixels. Arrows run horizontally from a box's right side to the next column's
#: left side, one *lane* each, at least ``_LANE`` apart; a label sits just above its own lane, in
#: the gap between the two columns, which is made as wide as its longest label. So no label can
#: touch another arrow, another label or a box: the test (tests/test_diagram.py) checks this for
#: every scenario, with estimated text widths and with the widths Chromium lays out.
_BOX_W, _BOX_H, _ROW_GAP, _TOP, _MARGIN = 250, 62, 16, 40, 20
_PAD = 8  # text inset in a box
_LANE, _FIRST_LANE = 18, 22  # between two lanes; from a box's top to its first lane
_LABEL_SIZE, _LABEL_RISE = 10, 5  # a label's font size; its baseline above its lane
_HEAD = 14  # the arrowhead's length: markerWidth 7 x stroke-width 2
_MIN_GAP = 90
#: Generous widths per character, as a fraction of the font size: DejaVu Sans (Debian's
#: system-ui, wider than most UI fonts) measured in Chromium 156 at most 0.55 (regular), 0.68
#: (bold) and 0.604 (DejaVu Sans Mono) over the catalogue's texts.
_EM = {"sans": 0.6, "bold": 0.72, "mono": 0.61}


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

    # A page's own script (the attacker's page, a quiet chat user) uses the socket it is given.
    ws_steps = (*SOCKET_STEPS, "script") if page.ws else SOCKET_STEPS
    api_states, ws_states = states(tuple(API_STEPS)), states(ws_steps)
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
        if page.ws and any(s in page.steps for s in ws_steps):
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
    """Each box's column: one more than the box that sends it an arrow; a service nobody sends
    to stands in the first column after the browser, and what it sends to after it."""
    depth = {"browser": 0}

    def spread() -> None:
        for _ in range(len(topology.services) + 1):  # bounded: a cycle cannot run away
            for e in es:
                if e.src in depth and e.dst != "browser":
                    depth[e.dst] = max(depth.get(e.dst, 0), depth[e.src] + 1)

    spread()
    for s in topology.services:
        if s.name not in depth:
            depth[s.name] = 1
            spread()
    return depth


def _label(s: Service, d: Deployment, ports: dict[str, int]) -> tuple[str, str]:
    li = d.listener(s.name)
    where = li.ws_url("") if s.kind == "chat" else li.origin
    if not (ports.get(s.name) or s.port):  # a placeholder: the real port comes at start
        where = where.removesuffix(f":{li.port}") + ":<port>"
    return where, "; ".join(s.notes())


def text_width(text: str, size: float, style: str = "sans") -> float:
    """A text's width as drawn, estimated generously (``style``: sans, bold or mono)."""
    return len(text) * size * _EM[style]


def _wrap(text: str, width: float, size: float) -> list[str]:
    """Lines of ``text`` no wider than ``width``, broken between words (a word longer than a
    line keeps a line of its own: the box grows to fit it)."""
    lines: list[str] = []
    for word in text.split():
        if lines and text_width(f"{lines[-1]} {word}", size) <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines


@dataclass
class _Box:
    name: str
    head: str
    where: str
    notes: list[str]
    fill: str
    col: int
    lanes_in: int = 0  # arrows arriving on the left side
    x: float = 0.0
    y: float = 0.0
    w: float = _BOX_W
    h: float = _BOX_H

    def notes_y(self) -> float:
        """The first note's baseline, below the head and the address (if any)."""
        return 45 if self.where else 31

    def own_height(self) -> float:
        text = self.notes_y() + 12 * (len(self.notes) - 1) + 8
        return max(_BOX_H, text, _FIRST_LANE + _LANE * max(self.lanes_in - 1, 0) + 12)


def render(topology: Topology, *, visit: str = "web", ports: dict[str, int] | None = None,
           obs: Observation | None = None, reason: str | None = None, title: str = "",
           client: str = "browser") -> str:
    """The topology as an SVG picture (``ports``: service -> real port, when the lab runs).

    Each service is a box in the column of its distance from the browser; a box spans the boxes
    it sends arrows to, so every arrow is a horizontal lane with its label above it.
    """
    ports = ports or {}
    plan = Deployment.plan(topology, ports)  # one set of addresses for arrows and boxes alike
    es = edges(topology, visit, obs, reason, ports, deployment=plan)
    depth = _depths(topology, es)
    boxes: dict[str, _Box] = {}
    for name in ["browser", *[s.name for s in topology.services]]:
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
        boxes[name] = _Box(name, head, where, _wrap(sub, _BOX_W - 2 * _PAD, 10), fill,
                           depth[name])
    # The tree the layout follows: each box under the first box that sends it an arrow from
    # the column before. Parallel arrows between two boxes (a proxy's /api and /ws) get a lane
    # each.
    children: dict[str, list[str]] = {}
    parent: dict[str, str] = {}
    for e in es:
        if e.dst in parent or e.dst == "browser" or depth[e.dst] != depth[e.src] + 1:
            continue
        parent[e.dst] = e.src
        children.setdefault(e.src, []).append(e.dst)
    for e in es:
        boxes[e.dst].lanes_in += 1
    ncols = max(b.col for b in boxes.values()) + 1
    col_w = [float(_BOX_W)] * ncols
    for b in boxes.values():
        need = max([text_width(b.head, 12, "bold"), text_width(b.where, 11, "mono"),
                    *(text_width(n, 10) for n in b.notes)]) + 2 * _PAD
        col_w[b.col] = max(col_w[b.col], need)
    gaps = [float(_MIN_GAP)] * max(ncols - 1, 0)
    for e in es:
        c = depth[e.src]
        if 0 <= c < len(gaps):
            gaps[c] = max(gaps[c], text_width(e.label, _LABEL_SIZE) + 2 * _PAD + _HEAD)
    xs = [float(_MARGIN)]
    for c in range(1, ncols):
        xs.append(xs[-1] + col_w[c - 1] + gaps[c - 1])
    for b in boxes.values():
        b.x, b.w = xs[b.col], col_w[b.col]
    # Top to bottom: a box starts below whatever its column holds already, and its children
    # start at its top; it then grows down to span them.
    col_next = [float(_TOP)] * ncols
    placed: set[str] = set()

    def place(name: str, top: float) -> float:
        b = boxes[name]
        placed.add(name)
        b.y = max(top, col_next[b.col])
        bottom = b.y + b.own_height()
        for child in children.get(name, []):
            if child not in placed:
                bottom = max(bottom, place(child, b.y))
        b.h = bottom - b.y
        col_next[b.col] = bottom + _ROW_GAP
        return bottom

    place("browser", _TOP)
    for name in boxes:  # what the browser does not reach: each tree under its own root
        if name not in placed and name not in parent:
            place(name, _TOP)
    for name in boxes:  # a cycle has no root
        if name not in placed:
            place(name, _TOP)
    width = max(xs[-1] + col_w[-1] + _MARGIN,
                2 * _MARGIN + text_width(title or topology.name, 14, "bold"))
    height = max(b.y + b.h for b in boxes.values()) + _MARGIN
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:g}" height="{height:g}" '
        f'viewBox="0 0 {width:g} {height:g}" style="max-width:100%;height:auto" '
        f'font-family="system-ui,sans-serif" font-size="12">',
        '<defs>' + "".join(
            f'<marker id="a{c[1:]}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{c}"/></marker>'
            for c in (GREEN, RED, GREY)) + '</defs>',
        f'<text x="{_MARGIN}" y="22" font-size="14" font-weight="600" fill="{INK}">'
        f'{html.escape(title or topology.name)}</text>',
    ]
    used: dict[str, int] = {}  # lanes taken on each box's left side
    for i, e in enumerate(es):
        src, dst = boxes[e.src], boxes[e.dst]
        k = used.get(e.dst, 0)
        used[e.dst] = k + 1
        ty = dst.y + _FIRST_LANE + k * _LANE
        # Inside the source box's span, the lane runs straight; otherwise (an arrow the tree
        # does not hold: a second sender, a skipped column) it slopes from the source's top.
        sy = ty if src.y + 6 <= ty <= src.y + src.h - 6 else src.y + _FIRST_LANE
        sx, tx = src.x + src.w, dst.x
        parts.append(f'<line class="arrow" data-edge="{i}" x1="{sx:g}" y1="{sy:g}" '
                     f'x2="{tx:g}" y2="{ty:g}" stroke="{e.colour}" stroke-width="2" '
                     f'marker-end="url(#a{e.colour[1:]})"/>')
        lx = (sx + tx - _HEAD) / 2
        ly = (sy + ty) / 2 - _LABEL_RISE
        parts.append(f'<text class="label" data-edge="{i}" x="{lx:g}" y="{ly:g}" '
                     f'fill="{e.colour}" text-anchor="middle" font-size="{_LABEL_SIZE}">'
                     f'{html.escape(e.label)}</text>')
    for b in boxes.values():
        x, y = b.x, b.y
        parts.append(f'<rect class="box" data-box="{html.escape(b.name)}" x="{x:g}" y="{y:g}" '
                     f'width="{b.w:g}" height="{b.h:g}" rx="6" fill="{b.fill}" stroke="{STROKE}"/>')
        parts.append(f'<text data-box="{html.escape(b.name)}" x="{x + _PAD:g}" y="{y + 16:g}" '
                     f'font-weight="600" fill="{INK}">{html.escape(b.head)}</text>')
        if b.where:
            parts.append(f'<text data-box="{html.escape(b.name)}" x="{x + _PAD:g}" '
                         f'y="{y + 31:g}" fill="{INK}" font-family="monospace" font-size="11">'
                         f'{html.escape(b.where)}</text>')
        for j, line in enumerate(b.notes):
            parts.append(f'<text data-box="{html.escape(b.name)}" x="{x + _PAD:g}" '
                         f'y="{y + b.notes_y() + 12 * j:g}" fill="{SUBTLE_INK}" '
                         f'font-size="10">'
                         f'{html.escape(line)}</text>')
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
