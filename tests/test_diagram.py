"""Diagram labels never overlap an arrow they do not belong to, another label or a box, and a
box's text stays inside its box — for every scenario of the catalogue (and what the exercises and
the triage drill run), unrun, run and allowed, and run and blocked with the longest reason there
is. The geometry is read back from the SVG itself: text widths estimated (generously), and once
as Chromium lays them out."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from labkit.model import scenarios
from labkit.model.policy import REASONS
from labkit.model.topology import STEPS, Topology
from labkit.notebook.diagram import render, text_width
from labkit.observe.observation import Observation, Step

SVG = "{http://www.w3.org/2000/svg}"
Rect = tuple[float, float, float, float]  # left, top, right, bottom
Segment = tuple[float, float, float, float]  # x1, y1, x2, y2
#: Above and below the baseline, as a fraction of the font size (DejaVu Sans: 0.928 / 0.236).
ASCENT, DESCENT = 0.95, 0.25
STROKE = 1.0  # half an arrow's stroke width: a label must clear the line's edge, not its centre


def _observed(state: str) -> Observation:
    return Observation(url="https://app.lab.test/", final_url="https://app.lab.test/",
                       redirects=[], navigation_error=None, status=200,
                       steps={s: Step(state, "") for s in STEPS}, console=[], page_errors=[],
                       failed_requests=[], sockets=[], seen=[], browser_version="")


LONGEST_REASON = max(REASONS, key=len)


def _pictured() -> Iterator[tuple[str, Topology, str, str]]:
    """(name, topology, visit, client): the catalogue, then what the exercises and the triage
    drill run (the reference settings)."""
    from labkit.notebook.exercises import EXERCISES, NGINX_EXERCISES
    from labkit.notebook.triage import idle_scenario

    for name in scenarios.names():
        sc = scenarios.get(name)
        yield name, sc.topology, sc.visit, sc.client
    for ex in EXERCISES.values():
        for sc in ex.build(**ex.reference):
            yield sc.name, sc.topology, sc.visit, sc.client
    for name, nginx_ex in NGINX_EXERCISES.items():
        yield name, nginx_ex._topology(), "proxy", "browser"
    idle = idle_scenario()
    yield "triage-" + idle.name, idle.topology, idle.visit, idle.client


def drawings() -> Iterator[tuple[str, str]]:
    """(id, svg) for each picture: not run yet; every step ok; every step blocked, with the
    longest reason (the longest labels a run can draw)."""
    for name, topology, visit, client in _pictured():
        for variant, obs, reason in (("unrun", None, None), ("ok", _observed("ok"), None),
                                     ("blocked", _observed("blocked"), LONGEST_REASON)):
            yield f"{name}-{variant}", render(topology, visit=visit, client=client, obs=obs,
                                              reason=reason)


@dataclass
class Geometry:
    width: float
    height: float
    arrows: dict[str, Segment]  # edge id -> its line
    labels: dict[str, tuple[Rect, str]]  # edge id -> the label's box, its text
    boxes: dict[str, Rect]  # service -> its rectangle
    box_texts: list[tuple[str, Rect, str]]  # (service, the text's box, the text)


def _text_rect(el: ET.Element, default_size: float) -> Rect:
    size = float(el.get("font-size") or default_size)
    style = ("mono" if el.get("font-family") == "monospace"
             else "bold" if el.get("font-weight") == "600" else "sans")
    w = text_width(el.text or "", size, style)
    x, y = float(el.get("x", 0)), float(el.get("y", 0))
    left = x - w / 2 if el.get("text-anchor") == "middle" else x
    return (left, y - ASCENT * size, left + w, y + DESCENT * size)


def geometry(svg: str, measured: list[Rect] | None = None) -> Geometry:
    """What the SVG draws. ``measured``: every <text>'s box as a browser laid it out, in
    document order, instead of the estimate."""
    root = ET.fromstring(svg)
    size = float(root.get("font-size", 12))
    g = Geometry(float(root.get("width", 0)), float(root.get("height", 0)), {}, {}, {}, [])
    texts = 0
    for el in root:
        tag = el.tag.removeprefix(SVG)
        if tag == "line":
            g.arrows[el.get("data-edge", "")] = tuple(  # type: ignore[assignment]
                float(el.get(k, 0)) for k in ("x1", "y1", "x2", "y2"))
        elif tag == "rect":
            x, y = float(el.get("x", 0)), float(el.get("y", 0))
            g.boxes[el.get("data-box", "")] = (x, y, x + float(el.get("width", 0)),
                                               y + float(el.get("height", 0)))
        elif tag == "text":
            rect = measured[texts] if measured is not None else _text_rect(el, size)
            texts += 1
            if el.get("data-edge") is not None:
                g.labels[el.get("data-edge", "")] = (rect, el.text or "")
            elif el.get("data-box") is not None:
                g.box_texts.append((el.get("data-box", ""), rect, el.text or ""))
    return g


def _overlap(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _crosses(s: Segment, r: Rect, pad: float = 0.0) -> bool:
    """Does the segment pass through the rectangle (grown by ``pad``)? Liang–Barsky clipping."""
    x1, y1, x2, y2 = s
    left, top, right, bottom = r[0] - pad, r[1] - pad, r[2] + pad, r[3] + pad
    t0, t1 = 0.0, 1.0
    for p, q in ((x1 - x2, x1 - left), (x2 - x1, right - x1),
                 (y1 - y2, y1 - top), (y2 - y1, bottom - y1)):
        if p == 0:
            if q < 0:
                return False
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return False
    return True


def _inside(inner: Rect, outer: Rect) -> bool:
    return (outer[0] <= inner[0] and inner[2] <= outer[2]
            and outer[1] <= inner[1] and inner[3] <= outer[3])


def problems(g: Geometry) -> list[str]:
    out = []
    labels = list(g.labels.items())
    for i, (edge, (rect, text)) in enumerate(labels):
        for other, seg in g.arrows.items():
            # Its own arrow too: a label sits beside its line, never on it.
            if _crosses(seg, rect, STROKE):
                whose = "its own arrow" if other == edge else f"arrow {other}"
                out.append(f"label {text!r} lies on {whose}")
        for _, (rect2, text2) in labels[i + 1:]:
            if _overlap(rect, rect2):
                out.append(f"labels {text!r} and {text2!r} overlap")
        for name, box in g.boxes.items():
            if _overlap(rect, box):
                out.append(f"label {text!r} overlaps the box of {name}")
        if not _inside(rect, (0, 0, g.width, g.height)):
            out.append(f"label {text!r} is cut off by the picture's edge")
    for name, rect, text in g.box_texts:
        if not _inside(rect, g.boxes[name]):
            out.append(f"{text!r} does not fit in the box of {name}")
    for name, box in g.boxes.items():
        if not _inside(box, (0, 0, g.width, g.height)):
            out.append(f"the box of {name} is cut off by the picture's edge")
        for other, box2 in g.boxes.items():
            if name < other and _overlap(box, box2):
                out.append(f"the boxes of {name} and {other} overlap")
        # An arrow may touch the boxes it joins, at their sides; it must not cross another.
        for edge, seg in g.arrows.items():
            inner = (box[0] + 1, box[1] + 1, box[2] - 1, box[3] - 1)
            if _crosses(seg, inner):
                out.append(f"arrow {edge} crosses the box of {name}")
    return out


DRAWINGS = dict(drawings())


@pytest.mark.parametrize("key", sorted(DRAWINGS))
def test_no_label_overlaps_an_arrow_a_label_or_a_box(key: str) -> None:
    g = geometry(DRAWINGS[key])
    assert g.labels and len(g.labels) == len(g.arrows)  # every arrow has its label
    assert problems(g) == []


def test_the_check_sees_an_overlap() -> None:
    """The twin: the layout before this test put each label halfway along a sloped arrow. Its
    reverse proxy's three routes, as it drew them, fail the check."""
    svg = """<svg xmlns="http://www.w3.org/2000/svg" width="1270" height="294" font-size="12">
<line data-edge="0" x1="680" y1="50" x2="840" y2="128"/>
<text data-edge="0" x="760" y="85" text-anchor="middle" font-size="10">/api →</text>
<line data-edge="1" x1="680" y1="50" x2="840" y2="206"/>
<text data-edge="1" x="760" y="124" text-anchor="middle" font-size="10">/ws →</text>
<line data-edge="2" x1="680" y1="50" x2="840" y2="50"/>
<text data-edge="2" x="760" y="46" text-anchor="middle" font-size="10">/ →</text>
<rect data-box="redirect" x="430" y="118" width="250" height="62"/>
<text data-box="redirect" x="438" y="163" font-size="10">NOTE</text>
</svg>""".replace("NOTE", "plain, no TLS; answers 308 → https (proxy)")
    found = problems(geometry(svg))
    assert "label '/api →' lies on its own arrow" in found
    assert "label '/ws →' lies on its own arrow" in found
    assert any("does not fit in the box of redirect" in p for p in found)
    assert "label '/ →' lies on its own arrow" not in found  # level: clear of its line


@pytest.mark.browser
def test_chromium_lays_the_labels_out_apart_too() -> None:
    """The estimate is generous; this measures each text as Chromium draws it (getBBox) in the
    fonts of this machine."""
    from playwright.sync_api import sync_playwright

    from labkit import system
    from labkit.observe.browser import FLAGS

    exe = system.find_browser()
    if exe is None:
        pytest.skip("no Chromium")
    html = "".join(f'<div id="{k}">{svg}</div>' for k, svg in DRAWINGS.items())
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=exe, args=list(FLAGS))
        try:
            page = chromium.new_page()
            page.set_content(f"<!doctype html><html><body>{html}</body></html>")
            measured = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll(
              'body > div')].map(div => [div.id, [...div.querySelectorAll('text')].map(t => {
                const b = t.getBBox(); return [b.x, b.y, b.x + b.width, b.y + b.height]; })]))""")
        finally:
            chromium.close()
    bad = {k: problems(geometry(svg, [tuple(r) for r in measured[k]]))
           for k, svg in DRAWINGS.items()}
    assert {k: v for k, v in bad.items() if v} == {}
