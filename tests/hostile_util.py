"""Raw-wire helpers for the hostile-input suite (tests/test_hostile.py).

Clients normalise or refuse exactly the malformed things these tests must send (``..`` segments,
NUL bytes, a request line without a version, an unmasked-by-hand frame with broken UTF-8), so the
requests here are bytes on an ``asyncio`` stream: TLS with the lab CA and the right server name
where the listener speaks TLS, plain TCP otherwise. Only 127.0.0.1 is ever contacted.

``Bystanders`` are the well-behaved chat clients that stay connected while a case runs: they chat
before, during and after it, and must end up with every message, once, in the same order.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from websockets.exceptions import ConnectionClosed, InvalidStatus

from labkit import Lab
from labkit.serve.clients import http_session, ws_connect

#: Exceptions that mean "the server closed or reset the connection" on plain TCP and on TLS.
GONE = (ConnectionError, OSError, ssl.SSLError, asyncio.IncompleteReadError, EOFError)
ANSWER_TIMEOUT = 10.0


# -- listeners -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Listener:
    """One listening socket of a running lab, as a hostile client sees it."""

    id: str
    lab: Lab
    service: str
    kind: str  # web | api | chat | proxy | redirect
    port: int
    tls: bool
    host: str  # the name clients use: TLS server name and Host header
    chat_origin: str | None  # the Origin the chat behind this listener accepts (None: any)

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ok_path(self) -> str:
        """A path this listener answers normally (200, 308 or 101)."""
        return {"web": "/", "api": "/api/hello", "proxy": "/api/hello", "redirect": "/hello",
                "chat": "/ws"}[self.kind]

    @property
    def ok_status(self) -> int:
        return {"redirect": 308, "chat": 101}.get(self.kind, 200)

    def request(self, *, line: str | None = None, extra: str = "", host: bool = True,
                method: str = "GET", path: str | None = None, body_headers: str = "") -> bytes:
        """The listener's normal request (for chat: a valid WebSocket upgrade), optionally with
        its request line replaced, extra header lines added, or no Host. latin-1 keeps every byte
        (NUL, CR, 0xff) exactly as written."""
        target = self.ok_path if path is None else path
        head = line if line is not None else f"{method} {target} HTTP/1.1"
        lines = [head]
        if host:
            lines.append(f"Host: {self.hostport}")
        if self.kind == "chat" or (self.kind == "proxy" and target.startswith("/ws")):
            lines += ["Upgrade: websocket", "Connection: Upgrade",
                      f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
                      "Sec-WebSocket-Version: 13"]
            if self.chat_origin:
                lines.append(f"Origin: {self.chat_origin}")
        else:
            lines.append("Connection: close")
        text = "\r\n".join(lines) + "\r\n" + extra + body_headers + "\r\n"
        return text.encode("latin-1")


# -- raw HTTP ------------------------------------------------------------------------------------
@dataclass
class Reply:
    """What came back: an HTTP status (None: the server closed without an HTTP answer)."""

    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    raw: bytes = b""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __repr__(self) -> str:
        what = f"HTTP {self.status}" if self.status is not None else "closed without an answer"
        return f"<{what} {self.raw[:120]!r}>"


async def open_raw(lst: Listener, *, tls: bool | None = None
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    use_tls = lst.tls if tls is None else tls
    ctx = lst.lab.pki.client_context() if use_tls else None
    return await asyncio.wait_for(asyncio.open_connection(
        "127.0.0.1", lst.port, ssl=ctx, server_hostname=lst.host if use_tls else None,
        limit=1024 * 1024), ANSWER_TIMEOUT)


async def close_quietly(writer: asyncio.StreamWriter) -> None:
    """Close a test client's connection; a server that already hung up (or a TLS shutdown it
    cut short) is not the test's failure."""
    writer.close()
    try:
        await writer.wait_closed()
    except (OSError, ssl.SSLError):
        pass


