"""Control messages: the 24-byte ``<HHIQQ`` header and its events.

Each message is one ``SOCK_SEQPACKET`` datagram: ``code u16, flags u16,
reserved u32, a u64, b u64``, little-endian. A few codes may carry a tail
after the header (ERROR and GOODBYE text, PROGRESS text, socket-transport
payloads); any other datagram must be exactly 24 bytes.

Events are small frozen classes named after what they say (``Hello``,
``ClientPid`` ...). ``encode`` and ``decode`` convert between events and
datagrams; ``decode`` raises :class:`RemoteProtocolError` on anything
malformed and never anything else.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from aether.errors import RemoteProtocolError

from .codes import CONTROL_SIZE, MAX_TAIL, Code

_HEADER: Final = struct.Struct("<HHIQQ")
U64_MAX: Final = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every control message event."""

    code: ClassVar[Code]


@dataclass(frozen=True, slots=True)
class Hello(Event):
    """Service -> client on accept: protocol version and schema fingerprint.
    ``transports`` (the flags field) lists the transports the service offers."""

    code: ClassVar[Code] = Code.HELLO
    version: int
    fingerprint: int
    transports: int = 0


@dataclass(frozen=True, slots=True)
class ClientPid(Event):
    code: ClassVar[Code] = Code.CLIENT_PID
    pid: int


@dataclass(frozen=True, slots=True)
class AddrParam(Event):
    code: ClassVar[Code] = Code.ADDR_PARAM
    address: int
    size: int


@dataclass(frozen=True, slots=True)
class AddrRetn(Event):
    code: ClassVar[Code] = Code.ADDR_RETN
    address: int
    size: int


@dataclass(frozen=True, slots=True)
class IpcTest(Event):
    code: ClassVar[Code] = Code.IPC_TEST


@dataclass(frozen=True, slots=True)
class TestDone(Event):
    """``error`` 0: the service read the pattern and wrote zeros."""

    code: ClassVar[Code] = Code.TEST_DONE
    error: int = 0


@dataclass(frozen=True, slots=True)
class TestVerified(Event):
    """``error`` 0: the client saw the zeros; the session is ready."""

    code: ClassVar[Code] = Code.TEST_VERIFIED
    error: int = 0


@dataclass(frozen=True, slots=True)
class Execute(Event):
    code: ClassVar[Code] = Code.EXECUTE
    op_id: int
    length: int


@dataclass(frozen=True, slots=True)
class Cancel(Event):
    code: ClassVar[Code] = Code.CANCEL
    op_id: int


@dataclass(frozen=True, slots=True)
class Started(Event):
    """The service accepted (status STARTED) or rejected (REJECTED_*) an op."""

    code: ClassVar[Code] = Code.STARTED
    op_id: int
    status: int


@dataclass(frozen=True, slots=True)
class Progress(Event):
    """Progress of a running op, in permille, with an optional msgpack tail."""

    code: ClassVar[Code] = Code.PROGRESS
    op_id: int
    permille: int
    info: bytes = b""


@dataclass(frozen=True, slots=True)
class Done(Event):
    code: ClassVar[Code] = Code.DONE
    op_id: int
    status: int


@dataclass(frozen=True, slots=True)
class Error(Event):
    """Fatal session error from the service; the connection closes after it."""

    code: ClassVar[Code] = Code.ERROR
    error: int
    detail: int = 0
    text: str = ""


@dataclass(frozen=True, slots=True)
class Goodbye(Event):
    code: ClassVar[Code] = Code.GOODBYE
    reason: int = 0
    text: str = ""


@dataclass(frozen=True, slots=True)
class SocketMode(Event):
    """Client -> service after HELLO: use the socket transport; ``max_payload``
    is the largest payload the client will send or accept."""

    code: ClassVar[Code] = Code.SOCKET_MODE
    max_payload: int


