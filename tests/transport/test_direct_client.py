"""The client's short path on the memory and socket transports
(``Client._call_direct``) against a service that answers wrongly.

The short path returns a result only for a DONE / DONE_INLINE of status OK
for the operation in flight, with a return block that checks out and a
result that decodes. Anything else must end exactly as on the general path:
an unknown outcome for a broken reply, an ``OperationError`` for a refusal or
an undecodable result, never a value. The fake service here speaks the
protocol through ``wire.ServiceProtocol`` on a real socket and writes the
client's return block through ``/proc/<pid>/mem``, as a real one does.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import msgspec
import pytest

import aether
from aether import osapi, wire
from aether.errors import AetherError, AetherTimeoutError, OperationError, OutcomeUnknownError
from aether.schema import ErrorInfo, builtins as b
from aether.wire import ReturnHeader, Status, Transport, messages as m

GOOD = msgspec.msgpack.encode(b"echoed")
UNDECODABLE = b"\xc1"  # a byte msgpack never uses


def _fake_service(path: Path, case: str) -> threading.Thread:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(path))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(10)
        proto = wire.ServiceProtocol(fingerprint=0,
                                     transports=Transport.MEMORY | Transport.SOCKET)
        conn.send(proto.hello())
        memory: osapi.ProcessMemory | None = None
        blocks: dict[str, tuple[int, int]] = {}
        try:
            while True:
                data = conn.recv(1 << 16)
                if not data:
                    return
                event = proto.receive(data)
                if isinstance(event, m.ClientPid):
                    memory = osapi.ProcessMemory(event.pid)
                elif isinstance(event, m.AddrParam):
                    blocks["param"] = (event.address, event.size)
                elif isinstance(event, m.AddrRetn):
                    blocks["retn"] = (event.address, event.size)
                elif isinstance(event, m.IpcTest):
                    assert memory is not None
                    for address, size in blocks.values():
                        memory.register(osapi.Region(address, size))
                        memory.write(address, bytes(size))
                    conn.send(proto.send(m.TestDone(0)))
                elif isinstance(event, m.SocketMode):
                    conn.send(proto.send(m.TestDone(0)))
                elif isinstance(event, m.Execute):
                    assert memory is not None
                    _answer_in_block(conn, proto, memory, blocks["retn"][0], event.op_id, case)
                elif isinstance(event, m.ExecuteInline):
                    _answer_inline(conn, proto, event.op_id, case)
                elif isinstance(event, m.Goodbye | m.ConnectionClosed):
                    return
        except (OSError, AetherError):  # the client left first
            return
        finally:
            conn.close()
            listener.close()
            if memory is not None:
                memory.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def _answer_in_block(conn: socket.socket, proto: wire.ServiceProtocol,
                     memory: osapi.ProcessMemory, retn: int, op_id: int, case: str) -> None:
    if case == "inline-done-on-memory":
        # A result riding the socket, too long for a memory session's channel:
        # it arrives cut, and must not be taken for a result.
        long = msgspec.msgpack.encode(b"z" * 9000)
        conn.send(m.encode(m.DoneInline(op_id, int(Status.OK), long)))
        return
    payload = UNDECODABLE if case == "undecodable" else GOOD
    header = ReturnHeader.for_payload(op_id, int(Status.OK), payload, 1000)
    if case == "bad-crc":
        header = ReturnHeader(op_id, int(Status.OK), len(payload), 1000, header.crc ^ 1)
    elif case == "block-of-another-op":
        header = ReturnHeader.for_payload(op_id + 1, int(Status.OK), payload, 1000)
    elif case == "block-says-failed":
        header = ReturnHeader.for_payload(op_id, int(Status.FAILED), payload, 1000)
    memory.write(retn + wire.HEADER_SIZE, payload)
    memory.write(retn, header.pack())
    if case == "done-for-another-op":
        conn.send(m.encode(m.Done(op_id + 1, int(Status.OK))))  # past the sans-IO guard
        return
    conn.send(proto.send(m.Done(op_id, int(Status.OK))))


def _answer_inline(conn: socket.socket, proto: wire.ServiceProtocol, op_id: int,
                   case: str) -> None:
    if case == "done-for-another-op":
        conn.send(m.encode(m.DoneInline(op_id + 1, int(Status.OK), GOOD)))
        return
    if case == "memory-done-on-socket":
        conn.send(m.encode(m.Done(op_id, int(Status.OK))))
        return
    if case == "failed":
        info = msgspec.msgpack.encode(ErrorInfo(message="no such luck"))
        conn.send(proto.send(m.DoneInline(op_id, int(Status.FAILED), info)))
        return
    payload = UNDECODABLE if case == "undecodable" else GOOD
    conn.send(proto.send(m.DoneInline(op_id, int(Status.OK), payload)))


@pytest.mark.parametrize(("transport", "case", "outcome"), [
    ("memory", "good", None),
    ("memory", "bad-crc", OutcomeUnknownError),
    ("memory", "block-of-another-op", OutcomeUnknownError),
    ("memory", "block-says-failed", OutcomeUnknownError),
    ("memory", "done-for-another-op", OutcomeUnknownError),
    ("memory", "undecodable", OperationError),
    ("memory", "inline-done-on-memory", OutcomeUnknownError),
    ("socket", "good", None),
    ("socket", "memory-done-on-socket", OutcomeUnknownError),
    ("socket", "done-for-another-op", OutcomeUnknownError),
    ("socket", "undecodable", OperationError),
    ("socket", "failed", OperationError),
])
def test_only_a_sound_ok_reply_gives_a_result(runtime_dir: Path, transport: str, case: str,
                                              outcome: type[Exception] | None) -> None:
    path = runtime_dir / "fake.ctl"
    thread = _fake_service(path, case)
    with aether.Client(path, transport=transport, timeout=10) as client:
        if outcome is None:
            assert client.echo(b"x") == b"echoed"
            assert client.echo(b"y") == b"echoed"  # the session goes on
        else:
            with pytest.raises(outcome) as info:
                client.echo(b"x")
            if outcome is OperationError:
                assert type(info.value) is OperationError  # not an unknown outcome
                assert ("could not be decoded" in str(info.value)) == (case == "undecodable")
                if case == "failed":
                    assert "no such luck" in str(info.value)
    thread.join(10)
    assert not thread.is_alive()


@pytest.mark.parametrize("transport", ["memory", "socket"])
def test_a_call_with_no_time_left_times_out_as_start_and_wait_do(runtime_dir: Path,
                                                                 transport: str) -> None:
    path = runtime_dir / "fake.ctl"
    thread = _fake_service(path, "good")
    with aether.Client(path, transport=transport, timeout=10) as client:
        with pytest.raises(AetherTimeoutError):
            client.call(b.Echo(data=b"x"), timeout=0)
    thread.join(10)
    assert not thread.is_alive()
