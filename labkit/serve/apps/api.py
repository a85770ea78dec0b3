"""The main API server (aiohttp): login, rooms, history and a counter that shows side effects.

Its CORS behaviour is whatever the topology's :class:`CorsPolicy` says, including the broken
policies the lessons need (see ``cors.py`` for why the headers are decided by hand).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from ...model.cors import CorsPolicy, is_preflight, response_headers
from ...model.policy import LAB_DOMAIN
from .store import (
    RESPONSE_HEADERS,
    ROOMS,
    SESSION_COOKIE,
    Store,
    forwarded,
    lesson_headers,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Small on purpose: the API takes tiny JSON bodies; anything bigger is refused with 413.
MAX_BODY = 64 * 1024


def make_app(
    name: str,
    store: Store,
    policy: CorsPolicy,
    allowed_origins: Sequence[str],
    cookie_samesite: str = "Lax",
    *,
    https_only: bool = False,
) -> web.Application:
    """Build the API app. ``allowed_origins`` is the policy's allow-list resolved to origins
    (service names in the policy become origins once the lab has bound its ports)."""
    allowed = tuple(allowed_origins)

    @web.middleware
    async def cors_and_record(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        seen = store.receive(name, request, user=store.user_for(request.headers.get("Cookie")),
                             forwarded=forwarded(request.headers))
        if https_only and not _came_over_https(request):
            # "Force HTTPS", as frameworks do it: whatever the API believes came over plain http
            # goes to https. It knows only its own socket and what a proxy tells it. (No CORS
            # headers on it: a cross-origin page sees a CORS error, not the loop.)
            seen.status = 308
            location = f"https://{request.host}{request.path_qs}"
            seen.response = {"Location": location}
            return web.Response(status=308, headers={"Location": location})
        preflight = is_preflight(request.method, request.headers)
        if preflight and not policy.preflight:
            # The misconfiguration of the story: the route exists for GET/POST only, and the
            # 405 carries no CORS headers at all.
            seen.status = 405
            seen.response = {}
            return web.json_response({"error": "method OPTIONS not allowed"}, status=405)
        if preflight:
            resp: web.StreamResponse = web.Response(status=204)
        else:
            try:
                resp = await handler(request)
            except web.HTTPException as exc:
                # An error the browser may read too (CORS applies to 404s): same headers.
                exc.headers.update(response_headers(policy, origin, allowed, preflight))
                seen.status = exc.status
                seen.response = lesson_headers(exc.headers, RESPONSE_HEADERS)
                raise
        resp.headers.update(response_headers(policy, origin, allowed, preflight))
        seen.status = resp.status
        seen.response = lesson_headers(resp.headers, RESPONSE_HEADERS)
        if resp.cookies:  # still in the cookie jar until the response is sent
            seen.response["Set-Cookie"] = ", ".join(
                lesson_headers({"Set-Cookie": m.OutputString()}, ("Set-Cookie",))["Set-Cookie"]
                for m in resp.cookies.values())
        return resp

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"service": "api", "message": "hello from the API"})

    async def login(request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text() or "{}")
            user = str(body.get("user", "")).strip()[:32]
        except (ValueError, AttributeError):
            return web.json_response({"error": "send JSON like {\"user\": \"alice\"}"}, status=400)
        if not user:
            return web.json_response({"error": "user is required"}, status=400)
        token = store.login(user)
        resp = web.json_response({"user": user, "logged_in": True})
        # SameSite=Lax (today's browser default): sent on same-site requests, and every port of
        # localhost is the same site. On lab names the session is scoped to the whole lab.test
        # domain, as a company's single sign-on cookie is for .example.com: that is what lets a
        # sibling page (evil.lab.test) ride on it in the hijacking lesson.
        host = (request.host or "").rsplit(":", 1)[0]
        domain = LAB_DOMAIN if host.endswith("." + LAB_DOMAIN) else None
        # Behind labkit's TLS proxy the backend speaks plain HTTP on loopback; the proxy says
        # the browser's side was https, so the cookie must still be Secure.
        secure = _came_over_https(request)
        resp.set_cookie(SESSION_COOKIE, token, path="/", httponly=True, secure=secure,
                        samesite=cookie_samesite, domain=domain)
        return resp

    async def whoami(request: web.Request) -> web.Response:
        return web.json_response({"user": store.user_for(request.headers.get("Cookie"))})

    async def rooms(request: web.Request) -> web.Response:
        return web.json_response({"rooms": list(ROOMS)})

    async def history(request: web.Request) -> web.Response:
        room = request.query.get("room", "general")
        if room not in store.history:
            return web.json_response({"error": f"no room {room!r}"}, status=404)
        return web.json_response({"room": room, "messages": list(store.history[room])})

    async def counter_get(request: web.Request) -> web.Response:
        return web.json_response({"counter": store.counter})

    async def counter_post(request: web.Request) -> web.Response:
        # Any body, any content type: a text/plain POST is a "simple" request, sent without a
        # preflight, so this side effect happens even when the browser hides the answer.
        await request.read()
        store.counter += 1
        return web.json_response({"counter": store.counter})

    app = web.Application(middlewares=[cors_and_record], client_max_size=MAX_BODY)
    app.add_routes([
        web.get("/api/hello", hello),
        web.post("/api/login", login),
        web.get("/api/whoami", whoami),
        web.get("/api/rooms", rooms),
        web.get("/api/history", history),
        web.get("/api/counter", counter_get),
        web.post("/api/counter", counter_post),
    ])
    return app


def _came_over_https(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto") == "https"