@dataclass(frozen=True, slots=True)
class ExecuteInline(Event):
    """EXECUTE of the socket transport: the parameter block travels as the tail."""

    code: ClassVar[Code] = Code.EXECUTE_INLINE
    op_id: int
    op_code: int
    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class DoneInline(Event):
    """DONE of the socket transport: the return payload travels as the tail."""

    code: ClassVar[Code] = Code.DONE_INLINE
    op_id: int
    status: int
    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class MapMode(Event):
    """Client -> service after HELLO (or in IDLE, to get larger rings): use the
    mapping transport with rings of ``ring_size`` bytes each (0: the default)."""

    code: ClassVar[Code] = Code.MAP_MODE
    ring_size: int


@dataclass(frozen=True, slots=True)
class MapReady(Event):
    """Service -> client: the memfd and two eventfds ride along (SCM_RIGHTS);
    ``ring_size`` per ring, ``region_size`` the whole memfd."""

    code: ClassVar[Code] = Code.MAP_READY
    ring_size: int
    region_size: int


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """Pseudo-event: the peer closed the connection (empty read)."""

    code: ClassVar[Code] = Code.GOODBYE


# Tail rules per code: none allowed, text or bytes up to MAX_TAIL, or a payload
# bounded by the negotiated maximum.
_NO_TAIL, _SHORT_TAIL, _PAYLOAD_TAIL = 0, 1, 2
_U = "utf-8"

# code -> (build(a, b, flags, tail) -> Event, tail rule). Dispatch by table:
# the receive path runs for every message, so it avoids enum construction.
_BUILD: Final[dict[int, tuple[Callable[[int, int, int, bytes], Event], int]]] = {
    Code.HELLO: (lambda a, b, f, t: Hello(a, b, f), _NO_TAIL),
    Code.CLIENT_PID: (lambda a, b, f, t: ClientPid(a), _NO_TAIL),
    Code.ADDR_PARAM: (lambda a, b, f, t: AddrParam(a, b), _NO_TAIL),
    Code.ADDR_RETN: (lambda a, b, f, t: AddrRetn(a, b), _NO_TAIL),
    Code.IPC_TEST: (lambda a, b, f, t: IpcTest(), _NO_TAIL),
    Code.TEST_DONE: (lambda a, b, f, t: TestDone(a), _NO_TAIL),
    Code.TEST_VERIFIED: (lambda a, b, f, t: TestVerified(a), _NO_TAIL),
    Code.EXECUTE: (lambda a, b, f, t: Execute(a, b), _NO_TAIL),
    Code.CANCEL: (lambda a, b, f, t: Cancel(a), _NO_TAIL),
    Code.STARTED: (lambda a, b, f, t: Started(a, b), _NO_TAIL),
    Code.PROGRESS: (lambda a, b, f, t: Progress(a, b, t), _SHORT_TAIL),
    Code.DONE: (lambda a, b, f, t: Done(a, b), _NO_TAIL),
    Code.ERROR: (lambda a, b, f, t: Error(a, b, t.decode(_U, "replace")), _SHORT_TAIL),
    Code.GOODBYE: (lambda a, b, f, t: Goodbye(a, t.decode(_U, "replace")), _SHORT_TAIL),
    Code.SOCKET_MODE: (lambda a, b, f, t: SocketMode(a), _NO_TAIL),
    Code.MAP_MODE: (lambda a, b, f, t: MapMode(a), _NO_TAIL),
    Code.MAP_READY: (lambda a, b, f, t: MapReady(a, b), _NO_TAIL),
    Code.EXECUTE_INLINE: (lambda a, b, f, t: ExecuteInline(a, b, t), _PAYLOAD_TAIL),
    Code.DONE_INLINE: (lambda a, b, f, t: DoneInline(a, b, t), _PAYLOAD_TAIL),
}

