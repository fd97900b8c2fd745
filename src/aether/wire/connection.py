"""The two ends of a session as sans-IO objects: :class:`ServiceProtocol`
and :class:`ClientProtocol`.

They never touch a socket. A transport feeds each received datagram to
``receive()`` and gets an event back; it asks ``send(event)`` for the bytes
of each message it wants to send. Both check every step against the tables
in :mod:`aether.wire.states` plus the value guards below (op ids strictly
increasing, a STARTED status that is STARTED or a rejection ...). Any
violation raises a :class:`ProtocolError` naming the state and the event, and
the object stays in ``State.ERROR`` for good: every later call fails too.
"""

from __future__ import annotations

import abc

from aether.errors import LocalProtocolError, ProtocolError, RemoteProtocolError

from . import messages as m
from .codes import PROTOCOL_VERSION, Status, Transport
from .states import ANY_STATE, CLIENT_TABLE, RECV, SEND, SERVICE_TABLE, State, Table

# Sets of plain ints, checked on every message: building a Status from the
# wire's int and asking the enum costs about a microsecond each time.
_FINAL = frozenset(int(s) for s in Status if s.is_final)
_REJECTION = frozenset(int(s) for s in Status if s.is_rejection)


# Members the per-message paths compare with, as module globals. In Python
# 3.11 EnumType defines __getattr__, which routes every `State.IDLE` through
# the slow attribute hook: ~50 ns against ~10 for a global, and a memory or
# socket call made about twenty (3.12 drops the hook).
_IDLE, _AWAIT_START, _RUNNING = State.IDLE, State.AWAIT_START, State.RUNNING
_CLOSED, _ERROR = State.CLOSED, State.ERROR
_MEMORY, _SOCKET, _MAPPING = Transport.MEMORY, Transport.SOCKET, Transport.MAPPING


def _is_final(status: int) -> bool:
    return status in _FINAL


def _is_rejection(status: int) -> bool:
    return status in _REJECTION


class _Protocol(abc.ABC):
    role: str
    table: Table

    def __init__(self, initial: State, max_payload: int) -> None:
        self.state = initial
        self.max_payload = max_payload
        self.transport: Transport | None = None
        self.last_op_id = 0  # op ids start at 1 and strictly increase
        self.current_op_id = 0  # 0: no operation in flight

    # -- public -----------------------------------------------------------
    def receive(self, datagram: bytes | bytearray | memoryview) -> m.Event:
        """Decode one received datagram (``b""``: the peer closed) and advance."""
        self._check_live(RECV)
        try:
            event: m.Event
            if len(datagram) == 0:
                event = m.ConnectionClosed()
            else:
                event = m.decode(datagram, max_payload=self.max_payload)
            self._advance(RECV, event)
        except ProtocolError:
            self.state = State.ERROR
            raise
        return event

    def send(self, event: m.Event) -> bytes:
        """Advance for sending ``event`` and return the datagram to send."""
        self._check_live(SEND)
        try:
            self._advance(SEND, event)
            return m.encode(event)
        except ProtocolError:
            self.state = State.ERROR
            raise
        except (ValueError, TypeError) as exc:
            self.state = State.ERROR
            raise LocalProtocolError(str(exc), state=self.state.value,
                                     event=type(event).__name__) from None

    @property
    def ready(self) -> bool:
        state = self.state
        return state is _IDLE or state is _AWAIT_START or state is _RUNNING

    @property
    def closed(self) -> bool:
        # Identity tests: `in` on a tuple of Enum members falls back to
        # __eq__ for each miss, ~0.3 us on a call's short path.
        state = self.state
        return state is _CLOSED or state is _ERROR

    # -- internals --------------------------------------------------------
    def _check_live(self, direction: str) -> None:
        state = self.state
        if state is _ERROR:
            raise LocalProtocolError(
                f"{self.role}: the protocol is in ERROR after an earlier violation",
                state="ERROR",
            )
        if state is _CLOSED:
            raise LocalProtocolError(f"{self.role}: the session is closed", state="CLOSED")

    def _fail(self, direction: str, event: m.Event, why: str) -> ProtocolError:
        cls = RemoteProtocolError if direction == RECV else LocalProtocolError
        name = type(event).__name__
        verb = "received" if direction == RECV else "sending"
        return cls(
            f"{self.role}: can't handle {verb} {name} in state {self.state.value}"
            + (f": {why}" if why else ""),
            state=self.state.value,
            event=name,
        )

    def _advance(self, direction: str, event: m.Event) -> None:
        key = (direction, type(event))
        nxt = self.table.get(self.state, {}).get(key)
        if nxt is None:
            nxt = ANY_STATE.get(key)
        if nxt is None:
            raise self._fail(direction, event, "")
        self.state = self._guard(direction, event, nxt)

    @abc.abstractmethod
    def _guard(self, direction: str, event: m.Event, nxt: State) -> State:
        """Value checks beyond the table; returns the state to move to."""


