"""Harness: the handshake and operation state machines (``aether.wire``).

A pair of protocol objects is driven to one of the points of the handshake
or an operation (``tests/wire/wire_helpers.POINTS``), then one side receives
a stream of hostile datagrams. Invariants: ``receive`` raises nothing but
ProtocolError; after it raised, the side is in ERROR (or was already
ERROR/CLOSED) and stays there: every later call raises LocalProtocolError
and changes nothing.
"""

from __future__ import annotations

try:
    from . import _paths
except ImportError:
    import _paths  # type: ignore[no-redef]  # noqa: F401

from wire_helpers import POINTS, reach

from aether import wire
from aether.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from aether.wire import State, messages as m


def _sticky(side: wire.ServiceProtocol | wire.ClientProtocol) -> None:
    state = side.state
    for call in (lambda: side.receive(wire.encode(m.Goodbye(0))), lambda: side.receive(b""),
                 lambda: side.send(m.Goodbye(0))):
        try:
            call()
        except LocalProtocolError:
            pass
        else:
            raise AssertionError(f"a call succeeded in {state}")
        assert side.state is state


def _chunks(data: bytes) -> list[bytes]:
    """Length-prefixed datagrams (one length byte each, at most 64 bytes)."""
    out, i = [], 0
    while i < len(data) and len(out) < 8:
        n = data[i] % 65
        out.append(data[i + 1:i + 1 + n])
        i += 1 + n
    return out


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    point = POINTS[data[0] % len(POINTS)]
    side = getattr(reach(*point), "service" if data[1] & 1 else "client")
    for datagram in _chunks(data[2:]):
        before = side.state
        try:
            side.receive(datagram)
        except ProtocolError as exc:
            if before in (State.ERROR, State.CLOSED):
                assert isinstance(exc, LocalProtocolError), exc
                assert side.state is before
            else:
                assert isinstance(exc, RemoteProtocolError), exc
                assert side.state is State.ERROR, side.state
            _sticky(side)
            return

