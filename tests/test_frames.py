"""labkit.model.frames, the one RFC 6455 §5.2 parser (the proxy's cursor and the wire view), checked
against frames serialised by websockets' sans-I/O implementation, a well-kept independent one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode

from labkit.model.frames import FrameCursor, parse_frames, parse_header

_OPS = [Opcode.CONT, Opcode.TEXT, Opcode.BINARY, Opcode.CLOSE, Opcode.PING, Opcode.PONG]
# Lengths around the 7-bit / 16-bit / 64-bit length encodings.
_SIZES = st.sampled_from([0, 1, 125, 126, 127, 65535, 65536, 70000]) | st.integers(0, 300)


@st.composite
def frames(draw: st.DrawFn) -> tuple[WsFrame, bool]:
    op = draw(st.sampled_from(_OPS))
    size = draw(_SIZES) if op in (Opcode.CONT, Opcode.TEXT, Opcode.BINARY) else draw(
        st.integers(2, 125))
    payload = (b"\x03\xe8" + b"x" * (size - 2)) if op == Opcode.CLOSE else b"y" * size
    fin = True if op in (Opcode.CLOSE, Opcode.PING, Opcode.PONG) else draw(st.booleans())
    return WsFrame(op, payload, fin=fin), draw(st.booleans())


@settings(max_examples=200, deadline=None)
@given(st.lists(frames(), min_size=1, max_size=5), st.data())
def test_the_parser_reads_what_websockets_writes(fs: list[tuple[WsFrame, bool]],
                                                 data: st.DataObject) -> None:
    wire = b"".join(f.serialize(mask=m) for f, m in fs)
    parsed = parse_frames(wire)
    assert [(p.fin, p.opcode, p.masked, p.payload) for p in parsed] == [
        (f.fin, int(f.opcode), m, f.data) for f, m in fs]
    # The cursor, fed the same bytes in arbitrary pieces, ends on a frame boundary and has seen
    # a close frame exactly when one went by.
    cursor = FrameCursor()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        assert cursor.feed(wire[a:b]) is None
    assert cursor.at_boundary
    assert cursor.closed == any(f.opcode == Opcode.CLOSE for f, _ in fs)


def test_an_oversized_frame_is_cut_before_its_header() -> None:
    small = WsFrame(Opcode.TEXT, b"ok").serialize(mask=True)
    big = WsFrame(Opcode.TEXT, b"z" * 2000).serialize(mask=True)
    cursor = FrameCursor(limit=1000)
    assert cursor.feed(small + big) == len(small)  # forward the small one, stop at the big one
    twin = FrameCursor(limit=5000)
    assert twin.feed(small + big) is None


def test_a_header_split_across_reads_waits_for_the_rest() -> None:
    h = WsFrame(Opcode.BINARY, b"q" * 70000).serialize(mask=True)
    assert parse_header(h[:5]) is None
    full = parse_header(h[:14])
    assert full is not None and (full.length, full.size, full.masked) == (70000, 14, True)
