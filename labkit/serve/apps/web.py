"""The web server: serves the chat page and its script. No external assets, inline favicon
(a favicon 404 would be noise in every browser console the lab shows).
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from ...errors import AssetMissingError
from ...model.topology import API_STEPS
from .store import Seen, Store

STEP_LABELS = {
    **{step: f"{method} {path}" + (f" ({h['Content-Type']})" if h else "")
       for step, (method, h, path) in API_STEPS.items()},
    "socket": "open the chat WebSocket",
    "chat": "send a chat message",
    "steal": "read the chat history (attacker)",
    "sio": "socket.io: connect and chat",
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


def render_page(config: dict[str, Any]) -> str:
    rows = "\n".join(
        f'<tr class="step" id="step-{s}" data-state="pending"><td class="name">'
        f'{html.escape(STEP_LABELS[s])}</td><td class="state">pending</td>'
        f'<td class="detail"></td><td><button data-step="{s}">run</button></td></tr>'
        for s in config["steps"]
    )
    # "</" must not appear inside a <script> element; JSON allows escaping it as "<\/".
    cfg_json = json.dumps(config).replace("</", "<\\/")
    sio_tag = '<script src="/socket.io.min.js"></script>\n' if config.get("sio") else ""
    api = html.escape(str(config["api"])) if config["api"] is not None else "(none)"
    ws = html.escape(str(config["ws"])) if config["ws"] is not None else "(none)"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(config["title"])}</title>
<link rel="icon" href="data:,">
<style>{_CSS}</style>
<script>window.LABKIT_CONFIG = {cfg_json};</script>
{sio_tag}<script src="/app.js"></script>
</head><body>
<h1>{html.escape(config["title"])}</h1>
<p class="cfg">page <span id="page-origin"></span><br>api {api}<br>chat {ws}</p>
<table id="steps">{rows}</table>
<div id="chatlog"></div>
<form id="say"><input placeholder="say something" size="40"> <button>send</button>
<button type="button" id="run-all">run all steps</button></form>
<script>document.getElementById("page-origin").textContent = location.origin;</script>
</body></html>
"""


def _app_js() -> bytes:
    return (Path(__file__).parent.parent / "static" / "app.js").read_bytes()


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


def make_app(name: str, store: Store, config: Callable[[], dict[str, Any]]) -> web.Application:
    """``config`` is called per request: the page must know the URLs of servers that were bound
    after this one, and an instructor may change the page between visits."""
    script = _app_js()

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen = Seen(name, request.method, request.path_qs, request.headers.get("Origin"),
                    request.headers.get("Sec-Fetch-Site"))
        store.record(seen)
        try:
            resp: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:  # 404 and friends: record, then let aiohttp answer
            seen.status = exc.status
            raise
        seen.status = resp.status
        return resp

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=render_page(config()), content_type="text/html",
                            headers={"Cache-Control": "no-store"})

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
