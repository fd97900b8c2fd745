"""The parameter block lies (threats T11, T14, T16-T18, T20; docs/protocol.md
O1: "reads header and payload once ... checks only that copy"; O2: strict
decoding, REJECTED_* statuses; §7 payload encoding).

Header lies (length, crc, reserved) are fatal: ERROR(PROTOCOL) and the
close. Payload lies (malformed or hostile MessagePack, pickle, an unknown op
code) are rejections: the status goes into the return block with STARTED,
and the session stays usable.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from rawpeer import Arena, RawPeer

import aether_guard.schema
from aether import wire
from aether.schema import ErrorInfo, builtins as b, encode, spec_of
from aether.wire import ErrorCode, Status, messages as m

ECHO = 0x0003
HASH_TREE = spec_of(aether_guard.schema.HashTree).code


@pytest.fixture
def arena() -> Iterator[Arena]:
    a = Arena()
    yield a
    a.close()


# -- header lies: fatal --------------------------------------------------------------------
def _capacity(a: Arena) -> int:
    return a.param_size - wire.HEADER_SIZE


HEADER_LIES = {
    # (EXECUTE length, header length, crc override, reserved) relative to a real payload
    "execute_length_over_block": lambda a, n: (_capacity(a) + 1, _capacity(a) + 1, None, 0),
    "execute_length_u64_max": lambda a, n: ((1 << 64) - 1, n, None, 0),
    "header_length_over_block": lambda a, n: (n, _capacity(a) + 1, None, 0),
    "header_length_u32_max": lambda a, n: (n, 0xFFFFFFFF, None, 0),
    "header_length_differs_shorter": lambda a, n: (n, n - 1, None, 0),
    "header_length_differs_longer": lambda a, n: (n - 1, n, None, 0),
    "bad_crc": lambda a, n: (n, n, 0xDEADBEEF, 0),
    "crc_of_nothing": lambda a, n: (n, n, 0, 0),
    "reserved_set": lambda a, n: (n, n, None, 1),
}


@pytest.mark.parametrize("case", sorted(HEADER_LIES))
def test_lying_parameter_header_is_protocol_error(svc, arena, case):
    payload = encode(b.Echo(data=b"liar"))
    execute_len, header_len, crc, reserved = HEADER_LIES[case](arena, len(payload))
    with RawPeer(svc.path) as peer:
        peer.handshake(arena)
        arena.write_params(1, ECHO, payload, length=header_len, crc=crc, reserved=reserved)
        snapshot = arena.param_bytes()
        peer.send(m.Execute(1, execute_len))
        peer.expect_error(ErrorCode.PROTOCOL)  # (a)
    assert arena.param_bytes() == snapshot  # (c) param block never written
    assert arena.retn_bytes() == bytes(arena.retn_size)  # no status: the op never started
    assert arena.canaries_intact()
    svc.assert_serving()  # (b)


# -- payload lies: rejected, the session goes on -------------------------------------------
class _Gadget:
    """Unpickling calls open(path, "w"): creates the marker file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.path), "w")


def _nested(depth: int) -> bytes:
    return b"\x91" * depth + b"\xc0"  # fixarray(1) ... nil


PAYLOAD_LIES = {
    # (op code, payload, expected status)
    "malformed_msgpack": (ECHO, b"\xc1\xc1\xc1", Status.REJECTED_BAD_PARAMS),
    "truncated_map": (ECHO, b"\x81\xa4data", Status.REJECTED_BAD_PARAMS),
    "bin32_claims_4_gib": (ECHO, b"\x81\xa4data\xc6\xff\xff\xff\xf0abc",
                           Status.REJECTED_BAD_PARAMS),
    "array32_claims_4g_elements": (HASH_TREE, b"\xdd\xff\xff\xff\xff",
                                   Status.REJECTED_BAD_PARAMS),
    "wrong_field_type": (ECHO, encode({"data": 12345}), Status.REJECTED_BAD_PARAMS),
    "wrong_root_type": (HASH_TREE, encode({"root": ["/"]}), Status.REJECTED_BAD_PARAMS),
    "missing_required_field": (HASH_TREE, encode({}), Status.REJECTED_BAD_PARAMS),
    "bad_literal": (HASH_TREE, encode({"root": "/", "algorithm": "md5"}),
                    Status.REJECTED_BAD_PARAMS),
    "nesting_bomb": (ECHO, _nested(15_000), Status.REJECTED_BAD_PARAMS),
    "nesting_bomb_in_list": (HASH_TREE, b"\x81\xa4root" + _nested(15_000),
                             Status.REJECTED_BAD_PARAMS),
    "empty_payload": (HASH_TREE, b"", Status.REJECTED_BAD_PARAMS),
    "ext_type": (ECHO, b"\xd4\x01\x00", Status.REJECTED_BAD_PARAMS),
    "unknown_op_code": (0x7777, encode({"data": b""}), Status.REJECTED_UNKNOWN_OP),
    "unknown_op_code_u32_max": (0xFFFFFFFF, b"", Status.REJECTED_UNKNOWN_OP),
    "op_code_zero": (0, b"", Status.REJECTED_UNKNOWN_OP),
}


