"""Messages out of order, op ids that lie, and garbage datagrams (threats
T19, T21, T22; docs/protocol.md §2.3 decoding rules, §3 "the order is
strict", §4 op id rules, §8 state tables).

Every case: ERROR(PROTOCOL) and the close (or, for an empty datagram, just
the close), the service keeps serving, and this (attacker) process's blocks
and canary pages hold exactly what they held before the hostile message.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable, Iterator

import msgspec
import pytest
from rawpeer import Arena, RawPeer

import aether_guard.schema
from aether import wire
from aether.schema import builtins as b, encode, spec_of
from aether.wire import ErrorCode, Status, messages as m

ECHO = 0x0003
HASH_TREE = spec_of(aether_guard.schema.HashTree).code


@pytest.fixture
def arena() -> Iterator[Arena]:
    a = Arena()
    yield a
    a.close()


def _blocks(a: Arena) -> list[m.Event]:
    return [m.AddrParam(a.param, a.param_size), m.AddrRetn(a.retn, a.retn_size)]


# -- case 5: messages out of order during the handshake (H1-H8) ---------------------------
ME = os.getpid()
HANDSHAKE_ORDER: dict[str, Callable[[Arena], list[m.Event]]] = {
    "addr_param_before_client_pid": lambda a: _blocks(a),
    "addr_retn_first": lambda a: [m.AddrRetn(a.retn, a.retn_size)],
    "addr_retn_before_addr_param": lambda a: [m.ClientPid(ME), m.AddrRetn(a.retn, a.retn_size)],
    "ipc_test_first": lambda a: [m.IpcTest()],
    "ipc_test_before_blocks": lambda a: [m.ClientPid(ME), m.IpcTest()],
    "ipc_test_after_addr_param": lambda a: [m.ClientPid(ME), _blocks(a)[0], m.IpcTest()],
    "test_verified_first": lambda a: [m.TestVerified(0)],
    "test_verified_without_ipc_test": lambda a: [m.ClientPid(ME), *_blocks(a),
                                                 m.TestVerified(0)],
    "execute_first": lambda a: [m.Execute(1, 0)],
    "execute_after_blocks": lambda a: [m.ClientPid(ME), *_blocks(a), m.Execute(1, 0)],
    "cancel_first": lambda a: [m.Cancel(1)],
    "client_pid_twice": lambda a: [m.ClientPid(ME), m.ClientPid(ME)],
    "addr_param_twice": lambda a: [m.ClientPid(ME), _blocks(a)[0], _blocks(a)[0]],
    "socket_mode_after_client_pid": lambda a: [m.ClientPid(ME), m.SocketMode(4096)],
    "execute_inline_first": lambda a: [m.ExecuteInline(1, ECHO, b"")],
    # messages only the service may send
    "hello_from_client": lambda a: [m.Hello(1, 0, 0)],
    "test_done_from_client": lambda a: [m.TestDone(0)],
    "started_from_client": lambda a: [m.Started(1, int(Status.STARTED))],
    "progress_from_client": lambda a: [m.Progress(1, 10)],
    "done_from_client": lambda a: [m.Done(1, int(Status.OK))],
    "done_inline_from_client": lambda a: [m.DoneInline(1, int(Status.OK), b"")],
}


@pytest.mark.parametrize("case", sorted(HANDSHAKE_ORDER))
def test_handshake_out_of_order_is_protocol_error(svc, arena, case):
    with RawPeer(svc.path) as peer:
        peer.hello()
        for event in HANDSHAKE_ORDER[case](arena):
            peer.send(event)
        peer.expect_error(ErrorCode.PROTOCOL)  # (a)
    assert arena.holds_pattern() and arena.canaries_intact()  # (c) nothing written
    svc.assert_serving()  # (b)


def test_execute_before_test_verified_is_protocol_error(svc, arena):
    """H7 done, H8 skipped: the session is not ready for O1."""
    with RawPeer(svc.path) as peer:
        peer.hello()
        for event in [m.ClientPid(ME), *_blocks(arena), m.IpcTest()]:
            peer.send(event)
        assert peer.expect(m.TestDone).error == 0
        assert arena.holds_zeros()  # the verified client's own blocks, H6
        peer.send(m.Execute(1, 0))
        peer.expect_error(ErrorCode.PROTOCOL)
    assert arena.holds_zeros() and arena.canaries_intact()
    svc.assert_serving()


def _ready(svc, arena: Arena) -> RawPeer:
    """A session after a correct handshake and one successful op (id 1)."""
    peer = RawPeer(svc.path)
    peer.handshake(arena)
    status, _, data = peer.execute(arena, 1, ECHO, encode(b.Echo(data=b"first")))
    assert status == Status.OK and msgspec.msgpack.decode(data) == b"first"
    return peer


SESSION_ORDER: dict[str, Callable[[Arena], list[m.Event]]] = {
    "client_pid_again": lambda a: [m.ClientPid(ME)],
    "ipc_test_again": lambda a: [m.IpcTest()],
    "addr_retn_alone": lambda a: [m.AddrRetn(a.retn, a.retn_size)],
    "test_verified_again": lambda a: [m.TestVerified(0)],
    "execute_inline_on_memory": lambda a: [m.ExecuteInline(2, ECHO, encode(b.Echo()))],
    "socket_mode_now": lambda a: [m.SocketMode(4096)],
    "cancel_never_executed": lambda a: [m.Cancel(7)],
    "cancel_zero": lambda a: [m.Cancel(0)],
    "hello_from_client": lambda a: [m.Hello(1, 0, 0)],
    "done_from_client": lambda a: [m.Done(1, int(Status.OK))],
}


@pytest.mark.parametrize("case", sorted(SESSION_ORDER))
def test_session_out_of_order_is_protocol_error(svc, arena, case):
    with _ready(svc, arena) as peer:
        snapshot = (arena.param_bytes(), arena.retn_bytes())
        for event in SESSION_ORDER[case](arena):
            peer.send(event)
        peer.expect_error(ErrorCode.PROTOCOL)
    assert (arena.param_bytes(), arena.retn_bytes()) == snapshot  # (c) nothing written
    assert arena.canaries_intact()
    svc.assert_serving()


def test_late_cancel_is_ignored(svc, arena):
    """O5: a CANCEL for an op that already finished is not an error."""
    with _ready(svc, arena) as peer:
        peer.send(m.Cancel(1))
        status, _, data = peer.execute(arena, 2, ECHO, encode(b.Echo(data=b"second")))
        assert status == Status.OK and msgspec.msgpack.decode(data) == b"second"
    assert arena.canaries_intact()
    svc.assert_serving()


# -- case 6: op ids (T22; O1 "op id = last + 1") --------------------------------------------
OP_IDS = {
    "reused": (1, 1),  # (EXECUTE's op id, the header's op id)
    "skipped": (3, 3),
    "zero": (0, 0),
    "u64_max": ((1 << 64) - 1, (1 << 64) - 1),
    "header_says_other_id": (2, 1),
    "header_says_next_next": (2, 3),
}


@pytest.mark.parametrize("case", sorted(OP_IDS))
def test_bad_op_id_is_protocol_error(svc, arena, case):
    execute_id, header_id = OP_IDS[case]
    with _ready(svc, arena) as peer:
        payload = encode(b.Echo(data=b"again"))
        arena.write_params(header_id, ECHO, payload)
        snapshot = (arena.param_bytes(), arena.retn_bytes())
        peer.send(m.Execute(execute_id, len(payload)))
        peer.expect_error(ErrorCode.PROTOCOL)
    assert (arena.param_bytes(), arena.retn_bytes()) == snapshot  # the retn block: untouched
    assert arena.canaries_intact()
    svc.assert_serving()


def test_first_op_id_must_be_one(svc, arena):
    with RawPeer(svc.path) as peer:
        peer.handshake(arena)
        payload = encode(b.Echo(data=b"x"))
        arena.write_params(2, ECHO, payload)
        peer.send(m.Execute(2, len(payload)))
        peer.expect_error(ErrorCode.PROTOCOL)
    assert arena.retn_bytes() == bytes(arena.retn_size) and arena.canaries_intact()
    svc.assert_serving()


# -- case 10: garbage datagrams (§2.3) ------------------------------------------------------
def _header(code: int, flags: int = 0, reserved: int = 0, a: int = 0, b_: int = 0) -> bytes:
    return struct.pack("<HHIQQ", code, flags, reserved, a, b_)


MIB = 1 << 20
GARBAGE: dict[str, bytes] = {
    "truncated_10_bytes": _header(0x81, a=ME)[:10],
    "truncated_23_bytes": _header(0x81, a=ME)[:23],
    "one_byte": b"\x81",
    "unknown_code_0x42": _header(0x42),
    "unknown_code_0x00": _header(0x00),
    "unknown_code_0xffff": _header(0xFFFF),
    "unknown_code_in_range_0x87": _header(0x87),
    "reserved_field_set": _header(0x81, reserved=1, a=ME),
    "reserved_field_all_ones": _header(0x81, reserved=0xFFFFFFFF, a=ME),
    "flags_on_client_pid": _header(0x81, flags=1, a=ME),
    "tail_after_client_pid": _header(0x81, a=ME) + b"\0",
    "tail_after_ipc_test": _header(0x84) + b"x" * 100,
    "one_mib_client_pid": _header(0x81, a=ME) + os.urandom(MIB),
    "one_mib_error_tail": _header(0xAF, a=1) + b"e" * MIB,
    "one_mib_random": os.urandom(MIB),
    "one_mib_zeros": bytes(MIB),
}


def _big_sender(peer: RawPeer) -> None:
    """A send buffer that takes a 1 MiB datagram in one piece (root may force it)."""
    try:
        peer.sock.setsockopt(socket.SOL_SOCKET, 32, 4 * MIB)  # SO_SNDBUFFORCE
    except PermissionError:
        peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * MIB)


@pytest.mark.parametrize("when", ["handshake", "session"])
@pytest.mark.parametrize("case", sorted(GARBAGE))
def test_garbage_datagram_is_protocol_error(svc, arena, case, when):
    data = GARBAGE[case]
    peer = _ready(svc, arena) if when == "session" else RawPeer(svc.path)
    with peer:
        if when == "handshake":
            peer.hello()
        snapshot = (arena.param_bytes(), arena.retn_bytes())
        _big_sender(peer)
        assert peer.send_raw(data), "the datagram could not be sent"
        peer.expect_error(ErrorCode.PROTOCOL)
    assert (arena.param_bytes(), arena.retn_bytes()) == snapshot
    assert arena.canaries_intact()
    svc.assert_serving()


def test_empty_datagram_closes(svc, arena):
    """A zero-length datagram reads as the peer's close: the session ends."""
    with _ready(svc, arena) as peer:
        assert peer.send_raw(b"")
        assert peer.outcome() == ("closed", 0)
    assert arena.canaries_intact()
    svc.assert_serving()


