"""The raw harness speaks the protocol right: a correct handshake and
EXECUTE of aether.echo succeed over a raw socket. Every negative test in this
directory uses the same harness, so they cannot pass for the wrong reason."""

from __future__ import annotations

import os

import msgspec
from rawpeer import Arena, RawPeer

import aether_guard.schema
from aether import wire
from aether.schema import Registry, builtins as b, encode
from aether.wire import Status, Transport, messages as m


def test_raw_handshake_and_echo(svc):
    arena = Arena()
    try:
        with RawPeer(svc.path) as peer:
            hello = peer.handshake(arena)  # H1-H8
            assert hello.version == wire.PROTOCOL_VERSION
            assert hello.fingerprint == Registry.from_modules(aether_guard.schema).fingerprint()
            assert hello.transports & Transport.MEMORY

            st = svc.status()  # our raw session is a real, established session
            assert os.getpid() in [s.pid for s in st.session_list]

            for op_id, data in ((1, b"raw hello"), (2, os.urandom(3000))):
                status, header, payload = peer.execute(arena, op_id, 0x0003,
                                                       encode(b.Echo(data=data)))  # O1-O4
                assert status == Status.OK
                assert header.progress == 1000
                assert msgspec.msgpack.decode(payload) == data
                expected_param = wire.ParamHeader.for_payload(
                    op_id, 0x0003, encode(b.Echo(data=data))).pack()
                assert arena.param_bytes().startswith(expected_param)

            peer.send(m.Goodbye(0))
            assert isinstance(peer.recv(), m.ConnectionClosed)
        assert arena.canaries_intact()
    finally:
        arena.close()
    svc.assert_serving()