def _rejected_then_usable(svc, arena: Arena, op_code: int, payload: bytes,
                          want: Status) -> ErrorInfo:
    with RawPeer(svc.path) as peer:
        peer.handshake(arena)
        status, _, data = peer.execute(arena, 1, op_code, payload)
        assert status == want, (Status(status).name, data)  # via STARTED (O2)
        assert isinstance(peer.events[-1], m.Started)
        info = msgspec.msgpack.decode(data, type=ErrorInfo)
        assert info.message
        # the session stays usable: the next op id works
        status, _, data = peer.execute(arena, 2, ECHO, encode(b.Echo(data=b"still here")))
        assert status == Status.OK and msgspec.msgpack.decode(data) == b"still here"
    assert arena.canaries_intact()
    return info


@pytest.mark.parametrize("case", sorted(PAYLOAD_LIES))
def test_bad_payload_is_rejected_and_session_stays_usable(svc, arena, case):
    op_code, payload, want = PAYLOAD_LIES[case]
    _rejected_then_usable(svc, arena, op_code, payload, want)
    svc.assert_serving()


@pytest.mark.parametrize("op_code", [ECHO, HASH_TREE, 0x7777])
def test_pickle_payload_is_never_unpickled(svc, arena, tmp_path, op_code):
    """T16: the seed's BinaryFormatter executes code on decode; a pickle whose
    __reduce__ creates a file is rejected as bad params (or an unknown op) and
    the file never appears."""
    control = tmp_path / "control-marker"
    with pickle.loads(pickle.dumps(_Gadget(control))):  # the gadget works here...
        pass
    assert control.exists()
    marker = tmp_path / "marker"
    for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
        payload = pickle.dumps(_Gadget(marker), protocol=protocol)
        want = Status.REJECTED_UNKNOWN_OP if op_code == 0x7777 else Status.REJECTED_BAD_PARAMS
        _rejected_then_usable(svc, arena, op_code, payload, want)
        assert not marker.exists()  # ...and was never run by the service
        arena.close()
        arena = Arena()
    arena.close()
    svc.assert_serving()


def test_payload_changed_after_execute_is_not_reread(svc, arena):
    """T14 double fetch: the service copies header+payload once; rewriting
    the block after EXECUTE cannot change what was checked or decoded."""
    with RawPeer(svc.path) as peer:
        peer.handshake(arena)
        for op_id in (1, 2, 3):
            payload = encode(b.Echo(data=b"A" * 64))
            arena.write_params(op_id, ECHO, payload)
            peer.send(m.Execute(op_id, len(payload)))
            # swap the payload (same length, crc now wrong) as fast as we can
            arena.write_params(op_id, ECHO, encode(b.Echo(data=b"B" * 64)),
                               crc=wire.crc32(payload))
            event = peer.recv()
            if isinstance(event, m.Error):  # read after the swap: crc mismatch, fatal
                assert event.error == ErrorCode.PROTOCOL
                assert peer.outcome() == ("closed", 0)
                break
            assert isinstance(event, m.Done) and event.status == Status.OK
            _, data = arena.read_return()
            assert msgspec.msgpack.decode(data) == b"A" * 64  # what was checked is used
    assert arena.canaries_intact()
    svc.assert_serving()


def test_bytes_after_the_declared_length_are_not_read(svc, arena):
    """Bytes after the declared length are never read (no over-read into the rest)."""
    payload = encode(b.Echo(data=b"exact"))
    with RawPeer(svc.path) as peer:
        peer.handshake(arena)
        arena.write_params(1, ECHO, payload + b"\xc1" * 100)  # header covers all of it...
        arena.write_params(1, ECHO, payload)  # ...then the real header; tail stays garbage
        assert arena.param_bytes()[wire.HEADER_SIZE + len(payload)] == 0xC1
        peer.send(m.Execute(1, len(payload)))
        event = peer.recv()
        assert isinstance(event, m.Done) and event.status == Status.OK
        _, data = arena.read_return()
        assert msgspec.msgpack.decode(data) == b"exact"
    assert arena.canaries_intact()
    svc.assert_serving()