def test_garbage_while_an_operation_runs(svc, arena, slow_tree):
    """A protocol error in RUNNING ends the session and cancels the handler;
    the worker thread does not outlive it (checked by the svc fixture)."""
    with RawPeer(svc.path) as peer:
        peer.handshake(arena)
        payload = encode({"root": str(slow_tree)})
        arena.write_params(1, HASH_TREE, payload)
        peer.send(m.Execute(1, len(payload)))
        assert peer.expect(m.Started).status == Status.STARTED
        peer.expect(m.Progress)
        peer.send_raw(_header(0x42))
        peer.expect_error(ErrorCode.PROTOCOL)
    header = wire.ReturnHeader.unpack(arena.retn_bytes()[:wire.HEADER_SIZE])
    assert header.status in (Status.STARTED, Status.CANCELLED)  # own block only
    assert arena.canaries_intact()
    svc.assert_serving()


# -- a client that ignores its own lock (O2 busy, T25) --------------------------------------
def _start_slow(peer: RawPeer, arena: Arena, tree) -> bytes:
    payload = encode({"root": str(tree)})
    arena.write_params(1, HASH_TREE, payload)
    peer.send(m.Execute(1, len(payload)))
    assert peer.expect(m.Started).status == Status.STARTED
    peer.expect(m.Progress)
    return arena.retn_bytes()


