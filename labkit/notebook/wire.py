"""What travels on the wire: a loopback TCP tap that records every byte between a chat client and
the chat server, and a decoder for the WebSocket frames it saw.

Why ws:// is plain text is shown, not told: the same chat message captured over ws:// (readable)
and over wss:// (TLS records, unreadable). The frame decoder is written out here rather than taken
from websockets' sans-I/O parser because the notebook shows each header field (RFC 6455 §5.2).
"""

from __future__ import annotations

import asyncio
import html
import json
from dataclasses import dataclass, field

from .. import runtime
from ..lab import Lab, bind_loopback
from ..serve.apps.chat import ChatServer
from ..serve.apps.store import Store
from ..serve.clients import http_session, ws_connect
from ..serve.pki import LabPKI

OPCODES = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}


@dataclass(frozen=True)
class Frame:
    fin: bool
    opcode: int
    masked: bool
    length: int
    payload: bytes  # unmasked

    @property
    def kind(self) -> str:
        return OPCODES.get(self.opcode, f"opcode {self.opcode}")

    def __str__(self) -> str:
        if self.opcode == 8 and len(self.payload) >= 2:
            reason = self.payload[2:].decode("utf-8", "replace")
            body = f"close code {int.from_bytes(self.payload[:2], 'big')} {reason}".rstrip()
        else:
            body = self.payload[:80].decode("utf-8", "replace")
        return (f"FIN={int(self.fin)} opcode={self.opcode} ({self.kind}) MASK={int(self.masked)} "
                f"len={self.length}: {body}")


def parse_frames(data: bytes) -> list[Frame]:
    """Decode consecutive WebSocket frames (RFC 6455 §5.2); stops at an incomplete one."""
    frames, i = [], 0
    while i + 2 <= len(data):
        b0, b1 = data[i], data[i + 1]
        fin, opcode, masked, n = bool(b0 & 0x80), b0 & 0x0F, bool(b1 & 0x80), b1 & 0x7F
        j = i + 2
        if n == 126:
            n, j = int.from_bytes(data[j:j + 2], "big"), j + 2
        elif n == 127:
            n, j = int.from_bytes(data[j:j + 8], "big"), j + 8
        key = data[j:j + 4] if masked else b""
        j += len(key)
        if j + n > len(data):
            break
        raw = data[j:j + n]
        # Client-to-server frames are masked (§5.3) — against cache poisoning, not eavesdroppers:
        # the key travels right in front of the payload.
        payload = bytes(b ^ key[k % 4] for k, b in enumerate(raw)) if masked else raw
        frames.append(Frame(fin, opcode, masked, n, payload))
        i = j + n
    return frames


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
        colour = "#c5221f" if self.readable else "#137333"
        verdict = ("an eavesdropper reads the message" if self.readable
                   else "an eavesdropper sees only TLS records")
        return (f"<p><b>{self.scheme}://</b> — {len(self.to_server)} bytes to the server, "
                f"{len(self.to_client)} back — <b style='color:{colour}'>{verdict}</b></p>"
                f"<pre style='white-space:pre-wrap;font-size:11px'>"
                f"{html.escape(self.dump())}</pre>")


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
        return (f"{self.messages} chat updates by polling the API:   {self.polling_requests} "
                f"HTTP requests, each with full headers\n"
                f"{self.messages} chat updates over one WebSocket: {self.socket_handshakes} "
                f"HTTP handshake, then {self.socket_frames} small frames on the same connection")


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
