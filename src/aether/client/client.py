"""The blocking client: connect, handshake, call operations.

A ``Client`` is one session. It is thread-safe in the sense the seed asks
for: one operation at a time (a lock held from ``start`` to the end of the
operation), and ``Operation.cancel`` may be called from another thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import threading
import time
import types
from collections.abc import Iterable
from typing import Any

import msgspec

from aether import osapi, wire
from aether.errors import (
    AetherError,
    AetherTimeoutError,
    AuthorizationError,
    BusyResourceError,
    ClosedResourceError,
    ConnectError,
    HandshakeError,
    LimitsExceededError,
    OperationError,
    OutcomeUnknownError,
    PeerGoneError,
    ProtocolError,
    SchemaError,
    ServiceRestartedError,
)
from aether.schema import (
    ErrorInfo,
    OperationSpec,
    Params,
    ProgressInfo,
    Registry,
    TypedDecoder,
    builtins as b,
    encode_into,
    encode_into_at,
    spec_of,
)
from aether.transport.channel import CONTROL_LIMIT, Channel
from aether.transport.mapping import MappingClientSide
from aether.transport.memory_client import MemoryClientSide
from aether.wire import ErrorCode, FrameKind, State, Status, Transport, messages as m, rings

from . import steps
from .discovery import ServiceAddress, resolve
from .loan import InPlaceResult, Loan, loan_prefix
from .mapped import ControlMessage, MappedCalls
from .operation import Operation, ProgressCallback
from .steps import StepCallback
from .trust import verify_service

log = logging.getLogger("aether.client")

_error_decoder = msgspec.msgpack.Decoder(ErrorInfo)
_progress_decoder = msgspec.msgpack.Decoder(ProgressInfo)
SOCKET_BUFFER = 4 * 1024 * 1024  # asked for; the kernel caps it at wmem_max/rmem_max
_FALLBACK_REASONS = {"memory-access", "unsupported-transport", "peer-exited"}
_EXECUTE = int(FrameKind.EXECUTE)
_STARTED = int(FrameKind.STARTED)
_DONE = int(FrameKind.DONE)
_OK = int(Status.OK)
# Globals, not Transport.SOCKET at each call: in Python 3.11 an enum member's
# lookup goes through EnumType's __getattr__ hook (~50 ns).
_SOCKET, _MEMORY = Transport.SOCKET, Transport.MEMORY
_NOT_SHORT = object()  # _direct_result: leave this reply to the general path
Frame = tuple[int, int, int, memoryview]


def _error_code_name(code: int) -> str:
    try:
        return ErrorCode(code).name.lower().replace("_", "-")
    except ValueError:
        return f"error-{code}"


class _PtracerGrant:
    """The process's one Yama ptracer exception, shared by every Client of it.

    ``PR_SET_PTRACER`` is per process, not per session: it is set for the
    first session with a same-uid service, counted, and cleared when the last
    such session ends. A session with a different service pid cannot have it.
    """

    _lock = threading.Lock()
    _pid = 0
    _count = 0

    @classmethod
    def acquire(cls, pid: int) -> bool:
        with cls._lock:
            if cls._count and cls._pid != pid:
                return False
            if not cls._count:
                osapi.set_ptracer(pid)
            cls._pid = pid
            cls._count += 1
            return True

    @classmethod
    def release(cls) -> None:
        with cls._lock:
            cls._count -= 1
            if cls._count <= 0:
                cls._count = 0
                cls._pid = 0
                try:
                    osapi.clear_ptracer()
                except AetherError:
                    pass


class Client:
    """A session with one service.

    Args:
        target: a service name (``"guard"``) or a control socket path.
        schema: the schema module(s) shared with the service; enables typed
            results and the fingerprint check. Without it, results come back
            as plain msgpack values and :meth:`call_by_name` is the way in.
        transport: ``"memory"`` (the seed's), ``"mapping"`` (rings in a shared
            memfd), ``"socket"``, or ``"auto"`` (memory, falling back to
            mapping, then socket, each time with a logged reason).
        timeout: bound on connecting and on the handshake, in seconds.
        block_size: size of each block (memory) or ring (mapping) in bytes,
            rounded up to pages.
        on_step: called with (step, text) as the handshake advances.
        spin: seconds to poll for a reply without sleeping before blocking;
            a reply within that window costs no wake-up (0 disables).
    """

    def __init__(
        self,
        target: str | os.PathLike[str],
        *,
        schema: types.ModuleType | Iterable[types.ModuleType] | None = None,
        transport: str = "auto",
        timeout: float = 5.0,
        block_size: int = wire.DEFAULT_BLOCK_SIZE,
        on_step: StepCallback | None = None,
        spin: float = 0.0003,
    ) -> None:
        if transport not in ("auto", "memory", "mapping", "socket"):
            raise ValueError(f"unknown transport {transport!r}")
        self.address: ServiceAddress = resolve(target)
        if schema is None:
            self.registry = Registry.from_modules()
            self._typed = False
        else:
            modules = [schema] if isinstance(schema, types.ModuleType) else list(schema)
            self.registry = Registry.from_modules(*modules)
            self._typed = True
        self.requested_transport = transport
        self.timeout = timeout
        self.block_size = osapi.round_to_pages(block_size)
        self.on_step = on_step
        self.spin = spin
        self.fallback_reason = ""
        self.hello: m.Hello | None = None
        self.service_pid = 0
        self._op_lock = threading.Lock()
        self._lock = threading.RLock()  # guards proto
        self._current: Operation | None = None
        self._ptracer_set = False
        self._closed = False
        self._session_lost = False
        self._describe_cache: dict[str, b.OperationInfo] | None = None
        self._encode_buffer = bytearray()  # reused: no page faults for large payloads
        # Params type -> (its spec, checked against the registry; its result decoder)
        self._short_ops: dict[type, tuple[OperationSpec, TypedDecoder]] = {}
        self.memory: MemoryClientSide | None = None
        self._mapped: MappedCalls | None = None
        self._held: memoryview | None = None  # an in-place result not yet released
        self._loan_mapped = False
        self._loan_memory = False  # a loan lent out of the parameter block
        self.channel: Channel | None = None
        self.proto = wire.ClientProtocol()
        self._connect()

    # -- connection -------------------------------------------------------------
    def _step(self, step: str, text: str) -> None:
        log.debug("%s: %s", step, text)
        if self.on_step is not None:
            self.on_step(step, text)

    def _connect(self) -> None:
        requested = self.requested_transport
        if requested in ("socket", "mapping"):
            self._open(Transport.SOCKET if requested == "socket" else Transport.MAPPING)
            return
        try:
            self._open(Transport.MEMORY)
            return
        except HandshakeError as exc:
            if requested == "memory" or exc.reason not in _FALLBACK_REASONS:
                raise
            self.fallback_reason = str(exc)
            log.warning("memory transport refused (%s); falling back to the mapping transport",
                        exc)
            self._step(steps.MAPPING_MODE, f"memory transport refused: "
                       f"{exc.detail or exc.reason}; trying the mapping transport")
        try:
            self._open(Transport.MAPPING)
        except HandshakeError as exc:
            if exc.reason not in _FALLBACK_REASONS:
                raise
            self.fallback_reason += f"; mapping: {exc}"
            log.warning("mapping transport refused (%s); falling back to the socket transport",
                        exc)
            self._step(steps.SOCKET_MODE, f"mapping transport refused: "
                       f"{exc.detail or exc.reason}; using the socket transport")
            self._open(Transport.SOCKET)

    def _open(self, transport: Transport) -> None:
        self.proto = wire.ClientProtocol()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        # A blocking connect with SO_SNDTIMEO: while the service's listen
        # backlog is full (a flood of connections it has not accepted yet),
        # the kernel queues us until there is room or the timeout passes. A
        # non-blocking connect (settimeout) fails at once with EAGAIN there.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(self.timeout))
        try:
            sock.connect(str(self.address.path))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(0))
        except OSError as exc:
            sock.close()
            raise ConnectError(
                f"cannot connect to {self.address.name} at {self.address.path}: {exc.strerror}",
                path=str(self.address.path),
            ) from None
        self.channel = Channel(sock, max_datagram=wire.CONTROL_SIZE + self.proto.max_payload + 1,
                               buffer_size=SOCKET_BUFFER)
        self._step(steps.CONNECTED, f"connected to {self.address.path}")
        try:
            peer = verify_service(sock, self.address)
            self.service_pid = peer.pid
            self._step(steps.SERVICE_VERIFIED,
                       f"service pid {peer.pid} runs as uid {peer.uid}; socket directory checked")
            if self.spin and osapi.one_cpu_with(peer.pid):
                self.spin = 0.0  # a spinner would hold the one CPU the service needs
            self._handshake(transport, time.monotonic() + self.timeout)
        except BaseException:
            self._teardown()
            raise

    def _recv(self, deadline: float | None, step: str) -> m.Event:
        assert self.channel is not None
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            data = self.channel.recv(timeout)
        except AetherTimeoutError:
            raise HandshakeError(step, "timeout", "the service did not answer in time") from None
        assert data is not None
        with self._lock:
            try:
                return self.proto.receive(data)
            except ProtocolError as exc:
                raise HandshakeError(step, "protocol", str(exc)) from None

    def _send(self, event: m.Event) -> None:
        assert self.channel is not None
        with self._lock:
            data = self.proto.send(event)
        self.channel.send(data)

    def _expect(self, event: m.Event, cls: type[m.Event], step: str) -> None:
        if isinstance(event, m.Error):
            raise HandshakeError(step, _error_code_name(event.error), event.text)
        if isinstance(event, m.Goodbye | m.ConnectionClosed):
            raise HandshakeError(step, "closed", "the service closed the connection")
        if not isinstance(event, cls):
            raise HandshakeError(step, "protocol", f"expected {cls.__name__}, got {event}")

    def _handshake(self, transport: Transport, deadline: float) -> None:
        hello = self._recv(deadline, "H2")
        self._expect(hello, m.Hello, "H2")
        assert isinstance(hello, m.Hello)
        self.hello = hello
        if self._typed and hello.fingerprint != self.registry.fingerprint():
            raise HandshakeError(
                "H2", "schema-mismatch",
                f"service schema fingerprint {hello.fingerprint:016x}, "
                f"ours {self.registry.fingerprint():016x}",
            )
        self._step(steps.HELLO, f"HELLO: protocol {hello.version}, schema "
                   f"{hello.fingerprint:016x}, transports offered: "
                   + ", ".join(t.name.lower() for t in Transport
                               if t.name and hello.transports & t))
        if transport is Transport.MEMORY and not hello.transports & Transport.MEMORY:
            raise HandshakeError("H2", "unsupported-transport",
                                 "the service does not offer the memory transport here")
        if transport is Transport.MAPPING:
            if not hello.transports & Transport.MAPPING:
                raise HandshakeError("H2", "unsupported-transport",
                                     "the service does not offer the mapping transport")
            self._map_rings(max(rings.MIN_RING_SIZE, self.block_size), deadline)
            return
        if transport is Transport.SOCKET:
            # A datagram is bounded by the sender's socket buffer: announce what
            # fits, so that oversized payloads fail cleanly (LIMITS_EXCEEDED,
            # RESULT_TOO_LARGE) instead of breaking the connection.
            assert self.channel is not None
            room = self.channel.max_send() - wire.CONTROL_SIZE
            self.proto.max_payload = max(0, min(self.proto.max_payload, room))
            self._send(m.SocketMode(self.proto.max_payload))
            ev = self._recv(deadline, "S1")
            self._expect(ev, m.TestDone, "S1")
            assert isinstance(ev, m.TestDone)
            if ev.error:
                raise HandshakeError("S1", _error_code_name(ev.error), "socket mode refused")
            self._send(m.TestVerified(0))
            self._step(steps.READY, "session ready on the socket transport")
            return
        self._maybe_set_ptracer()
        memory = self._allocate_blocks(self.block_size, self.block_size)
        try:
            self._send(m.ClientPid(os.getpid()))
            self._step(steps.PID_SENT, f"CLIENT_PID {os.getpid()} sent")
        except BaseException:
            memory.close()
            raise
        self._register_blocks(memory, deadline)

    def _map_rings(self, ring_size: int, deadline: float) -> None:
        """Steps M1-M3: ask for rings, map the region MAP_READY hands over,
        answer TEST_VERIFIED. Op ids continue across a re-negotiation (M4)."""
        assert self.channel is not None
        old = self._mapped
        self._send(m.MapMode(ring_size))
        self._step(steps.MAPPING_MODE, f"MAP_MODE: two rings of {ring_size} bytes asked for")
        try:
            data, fds = self.channel.recv_with_fds(max(0.0, deadline - time.monotonic()), 3)
        except AetherTimeoutError:
            raise HandshakeError("M2", "timeout", "the service did not answer in time") from None
        try:
            with self._lock:
                event = self.proto.receive(data)
            self._expect(event, m.MapReady, "M2")
            assert isinstance(event, m.MapReady)
            handed, fds = fds, []  # MappingClientSide owns (and on failure closes) them
            side = MappingClientSide(handed, event.ring_size, event.region_size,
                                     last_op_id=old.ops.last_op_id if old else 0)
        except ProtocolError as exc:
            if self.proto.state is State.VERIFYING:
                self.channel.try_send(self.proto.send(m.TestVerified(int(ErrorCode.BAD_BLOCK))))
            raise HandshakeError("M3", "protocol", str(exc)) from None
        finally:
            for fd in fds:
                osapi.close_fd(fd)
        try:
            self._send(m.TestVerified(0))
        except BaseException:
            side.close()
            raise
        self._mapped = MappedCalls(side, self.channel)
        if old is not None:
            old.close()
        self.channel.max_datagram = CONTROL_LIMIT  # payloads never ride the socket
        self._step(steps.READY, f"session ready on the mapping transport: a sealed memfd of "
                   f"{event.region_size} bytes with two rings of {event.ring_size} bytes, "
                   "two eventfd doorbells")

    def _maybe_set_ptracer(self) -> None:
        """Seed step H3/Yama: only after the service was verified, only for a
        same-uid service, and undone at close (threat T9)."""
        scope = osapi.yama_ptrace_scope()
        if scope == 1 and os.geteuid() != 0 and self.address.expected_uid != 0:
            if not _PtracerGrant.acquire(self.service_pid):
                raise HandshakeError(
                    "H3", "unsupported-transport",
                    "Yama allows one ptracer per process and another session holds it",
                )
            self._ptracer_set = True
            self._step(steps.PTRACER_SET,
                       f"Yama ptrace_scope=1: allowed pid {self.service_pid} to read our memory")

    def _allocate_blocks(self, param_size: int, retn_size: int) -> MemoryClientSide:
        """Seed step 1: allocate both blocks and fill them with the pattern."""
        memory = MemoryClientSide(param_size, retn_size)
        self._step(steps.BLOCKS_ALLOCATED,
                   f"parameter block 0x{memory.param.address:x} ({memory.param.size} bytes, "
                   f"read-only), return block 0x{memory.retn.address:x} "
                   f"({memory.retn.size} bytes, read-write); private, anonymous, never executable")
        try:
            memory.fill_pattern()
        except BaseException:
            memory.close()
            raise
        self._step(steps.PATTERN_WRITTEN, "both blocks filled with 0x1337D00D")
        return memory

    def _register_blocks(self, memory: MemoryClientSide, deadline: float) -> None:
        """Seed steps 6-17: announce the blocks and run the pattern test both ways."""
        old = self.memory
        try:
            try:
                self._send(m.AddrParam(memory.param.address, memory.param.size))
                self._send(m.AddrRetn(memory.retn.address, memory.retn.size))
                self._step(steps.ADDRESSES_SENT, "ADDR_PARAM and ADDR_RETN sent")
                self._send(m.IpcTest())
            except PeerGoneError:
                pass  # the service refused a block and closed; its queued ERROR says why
            ev = self._recv(deadline, "H7")
            self._expect(ev, m.TestDone, "H7")
            assert isinstance(ev, m.TestDone)
            if ev.error:
                raise HandshakeError("H7", _error_code_name(ev.error),
                                     "the service's pattern test failed")
            self._step(steps.SERVICE_READ_PATTERN,
                       "TEST_DONE: the service read 0x1337D00D in both blocks and wrote zeros")
            if not memory.zeros_written():
                self._send(m.TestVerified(int(ErrorCode.ZEROS_MISSING)))
                raise HandshakeError("H8", "zeros-missing",
                                     "the blocks do not hold the zeros the service wrote")
            self._send(m.TestVerified(0))
            self._step(steps.ZEROS_VERIFIED, "client saw the zeros; TEST_VERIFIED sent")
        except BaseException as exc:
            # The service knows these addresses and may be behind (a handshake
            # that timed out or was interrupted): its zeros must not land in a
            # later mapping. A refusal it sent (HandshakeError) ended its side.
            memory.close(retire=not isinstance(exc, HandshakeError))
            raise
        self.memory = memory
        if old is not None:
            old.close()
        assert self.channel is not None
        self.channel.max_datagram = CONTROL_LIMIT  # payloads never ride the socket
        self._step(steps.READY, "session ready on the memory transport")

    @property
    def in_flight(self) -> Operation | None:
        """The operation this session is still running, if any: the handle
        :meth:`start` returned, or the operation of a :meth:`call` whose
        ``timeout`` ran out (``AetherTimeoutError``: it keeps running).
        ``wait()`` for its outcome or ``cancel()`` it; until it ends, the
        session takes no other operation. (A call interrupted by another
        exception, such as ``KeyboardInterrupt``, ends its session instead:
        see ``_abandon``.)"""
        op = self._current
        return None if op is None or op.finished else op

    @property
    def transport(self) -> str:
        t = self.proto.transport
        return t.name.lower() if t is not None and t.name else "none"

    # -- operations -------------------------------------------------------------
    def call(self, params: Params, *, timeout: float | None = None,
             on_progress: ProgressCallback | None = None) -> Any:
        """Run one operation and return its result (typed by the schema)."""
        if on_progress is None:
            if self._mapped is not None:
                return self._call_mapped(params, timeout)
            return self._call_direct(params, timeout)
        return self.start(params, on_progress=on_progress).wait(timeout)

    def _short_op(self, params: Params) -> tuple[OperationSpec, TypedDecoder]:
        """The spec and result decoder of a params type, checked against the
        registry once: a registry only grows and never rebinds a code."""
        known = self._short_ops.get(type(params))
        if known is None:
            spec = spec_of(params)
            if self.registry.by_code(spec.code) is not spec:
                raise SchemaError(f"{spec.name} is not in this client's schema")
            known = self._short_ops[type(params)] = (spec, self.registry.result_decoder(spec.code))
        return known

    def _call_direct(self, params: Params, timeout: float | None) -> Any:
        """``call`` on the memory and socket transports, short: the same
        messages, block writes and checks as ``start`` and ``wait``, without
        building an ``Operation`` until something other than a quick OK
        comes back. Measured on this VM, the general path's layers cost about
        as much CPU per call as the two processes' syscalls; what this path
        does not handle (no room in the block, a refusal, STARTED, progress,
        an error, a timeout, a lost connection) continues on the general
        path, from exactly where this one stopped, with the same outcome.
        """
        spec, result_decoder = self._short_op(params)
        proto = self.proto
        memory = self.memory
        inline = proto.transport is _SOCKET
        if self._session_lost or self._closed or self._held is not None \
                or not (inline or (memory is not None and proto.transport is _MEMORY)) \
                or (timeout is not None and timeout <= 0) \
                or not self._op_lock.acquire(False):
            return self.start(params).wait(timeout)  # raises, or reconnects first
        channel = self.channel
        op_id = 0
        sending = False  # from here on the request may have reached the service
        try:
            if channel is not None and not channel.closed and not proto.closed:
                buffer = self._encode_buffer
                encode_into_at(params, buffer, 0)
                size = len(buffer)
                if inline and size <= proto.max_payload:
                    op_id = proto.next_op_id()
                    sending = True
                    self._send(m.ExecuteInline(op_id, spec.code, bytes(buffer)))
                elif memory is not None and size <= memory.param_capacity:
                    op_id = proto.next_op_id()
                    memory.write_params(op_id, spec.code, buffer)
                    sending = True
                    self._send(m.Execute(op_id, size))
        except (PeerGoneError, ClosedResourceError):
            # As _start_once and _start: nothing was delivered and the session
            # is gone, so a fresh one gets the call, once.
            self._teardown()
            self._op_lock.release()
            if self._closed:
                raise
            self._reconnect()
            return self._start_once(spec.code, spec.name, params, None,
                                    idempotent=spec.idempotent).wait(timeout)
        except AetherTimeoutError:
            self._teardown()  # as _start_once: no half-open state, and no retry
            self._op_lock.release()
            raise
        except BaseException:
            self._interrupted_send(sending)
            raise
        if not op_id:
            # Nothing was sent: the general path grows the block or raises
            # what the session's state calls for.
            self._op_lock.release()
            return self.start(params).wait(timeout)
        assert channel is not None
        first: bytes | m.Event | Exception | None = None
        data: bytes | None = None
        ended = False
        op: Operation | None = None
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            try:
                data = channel.recv(timeout, spin=self.spin)
            except AetherTimeoutError:
                data = None  # the deadline has passed: _drive reports it as it always does
            except (PeerGoneError, ClosedResourceError) as exc:
                data, first = None, exc
            if data:
                with self._lock:
                    try:
                        first = proto.receive(data)
                    except ProtocolError as exc:
                        first = exc
                kind = type(first)
                if (kind is m.Done or kind is m.DoneInline) and \
                        first.op_id == op_id and first.status == _OK:  # type: ignore[union-attr]
                    result = self._direct_result(first, result_decoder, op_id)  # type: ignore[arg-type]
                    if result is not _NOT_SHORT:
                        ended = True
                        self._op_lock.release()
                        return result
            elif data is not None:
                first = data  # b"": the service closed the connection
            op = self._operation_for(spec, op_id)
            self._current = op
            self._drive(op, timeout, deadline=deadline, first=first)
            return op.wait(timeout)
        except BaseException as exc:
            self._interrupted_wait(exc, ended, op)
            raise

    def _interrupted_send(self, maybe_sent: bool) -> None:
        """A short path's send ended by an exception: with the request maybe
        out, the session goes (see ``_abandon``); otherwise only the
        operation lock is given back."""
        if maybe_sent:
            self._abandon(None, "interrupted while sending")
        else:
            self._op_lock.release()

    def _interrupted_wait(self, exc: BaseException, ended: bool, op: Operation | None) -> None:
        """A short path's wait ended by ``exc``: abandon the session if it is
        an interrupt (see ``_abandon``) and the operation lock is still this
        call's: no ``Operation`` yet or an unfinished one (_drive releases
        the lock only with its operation finished; a lost session has
        already been dealt with)."""
        if ended or isinstance(exc, AetherError) or self._session_lost:
            return
        if op is None or not op.finished:
            self._abandon(self._current, "interrupted while waiting for the reply")

    def _operation_for(self, spec: OperationSpec, op_id: int) -> Operation:
        op = Operation(self, op_id, spec.name, spec.code, None)
        op._idempotent = spec.idempotent  # type: ignore[attr-defined]
        return op

    def _direct_result(self, event: m.Event, decoder: TypedDecoder, op_id: int) -> Any:
        """The decoded result of a DONE (memory) or DONE_INLINE (socket) OK for
        ``op_id``, or ``_NOT_SHORT`` for the general path to report."""
        try:
            if type(event) is m.Done:
                assert self.memory is not None
                header, payload = self.memory.read_return(op_id)
                if header.status != _OK:
                    return _NOT_SHORT
                return decoder.decode(payload)
            if type(event) is m.DoneInline:
                return decoder.decode(event.payload)
        except (ProtocolError, SchemaError):
            pass
        return _NOT_SHORT

    def _call_mapped(self, params: Params, timeout: float | None) -> Any:
        """``call`` on the mapping transport, short: encode into the request
        ring, spin for the reply, decode it. A round trip here costs a few
        tens of microseconds, so the general path's layers (Operation
        object, start, drive) are only built when the reply is not a quick
        OK: anything else (a full ring, a refusal, STARTED, progress, an
        error, a timeout) continues on the general path, from exactly where
        this one stopped, with the same outcome it would have had.
        """
        known = self._short_ops.get(type(params))
        spec, result_decoder = known if known is not None else self._short_op(params)
        code = spec.code
        mapped = self._mapped
        if mapped is None or self._session_lost or self._closed or self._held is not None \
                or not self._op_lock.acquire(False):
            return self.start(params).wait(timeout)  # raises, or reconnects first
        sent = False
        op_id = 0
        try:
            channel = self.channel
            if channel is not None and not channel.closed and not self.proto.closed:
                buffer = self._encode_buffer
                encode_into_at(params, buffer, 0)
                if len(buffer) <= mapped.param_capacity:
                    op_id = mapped.ops.execute()
                    seq = mapped.writer.seq
                    try:
                        sent = mapped.try_send(_EXECUTE, op_id, code, buffer)
                    finally:
                        # Published or not, by the ring itself: an interrupt can
                        # come after the frame went out and before try_send
                        # returned, and its op id must then never be reused.
                        # (The head also moves for a WRAP alone; seq only for
                        # a frame.)
                        sent = sent or mapped.writer.seq != seq
                        if not sent:
                            mapped.ops.abandon()
        except BaseException:
            self._interrupted_send(sent)
            raise
        if not sent:
            # Nothing was published: the general path grows the rings, waits
            # for room, or raises what the session's state calls for.
            self._op_lock.release()
            return self.start(params).wait(timeout)
        ended = False
        op: Operation | None = None
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            spin = self.spin
            frame = mapped.reply_soon(spin)
            if frame is None:
                frame = mapped.sleep_for_reply(spin, deadline)
            if frame is not None:
                kind, reply_id, status, payload = frame
                if kind == _DONE and reply_id == op_id and status == _OK:
                    decode = result_decoder.quick or result_decoder.decode
                    try:
                        result = decode(payload)
                    except Exception:
                        pass  # the general path decodes it again and reports it
                    else:
                        # ops.reply(kind, reply_id, status) for the DONE OK of
                        # the op in flight, as the test above made it: its one
                        # effect, without a call on the reply's critical path
                        # (measured: 0.10 µs of a 4.5 µs round trip).
                        mapped.ops.current_op_id = 0
                        payload.release()
                        mapped.reader.release()
                        ended = True
                        self._op_lock.release()
                        return result
            op = self._operation_for(spec, op_id)
            self._current = op
            self._drive_mapped(op, timeout, deadline, first=frame)
            return op.wait(timeout)
        except BaseException as exc:
            self._interrupted_wait(exc, ended, op)
            raise

    def _abandon(self, op: Operation | None, why: str) -> None:
        """End the session after an exception that is not the protocol's own
        (``KeyboardInterrupt`` from Ctrl-C, an error in a progress callback)
        interrupted a call whose request may have reached the service.

        Python may raise such an exception after any call returns, so it can
        come between a request going out and its send returning, or between
        a reply being received (or polled from the ring) and being handled.
        What the session holds is then unknown; it is dropped rather than
        guessed at, because a guess can misattribute a later reply or wait
        forever for one already taken. The service cancels the operation as
        the session ends, its outcome is unknown here, and the next call
        opens a new session. Releases the operation lock.
        """
        self._session_lost = True
        try:
            if op is not None and not op.finished:
                op._finish(error=OutcomeUnknownError(
                    op.op_id, int(Status.EMPTY), "UNKNOWN",
                    f"{why}; the outcome of {op.name} is unknown"))
        finally:
            try:
                self._teardown()  # with the lock held: memory blocks are retired
            finally:
                self._current = None
                self._op_lock.release()

    def start(self, params: Params, *, on_progress: ProgressCallback | None = None) -> Operation:
        """Start an operation; the returned handle gives progress, cancel, result."""
        spec = spec_of(params)
        if self.registry.by_code(spec.code) is not spec:
            raise SchemaError(f"{spec.name} is not in this client's schema")
        return self._start(spec.code, spec.name, params, on_progress,
                           idempotent=spec.idempotent)

    def call_by_name(self, name: str, params: dict[str, Any] | None = None, *,
                     timeout: float | None = None,
                     on_progress: ProgressCallback | None = None) -> Any:
        """Call an operation by name with plain values (for generic front ends)."""
        return self.start_by_name(name, params, on_progress=on_progress).wait(timeout)

    def start_by_name(self, name: str, params: dict[str, Any] | None = None, *,
                      on_progress: ProgressCallback | None = None) -> Operation:
        spec = self.registry.by_name(name)
        if spec is not None:
            try:
                typed = msgspec.convert(params or {}, spec.params)
            except msgspec.ValidationError as exc:
                raise SchemaError(f"{name}: {exc}") from None
            return self.start(typed, on_progress=on_progress)
        info = self.operations().get(name)
        if info is None:
            raise SchemaError(f"the service has no operation {name!r}")
        return self._start(info.code, name, params or {}, on_progress, idempotent=False)

    def operations(self) -> dict[str, b.OperationInfo]:
        """The service's operations (``aether.describe``), cached."""
        if self._describe_cache is None:
            desc: b.Description = self.call(b.Describe())
            self._describe_cache = {op.name: op for op in desc.operations}
        return self._describe_cache

    def describe(self) -> b.Description:
        result: b.Description = self.call(b.Describe())
        return result

    def status(self) -> b.ServiceStatus:
        result: b.ServiceStatus = self.call(b.Status())
        return result

    def echo(self, data: bytes) -> bytes:
        result: bytes = self.call(b.Echo(data=data))
        return result

    def _start(self, code: int, name: str, params: Any,
               on_progress: ProgressCallback | None, *, idempotent: bool,
               encoded: memoryview | None = None) -> Operation:
        """Start an operation; a session the service ended (it stopped or
        restarted) is replaced by a new one first. Nothing had been delivered
        on the old session, so the call is not a retry of anything."""
        if self._session_lost and not self._closed:
            self._reconnect()
        try:
            return self._start_once(code, name, params, on_progress,
                                    idempotent=idempotent, encoded=encoded)
        except (PeerGoneError, ClosedResourceError):
            if self._closed:
                raise
            self._reconnect()
            return self._start_once(code, name, params, on_progress,
                                    idempotent=idempotent, encoded=encoded)

    def _reconnect(self) -> None:
        self._teardown()
        self._describe_cache = None
        self._encode_buffer = bytearray()  # the failed call may still hold a view of the old
        self._connect()
        self._session_lost = False  # only now: a failed reconnect is tried again next call

    def _start_once(self, code: int, name: str, params: Any,
                    on_progress: ProgressCallback | None, *, idempotent: bool,
                    encoded: memoryview | None = None, in_place: int = -1,
                    tail_crc: tuple[int, int] | None = None) -> Operation:
        """``in_place``: the size of a loan already written into the parameter
        block, whose holder has the operation lock (``tail_crc``: see
        ``_start_loan``)."""
        if in_place < 0:
            self._check_usable()
            if not self._op_lock.acquire(False):
                raise BusyResourceError("an operation is already in flight on this session; "
                                        "use another Client for concurrent calls")
        try:
            self._check_usable()
            if self._held is not None:
                raise BusyResourceError("release the in-place result of the last call first")
            if in_place >= 0:
                assert self.memory is not None
                op_id = self.proto.next_op_id()
                op = Operation(self, op_id, name, code, on_progress)
                op._idempotent = idempotent  # type: ignore[attr-defined]
                self.memory.commit_loan(op_id, code, in_place, tail_crc)
                self._current = op
                self._send(m.Execute(op_id, in_place))
                return op
            # Encoded under the lock: the buffer is the session's, reused per call.
            if encoded is None:
                encode_into(params, self._encode_buffer)
                payload = memoryview(self._encode_buffer)
            else:
                payload = encoded
            mapped = self._mapped
            if mapped is not None:
                if len(payload) > mapped.param_capacity:
                    self._grow_rings(len(payload))
                    mapped = self._mapped
                    assert mapped is not None
                op_id = mapped.ops.execute()
                seq = mapped.writer.seq
                try:
                    op = Operation(self, op_id, name, code, on_progress)
                    op._idempotent = idempotent  # type: ignore[attr-defined]
                    self._current = op
                    mapped.send(_EXECUTE, op_id, code, payload, self.timeout)
                except BaseException:
                    if mapped.writer.seq == seq:  # not published: the op id is free
                        mapped.ops.abandon()
                        self._current = None
                    raise
                return op
            op_id = self.proto.next_op_id()
            op = Operation(self, op_id, name, code, on_progress)
            op._idempotent = idempotent  # type: ignore[attr-defined]
            if self.proto.transport is Transport.SOCKET:
                if len(payload) > self.proto.max_payload:
                    raise LimitsExceededError(op_id, int(Status.LIMITS_EXCEEDED),
                                              "LIMITS_EXCEEDED", "parameters too large")
                self._current = op
                self._send(m.ExecuteInline(op_id, code, bytes(payload)))
            else:
                self._ensure_param_room(len(payload))
                assert self.memory is not None
                self.memory.write_params(op_id, code, payload)
                self._current = op
                self._send(m.Execute(op_id, len(payload)))
        except (PeerGoneError, ClosedResourceError, AetherTimeoutError):
            # Nothing was delivered, but the session is gone: no half-open state.
            self._current = None
            self._teardown()
            self._op_lock.release()
            raise
        except BaseException:
            if self._current is not None:  # set just before the request went out
                self._abandon(self._current, "interrupted while sending")
            else:
                self._op_lock.release()
            raise
        return op

    # -- loans (see aether.client.loan) -------------------------------------------
    def loan(self, params: Params, size: int, *, checksum: bool = True) -> Loan:
        """A writable ``size``-byte buffer for the last (empty ``bytes``) field
        of ``params``; on the mapping transport it lies in the request ring,
        on the memory transport in the parameter block, so bulk data is
        written once. ``with client.loan(Sink(data=b""), n) as
        loan: loan.write(...); loan.call()`` (or fill ``loan.buffer``).

        ``checksum=False`` (mapping transport) leaves the payload out of the
        frame's crc, saving the service's pass over the data (and the
        client's, when the loan is not filled by ``Loan.write``); the
        service accepts that only for operations that read opaque bytes
        (``aether.sink``) and rejects the parameters (REJECTED_BAD_PARAMS) of
        any other."""
        spec, prefix = loan_prefix(params, size)
        if self.registry.by_code(spec.code) is not spec:
            raise SchemaError(f"{spec.name} is not in this client's schema")
        return Loan(self, spec, prefix, size, checksum=checksum)

    def call_in_place(self, params: Params, *, timeout: float | None = None) -> InPlaceResult:
        """Run an operation and return its encoded result *in place* (the reply
        ring on the mapping transport): no copy until you decode. Release it
        (or leave its ``with`` block) before the next call."""
        op = self.start(params)
        op._keep = True  # type: ignore[attr-defined]
        view: memoryview = op.wait(timeout)
        return InPlaceResult(op, view, self._release_held)

    def _release_held(self) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        try:
            held.release()
        except BufferError:
            pass  # the caller kept a view of it; it goes with that view
        mapped = self._mapped
        if mapped is not None:
            mapped.reader.release()

    def _lend(self, total: int) -> tuple[memoryview, int]:
        self._check_usable()
        if not self._op_lock.acquire(False):
            raise BusyResourceError("an operation is already in flight on this session")
        try:
            if self._held is not None:
                raise BusyResourceError("release the in-place result of the last call first")
            mapped = self._mapped
            if mapped is None and self.memory is not None and \
                    self.proto.transport is Transport.MEMORY:
                self._ensure_param_room(total)
                view = self.memory.lend(total)
                self._loan_memory = True
                return view, 0
            if mapped is None:
                self._loan_mapped = False
                return memoryview(bytearray(total)), 0
            if total > mapped.param_capacity:
                self._grow_rings(total)
                mapped = self._mapped
                assert mapped is not None
            op_id = mapped.ops.execute()
            try:
                view = mapped.loan(total, self.timeout)
            except BaseException:
                mapped.ops.abandon()
                raise
            self._loan_mapped = True
            return view, op_id
        except BaseException:
            self._op_lock.release()
            raise

    def _start_loan(self, spec: Any, whole: memoryview, total: int, op_id: int,
                    on_progress: ProgressCallback | None, checksum: bool = True,
                    tail_crc: tuple[int, int] | None = None) -> Operation:
        """``tail_crc``: the CRC-32 of the payload's last bytes and their
        count, summed by ``Loan.write`` (None: the crc reads the payload)."""
        if self._loan_memory:
            self._loan_memory = False
            whole.release()
            try:
                return self._start_once(spec.code, spec.name, None, on_progress,
                                        idempotent=spec.idempotent, in_place=total,
                                        tail_crc=tail_crc)
            except BaseException:
                memory = self.memory
                if memory is not None:
                    with contextlib.suppress(AetherError, ValueError):
                        memory.abandon_loan()  # read-only again, if not gone
                raise
        mapped = self._mapped
        if not self._loan_mapped or mapped is None:
            self._op_lock.release()
            return self._start(spec.code, spec.name, None, on_progress,
                               idempotent=spec.idempotent, encoded=whole)
        try:
            whole.release()
            self._loan_mapped = False
            op = Operation(self, op_id, spec.name, spec.code, on_progress)
            self._current = op
            mapped.commit_loan(op_id, spec.code, total,
                               0 if checksum else rings.FLAG_HEADER_CRC, tail_crc)
        except BaseException:
            # Published or not, with the ring's producer lock released or
            # not: the session's state is unknown, so it goes (see _abandon).
            self._abandon(self._current, "interrupted while sending")
            raise
        return op

    def _loan_progress(self) -> MappedCalls | None:
        """Where ``Loan.write`` reports how far it filled a loan (the mapping
        transport's rings), or None."""
        return self._mapped if self._loan_mapped else None

    def _end_loan(self) -> None:
        if self._loan_memory:
            self._loan_memory = False
            if self.memory is not None:
                self.memory.abandon_loan()
        mapped = self._mapped
        if self._loan_mapped and mapped is not None:
            self._loan_mapped = False
            mapped.abandon_loan()
            mapped.ops.abandon()
        self._op_lock.release()

    def _check_usable(self) -> None:
        if self._closed:
            raise ClosedResourceError("client is closed")
        if self.channel is None or self.channel.closed or self.proto.closed:
            raise ClosedResourceError(
                "the session with the service has ended; create a new Client")

    def _grow_rings(self, size: int) -> None:
        """Step M4: rings large enough for a ``size``-byte payload."""
        try:
            self._map_rings(rings.ring_size_for(size), time.monotonic() + self.timeout)
        except BaseException:
            # As for refused blocks: the refusal is about our request, so the
            # next call must not hide it behind a fresh session.
            self._teardown()
            self._closed = True
            raise

    def _ensure_param_room(self, size: int) -> None:
        assert self.memory is not None
        if size <= self.memory.param_capacity:
            return
        needed = osapi.round_to_pages(size + wire.HEADER_SIZE)
        self._resize(needed, None)

    def resize_blocks(self, *, param_size: int | None = None,
                      retn_size: int | None = None) -> None:
        """Re-register larger (or smaller) blocks (protocol step O6).

        Raises:
            BusyResourceError: an operation is in flight.
            HandshakeError: the service refused the blocks; the session has
                ended (the service closes it) and this client is closed.
        """
        self._check_usable()
        if self.memory is None and self._mapped is None:
            raise BusyResourceError("blocks exist only on the memory and mapping transports")
        if not self._op_lock.acquire(False):
            raise BusyResourceError("cannot re-register blocks while an operation runs")
        try:
            if self._mapped is not None:
                # one ring size for both directions; never shrinks below the current
                want = max(param_size or 0, retn_size or 0, self._mapped.side.region.ring_size)
                self._grow_rings(want - rings.FRAME_SIZE)
                return
            self._resize(param_size, retn_size)
        finally:
            self._op_lock.release()

    def _resize(self, param_size: int | None, retn_size: int | None) -> None:
        assert self.memory is not None
        p = param_size or self.memory.param.size
        r = retn_size or self.memory.retn.size
        try:
            self._register_blocks(self._allocate_blocks(p, r), time.monotonic() + self.timeout)
        except BaseException:
            # A refused registration ends the session on the service's side;
            # the refusal is about this client's request, so reconnecting on
            # the next call (as after a service restart) would hide it.
            self._teardown()
            self._closed = True
            raise

    def _send_cancel(self, op: Operation) -> None:
        mapped = self._mapped
        if mapped is not None:
            if op.finished or mapped.ops.current_op_id != op.op_id:
                return
            try:
                mapped.cancel(op.op_id, self.timeout)
            except (PeerGoneError, AetherTimeoutError):
                pass  # the session is ending; the outcome comes from _drive
            return
        with self._lock:
            if op.finished or self.proto.current_op_id != op.op_id:
                return
            data = self.proto.send(m.Cancel(op.op_id))
        assert self.channel is not None
        self.channel.try_send(data)

    def _drive(self, op: Operation, timeout: float | None, *, deadline: float | None = None,
               first: bytes | m.Event | Exception | None = None) -> None:
        """Pump messages until ``op`` ends (or ``timeout`` runs out).
        ``first``: what ``_call_direct`` already received (a datagram, the
        event the protocol made of it, or the error receiving it raised),
        handled first, as if this loop had received it."""
        if self._current is not op:
            raise BusyResourceError("this operation is not the session's current one")
        if deadline is None and timeout is not None:
            deadline = time.monotonic() + timeout
        if self._mapped is not None:
            self._drive_mapped(op, timeout, deadline)
            return
        try:
            while not op.finished:
                if first is not None:
                    item, first = first, None
                    if isinstance(item, ProtocolError):
                        self._break(op, f"protocol error from the service: {item}")
                        break
                    if isinstance(item, Exception):
                        raise item
                    if isinstance(item, m.Event):
                        self._handle(op, item)
                        continue
                    data: bytes | None = item
                else:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise AetherTimeoutError(f"{op.name} still running after {timeout} s")
                    assert self.channel is not None
                    try:
                        data = self.channel.recv(remaining, spin=self.spin)
                    except AetherTimeoutError:
                        raise AetherTimeoutError(
                            f"{op.name} still running after {timeout} s") from None
                assert data is not None
                with self._lock:
                    try:
                        event = self.proto.receive(data)
                    except ProtocolError as exc:
                        self._break(op, f"protocol error from the service: {exc}")
                        break
                self._handle(op, event)
        except (PeerGoneError, ClosedResourceError) as exc:
            self._break(op, f"connection lost: {exc}", restarted=True)
        except BaseException as exc:
            if not isinstance(exc, AetherError) and self._current is op and not op.finished:
                self._abandon(op, "interrupted while waiting for the reply")
            raise
        finally:
            if op.finished and self._current is op:
                self._current = None
                self._op_lock.release()

    def _drive_mapped(self, op: Operation, timeout: float | None,
                      deadline: float | None, first: Frame | None = None) -> None:
        """``_drive`` for the mapping transport: frames from the reply ring
        (``first``: one the caller already polled)."""
        try:
            while not op.finished:
                mapped = self._mapped
                if mapped is None:
                    self._break(op, "the session ended")
                    break
                if first is not None:
                    frame, first = first, None
                    if not self._mapped_reply(op, mapped, frame):
                        break
                    continue
                try:
                    frame = mapped.next_reply(deadline, self.spin)
                except AetherTimeoutError:
                    raise AetherTimeoutError(f"{op.name} still running after {timeout} s") \
                        from None
                except ControlMessage as msg:
                    with self._lock:
                        try:
                            event = self.proto.receive(msg.data)
                        except ProtocolError as exc:
                            self._break(op, f"protocol error from the service: {exc}")
                            break
                    self._handle(op, event)
                    continue
                except ProtocolError as exc:
                    self._break(op, f"bad reply ring: {exc}")
                    break
                except ValueError:  # the region was unmapped under us by close()
                    self._break(op, "the client was closed")
                    break
                if not self._mapped_reply(op, mapped, frame):
                    break
        except (PeerGoneError, ClosedResourceError) as exc:
            self._break(op, f"connection lost: {exc}", restarted=True)
        except BaseException as exc:
            if not isinstance(exc, AetherError) and self._current is op and not op.finished:
                self._abandon(op, "interrupted while waiting for the reply")
            raise
        finally:
            if op.finished and self._current is op:
                self._current = None
                self._op_lock.release()

    def _mapped_reply(self, op: Operation, mapped: MappedCalls, frame: Frame) -> bool:
        """Apply one reply frame to ``op``; False when the session broke."""
        kind, op_id, arg, payload = frame
        keep = False
        try:
            final = mapped.ops.reply(kind, op_id, arg)
            if final:
                self._finish_with(op, arg, payload)
                keep = op._result is payload
            elif kind == _STARTED:
                op.started = True
            elif op_id == op.op_id:
                self._progress_frame(op, arg, payload)
        except ProtocolError as exc:
            self._break(op, f"bad reply ring: {exc}")
            return False
        finally:
            if keep:
                self._held = payload  # released by InPlaceResult.release
            else:
                payload.release()
                mapped.reader.release()
        return True

    @staticmethod
    def _progress_frame(op: Operation, permille: int, info: memoryview) -> None:
        try:
            pinfo = _progress_decoder.decode(info) if len(info) else ProgressInfo()
        except (msgspec.DecodeError, UnicodeDecodeError):
            pinfo = ProgressInfo()
        op._set_progress(min(permille, 1000), pinfo)

    def _break(self, op: Operation, why: str, *, restarted: bool = False) -> None:
        if restarted:
            why = f"service restarted or stopped ({why})"
        cls = ServiceRestartedError if restarted else OutcomeUnknownError
        op._finish(error=cls(op.op_id, int(Status.EMPTY), "UNKNOWN",
                             f"{why}; the outcome of {op.name} is unknown"))
        self._session_lost = True
        self._teardown()

    def _handle(self, op: Operation, event: m.Event) -> None:
        match event:
            case m.Started(status=status):
                if status == Status.STARTED:
                    op.started = True
                    return
                self._finish_memory(op, status)
            case m.Progress(permille=permille, info=info):
                if event.op_id != op.op_id:
                    return
                try:
                    pinfo = _progress_decoder.decode(info) if info else ProgressInfo()
                except (msgspec.DecodeError, UnicodeDecodeError):
                    pinfo = ProgressInfo()
                op._set_progress(permille, pinfo)
            case m.Done(status=status):
                self._finish_memory(op, status)
            case m.DoneInline(status=status, payload=payload):
                self._finish_with(op, status, payload)
            case m.Error(error=code, text=text):
                self._break(op, f"service error {_error_code_name(code)}: {text}")
            case m.Goodbye(text=text):
                self._break(op, f"service said goodbye: {text or 'no reason'}", restarted=True)
            case m.ConnectionClosed():
                self._break(op, "the service closed the connection", restarted=True)

    def _finish_memory(self, op: Operation, status: int) -> None:
        assert self.memory is not None
        try:
            header, payload = self.memory.read_return(op.op_id)
        except ProtocolError as exc:
            self._break(op, f"bad return block: {exc}")
            return
        if header.status != status:
            self._break(op, f"return block status {header.status} differs from message {status}")
            return
        self._finish_with(op, status, payload)

    def _finish_with(self, op: Operation, status: int, payload: bytes | memoryview) -> None:
        if status == Status.OK and getattr(op, "_keep", False):
            op._finish(result=payload if isinstance(payload, memoryview) else
                       memoryview(payload))
            return
        if status == Status.OK:
            try:
                if self._typed or self.registry.by_code(op.code) is not None:
                    result = self.registry.decode_result(op.code, payload)
                else:
                    result = msgspec.msgpack.decode(payload)
            except (SchemaError, msgspec.DecodeError) as exc:
                op._finish(error=OperationError(op.op_id, status, "OK",
                                                f"result could not be decoded: {exc}"))
                return
            op._finish(result=result)
            return
        try:
            info = _error_decoder.decode(payload)
        except (msgspec.DecodeError, UnicodeDecodeError):
            info = ErrorInfo(message="")
        name = Status(status).name if status in Status._value2member_map_ else str(status)
        cls: type[OperationError] = OperationError
        if status == Status.REJECTED_UNAUTHORIZED:
            cls = AuthorizationError
        elif status == Status.LIMITS_EXCEEDED:
            cls = LimitsExceededError
        op._finish(error=cls(op.op_id, status, name, info.message, dict(info.details)))

    # -- closing ------------------------------------------------------------------
    def _teardown(self) -> None:
        if self.channel is not None:
            self.channel.close()
        if self.memory is not None:
            memory, self.memory = self.memory, None
            # An operation still holding the session may still get its result
            # written into the blocks by the service: keep their addresses.
            memory.close(retire=self._op_lock.locked())
        if self._mapped is not None:
            if self._held is not None:
                self._held = None
            self._mapped.close()
            self._mapped = None
        if self._ptracer_set:
            self._ptracer_set = False
            _PtracerGrant.release()

    def close(self) -> None:
        """Say GOODBYE and release the blocks. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.channel is not None and not self.channel.closed and self.proto.ready:
            try:
                with self._lock:
                    data = self.proto.send(m.Goodbye(0))
                self.channel.try_send(data)
            except ProtocolError:
                pass
        self._teardown()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client {self.address.name} transport={self.transport}>"


def _timeval(seconds: float) -> bytes:
    """A ``struct timeval`` for SO_SNDTIMEO (0: no timeout)."""
    whole = int(seconds)
    return struct.pack("@ll", whole, int((seconds - whole) * 1_000_000))
