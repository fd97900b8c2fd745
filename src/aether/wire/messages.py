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
from dataclasses import dataclass
from typing import ClassVar, Final

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
class ConnectionClosed(Event):
    """Pseudo-event: the peer closed the connection (empty read)."""

    code: ClassVar[Code] = Code.GOODBYE


_TAIL_TEXT = frozenset({Code.ERROR, Code.GOODBYE})
_TAIL_BYTES = frozenset({Code.PROGRESS})
_TAIL_PAYLOAD = frozenset({Code.EXECUTE_INLINE, Code.DONE_INLINE})


def encode(event: Event, *, max_payload: int = 0) -> bytes:
    """Encode ``event`` as one datagram."""
    flags = 0
    tail = b""
    match event:
        case Hello(version=v, fingerprint=f, transports=t):
            flags, a, b = t, v, f
        case ClientPid(pid=p):
            a, b = p, 0
        case AddrParam(address=x, size=n) | AddrRetn(address=x, size=n):
            a, b = x, n
        case IpcTest():
            a, b = 0, 0
        case TestDone(error=e) | TestVerified(error=e):
            a, b = e, 0
        case Execute(op_id=o, length=n):
            a, b = o, n
        case Cancel(op_id=o):
            a, b = o, 0
        case Started(op_id=o, status=s) | Done(op_id=o, status=s):
            a, b = o, s
        case Progress(op_id=o, permille=p, info=i):
            a, b, tail = o, p, i
        case Error(error=e, detail=d, text=t):
            a, b, tail = e, d, t.encode("utf-8", "replace")[:MAX_TAIL]
        case Goodbye(reason=r, text=t):
            a, b, tail = r, 0, t.encode("utf-8", "replace")[:MAX_TAIL]
        case SocketMode(max_payload=m):
            a, b = m, 0
        case ExecuteInline(op_id=o, op_code=c, payload=p):
            a, b, tail = o, c, p
        case DoneInline(op_id=o, status=s, payload=p):
            a, b, tail = o, s, p
        case _:
            raise TypeError(f"cannot encode {event!r}")
    if event.code in _TAIL_BYTES and len(tail) > MAX_TAIL:
        raise ValueError(f"progress info of {len(tail)} bytes exceeds {MAX_TAIL}")
    if max_payload and len(tail) > max_payload:
        raise ValueError(f"payload of {len(tail)} bytes exceeds {max_payload}")
    if not (0 <= a <= U64_MAX and 0 <= b <= U64_MAX and 0 <= flags <= 0xFFFF):
        raise ValueError(f"field out of range in {event!r}")
    return _HEADER.pack(int(event.code), flags, 0, a, b) + bytes(tail)


def decode(datagram: bytes | bytearray | memoryview, *, max_payload: int = 0) -> Event:
    """Decode one datagram. Raises RemoteProtocolError on anything malformed."""
    n = len(datagram)
    if n < CONTROL_SIZE:
        raise RemoteProtocolError(
            f"control message of {n} bytes, expected at least {CONTROL_SIZE}", event="truncated"
        )
    raw_code, flags, reserved, a, b = _HEADER.unpack_from(datagram)
    try:
        code = Code(raw_code)
    except ValueError:
        raise RemoteProtocolError(f"unknown control code 0x{raw_code:x}", event="unknown") from None
    if reserved != 0:
        raise RemoteProtocolError(f"{code.name}: reserved field is {reserved}", event=code.name)
    if flags and code is not Code.HELLO:
        raise RemoteProtocolError(f"{code.name}: flags must be 0, got {flags}", event=code.name)
    tail = bytes(datagram[CONTROL_SIZE:])
    if tail:
        if code in _TAIL_TEXT or code in _TAIL_BYTES:
            if len(tail) > MAX_TAIL:
                raise RemoteProtocolError(
                    f"{code.name}: tail of {len(tail)} bytes exceeds {MAX_TAIL}", event=code.name
                )
        elif code in _TAIL_PAYLOAD:
            if max_payload and len(tail) > max_payload:
                raise RemoteProtocolError(
                    f"{code.name}: payload of {len(tail)} bytes exceeds {max_payload}",
                    event=code.name,
                )
        else:
            raise RemoteProtocolError(
                f"{code.name}: {len(tail)} unexpected bytes after the header", event=code.name
            )
    match code:
        case Code.HELLO:
            return Hello(a, b, flags)
        case Code.CLIENT_PID:
            return ClientPid(a)
        case Code.ADDR_PARAM:
            return AddrParam(a, b)
        case Code.ADDR_RETN:
            return AddrRetn(a, b)
        case Code.IPC_TEST:
            return IpcTest()
        case Code.TEST_DONE:
            return TestDone(a)
        case Code.TEST_VERIFIED:
            return TestVerified(a)
        case Code.EXECUTE:
            return Execute(a, b)
        case Code.CANCEL:
            return Cancel(a)
        case Code.STARTED:
            return Started(a, b)
        case Code.PROGRESS:
            return Progress(a, b, tail)
        case Code.DONE:
            return Done(a, b)
        case Code.ERROR:
            return Error(a, b, tail.decode("utf-8", "replace"))
        case Code.GOODBYE:
            return Goodbye(a, tail.decode("utf-8", "replace"))
        case Code.SOCKET_MODE:
            return SocketMode(a)
        case Code.EXECUTE_INLINE:
            return ExecuteInline(a, b, tail)
        case Code.DONE_INLINE:
            return DoneInline(a, b, tail)
    raise RemoteProtocolError(f"unhandled code {code.name}", event=code.name)  # pragma: no cover