# event type -> (a, b, flags, tail)
_PACK: Final[dict[type[Event], Callable[[Any], tuple[int, int, int, bytes]]]] = {
    Hello: lambda e: (e.version, e.fingerprint, e.transports, b""),
    ClientPid: lambda e: (e.pid, 0, 0, b""),
    AddrParam: lambda e: (e.address, e.size, 0, b""),
    AddrRetn: lambda e: (e.address, e.size, 0, b""),
    IpcTest: lambda e: (0, 0, 0, b""),
    TestDone: lambda e: (e.error, 0, 0, b""),
    TestVerified: lambda e: (e.error, 0, 0, b""),
    Execute: lambda e: (e.op_id, e.length, 0, b""),
    Cancel: lambda e: (e.op_id, 0, 0, b""),
    Started: lambda e: (e.op_id, e.status, 0, b""),
    Progress: lambda e: (e.op_id, e.permille, 0, bytes(e.info)),
    Done: lambda e: (e.op_id, e.status, 0, b""),
    Error: lambda e: (e.error, e.detail, 0, e.text.encode(_U, "replace")[:MAX_TAIL]),
    Goodbye: lambda e: (e.reason, 0, 0, e.text.encode(_U, "replace")[:MAX_TAIL]),
    SocketMode: lambda e: (e.max_payload, 0, 0, b""),
    MapMode: lambda e: (e.ring_size, 0, 0, b""),
    MapReady: lambda e: (e.ring_size, e.region_size, 0, b""),
    ExecuteInline: lambda e: (e.op_id, e.op_code, 0, bytes(e.payload)),
    DoneInline: lambda e: (e.op_id, e.status, 0, bytes(e.payload)),
}


def _name(raw_code: int) -> str:
    try:
        return Code(raw_code).name
    except ValueError:
        return f"0x{raw_code:x}"


def encode(event: Event, *, max_payload: int = 0) -> bytes:
    """Encode ``event`` as one datagram."""
    pack = _PACK.get(type(event))
    if pack is None:
        raise TypeError(f"cannot encode {event!r}")
    a, b, flags, tail = pack(event)
    if tail:
        if type(event) is Progress and len(tail) > MAX_TAIL:
            raise ValueError(f"progress info of {len(tail)} bytes exceeds {MAX_TAIL}")
        if max_payload and len(tail) > max_payload:
            raise ValueError(f"payload of {len(tail)} bytes exceeds {max_payload}")
    if not (0 <= a <= U64_MAX and 0 <= b <= U64_MAX and 0 <= flags <= 0xFFFF):
        raise ValueError(f"field out of range in {event!r}")
    header = _HEADER.pack(event.code, flags, 0, a, b)
    return header + tail if tail else header


def decode(datagram: bytes | bytearray | memoryview, *, max_payload: int = 0) -> Event:
    """Decode one datagram. Raises RemoteProtocolError on anything malformed."""
    n = len(datagram)
    if n < CONTROL_SIZE:
        raise RemoteProtocolError(
            f"control message of {n} bytes, expected at least {CONTROL_SIZE}", event="truncated"
        )
    raw_code, flags, reserved, a, b = _HEADER.unpack_from(datagram)
    entry = _BUILD.get(raw_code)
    if entry is None:
        raise RemoteProtocolError(f"unknown control code 0x{raw_code:x}", event="unknown")
    build, rule = entry
    if reserved != 0:
        name = _name(raw_code)
        raise RemoteProtocolError(f"{name}: reserved field is {reserved}", event=name)
    if flags and raw_code != Code.HELLO:
        name = _name(raw_code)
        raise RemoteProtocolError(f"{name}: flags must be 0, got {flags}", event=name)
    tail = b""
    if n > CONTROL_SIZE:
        extra = n - CONTROL_SIZE
        name = _name(raw_code)
        if rule == _NO_TAIL:
            raise RemoteProtocolError(f"{name}: {extra} unexpected bytes after the header",
                                      event=name)
        if rule == _SHORT_TAIL and extra > MAX_TAIL:
            raise RemoteProtocolError(f"{name}: tail of {extra} bytes exceeds {MAX_TAIL}",
                                      event=name)
        if rule == _PAYLOAD_TAIL and max_payload and extra > max_payload:
            raise RemoteProtocolError(f"{name}: payload of {extra} bytes exceeds {max_payload}",
                                      event=name)
        tail = bytes(datagram[CONTROL_SIZE:])
    return build(a, b, flags, tail)
