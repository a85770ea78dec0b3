"""What travels on the wire: a loopback TCP tap that records every byte between a chat client and
the chat server, and a decoder for the WebSocket frames it saw.

Why ws:// is plain text is shown, not told: the same chat message captured over ws:// (readable)
and over wss:// (TLS records, unreadable). Frames are decoded by labkit.model.frames, the parser
the proxy uses too, written out rather than taken from websockets' sans-I/O parser because the
notebook shows each header field (RFC 6455 §5.2).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from .. import runtime
from ..lab import Lab, bind_loopback
from ..model.frames import Frame, parse_frames
from ..serve.apps.chat import ChatServer
from ..serve.apps.store import Store
from ..serve.clients import http_session, ws_connect
from ..serve.pki import LabPKI
from . import display


@dataclass
class Capture:
    scheme: str
    secret: str
    to_server: bytes = b""
    to_client: bytes = b""
    events: list[str] = field(default_factory=list)

    @property
    def readable(self) -> bool:
        """Could an eavesdropper on the path read the chat message?"""
        return self.secret.encode() in self.to_server + self.to_client

    def handshake(self) -> tuple[str, str]:
        """The HTTP Upgrade request and the 101 response, as sent (only visible over ws://)."""
        req, _, _ = self.to_server.partition(b"\r\n\r\n")
        resp, _, _ = self.to_client.partition(b"\r\n\r\n")
        return req.decode("latin-1"), resp.decode("latin-1")

    def frames(self) -> tuple[list[Frame], list[Frame]]:
        """Frames client->server and server->client after the handshake (ws:// only)."""
        _, _, up = self.to_server.partition(b"\r\n\r\n")
        _, _, down = self.to_client.partition(b"\r\n\r\n")
        return parse_frames(up), parse_frames(down)

    def dump(self, limit: int = 320) -> str:
        """What the server sent after the handshake, as an eavesdropper sees it: printable
        ASCII, dots for the rest. (The server's frames are not masked: over ws:// they are the
        message itself.)"""
        data = self.to_client.partition(b"\r\n\r\n")[2][:limit] if self.scheme == "ws" \
            else self.to_client[:limit]
        return "".join(chr(b) if 32 <= b < 127 or b in (10, 13) else "·" for b in data)

    def __repr__(self) -> str:
        return (f"<Capture {self.scheme}:// {len(self.to_server)} bytes up, "
                f"{len(self.to_client)} bytes down, "
                f"message {'READABLE' if self.readable else 'not readable'}>")

    def _repr_html_(self) -> str:
        return display.capture_html(self)


class _Tap:
    """Relays one TCP connection to the target, recording both directions."""

    def __init__(self, target: tuple[str, int], cap: Capture) -> None:
        self.target, self.cap = target, cap

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(*self.target)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            try:
                while data := await src.read(65536):
                    if up:
                        self.cap.to_server += data
                    else:
                        self.cap.to_client += data
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_w, True), pipe(up_r, writer, False))


async def _acapture(tls: bool, secret: str, pki: LabPKI) -> Capture:
    cap = Capture("wss" if tls else "ws", secret)
    store = Store()
    chat = ChatServer("chat", store)
    chat_sock = bind_loopback("localhost", 0, "chat")
    chat_port = chat_sock.getsockname()[1]
    await chat.start(chat_sock, pki.server_context("lab") if tls else None)
    tap_sock = bind_loopback("localhost", 0, "tap")
    tap = await asyncio.start_server(_Tap(("127.0.0.1", chat_port), cap).handle, sock=tap_sock)
    port = tap_sock.getsockname()[1]
    try:
        url = f"{cap.scheme}://localhost:{port}/ws"
        async with ws_connect(url, pki, compression=None) as ws:  # no deflate: bytes as typed
            await ws.send(json.dumps({"type": "join", "room": "general"}))
            cap.events.append(await ws.recv())  # type: ignore[arg-type]
            await ws.send(json.dumps({"type": "say", "text": secret}))
            cap.events.append(await ws.recv())  # type: ignore[arg-type]
        await asyncio.sleep(0.05)  # let the closing frames through the tap
    finally:
        tap.close()
        await tap.wait_closed()
        await chat.stop()
    return cap


def capture(tls: bool = False, secret: str = "meet me at 6", pki: LabPKI | None = None) -> Capture:
    """Send one chat message through a tap and return what the tap saw."""
    return runtime.run(_acapture(tls, secret, (pki or LabPKI()).ensure()))




@dataclass(frozen=True)
class PollingComparison:
    messages: int
    polling_requests: int
    socket_handshakes: int
    socket_frames: int

    def __repr__(self) -> str:
        return (f"{self.messages} polls of the API:               {self.polling_requests} "
                f"HTTP requests, each with full headers (a real client polls on a timer: many "
                f"more requests than updates)\n"
                f"{self.messages} chat messages over one WebSocket: {self.socket_handshakes} "
                f"HTTP handshake, then {self.socket_frames} small frames for the messages and "
                f"their echoes (plus join, history and close) on the same connection")


def polling_vs_socket(lab: Lab, n: int = 10) -> PollingComparison:
    """Get ``n`` chat updates twice — by polling the API, and over one WebSocket — and count
    what the servers saw."""

    async def go() -> PollingComparison:
        before = len(lab.requests())
        async with http_session(lab.pki) as session:
            for _ in range(n):
                async with session.get(lab.url("api", "/api/history?room=general")) as r:
                    await r.read()
        polled = [s for s in lab.requests()[before:] if s["service"] == "api"]
        before = len(lab.requests())
        frames = 0
        async with ws_connect(lab.url("chat"), lab.pki) as ws:
            await ws.send(json.dumps({"type": "join", "room": "general"}))
            await ws.recv()
            for i in range(n):
                await ws.send(json.dumps({"type": "say", "text": f"update {i}"}))
                await ws.recv()
                frames += 2
        shakes = [s for s in lab.requests()[before:] if s["service"] == "chat"]
        return PollingComparison(n, len(polled), len(shakes), frames)

    return runtime.run(go())


__all__ = ["Capture", "Frame", "PollingComparison", "capture", "parse_frames", "polling_vs_socket"]