class ServiceProtocol(_Protocol):
    """The service's end of one session."""

    role = "service"
    table = SERVICE_TABLE

    def __init__(
        self,
        *,
        fingerprint: int,
        transports: Transport = Transport.MEMORY | Transport.SOCKET | Transport.MAPPING,
        version: int = 1,
        max_payload: int = 16 * 1024 * 1024,
    ) -> None:
        super().__init__(State.SEND_HELLO, max_payload)
        self.fingerprint = fingerprint
        self.offered = transports
        self.version = version
        self.claimed_pid = 0
        self.param_block: tuple[int, int] | None = None
        self.retn_block: tuple[int, int] | None = None
        self._busy_ids: set[int] = set()

    def hello(self) -> bytes:
        """The HELLO datagram (step H1)."""
        return self.send(m.Hello(self.version, self.fingerprint, int(self.offered)))

    def _guard(self, direction: str, event: m.Event, nxt: State) -> State:
        # The per-operation events come first: they are nearly all the traffic.
        kind = type(event)
        if kind is m.Execute or kind is m.ExecuteInline:
            return self._guard_execute(direction, event, nxt)
        if kind is m.Done or kind is m.Progress or kind is m.DoneInline:
            op_id = event.op_id  # type: ignore[attr-defined]
            if kind is not m.Progress and self.transport is not (
                    _SOCKET if kind is m.DoneInline else _MEMORY):
                raise self._fail(direction, event, "wrong DONE form for this transport")
            if kind is m.DoneInline and op_id in self._busy_ids:
                raise self._fail(direction, event, "busy replies are STARTED messages")
            if op_id != self.current_op_id:
                raise self._fail(direction, event, f"op {op_id} is not the running one")
            if kind is not m.Progress:
                if not _is_final(event.status):  # type: ignore[attr-defined]
                    raise self._fail(direction, event, "DONE needs a final status")
                self.current_op_id = 0
            return nxt
        match direction, event:
            case (_, m.Hello()) if event.version != self.version:
                raise self._fail(direction, event, "version differs from ours")
            case (_, m.ClientPid(pid=pid)):
                if not Transport.MEMORY & self.offered:
                    raise self._fail(direction, event, "memory transport not offered")
                if pid <= 0 or pid > 0x7FFFFFFF:
                    raise self._fail(direction, event, f"pid {pid} is not a valid pid")
                self.claimed_pid = pid
                self.transport = Transport.MEMORY
            case (_, m.SocketMode(max_payload=limit)):
                if not Transport.SOCKET & self.offered:
                    raise self._fail(direction, event, "socket transport not offered")
                self.transport = Transport.SOCKET
                if 0 < limit < self.max_payload:  # the client's limit binds us too
                    self.max_payload = limit
            case (_, m.MapMode()):
                if not Transport.MAPPING & self.offered:
                    raise self._fail(direction, event, "mapping transport not offered")
                if self.state is State.IDLE and self.transport is not Transport.MAPPING:
                    raise self._fail(direction, event, "rings only exist on the mapping transport")
                self.transport = Transport.MAPPING
            case (_, m.MapReady()) if self.transport is not Transport.MAPPING:
                raise self._fail(direction, event, "MAP_READY without MAP_MODE")
            case (_, m.AddrParam(address=a, size=s)):
                if self.transport is not Transport.MEMORY:
                    raise self._fail(direction, event, "blocks only exist on the memory transport")
                self.param_block = (a, s)
                self.retn_block = None
            case (_, m.AddrRetn(address=a, size=s)):
                self.retn_block = (a, s)
            case (_, m.TestDone(error=err)) if err:
                return State.CLOSED
            case (_, m.TestVerified(error=err)) if err:
                return State.CLOSED
            case (_, m.Cancel(op_id=op_id)):
                if op_id == 0 or op_id > self.last_op_id:
                    raise self._fail(direction, event, f"op id {op_id} was never executed")
            case (_, m.Started(op_id=op_id, status=status)):
                return self._guard_started(direction, event, op_id, status, nxt)
        return nxt

    def _guard_execute(self, direction: str, event: m.Event, nxt: State) -> State:
        op_id: int = event.op_id  # type: ignore[attr-defined]
        expect_socket = type(event) is m.ExecuteInline
        if self.transport is _MAPPING:
            raise self._fail(direction, event, "operations of the mapping transport use the rings")
        if expect_socket != (self.transport is _SOCKET):
            raise self._fail(direction, event, "wrong EXECUTE form for this transport")
        if op_id != self.last_op_id + 1:
            raise self._fail(
                direction, event,
                f"op id {op_id} is not the next one ({self.last_op_id + 1})",
            )
        self.last_op_id = op_id
        if self.state is _IDLE:
            self.current_op_id = op_id
        else:
            self._busy_ids.add(op_id)
        return nxt

    def _guard_started(
        self, direction: str, event: m.Event, op_id: int, status: int, nxt: State
    ) -> State:
        if op_id in self._busy_ids:
            if status != Status.REJECTED_BUSY:
                raise self._fail(direction, event, "a second EXECUTE can only be REJECTED_BUSY")
            self._busy_ids.discard(op_id)
            return self.state
        if self.state is not State.AWAIT_START or op_id != self.current_op_id:
            raise self._fail(direction, event, f"op {op_id} is not awaiting its start")
        if status == Status.STARTED:
            return State.RUNNING
        if _is_rejection(status):
            self.current_op_id = 0
            return State.IDLE
        raise self._fail(direction, event, f"status {status} cannot start an op")

    @property
    def pending_busy(self) -> frozenset[int]:
        """Op ids that arrived while busy and still need their REJECTED_BUSY."""
        return frozenset(self._busy_ids)


