"""WebSocket frames (RFC 6455 §5.2): one header parser, whole frames for the notebook's wire view,
and a cursor that follows a byte stream without decoding it, for the proxy's splice.

After the upgrade, labkit's proxy copies bytes as nginx does — no per-frame decode and re-encode.
To still close sockets properly it must know where frames begin: a :class:`FrameCursor` follows the
frame headers of one direction (skipping payloads without buffering them), notices a close frame,
and stops a frame whose announced size is over the limit before its payload is forwarded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

OPCODES = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}


@dataclass(frozen=True)
class Header:
    """A frame header (RFC 6455 §5.2): the one parser both the proxy's cursor and the notebook's
    wire view use."""

    fin: bool
    opcode: int
    masked: bool
    length: int  # payload length
    size: int  # header length in bytes, mask key included
    key: bytes  # the masking key, b"" when not masked


def parse_header(h: bytes) -> Header | None:
    """The frame header at the start of ``h``, or None if ``h`` is too short to hold it."""
    if len(h) < 2:
        return None
    b0, b1 = h[0], h[1]
    ln = b1 & 0x7F
    ext = 2 if ln == 126 else 8 if ln == 127 else 0
    masked = bool(b1 & 0x80)
    size = 2 + ext + (4 if masked else 0)
    if len(h) < size:
        return None
    length = int.from_bytes(h[2:2 + ext], "big") if ext else ln
    return Header(bool(b0 & 0x80), b0 & 0x0F, masked, length, size,
                  bytes(h[2 + ext:size]) if masked else b"")


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
    """Decode consecutive whole frames (RFC 6455 §5.2); stops at an incomplete one."""
    frames, i = [], 0
    while (h := parse_header(data[i:i + 14])) is not None and i + h.size + h.length <= len(data):
        raw = data[i + h.size:i + h.size + h.length]
        # Client-to-server frames are masked (§5.3) — against cache poisoning, not eavesdroppers:
        # the key travels right in front of the payload.
        payload = bytes(b ^ h.key[k % 4] for k, b in enumerate(raw)) if h.masked else raw
        frames.append(Frame(h.fin, h.opcode, h.masked, h.length, payload))
        i += h.size + h.length
    return frames


class FrameCursor:
    """Where the frames of one direction begin. ``feed`` returns None, or — when a frame announces
    a payload over ``limit`` — the offset in ``data`` up to which bytes may still be forwarded."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.need = 0  # payload bytes of the current frame still to come
        self.head = b""  # a frame header split across reads
        self.closed = False  # a close frame went by

    @property
    def at_boundary(self) -> bool:
        return self.need == 0 and not self.head

    def feed(self, data: bytes) -> int | None:
        n = len(data)
        if not self.need and not self.head and n >= 2 and data[1] & 0x7F < 126:
            # The common case, one small whole frame per read (a chat message), without the
            # general walk below: the relay's cost per message is measured against nginx's.
            length = data[1] & 0x7F
            if 2 + (4 if data[1] & 0x80 else 0) + length == n \
                    and (self.limit is None or length <= self.limit):
                if data[0] & 0x0F == 8:
                    self.closed = True
                return None
        i = 0
        while i < n:
            if self.need:
                step = min(self.need, n - i)
                self.need -= step
                i += step
                continue
            start = i - len(self.head)
            header = self.head + data[i:i + 14]
            h = parse_header(header)
            if h is None:  # the rest of data is the beginning of a header
                self.head = header
                return None
            i += h.size - len(self.head)
            self.head = b""
            if h.opcode == 8:
                self.closed = True
            if self.limit is not None and h.length > self.limit:
                return max(start, 0)
            self.need = h.length
        return None


def close_frame(code: int, reason: str = "", *, masked: bool) -> bytes:
    """A complete close frame. Frames a client sends are masked (§5.3), a server's are not."""
    payload = code.to_bytes(2, "big") + reason.encode()[:123]
    if not masked:
        return bytes([0x88, len(payload)]) + payload
    key = os.urandom(4)
    return bytes([0x88, 0x80 | len(payload)]) + key + bytes(
        b ^ key[i % 4] for i, b in enumerate(payload))
