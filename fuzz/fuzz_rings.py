"""Harness: the mapping transport's rings (``aether.wire.rings``), as the
service reads a request ring and writes a reply ring whose indices and bytes
a hostile client controls.

Invariants for any ring content and any scribbled index:
- the reader returns frames of the request kinds whose payload lies inside
  the ring, or None, or raises RemoteProtocolError; after an error the
  session would end, so the harness stops there;
- the reader's tail only grows and never passes the published head;
- the writer, given a scribbled consumer tail, raises only
  RemoteProtocolError or RingFull, and never writes outside the ring.
"""

from __future__ import annotations

import struct

try:
    from . import _paths
except ImportError:
    import _paths  # type: ignore[no-redef]  # noqa: F401

from aether.errors import RemoteProtocolError
from aether.wire import FrameKind, rings

RING = 4096


def _region(data: bytes) -> tuple[memoryview, bytearray]:
    ctl = memoryview(bytearray(rings.CONTROL_BYTES)).cast("Q")
    rings.init_control(ctl, RING)
    ring = bytearray(RING)
    ring[: len(data)] = data[:RING]
    return ctl, ring


def _read(data: bytes, head: int) -> None:
    ctl, ring = _region(data)
    ctl[rings.W_REQ_HEAD] = head
    reader = rings.request_reader(ctl, memoryview(ring))
    last_tail = 0
    for _ in range(16):
        try:
            frame = reader.poll()
        except RemoteProtocolError:
            return
        if frame is None:
            return
        kind, _op_id, _arg, payload = frame
        assert kind in (FrameKind.EXECUTE, FrameKind.CANCEL), kind
        assert len(payload) <= RING
        payload.release()
        reader.release()
        assert last_tail <= reader.tail <= head, (last_tail, reader.tail, head)
        last_tail = reader.tail


def _write(data: bytes, tail: int) -> None:
    ctl, ring = _region(b"")
    guard = bytes(ring)
    ctl[rings.W_REP_TAIL] = tail
    writer = rings.reply_writer(ctl, memoryview(ring))
    payload = data[:3000]
    try:
        writer.put(int(FrameKind.DONE), 1, 0, payload)
    except (RemoteProtocolError, rings.RingFull):
        assert bytes(ring) == guard, "a refused write changed the ring"
        return
    assert writer.head <= tail + RING


def one_input(data: bytes) -> None:
    if len(data) < 9:
        return
    (index,) = struct.unpack_from("<Q", data, 1)
    if data[0] & 1:
        _read(data[9:], index)
    else:
        _write(data[9:], index)