def hang_up(writer: asyncio.StreamWriter) -> None:
    """Drop our side at once (no TLS close_notify dance that could wait on a hostile peer)."""
    writer.transport.abort()


async def _write_all(writer: asyncio.StreamWriter, chunks: Sequence[bytes]) -> None:
    """Write until done or until the server hangs up on us (which is a fine answer here)."""
    for chunk in chunks:
        if writer.transport.is_closing():
            return
        try:
            writer.write(chunk)
            await writer.drain()
        except GONE:
            return


async def read_reply(reader: asyncio.StreamReader) -> Reply:
    """One HTTP response (Content-Length, chunked, or to EOF), or the fact that the server
    closed without one."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        return Reply(None, raw=e.partial)
    except asyncio.LimitOverrunError:
        return Reply(None, raw=b"<an endless header block>")
    except GONE:
        return Reply(None)
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return Reply(None, raw=head)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, sep, v = line.partition(":")
        if sep:
            headers[k.strip().lower()] = v.strip()
    status = int(parts[1])
    body = b""
    try:
        if status == 101 or status in (204, 304):
            pass
        elif "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await reader.readexactly(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
        else:
            body = await reader.read()
    except asyncio.IncompleteReadError as e:
        body += e.partial
    except GONE:
        pass
    return Reply(status, headers, body, head + body)


async def exchange(lst: Listener, data: bytes | Sequence[bytes], *, tls: bool | None = None,
                   timeout: float = ANSWER_TIMEOUT) -> Reply:
    """Send ``data`` (written while the answer is read, so a server that answers early and hangs
    up is seen answering) and return the first answer. A server that neither answers nor closes
    within ``timeout`` fails the test: a hostile client must never park a connection for free."""
    try:
        reader, writer = await open_raw(lst, tls=tls)
    except GONE:
        return Reply(None)  # e.g. a TLS handshake refused: closed before any HTTP
    chunks = [data] if isinstance(data, bytes) else list(data)
    sender = asyncio.ensure_future(_write_all(writer, chunks))
    try:
        return await asyncio.wait_for(read_reply(reader), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(
            f"{lst.id} neither answered nor closed within {timeout:.0f} s") from None
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, *GONE):
            await sender
        hang_up(writer)


def refused(reply: Reply) -> bool:
    """A correct refusal: a 4xx answer, or a closed connection."""
    return reply.status is None or 400 <= reply.status < 500


# -- raw WebSocket -------------------------------------------------------------------------------
def frame(opcode: int, payload: bytes, *, fin: bool = True, length: int | None = None) -> bytes:
    """A client frame, masked as RFC 6455 §5.3 requires. ``length`` lies about the payload size
    in the header (the payload sent is still ``payload``)."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes([b0, 0x80 | n])
    elif n < 1 << 16:
        head = bytes([b0, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, 0x80 | 127]) + n.to_bytes(8, "big")
    key = os.urandom(4)
    mask = (key * (len(payload) // 4 + 1))[:len(payload)]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(
        len(payload), "big") if payload else b""
    return head + key + masked


TEXT, BINARY, CONT, CLOSE = 0x1, 0x2, 0x0, 0x8


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One server frame (servers never mask)."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    return b0 & 0x0F, await reader.readexactly(n)


@contextlib.asynccontextmanager
async def ws_raw(lst: Listener) -> AsyncIterator[tuple[asyncio.StreamReader,
                                                       asyncio.StreamWriter]]:
    """A WebSocket on ``lst`` opened by hand (a valid upgrade, the accepted Origin), for sending
    frames exactly as built."""
    reader, writer = await open_raw(lst)
    try:
        writer.write(lst.request(path="/ws"))
        reply = await asyncio.wait_for(read_reply(reader), ANSWER_TIMEOUT)
        assert reply.status == 101, f"{lst.id}: handshake refused: {reply!r}"
        yield reader, writer
    finally:
        hang_up(writer)


async def send_frames(writer: asyncio.StreamWriter, frames: Sequence[bytes]) -> None:
    writer.write(b"".join(frames))
    with contextlib.suppress(*GONE):
        await writer.drain()


async def next_frame(lst: Listener, reader: asyncio.StreamReader, want: int,
                     timeout: float = ANSWER_TIMEOUT) -> tuple[int, bytes] | None:
    """The next frame with opcode ``want`` (a close frame always ends the wait); None when the
    server dropped the connection without a close frame."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            opcode, payload = await asyncio.wait_for(
                read_frame(reader), max(0.1, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise AssertionError(f"{lst.id}: no frame {want:#x} within {timeout:.0f} s "
                                 f"(the socket stayed open)") from None
        except GONE:
            return None
        if opcode in (want, CLOSE):
            return opcode, payload


async def ws_raw_close_code(lst: Listener, frames: Sequence[bytes]) -> tuple[int | None, str]:
    """Send ``frames`` as they are on a fresh socket and return the close code and reason the
    server answers with (None: it dropped the connection without a close frame)."""
    async with ws_raw(lst) as (reader, writer):
        await send_frames(writer, frames)
        got = await next_frame(lst, reader, CLOSE)
        if got is None:
            return None, "dropped without a close frame"
        payload = got[1]
        with contextlib.suppress(*GONE):  # finish the closing handshake
            writer.write(frame(CLOSE, payload[:2]))
            await writer.drain()
        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
        return code, payload[2:].decode("utf-8", "replace")


# -- normal clients ------------------------------------------------------------------------------
async def serves(lst: Listener) -> None:
    """The next, well-behaved client gets its normal answer (through labkit's own clients)."""
    if lst.kind == "chat":
        await _chat_works(lst.lab.url(lst.service), lst.lab, lst.chat_origin)
        return
    url = lst.lab.origin(lst.service) + lst.ok_path
    timeout = aiohttp.ClientTimeout(total=ANSWER_TIMEOUT)
    async with http_session(lst.lab.pki) as s, \
            s.get(url, allow_redirects=False, timeout=timeout) as r:
        body = await r.read()
        assert r.status == lst.ok_status, f"{lst.id}: {r.status} {body[:200]!r}"
        if lst.kind == "redirect":
            target = lst.lab.topology.service(lst.service).target
            assert target is not None
            assert r.headers["Location"] == lst.lab.origin(target) + lst.ok_path, r.headers
    if lst.kind == "proxy":  # the WebSocket route too
        await _chat_works(lst.lab.ws_url(lst.service), lst.lab, lst.chat_origin)


async def _chat_works(url: str, lab: Lab, origin: str | None) -> None:
    async with _connect(url, lab, origin) as ws:
        await ws.send(json.dumps({"type": "join", "room": "hostile-probe"}))
        msg = json.loads(await asyncio.wait_for(ws.recv(), ANSWER_TIMEOUT))
        assert msg["type"] == "history", msg


def _connect(url: str, lab: Lab, origin: str | None, **kw: Any) -> Any:
    # "localhost" could resolve to ::1 first, where nothing listens: connect to 127.0.0.1, keep
    # the URL's name for the Host header and TLS.
    return ws_connect(url, lab.pki, host="127.0.0.1", origin=origin, open_timeout=ANSWER_TIMEOUT,
                      **kw)


async def ws_status(url: str, lab: Lab, origin: str | None) -> int:
    """The HTTP status of a WebSocket handshake (101 when it opened)."""
    try:
        async with _connect(url, lab, origin):
            return 101
    except InvalidStatus as e:
        return e.response.status_code


async def ws_close_code(url: str, lab: Lab, origin: str | None, message: str | bytes
                        ) -> int | None:
    """Send one message through websockets and return the close code the server answers with."""
    async with _connect(url, lab, origin, max_size=None) as ws:
        await ws.send(message)
        with contextlib.suppress(ConnectionClosed):
            while True:  # the chat server may answer an error text first
                await asyncio.wait_for(ws.recv(), ANSWER_TIMEOUT)
        return ws.close_code


class Bystanders:
    """Two well-behaved chat clients in a room of their own, chatting before, during and after a
    case. ``endpoints``: (url, Origin) of each. On a clean exit both must still be open and have
    received every message sent, exactly once, in the same order, each sender's in send order."""

    def __init__(self, lab: Lab, endpoints: Sequence[tuple[str, str | None]]) -> None:
        self.lab = lab
        self.endpoints = list(endpoints)
        self.room = f"hostile-{uuid.uuid4().hex[:12]}"
        self.clients: list[Any] = []
        self.got: list[list[dict[str, Any]]] = [[] for _ in self.endpoints]
        self.sent: list[list[str]] = [[] for _ in self.endpoints]
        self._tasks: list[asyncio.Task[None]] = []
        self._chatter: asyncio.Task[None] | None = None
        self._stopping = False

    async def __aenter__(self) -> Bystanders:
        try:
            for url, origin in self.endpoints:
                ws = await _connect(url, self.lab, origin)
                self.clients.append(ws)
                await ws.send(json.dumps({"type": "join", "room": self.room}))
                joined = json.loads(await asyncio.wait_for(ws.recv(), ANSWER_TIMEOUT))
                assert joined["type"] == "history", joined
            for i, ws in enumerate(self.clients):
                self._tasks.append(asyncio.ensure_future(self._read(i, ws)))
            await self.round("before")
            self._chatter = asyncio.ensure_future(self._chat_meanwhile())
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        try:
            if self._chatter is not None:
                # A flag, not cancel(): a send cancelled half-way would count as a lost message.
                self._stopping = True
                try:
                    await asyncio.wait_for(self._chatter, ANSWER_TIMEOUT)
                except ConnectionClosed as e:
                    if exc_type is None:
                        raise AssertionError(f"a bystander was disconnected mid-case: {e}"
                                             ) from None
            if exc_type is None:
                await self.round("after")
                self.check()
        finally:
            await self._close()

    async def _close(self) -> None:
        for ws in self.clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _read(self, i: int, ws: Any) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                msg = json.loads(raw)
                if msg.get("type") == "message":
                    self.got[i].append(msg)

    async def say(self, i: int, text: str) -> None:
        self.sent[i].append(text)
        await self.clients[i].send(json.dumps({"type": "say", "text": text}))

    async def round(self, tag: str) -> None:
        for i in range(len(self.clients)):
            await self.say(i, f"{tag}-{i}-{len(self.sent[i])}")
        total = sum(map(len, self.sent))
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while any(len(g) < total for g in self.got):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"bystanders lost chat messages: sent {total}, received "
                    f"{[len(g) for g in self.got]}; close codes "
                    f"{[ws.close_code for ws in self.clients]}")
            await asyncio.sleep(0.01)

    async def _chat_meanwhile(self) -> None:
        n = 0
        while not self._stopping:
            await asyncio.sleep(0.05)
            if self._stopping:
                return
            await self.say(n % len(self.clients), f"during-{n % len(self.clients)}-{n}")
            n += 1

    def check(self) -> None:
        closed = [ws.close_code for ws in self.clients if ws.close_code is not None]
        assert not closed, f"a bystander was disconnected: {closed}"
        texts = [[m["text"] for m in g] for g in self.got]
        assert all(t == texts[0] for t in texts), "bystanders saw different orders"
        seqs = [m["seq"] for m in self.got[0]]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
        everything = sorted(t for s in self.sent for t in s)
        assert sorted(texts[0]) == everything, "a chat message was lost or duplicated"
        for i, mine in enumerate(self.sent):
            prefix = (f"before-{i}-", f"during-{i}-", f"after-{i}-")
            assert [t for t in texts[0] if t.startswith(prefix)] == mine, f"client {i} reordered"