def test_execute_flood_while_running_is_busy_and_reads_nothing(svc, arena, slow_tree):
    """Second and later EXECUTEs while op 1 runs: each gets STARTED
    REJECTED_BUSY; the parameter block is not read for them and the return
    block keeps op 1's header; CANCEL ends op 1; the session goes on."""
    with RawPeer(svc.path) as peer:
        peer.handshake(arena)
        running = _start_slow(peer, arena, slow_tree)
        for op_id in range(2, 34):
            peer.send(m.Execute(op_id, 10**6))  # a length no block holds: never read
        for op_id in range(2, 34):
            event = peer.recv()
            while isinstance(event, m.Progress):
                event = peer.recv()
            assert event == m.Started(op_id, int(Status.REJECTED_BUSY)), event
        header = wire.ReturnHeader.unpack(arena.retn_bytes()[:wire.HEADER_SIZE])
        assert (header.op_id, header.status) == (1, Status.STARTED)
        assert arena.retn_bytes()[wire.HEADER_SIZE:] == running[wire.HEADER_SIZE:]
        peer.send(m.Cancel(1))
        event = peer.recv(5.0)
        while isinstance(event, m.Progress):
            event = peer.recv(5.0)
        assert event == m.Done(1, int(Status.CANCELLED)), event
        status, _, data = peer.execute(arena, 34, ECHO, encode(b.Echo(data=b"after")))
        assert status == Status.OK and msgspec.msgpack.decode(data) == b"after"
    assert arena.canaries_intact()
    svc.assert_serving()


@pytest.mark.parametrize("what", ["addr_param", "ipc_test", "client_pid"])
def test_reregistration_while_running_is_protocol_error(svc, arena, slow_tree, what):
    """O6 is allowed in IDLE only: blocks cannot be swapped under a running
    op (its result would go to the new ones). The op is cancelled and its
    worker ends (the svc fixture checks the threads)."""
    other = Arena()
    try:
        with RawPeer(svc.path) as peer:
            peer.handshake(arena)
            _start_slow(peer, arena, slow_tree)
            event = {"addr_param": m.AddrParam(other.param, other.param_size),
                     "ipc_test": m.IpcTest(), "client_pid": m.ClientPid(ME)}[what]
            peer.send(event)
            peer.expect_error(ErrorCode.PROTOCOL)
        assert other.holds_pattern() and other.canaries_intact()
        assert arena.canaries_intact()
    finally:
        other.close()
    svc.assert_serving()