class ClientProtocol(_Protocol):
    """The client's end of one session."""

    role = "client"
    table = CLIENT_TABLE

    def __init__(self, *, max_payload: int = 16 * 1024 * 1024) -> None:
        super().__init__(State.WAIT_HELLO, max_payload)
        self.hello: m.Hello | None = None

    def next_op_id(self) -> int:
        return self.last_op_id + 1

    def _guard(self, direction: str, event: m.Event, nxt: State) -> State:
        # Fast path for the two events of every call.
        kind = type(event)
        if (kind is m.Execute and self.transport is _MEMORY) or \
                (kind is m.ExecuteInline and self.transport is _SOCKET):
            op_id: int = event.op_id  # type: ignore[attr-defined]
            if op_id != self.last_op_id + 1:
                raise self._fail(direction, event, f"op id {op_id} is not the next one")
            self.last_op_id = self.current_op_id = op_id
            return nxt
        if kind is m.Done or kind is m.DoneInline:
            # The DONE form must be the session's: a DONE_INLINE on a memory
            # session would hand the caller a payload the socket carried, which
            # that session's channel cuts at a control message's size.
            if self.transport is not (_SOCKET if kind is m.DoneInline else _MEMORY):
                raise self._fail(direction, event, "wrong DONE form for this transport")
            done_id: int = event.op_id  # type: ignore[attr-defined]
            if done_id != self.current_op_id:
                raise self._fail(direction, event, f"DONE for op {done_id}, expected "
                                 f"{self.current_op_id}")
            if not _is_final(event.status):  # type: ignore[attr-defined]
                raise self._fail(direction, event,
                                 f"status {event.status} is not final")  # type: ignore[attr-defined]
            self.current_op_id = 0
            return nxt
        match direction, event:
            case (_, m.Hello(version=version)) if version != PROTOCOL_VERSION:
                raise self._fail(direction, event,
                                 f"protocol version {version}, ours {PROTOCOL_VERSION}")
            case (_, m.Hello()):
                self.hello = event
            case (_, m.ClientPid()):
                self.transport = Transport.MEMORY
            case (_, m.SocketMode()):
                self.transport = Transport.SOCKET
            case (_, m.MapMode()):
                if self.state is State.IDLE and self.transport is not Transport.MAPPING:
                    raise self._fail(direction, event, "rings only exist on the mapping transport")
                self.transport = Transport.MAPPING
            case (_, m.MapReady()) if self.transport is not Transport.MAPPING:
                raise self._fail(direction, event, "MAP_READY without MAP_MODE")
            case (_, m.AddrParam()) if self.transport is not Transport.MEMORY:
                raise self._fail(direction, event, "blocks only exist on the memory transport")
            case (_, m.TestDone(error=err)) if err:
                return State.CLOSED
            case (_, m.TestVerified(error=err)) if err:
                return State.CLOSED
            case (_, m.Execute(op_id=op_id)) | (_, m.ExecuteInline(op_id=op_id)):
                if isinstance(event, m.ExecuteInline) != (self.transport is Transport.SOCKET):
                    raise self._fail(direction, event, "wrong EXECUTE form for this transport")
                if op_id != self.last_op_id + 1:
                    raise self._fail(direction, event, f"op id {op_id} is not the next one")
                self.last_op_id = op_id
                self.current_op_id = op_id
            case (_, m.Cancel(op_id=op_id)) if op_id != self.current_op_id:
                raise self._fail(direction, event, f"op {op_id} is not in flight")
            case (_, m.Started(op_id=op_id, status=status)):
                if op_id != self.current_op_id:
                    raise self._fail(direction, event, f"STARTED for op {op_id}, expected "
                                     f"{self.current_op_id}")
                if status == Status.STARTED:
                    return State.RUNNING
                if _is_rejection(status):
                    self.current_op_id = 0
                    return State.IDLE
                raise self._fail(direction, event, f"status {status} cannot start an op")
            case (_, m.Progress(op_id=op_id)):
                if self.state is State.IDLE:
                    if op_id > self.last_op_id:
                        raise self._fail(direction, event, f"progress for unknown op {op_id}")
                    return State.IDLE
                if op_id != self.current_op_id:
                    raise self._fail(direction, event, f"progress for op {op_id}, expected "
                                     f"{self.current_op_id}")
        return nxt
