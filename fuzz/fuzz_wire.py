"""Harness: control messages and block headers (``aether.wire``).

Invariants checked for any input (the service's view of hostile bytes):
- ``decode(datagram)`` returns an event or raises RemoteProtocolError, and
  what it returns re-encodes to a datagram that decodes to the same event;
- a 32-byte parameter/return header unpacks or raises RemoteProtocolError;
  what unpacks packs back to the same bytes;
- ``check_block``/``check_pair`` never raise, and a block they accept is
  non-empty, page-aligned, within the limit and does not wrap; two accepted
  blocks do not overlap.
"""

from __future__ import annotations

import struct

try:
    from . import _paths
except ImportError:  # run as a script
    import _paths  # type: ignore[no-redef]  # noqa: F401

from aether import wire
from aether.errors import RemoteProtocolError
from aether.wire import BlockSpec, ErrorCode, ParamHeader, ReturnHeader

PAGE = 4096
MAX_BLOCK = 16 << 20
U64 = (1 << 64) - 1


def _datagram(data: bytes) -> None:
    try:
        event = wire.decode(data)
    except RemoteProtocolError:
        return
    again = wire.encode(event)
    assert wire.decode(again) == event, (data, event)


def _headers(raw: bytes) -> None:
    for cls in (ParamHeader, ReturnHeader):
        try:
            header = cls.unpack(raw)
        except RemoteProtocolError:
            assert raw[24:32] != bytes(8), "refused a header whose reserved field is zero"
            continue
        assert header.pack() == raw, (cls.__name__, raw.hex())


def _blocks(raw: bytes) -> None:
    a1, s1, a2, s2 = struct.unpack("<QQQQ", raw)
    accepted = []
    for spec in (BlockSpec(a1, s1), BlockSpec(a2, s2)):
        code, text = wire.check_block(spec, page_size=PAGE, max_size=MAX_BLOCK)
        if code == ErrorCode.NONE:
            assert wire.HEADER_SIZE < spec.size <= MAX_BLOCK, spec
            assert spec.address and spec.address % PAGE == 0 and spec.size % PAGE == 0, spec
            assert spec.address + spec.size <= U64, spec
            accepted.append(spec)
        else:
            assert text, spec
    if len(accepted) == 2:
        p, r = accepted
        code, _ = wire.check_pair(p, r)
        overlap = p.address < r.address + r.size and r.address < p.address + p.size
        assert (code != ErrorCode.NONE) == overlap, (p, r)


def one_input(data: bytes) -> None:
    """The first byte picks what the rest is fed to."""
    if not data:
        return
    mode, rest = data[0] % 3, data[1:]
    if mode == 0:
        _datagram(rest)
    elif mode == 1:
        _headers((rest + bytes(32))[:32])
    else:
        _blocks((rest + bytes(32))[:32])

