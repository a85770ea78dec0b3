"""The web server: serves the chat page and its script. No external assets, inline favicon
(a favicon 404 would be noise in every browser console the lab shows).
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from ...errors import AssetMissingError
from ...model.topology import API_STEPS
from .store import RESPONSE_HEADERS, Store, lesson_headers

STEP_LABELS = {
    **{step: f"{method} {path}" + (f" ({'; '.join(f'{k}: {v}' for k, v in h.items())})"
                                    if h else "")
       for step, (method, h, path) in API_STEPS.items()},
    "socket": "open the chat WebSocket",
    "chat": "send a chat message",
    "steal": "read the chat history (attacker)",
    "sio": "socket.io: connect and chat",
    "script": "the page's script",
}

_CSS = """
body{font:15px/1.4 system-ui,sans-serif;margin:16px 20px;color:#222;background:#fafafa;width:640px}
h1{font-size:20px;margin:0 0 4px} .cfg{font:12px monospace;color:#555;margin:0 0 12px}
table{border-collapse:collapse;width:100%;background:#fff}
td{border-bottom:1px solid #ddd;padding:5px 8px;vertical-align:top}
td.state{font-weight:600;width:70px;text-transform:uppercase;font-size:12px}
tr[data-state=ok] td.state{color:#137333} tr[data-state=blocked] td.state{color:#c5221f}
tr[data-state=error] td.state{color:#b06000} tr[data-state=skipped] td.state{color:#888}
td.detail{font:12px monospace;color:#444;word-break:break-word}
#chatlog{font:13px monospace;background:#fff;border:1px solid #ddd;min-height:40px;
 margin:10px 0;padding:6px}
button{font-size:12px}
"""


#: The sandboxed page's relay: the steps run in a frame whose origin is opaque ("null"); the
#: frame reports each step, and the end, by postMessage, and this mirrors them into the table.
_RELAY = """<iframe id="sandbox" sandbox="allow-scripts" src="/?frame=1"
 style="width:100%;height:60px;border:1px dashed #c5221f"></iframe>
<script>
window.addEventListener("message", (ev) => {
  if (ev.source !== document.getElementById("sandbox").contentWindow) return;
  const m = ev.data || {};
  if (m.type === "labkit-done") { document.documentElement.dataset.done = "true"; return; }
  if (m.type !== "labkit-step") return;
  const tr = document.getElementById("step-" + m.step);
  if (!tr) return;
  tr.dataset.state = m.state;
  tr.querySelector(".state").textContent = m.state;
  tr.querySelector(".detail").textContent = m.detail || "";
});
</script>"""


def render_page(config: dict[str, Any], frame: bool = False) -> str:
    """The chat page. A ``sandboxed`` page is two documents: the top page (a table and the
    sandboxed frame, no script of its own), and the frame (``frame=True``), which runs the steps."""
    relay = config.get("sandboxed") and not frame
    rows = "\n".join(
        f'<tr class="step" id="step-{s}" data-state="pending"><td class="name">'
        f'{html.escape(STEP_LABELS[s])}</td><td class="state">pending</td>'
        f'<td class="detail"></td><td><button data-step="{s}">run</button></td></tr>'
        for s in config["steps"]
    )
    # "</" must not appear inside a <script> element; JSON allows escaping it as "<\/".
    cfg_json = json.dumps(config).replace("</", "<\\/")
    sio_tag = '<script src="/socket.io.min.js"></script>\n' if config.get("sio") else ""
    scripts = "" if relay else (f"<script>window.LABKIT_CONFIG = {cfg_json};</script>\n"
                                f'{sio_tag}<script src="/app.js"></script>')
    api = html.escape(str(config["api"])) if config["api"] is not None else "(none)"
    ws = html.escape(str(config["ws"])) if config["ws"] is not None else "(none)"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(config["title"])}</title>
<link rel="icon" href="data:,">
<style>{_CSS}</style>
{scripts}
</head><body>
<h1>{html.escape(config["title"])}</h1>
<p class="cfg">page <span id="page-origin"></span><br>api {api}<br>chat {ws}</p>
<table id="steps">{rows}</table>
<div id="chatlog"></div>
<form id="say"><input placeholder="say something" size="40"> <button>send</button>
<button type="button" id="run-all">run all steps</button></form>
{_RELAY if relay else ""}
<script>document.getElementById("page-origin").textContent = location.origin;</script>
</body></html>
"""


def _app_js() -> bytes:
    return (Path(__file__).parent.parent / "static" / "app.js").read_bytes()


def page_code(steps: list[str] | tuple[str, ...]) -> str:
    """The lines of the page's own script (static/app.js, read now, so never out of date) that
    make the calls of ``steps``: in each step's function the statement that calls, and the one
    line of the helper that calls the browser (``fetch(...)``, ``new WebSocket(url)``)."""
    text = _app_js().decode()
    out: list[str] = []
    helpers = {"callApi": "fetch(cfg.api", "openSocket": "ws = new WebSocket(url)"}
    used: set[str] = set()
    for step in steps:
        m = re.search(rf"^    async {re.escape(step)}\(\) {{\n(.*?)^    }},$", text, re.S | re.M)
        if m is None:
            continue
        lines = m.group(1).splitlines()
        start = next((i for i, ln in enumerate(lines)
                      if re.search(r"callApi\(|openSocket\(|= io\(", ln)), None)
        if start is None:
            continue
        end = start
        while lines[end].count("(") + sum(ln.count("(") for ln in lines[start:end]) > \
                lines[end].count(")") + sum(ln.count(")") for ln in lines[start:end]):
            end += 1
        out.append(f"// step {step}")
        out += [ln[6:] for ln in lines[start:end + 1]]
        for helper, needle in helpers.items():
            if helper + "(" in "\n".join(lines[start:end + 1]) and helper not in used:
                used.add(helper)
                line = next(ln.strip() for ln in text.splitlines() if needle in ln)
                out.append(f"//   {helper}(): {line}")
    return "\n".join(out)


def socketio_client_path() -> Path:
    """The real socket.io browser client, installed from the npm registry at set-up (package.json
    pins it; it is not copied into the repository)."""
    env = os.environ.get("LABKIT_SOCKETIO_JS")
    if env:
        return Path(env)
    root = Path(__file__).resolve().parents[3]  # labkit/serve/apps/web.py -> the checkout
    return root / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"


def check_socketio_client() -> Path:
    path = socketio_client_path()
    if not path.exists():
        raise AssetMissingError(str(path))
    return path


def make_app(name: str, store: Store, config: Callable[[], dict[str, Any]],
             headers: dict[str, str] | None = None) -> web.Application:
    """``config`` is called per request: the page must know the URLs of servers that were bound
    after this one, and an instructor may change the page between visits. ``headers`` go out
    with the page (HSTS, CSP)."""
    extra = dict(headers or {})
    script = _app_js()

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen = store.receive(name, request)
        try:
            resp: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:  # 404 and friends: record, then let aiohttp answer
            seen.status = exc.status
            raise
        seen.status = resp.status
        seen.response = lesson_headers(resp.headers, RESPONSE_HEADERS)
        return resp

    async def index(request: web.Request) -> web.Response:
        frame = request.query.get("frame") == "1"
        return web.Response(text=render_page(config(), frame=frame), content_type="text/html",
                            headers={"Cache-Control": "no-store", **extra})

    async def app_js(request: web.Request) -> web.Response:
        return web.Response(body=script, content_type="application/javascript",
                            headers={"Cache-Control": "no-store"})

    async def sio_js(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(check_socketio_client(),
                                headers={"Content-Type": "application/javascript"})

    app = web.Application(middlewares=[record], client_max_size=16 * 1024)
    app.add_routes([web.get("/", index), web.get("/app.js", app_js),
                    web.get("/socket.io.min.js", sio_js)])
    return app
