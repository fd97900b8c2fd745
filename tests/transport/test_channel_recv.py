"""The control channel receives each datagram at its own size: asking the
kernel for the session's largest message (16 MiB) made CPython allocate
that much for every 24-byte message (a fresh mapping, faulted and unmapped
again), which cost the service a fifth of its CPU per call."""

from __future__ import annotations

import socket
import tracemalloc

from hypothesis import given, settings, strategies as st

from aether.transport.channel import Channel

MiB = 1 << 20


def _pair(max_datagram: int) -> tuple[Channel, socket.socket]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    return Channel(a, max_datagram=max_datagram), b


def test_small_messages_cost_small_buffers() -> None:
    chan, peer = _pair(16 * MiB + 25)
    try:
        tracemalloc.start()
        try:
            for i in range(100):
                peer.send(i.to_bytes(24, "little"))
                assert chan.recv(1.0) == i.to_bytes(24, "little")
            _now, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < MiB, f"receiving 24-byte messages peaked at {peak} bytes"
    finally:
        chan.close()
        peer.close()


@settings(max_examples=60, deadline=None)
@given(size=st.integers(min_value=1, max_value=3000),
       limit=st.integers(min_value=1, max_value=2000))
def test_a_datagram_over_the_limit_is_marked_never_shortened(size: int, limit: int) -> None:
    chan, peer = _pair(limit)
    try:
        data = bytes(range(256)) * (size // 256) + bytes(size % 256)
        peer.send(data)
        peer.send(b"next")
        got = chan.recv(1.0)
        if size <= limit:
            assert got == data
        else:  # one byte too long, so the protocol rejects it
            assert got == data[:limit] + b"\0"
        assert chan.recv(1.0, spin=0.001) == b"next"[:limit] + (b"\0" if limit < 4 else b"")
    finally:
        chan.close()
        peer.close()


def test_peer_closing_is_an_empty_read() -> None:
    chan, peer = _pair(64)
    peer.close()
    try:
        assert chan.recv(1.0) == b""
    finally:
        chan.close()
