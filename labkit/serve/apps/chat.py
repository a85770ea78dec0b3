"""The chat server (websockets): rooms, history, broadcast to every member in order.

Protocol (JSON text frames)::

    client -> {"type": "join", "room": "general"}
    server -> {"type": "history", "room": "general", "user": "alice", "messages": [...]}
    client -> {"type": "say", "text": "hi"}
    server -> {"type": "message", "room": "general", "user": "alice", "text": "hi", "seq": 7}
              (to every member of the room, the sender included)

The user comes from the API's session cookie when the handshake carries one — which is exactly
what makes cross-site WebSocket hijacking pay off for an attacker (RFC 6455 §10.2).
The ``Origin`` allow-list is the websockets library's own ``origins=`` check: the fix the lab
teaches is the one a participant would write.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
from collections.abc import Sequence
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .store import REQUEST_HEADERS, RESPONSE_HEADERS, Seen, Store, forwarded, lesson_headers

#: Largest accepted message; bigger frames close the connection with 1009 (message too big).
MAX_MESSAGE = 64 * 1024
PATHS = ("/ws", "/")


class ChatServer:
    def __init__(self, name: str, store: Store, origins: Sequence[str] | None = None) -> None:
        self.name = name
        self.store = store
        self.origins = list(origins) if origins is not None else None
        self.rooms: dict[str, set[ServerConnection]] = {}
        self.log = logging.getLogger(f"labkit.{name}")
        self.server: Server | None = None

    async def start(self, sock: socket.socket, ssl_context: ssl.SSLContext | None) -> None:
        self.server = await serve(
            self.handler,
            sock=sock,
            ssl=ssl_context,
            origins=self.origins,  # type: ignore[arg-type]
            process_request=self._process_request,
            process_response=self._process_response,
            max_size=MAX_MESSAGE,
            logger=self.log,
            server_header="labkit-chat",
            # A client that opens TCP (or TLS) and never completes the handshake is dropped.
            open_timeout=10,
            ssl_handshake_timeout=10 if ssl_context else None,
        )

    def abort(self) -> None:
        """Drop every connection without a close frame, as a crashed server would."""
        if self.server is not None:
            for conn in list(self.server.connections):
                conn.transport.abort()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close(close_connections=True)
            try:
                # A client still in its opening handshake holds wait_closed() for open_timeout;
                # the listener is closed already and that client dies on its own deadline.
                await asyncio.wait_for(self.server.wait_closed(), 0.5)
            except asyncio.TimeoutError:
                pass
            self.server = None

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if len(request.headers.get_all("Host")) != 1:
            # RFC 6455 §4.2.1 / RFC 9112 §3.2: exactly one Host, or 400.
            return connection.respond(400, "a WebSocket handshake needs exactly one Host header\n")
        path = request.path.split("?", 1)[0]
        if path not in PATHS:
            return connection.respond(404, f"no WebSocket endpoint at {path}; use /ws\n")
        return None

    def _process_response(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> None:
        h: Headers = request.headers
        self.store.record(Seen(self.name, "GET", request.path, h.get("Origin"),
                               h.get("Sec-Fetch-Site"), status=response.status_code, kind="ws",
                               user=self.store.user_for(h.get("Cookie")),
                               forwarded=forwarded(h),
                               request=lesson_headers(h, REQUEST_HEADERS),
                               response=lesson_headers(response.headers, RESPONSE_HEADERS)))

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        user = self.store.user_for(ws.request.headers.get("Cookie")) or "guest"
        room: str | None = None
        try:
            async for raw in ws:
                try:
                    msg: dict[str, Any] = json.loads(raw)
                    kind = msg.get("type")
                except (ValueError, AttributeError):
                    await ws.send(json.dumps({"type": "error", "error": "send JSON objects"}))
                    continue
                if kind == "join":
                    if room is not None:
                        self.rooms.get(room, set()).discard(ws)
                    room = str(msg.get("room", "general"))[:32]
                    self.rooms.setdefault(room, set()).add(ws)
                    # History is private to members with a session (the API's login cookie).
                    history = list(self.store.history.get(room, ())) if user != "guest" else []
                    await ws.send(json.dumps(
                        {"type": "history", "room": room, "user": user, "messages": history}))
                elif kind == "say" and room is not None:
                    text = str(msg.get("text", ""))[:2000]
                    out = self.store.post(room, user, text)
                    # broadcast() writes to every member synchronously in one loop step, so all
                    # members see messages in the same order the server accepted them.
                    broadcast(self.rooms.get(room, set()), json.dumps(out))
                else:
                    await ws.send(json.dumps({"type": "error", "error": "join a room first"}))
        except ConnectionClosed:
            pass
        finally:
            if room is not None:
                self.rooms.get(room, set()).discard(ws)
