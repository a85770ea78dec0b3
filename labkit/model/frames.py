"""Following a WebSocket byte stream without decoding it (RFC 6455 §5.2), for the proxy's splice.

After the upgrade, labkit's proxy copies bytes as nginx does — no per-frame decode and re-encode.
To still close sockets properly it must know where frames begin: a :class:`FrameCursor` follows the
frame headers of one direction (skipping payloads without buffering them), notices a close frame,
and stops a frame whose announced size is over the limit before its payload is forwarded.
"""

from __future__ import annotations

import os


def _header_size(h: bytes) -> int | None:
    """Size of the frame header at the start of ``h``, or None if ``h`` is too short to tell."""
    if len(h) < 2:
        return None
    ln = h[1] & 0x7F
    size = 2 + (2 if ln == 126 else 8 if ln == 127 else 0) + (4 if h[1] & 0x80 else 0)
    return size if len(h) >= size else None


def _payload_size(h: bytes) -> int:
    ln = h[1] & 0x7F
    if ln == 126:
        return int.from_bytes(h[2:4], "big")
    if ln == 127:
        return int.from_bytes(h[2:10], "big")
    return ln


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
        i, n = 0, len(data)
        while i < n:
            if self.need:
                step = min(self.need, n - i)
                self.need -= step
                i += step
                continue
            start = i - len(self.head)
            header = self.head + data[i:i + 14]
            size = _header_size(header)
            if size is None:  # the rest of data is the beginning of a header
                self.head = header
                return None
            i += size - len(self.head)
            self.head = b""
            if header[0] & 0x0F == 8:
                self.closed = True
            length = _payload_size(header)
            if self.limit is not None and length > self.limit:
                return max(start, 0)
            self.need = length
        return None


def close_frame(code: int, reason: str = "", *, masked: bool) -> bytes:
    """A complete close frame. Frames a client sends are masked (§5.3), a server's are not."""
    payload = code.to_bytes(2, "big") + reason.encode()[:123]
    if not masked:
        return bytes([0x88, len(payload)]) + payload
    key = os.urandom(4)
    return bytes([0x88, 0x80 | len(payload)]) + key + bytes(
        b ^ key[i % 4] for i, b in enumerate(payload))
