"""The socket transport under a hostile raw client (threats T16-T20, T22):
payloads inside the control socket's datagrams (docs/protocol.md S1).

The memory transport's versions of these cases are in
tests/hostile/test_hostile_params.py; here the payload rides in
EXECUTE_INLINE. Bad parameters are a rejection (the session goes on); a
datagram larger than the negotiated maximum, or out of order, is a protocol
error. The service is never harmed and serves others within 1 s.
"""

from __future__ import annotations

import os
import pickle
import socket

import msgspec
import pytest
from rawpeer import RawPeer

from aether import wire
from aether.schema import builtins as b, encode
from aether.schema.params import spec_of
from aether.wire import ErrorCode, Status, messages as m
from aether_guard.schema import HashTree

ECHO = 0x0003
HASH_TREE = spec_of(HashTree).code  # guard.hash_tree, whatever its number
MAX = 64 * 1024


def _socket_session(svc) -> RawPeer:
    peer = RawPeer(svc.path)
    peer.hello()
    peer.send(m.SocketMode(MAX))
    done = peer.expect(m.TestDone)
    assert done.error == 0
    peer.send(m.TestVerified(0))
    return peer


def _call(peer: RawPeer, op_id: int, op_code: int, payload: bytes) -> tuple[int, bytes]:
    peer.send(m.ExecuteInline(op_id, op_code, payload))
    while True:
        event = peer.recv()
        if isinstance(event, m.DoneInline):
            assert event.op_id == op_id
            return event.status, event.payload
        assert isinstance(event, m.Started | m.Progress), event


class _Gadget:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


BAD = {
    "malformed": (ECHO, b"\xc1\xc1"),
    "bin32_claims_4_gib": (ECHO, b"\x81\xa4data\xc6\xff\xff\xff\xf0abc"),
    "array32_claims_4g_elements": (HASH_TREE, b"\xdd\xff\xff\xff\xff"),
    "nesting_bomb": (ECHO, b"\x91" * 15_000 + b"\xc0"),
    "ext_type": (ECHO, b"\xd4\x01\x00"),
    "unknown_op": (0x7777, b""),
}


@pytest.mark.parametrize("case", [*sorted(BAD), "pickle"])
def test_bad_inline_payload_is_rejected_and_session_stays_usable(svc, tmp_path, case):
    marker = tmp_path / "unpickled"
    op_code, payload = (ECHO, pickle.dumps(_Gadget(str(marker)))) if case == "pickle" \
        else BAD[case]
    with _socket_session(svc) as peer:
        status, data = _call(peer, 1, op_code, payload)
        want = Status.REJECTED_UNKNOWN_OP if case == "unknown_op" else Status.REJECTED_BAD_PARAMS
        assert status == want, (Status(status).name, data[:80])
        status, data = _call(peer, 2, ECHO, encode(b.Echo(data=b"still here")))
        assert status == Status.OK and msgspec.msgpack.decode(data) == b"still here"
    assert not marker.exists()
    svc.assert_serving()


@pytest.mark.parametrize("case", ["over_negotiated_max", "op_id_reused", "op_id_skipped",
                                  "memory_message_on_socket"])
def test_socket_transport_protocol_violations(svc, case):
    with _socket_session(svc) as peer:
        if case == "over_negotiated_max":
            try:
                peer.sock.setsockopt(socket.SOL_SOCKET, 32, 4 << 20)  # SO_SNDBUFFORCE
            except PermissionError:
                pass
            big = encode(b.Echo(data=os.urandom(MAX + 1024)))
            data = wire.encode(m.ExecuteInline(1, ECHO, b"")) + big  # crafted: a tail too long
            assert peer.send_raw(data)
        elif case == "op_id_reused":
            assert _call(peer, 1, ECHO, encode(b.Echo(data=b"1")))[0] == Status.OK
            peer.send(m.ExecuteInline(1, ECHO, encode(b.Echo(data=b"again"))))
        elif case == "op_id_skipped":
            peer.send(m.ExecuteInline(5, ECHO, encode(b.Echo(data=b"skip"))))
        else:
            peer.send(m.AddrParam(0x7F00_0000_0000, 1 << 16))
        peer.expect_error(ErrorCode.PROTOCOL)
    svc.assert_serving()
