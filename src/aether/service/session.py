"""One client session in the service: its thread, its handshake and its
operations.

Each session runs in its own thread and blocks only on its own socket, its
client's pidfd and a wake-up pipe, so a slow or hostile client never delays
another. Handlers run in a worker thread (or inline, for handlers declared
fast) and report back through the wake-up pipe. Every failure path ends in
"deny and close": nothing a client sends can make the service write
anywhere but that client's verified blocks.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from aether import osapi, wire
from aether.errors import (
    AetherError,
    AetherTimeoutError,
    ClosedResourceError,
    PeerGoneError,
    ProtocolError,
    SchemaError,
)
from aether.schema import (
    ErrorInfo,
    OperationSpec,
    ProgressInfo,
    TypedDecoder,
    builtins,
    encode as encode_payload,
    encode_into,
    encode_into_at,
)
from aether.transport.channel import CONTROL_LIMIT, Channel, make_wakeup
from aether.transport.mapping import MappingServiceSide, spin_until
from aether.transport.memory_service import HandshakeFailure, MemoryServiceSide
from aether.wire import (
    ErrorCode,
    FrameKind,
    GoodbyeReason,
    State,
    Status,
    Transport,
    messages as m,
    rings,
)

from .context import Cancelled, OperationContext, OperationFailed
from .policy import Caller, Policy

if TYPE_CHECKING:
    from .host import Handler, Service

log = logging.getLogger("aether.service")

# Socket buffers asked for: SEQPACKET datagrams (the socket transport's payloads)
# are bounded by them.
SOCKET_BUFFER = 4 * 1024 * 1024
# Buffers over this size are released after TRIM_AFTER seconds without a call.
TRIM_THRESHOLD = 1024 * 1024
TRIM_AFTER = 1.0


@dataclass(slots=True)
class _RunningOp:
    op_id: int
    spec: OperationSpec
    ctx: OperationContext
    params: Any = None
    thread: threading.Thread | None = None
    result: Any = None
    error: BaseException | None = None
    finished: bool = False


class _EndSession(Exception):
    pass


_EXECUTE = int(FrameKind.EXECUTE)
_OK = int(Status.OK)
# Members used on every call, as globals: in Python 3.11 an enum member's
# lookup (FrameKind.DONE) goes through EnumType's __getattr__ hook, ~50 ns.
_DONE_KIND = FrameKind.DONE
_STATUS_OK = Status.OK
_monotonic = time.monotonic
_SOCKET = Transport.SOCKET
# While a client fills a large loan: how long each look for its frame spins
# before the next chunk is summed (a 256 KiB chunk is written in ~15-20 µs).
_LOAN_LOOK = 20e-6
# ... and how long a fill may stand still before the session sleeps (to be
# woken by the next report), even in a service that never spins otherwise:
# sleeping between two reports costs the client a doorbell write per chunk.
_LOAN_STALL = 50e-6
# A request frame as the ring reader gives it: kind, op id, arg, payload.
Frame = tuple[int, int, int, memoryview]
# Built-ins whose parameters are decoded as views of the received payload.
_IN_PLACE = {code: TypedDecoder(t, max_size=1 << 40, what=t.__name__)
             for code, t in builtins.IN_PLACE.items()}


def _read_groups(pid: int) -> frozenset[int]:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Groups:"):
                    return frozenset(int(g) for g in line.split()[1:])
    except (OSError, ValueError):
        pass
    return frozenset()


class Session:
    """A connected client, from HELLO to close."""

    def __init__(self, host: Service, sock: socket.socket, session_id: int) -> None:
        self.host = host
        self.session_id = session_id
        self.channel = Channel(
            sock, max_datagram=wire.CONTROL_SIZE + host.limits.max_payload + 1,
            send_timeout=host.limits.send_timeout, buffer_size=SOCKET_BUFFER,
        )
        self.peer = osapi.peer_credentials(sock)
        # Spinning for the next request, or summing a loan while the client
        # writes it, only pays if the client can run meanwhile: sharing one
        # CPU, the two only take turns.
        self._sums_loans = not osapi.one_cpu_with(self.peer.pid)
        self._spin = host.limits.spin if self._sums_loans else 0.0
        self.pidfd: int | None
        if not host.pidfd_supported:
            self.pidfd = None
        else:
            try:
                self.pidfd = osapi.peer_pidfd(sock)
            except AetherError:
                self.pidfd = -1  # the peer is already gone
        # Groups are read by pid number: only trusted once the pidfd shows the
        # process is still the one that connected (no pid reuse in between).
        groups = _read_groups(self.peer.pid)
        if self.pidfd is not None and self.pidfd >= 0 and osapi.pidfd_exited(self.pidfd):
            groups = frozenset()
            osapi.close_fd(self.pidfd)
            self.pidfd = -1
        self.caller = Caller(self.peer.pid, self.peer.uid, self.peer.gid, groups)
        offered = Transport.SOCKET | Transport.MAPPING
        if self.pidfd is not None and self.pidfd >= 0 and host.memory_transport_enabled:
            offered |= Transport.MEMORY
        self.proto = wire.ServiceProtocol(
            fingerprint=host.fingerprint,
            transports=offered,
            max_payload=host.limits.max_payload,
        )
        self.memory: MemoryServiceSide | None = None
        self.mapping: MappingServiceSide | None = None
        self._lock = threading.Lock()  # guards proto and the return block
        self._fd_lock = threading.Lock()  # guards the wake pipe against use after close
        self._fds_closed = False
        self._wake_r, self._wake_w = make_wakeup()
        self._busy_replies = 0
        self._trim_at: float | None = None
        self.running: _RunningOp | None = None
        self._next_op: _RunningOp | None = None  # made ahead for the short paths
        self._result_buffer = bytearray()  # reused: no page faults for large results
        # Inline handlers of unprivileged operations: the short paths
        # (_run_inline) run them without the general machinery.
        # Each: spec, handler, a decode that raises anything on bad input (the
        # general path then reports it), the largest payload it may decode.
        self._inline_ops: dict[int, tuple[OperationSpec, Handler, Callable[[Any], Any],
                                          int]] = {}
        for code, handler in host.handlers.items():
            spec = host.registry.by_code(code)
            if handler.inline and spec is not None and not spec.privileged \
                    and code not in _IN_PLACE:
                typed = host.registry.params_decoder(code)
                self._inline_ops[code] = (spec, handler, typed.quick or typed.decode,
                                          typed.max_size)
        self.operations = 0
        self.established = False
        self.connected_at = time.monotonic()
        self.thread = threading.Thread(
            target=self.run, name=f"aether-session-{session_id}", daemon=True
        )
        self._closing = False  # set once by shutdown(), from the host's thread

    # -- helpers --------------------------------------------------------------
    @property
    def transport_name(self) -> str:
        t = self.proto.transport
        return t.name.lower() if t is not None and t.name else "handshake"

    def _send(self, event: m.Event) -> None:
        with self._lock:
            data = self.proto.send(event)
        self.channel.send(data)

    def _fatal(self, code: ErrorCode, text: str) -> None:
        """Tell the client why, then end the session."""
        log.warning("session %d (pid %d uid %d): %s: %s", self.session_id, self.peer.pid,
                    self.peer.uid, code.name, text)
        try:
            with self._lock:
                data = self.proto.send(m.Error(int(code), 0, text))
            self.channel.try_send(data)
        except ProtocolError:
            pass
        raise _EndSession()

    def wake(self) -> None:
        """Wake the session thread (from a worker or the host). Safe after close:
        the descriptor number may already belong to something else."""
        with self._fd_lock:
            if self._fds_closed:
                return
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass

    def shutdown(self) -> None:
        """Ask the session to finish (service stopping)."""
        self._closing = True
        op = self.running
        if op is not None:
            op.ctx.cancel()
        self.wake()

    def _close_pidfd(self) -> None:
        if self.pidfd is not None and self.pidfd >= 0:
            osapi.close_fd(self.pidfd)

    def _extra_fds(self) -> tuple[int, ...]:
        fds = [self._wake_r]
        if self.pidfd is not None and self.pidfd >= 0:
            fds.append(self.pidfd)
        return tuple(fds)

    def _client_exited(self) -> bool:
        return self.pidfd is not None and self.pidfd >= 0 and osapi.pidfd_exited(self.pidfd)

    # -- main -------------------------------------------------------------------
    def run(self) -> None:
        try:
            if self.pidfd == -1:
                raise _EndSession()
            self.channel.send(self.proto.hello())
            self._handshake(deadline=time.monotonic() + self.host.limits.handshake_timeout)
            if self.proto.transport is not Transport.SOCKET:
                self.channel.max_datagram = CONTROL_LIMIT  # payloads never ride the socket
            self.established = True
            self.host.session_established(self)
            log.info("session %d: pid %d uid %d ready on the %s transport", self.session_id,
                     self.peer.pid, self.peer.uid, self.transport_name)
            self._serve()
        except _EndSession:
            pass
        except (PeerGoneError, ClosedResourceError):
            pass
        except ProtocolError as exc:
            log.warning("session %d: protocol error: %s", self.session_id, exc)
            try:
                self.channel.try_send(wire.encode(m.Error(int(ErrorCode.PROTOCOL), 0, str(exc))))
            except Exception:
                pass
        except Exception:  # never let one session take the service down
            log.error("session %d: internal error\n%s", self.session_id, traceback.format_exc())
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        op = self.running
        if op is not None:
            op.ctx.cancel()
        self.channel.close()
        with self._lock:  # a worker reporting progress holds it while it writes
            memory, self.memory = self.memory, None
        if memory is not None:
            memory.close()
        with self._lock:
            mapping, self.mapping = self.mapping, None
        if mapping is not None:
            self._close_mapping(mapping)
        with self._fd_lock:
            self._fds_closed = True
            for fd in (self._wake_r, self._wake_w):
                osapi.close_fd(fd)
        self._close_pidfd()
        self.pidfd = -1
        self.host.session_ended(self)

    # -- handshake (docs/protocol.md section 3) -----------------------------------
    def _handshake(self, deadline: float) -> None:
        while self.proto.state is not State.IDLE:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fatal(ErrorCode.HANDSHAKE_TIMEOUT, "handshake not completed in time")
            try:
                data = self.channel.recv(remaining, self._extra_fds())
            except AetherTimeoutError:
                self._fatal(ErrorCode.HANDSHAKE_TIMEOUT, "handshake not completed in time")
            if data is None:
                self._drain_wake()
                if self._client_exited():
                    raise _EndSession()
                if self._closing:
                    self._fatal(ErrorCode.SHUTTING_DOWN, "service is stopping")
                continue
            self._handshake_step(data)

    def _handshake_step(self, data: bytes) -> None:
        with self._lock:
            event = self.proto.receive(data)
        try:
            match event:
                case m.ClientPid(pid=pid):
                    assert self.pidfd is not None
                    self.memory = MemoryServiceSide(
                        peer=self.peer, pidfd=self.pidfd, max_block=self.host.limits.max_block_size
                    )
                    self.memory.accept_pid(pid)
                case m.MapMode(ring_size=size):
                    self._map(size)
                case m.SocketMode():
                    # Our results must fit one datagram of our own socket too.
                    room = self.channel.max_send() - wire.CONTROL_SIZE
                    self.proto.max_payload = max(0, min(self.proto.max_payload, room))
                    self._send(m.TestDone(0))
                case m.AddrParam(address=a, size=s):
                    assert self.memory is not None
                    self.memory.accept_param(a, s)
                case m.AddrRetn(address=a, size=s):
                    assert self.memory is not None
                    self.memory.accept_retn(a, s)
                case m.IpcTest():
                    assert self.memory is not None
                    try:
                        self.memory.pattern_test()
                    except HandshakeFailure as exc:
                        self._send(m.TestDone(int(exc.code)))
                        log.warning("session %d: pattern test failed: %s", self.session_id, exc)
                        raise _EndSession() from None
                    self._send(m.TestDone(0))
                case m.TestVerified(error=err):
                    if err:
                        log.warning("session %d: client could not verify the zeros (%s)",
                                    self.session_id, ErrorCode(err).name if err in
                                    ErrorCode._value2member_map_ else err)
                        raise _EndSession()
                case m.Goodbye() | m.ConnectionClosed() | m.Error():
                    raise _EndSession()
        except HandshakeFailure as exc:
            self._fatal(exc.code, exc.text)

    def _map(self, requested: int) -> None:
        """Step M2: a fresh sealed region and doorbells, handed over with MAP_READY."""
        limit = max(rings.MIN_RING_SIZE, rings.ring_size_for(self.host.limits.max_payload))
        size = requested or rings.DEFAULT_RING_SIZE
        code, text = rings.check_ring_size(size, max_size=limit)
        if code:
            self._fatal(code, text)
        old = self.mapping
        region_bytes = rings.region_size(size)
        uid = self.peer.uid
        # The old region is still held while the new one is made: both count.
        if not self.host.reserve_ring_bytes(uid, region_bytes):
            self._fatal(ErrorCode.LIMITS_EXCEEDED,
                        f"uid {uid}'s sessions already hold "
                        f"{self.host.ring_bytes(uid) // 1024} KiB of rings; "
                        f"{region_bytes // 1024} KiB more would pass the "
                        f"{self.host.ring_budget // 1024} KiB budget")
        try:
            mapping = MappingServiceSide(
                size, last_op_id=old.ops.last_op_id if old is not None else 0)
        except AetherError as exc:
            self.host.release_ring_bytes(uid, region_bytes)
            self._fatal(ErrorCode.INTERNAL, f"cannot create the session's region: {exc}")
        with self._lock:
            self.mapping = mapping
            data = self.proto.send(m.MapReady(size, mapping.region.size))
        if old is not None:
            self._close_mapping(old)
        self.channel.send_with_fds(data, mapping.fds())

    def _close_mapping(self, mapping: MappingServiceSide) -> None:
        mapping.close()
        self.host.release_ring_bytes(self.peer.uid, mapping.region.size)

    # -- operations (docs/protocol.md section 4) ----------------------------------
    def _serve(self) -> None:
        if self.proto.transport is Transport.MAPPING:
            self._serve_mapped()
            return
        idle = self.host.limits.idle_timeout
        while True:
            op = self.running
            if self._closing and op is None:
                self._goodbye(GoodbyeReason.SHUTDOWN, "service is stopping")
            timeout = idle if (idle and op is None) else None
            if op is None and self._trim_at is not None:
                trim_in = max(0.0, self._trim_at - time.monotonic())
                timeout = trim_in if timeout is None else min(timeout, trim_in)
            spin = self._spin if (op is None and self.host.session_count <= 1) else 0.0
            try:
                data = self.channel.recv(timeout, self._extra_fds(), spin=spin)
            except AetherTimeoutError:
                if self._trim_at is not None and time.monotonic() >= self._trim_at:
                    self._trim_buffers()
                    continue
                self._goodbye(GoodbyeReason.NORMAL, "idle timeout")
            if data is None:
                self._drain_wake()
                op = self.running
                if op is not None and op.finished:
                    self._finish(op)
                if self._client_exited():
                    log.info("session %d: client pid %d exited", self.session_id, self.peer.pid)
                    raise _EndSession()
                continue
            with self._lock:
                event = self.proto.receive(data)
            self._dispatch(event)

    def _serve_mapped(self) -> None:
        """The operation loop of the mapping transport (protocol.md §10): frames
        from the request ring; the socket only for GOODBYE, MAP_MODE, hang-up."""
        limits = self.host.limits
        sock_fd = self.channel.fileno()
        while True:
            mapping = self.mapping
            assert mapping is not None
            reader = mapping.requests
            op = self.running
            if op is None and self._closing:
                self._goodbye(GoodbyeReason.SHUTDOWN, "service is stopping")
            # A lone idle session spins for the next request (the host's other
            # sessions would want the CPU): take() looks at once, then spins.
            alone = op is None and self.host.session_count <= 1
            frame = reader.take(self._spin) if alone and self._spin else reader.poll()
            # A lone idle session also sums a loan the client is filling
            # (protocol.md §10.5): work the frame's check would do later.
            streaming = alone and self._sums_loans
            if frame is None and streaming and mapping.sums.moved():
                frame = self._sum_loan_meanwhile(mapping)
            if frame is not None:
                self._mapped_frame(mapping, *frame)
                continue
            if op is not None and op.finished:
                self._drain_wake()
                self._finish(op)
                continue
            timeout = limits.idle_timeout if op is None else None
            if op is None and self._trim_at is not None:
                trim_in = max(0.0, self._trim_at - time.monotonic())
                timeout = trim_in if timeout is None else min(timeout, trim_in)
            started = time.monotonic()
            if streaming:  # woken by a frame, or by a loan's fill moving on
                ready = mapping.sleep(self._loan_or_frame(mapping),
                                      (sock_fd, *self._extra_fds()), timeout,
                                      rings.SLEEPING_SUMS_LOANS)
            else:
                ready = mapping.sleep(reader.pending, (sock_fd, *self._extra_fds()), timeout)
            if not ready:
                if timeout is not None and time.monotonic() - started >= timeout \
                        and not reader.pending():
                    if self._trim_at is not None and time.monotonic() >= self._trim_at:
                        self._trim_buffers()
                        continue
                    self._goodbye(GoodbyeReason.NORMAL, "idle timeout")
                continue
            if self._wake_r in ready:
                self._drain_wake()
            if self._client_exited():
                log.info("session %d: client pid %d exited", self.session_id, self.peer.pid)
                raise _EndSession()
            if sock_fd in ready:
                data = self.channel.recv(0.0)
                assert data is not None
                with self._lock:
                    event = self.proto.receive(data)
                self._dispatch(event)

    @staticmethod
    def _loan_or_frame(mapping: MappingServiceSide) -> Callable[[], bool]:
        """What a session that sums loans ahead looks at before it sleeps: a
        frame, or a loan's fill that moved since it last summed."""
        pending = mapping.requests.pending
        moved = mapping.sums.moved
        return lambda: pending() or moved()

    def _sum_loan_meanwhile(self, mapping: MappingServiceSide) -> Frame | None:
        """The client is filling a large loan (rings.FillNotice): sum its
        payload as it lands, so the frame's crc check reads only the rest.
        Returns the frame once it comes, or None when the fill has not moved
        for a spin's time (the client is slow or gone: sleep, to be woken by
        the next report or the frame)."""
        sums = mapping.sums
        reader = mapping.requests
        stall = max(self._spin, _LOAN_STALL)
        look = _LOAN_LOOK
        clock = time.monotonic
        moved_at = clock()
        while not self._closing:
            if sums.advance():
                moved_at = clock()
            elif clock() - moved_at >= stall:
                return None
            frame = reader.take(look)
            if frame is not None:
                return frame
        return None

    def _mapped_frame(self, mapping: MappingServiceSide, kind: int, op_id: int, arg: int,
                      payload: memoryview) -> None:
        reader = mapping.requests
        if kind == _EXECUTE:
            if not mapping.ops.execute(op_id):
                reader.release()
                self._reply_busy(op_id)
                return
            if not reader.flags and self._execute_inline(mapping, op_id, arg, payload):
                return
            try:
                if reader.flags & rings.FLAG_HEADER_CRC and arg not in _IN_PLACE:
                    self.operations += 1
                    self._reject(op_id, Status.REJECTED_BAD_PARAMS,
                                 "parameters without a payload crc are accepted only by "
                                 "operations that read opaque bytes (aether.sink)")
                    return
                # The payload is read in place (decoded, or handed to an inline
                # handler such as aether.sink) before the frame is released.
                self._start(op_id, arg, payload)
            finally:
                op = self.running
                if op is not None and op.finished:
                    op.params = None  # may hold views of the frame
                try:
                    payload.release()
                except BufferError:
                    pass  # a decoded view still refers to it; freed with it
                reader.release()
            return
        reader.release()
        if mapping.ops.cancel(op_id):
            op = self.running
            if op is not None and op.op_id == op_id:
                log.info("session %d: op %d cancelled by client", self.session_id, op_id)
                op.ctx.cancel()

    def _run_inline(self, op_id: int, code: int, payload: bytes | memoryview
                    ) -> tuple[_RunningOp, int] | None:
        """The front half of the short paths: an unprivileged operation with an
        inline handler, run at once. Protocol and outcomes are exactly the
        general path's (``_start``, ``_finish``); a round trip on these paths
        is measured in microseconds, and each call and attribute the general
        path adds costs a share of them.

        Returns the finished operation and the size of its result, encoded
        into the session's result buffer (-1 when that is ``_finish``'s job:
        an error, an unencodable result), or None, having done nothing, when
        the request is not that case (the general path then handles it, bad
        parameters included).
        """
        entry = self._inline_ops.get(code)
        if entry is None:
            return None
        spec, handler, decode, max_size = entry
        host = self.host
        if host.handlers.get(code) is not handler:
            return None  # registered again since the session started: the general path
        caller = self.caller
        # Inline operations are unprivileged, so Policy's own rules refuse one
        # only by naming it; a subclass may decide anything and is always asked.
        policy = host.policy
        if (type(policy) is not Policy or spec.name in policy.rules) \
                and not policy.allows(spec, caller):
            return None
        if len(payload) > max_size:
            return None
        try:
            params = decode(payload)
        except Exception:
            return None  # the general path decodes again and reports it
        self.operations += 1
        op = self._next_op
        if op is None:
            ctx = OperationContext(op_id, spec.name, caller, self.session_id, self._progress,
                                   host.limits.progress_interval)
            op = _RunningOp(op_id, spec, ctx, params)
        else:
            self._next_op = None
            ctx = op.ctx
            ctx.op_id = op_id
            ctx.op_name = spec.name
            ctx.started = _monotonic()
            op.op_id = op_id
            op.spec = spec
            op.params = params
        self.running = op
        try:
            result = handler.func(params, ctx)
        except BaseException as exc:  # reported to the client as FAILED/CANCELLED
            op.error = exc
            op.finished = True
            return op, -1
        op.result = result
        op.finished = True
        buffer = self._result_buffer
        try:
            encode_into_at(result, buffer, 0)
        except Exception:
            return op, -1  # _finish reports it (or a view still holds the buffer)
        return op, len(buffer)

    def _execute_inline(self, mapping: MappingServiceSide, op_id: int, code: int,
                        payload: memoryview) -> bool:
        """The mapping transport's common case, short (see ``_run_inline``).
        False, having done nothing, when the frame is not that case.

        The request frame (which decoded parameters, and so the result, may
        view) is given back only once the result is encoded, and with the
        rest of the bookkeeping after the reply: the client waits for nothing
        that follows the reply's ``put``.
        """
        ran = self._run_inline(op_id, code, payload)
        if ran is None:
            return False
        op, size = ran
        if size < 0 or size > mapping.result_capacity:
            self._give_back(mapping, payload)
            self._finish(op)  # the error, or RESULT_TOO_LARGE with the size it needs
            return True
        # self._reply(), inline: the client waits for this put and nothing after it
        lock = self._lock
        lock.acquire()
        try:
            wake = mapping.replies.put(_DONE_KIND, op_id, _OK, self._result_buffer)
        except rings.RingFull:
            wake = None
        finally:
            lock.release()
        if wake is None:
            self._reply_slowly(mapping, _DONE_KIND, op_id, _OK, self._result_buffer)
        elif wake:
            osapi.eventfd_signal(mapping.peer_efd)
        # The next request is read by this thread, after this returns.
        mapping.ops.finished(op_id, _OK)
        self._give_back(mapping, payload)
        self.running = None
        # The next inline operation's objects, made while the client reads this
        # reply rather than after its next request arrives.
        ctx = OperationContext(0, "", self.caller, self.session_id, self._progress,
                               self.host.limits.progress_interval)
        self._next_op = _RunningOp(0, op.spec, ctx)
        self._busy_replies = 0
        if size > TRIM_THRESHOLD:
            self._trim_at = time.monotonic() + TRIM_AFTER
        self.host.operation_finished(op.spec, _STATUS_OK)
        return True

    @staticmethod
    def _give_back(mapping: MappingServiceSide, payload: memoryview) -> None:
        """Release the request frame ``payload`` views (polled last)."""
        try:
            payload.release()
        except BufferError:
            pass  # a decoded view still refers to it; freed with that view
        mapping.requests.release()

    def _execute_direct(self, op_id: int, code: int, payload: bytes | memoryview) -> bool:
        """The memory and socket transports' common case, short (see
        ``_run_inline``): the result into the return block and DONE, or
        DONE_INLINE. False, having done nothing, when it is not that case."""
        ran = self._run_inline(op_id, code, payload)
        if ran is None:
            return False
        op, size = ran
        memory = self.memory
        inline = self.proto.transport is _SOCKET
        capacity = self.proto.max_payload if inline else \
            memory.result_capacity if memory is not None else -1
        if size < 0 or size > capacity:
            self._finish(op)
            return True
        if size > TRIM_THRESHOLD or (memory is not None and memory.buffer_size > TRIM_THRESHOLD):
            self._trim_at = time.monotonic() + TRIM_AFTER
        self.running = None
        self._busy_replies = 0
        buffer = self._result_buffer
        if inline:
            self._send(m.DoneInline(op_id, _OK, bytes(buffer)))
        else:
            assert memory is not None
            try:
                memory.write_status(op_id, _OK, buffer, 1000)
            except AetherError as exc:
                self._fatal(ErrorCode.MEMORY_ACCESS, f"writing the result: {exc}")
            self._send(m.Done(op_id, _OK))
        self.host.operation_finished(op.spec, _STATUS_OK)
        return True

    def _reply(self, kind: FrameKind, op_id: int, arg: int,
               payload: bytes | memoryview = b"") -> None:
        """Put one reply frame; wait (bounded) while the client has not read
        earlier ones. Then ring the client's doorbell if it sleeps."""
        mapping = self.mapping
        assert mapping is not None
        with self._lock:
            try:
                wake = mapping.replies.put(kind, op_id, arg, payload)
            except rings.RingFull:
                wake = None
        if wake is None:
            self._reply_slowly(mapping, kind, op_id, arg, payload)
        elif wake:  # the client announced it sleeps (the ring's bell word)
            osapi.eventfd_signal(mapping.peer_efd)

    def _reply_slowly(self, mapping: MappingServiceSide, kind: FrameKind, op_id: int, arg: int,
                      payload: bytes | bytearray | memoryview) -> None:
        """:meth:`_reply` when the ring is full: retry until the client has
        read enough, then ring its doorbell if it sleeps."""
        deadline = time.monotonic() + self.host.limits.send_timeout
        watch = (self.channel.fileno(), *self._extra_fds())
        writer = mapping.replies

        def caught_up() -> bool:
            return writer.peer_tail() == writer.head

        while True:
            with self._lock:
                try:
                    mapping.replies.put(kind, op_id, arg, payload)
                    break
                except rings.RingFull:
                    pass
            if time.monotonic() >= deadline:
                raise PeerGoneError(f"client has not read its replies for "
                                    f"{self.host.limits.send_timeout:.1f} s")
            mapping.ring_peer()
            if spin_until(caught_up, 0.0005):
                continue
            ready = osapi.wait_readable(watch, 0.001)
            if self._client_exited():
                raise _EndSession()
            if self._wake_r in ready:
                self._drain_wake()  # the serve loop re-checks what it was about
            if any(fd != self._wake_r for fd in ready):
                # A datagram or a hang-up on the socket, read by the serve loop
                # once this reply is out. Looking again at once would spin with
                # the GIL held and starve every other thread of the service.
                time.sleep(0.001)
        mapping.ring_peer()

    def _trim_buffers(self) -> None:
        """Give back large per-session buffers once the session has been quiet
        for a while: idle sessions must not pin megabytes each."""
        self._trim_at = None
        self._result_buffer = bytearray()
        if self.memory is not None:
            self.memory.trim()

    def _goodbye(self, reason: GoodbyeReason, text: str) -> None:
        try:
            self._send(m.Goodbye(int(reason), text))
        except (ProtocolError, PeerGoneError, ClosedResourceError):
            pass
        raise _EndSession()

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 64):
                pass
        except BlockingIOError:
            pass

    def _dispatch(self, event: m.Event) -> None:
        match event:
            case m.Execute(op_id=op_id, length=length):
                if op_id in self.proto.pending_busy:
                    self._reply_busy(op_id)
                    return
                assert self.memory is not None
                try:
                    op_code, payload = self.memory.read_params(op_id, length)
                except ProtocolError as exc:
                    self._fatal(ErrorCode.PROTOCOL, str(exc))
                except AetherError as exc:
                    self._fatal(ErrorCode.MEMORY_ACCESS, f"reading parameters: {exc}")
                if not self._execute_direct(op_id, op_code, payload):
                    self._start(op_id, op_code, payload)
            case m.ExecuteInline(op_id=op_id, op_code=op_code, payload=payload):
                if op_id in self.proto.pending_busy:
                    self._reply_busy(op_id)
                    return
                if not self._execute_direct(op_id, op_code, payload):
                    self._start(op_id, op_code, payload)
            case m.Cancel(op_id=op_id):
                op = self.running
                if op is not None and op.op_id == op_id:
                    log.info("session %d: op %d cancelled by client", self.session_id, op_id)
                    op.ctx.cancel()
            case m.AddrParam():
                # re-registration of larger blocks (step O6): finish it as a handshake
                self._handshake_step_event(event)
                self._handshake(deadline=time.monotonic() + self.host.limits.handshake_timeout)
            case m.MapMode(ring_size=size):
                # larger rings (step M4): a new region, then TEST_VERIFIED as in M3
                if self.running is not None or (
                        self.mapping is not None and self.mapping.ops.current_op_id):
                    self._fatal(ErrorCode.PROTOCOL, "MAP_MODE while an operation runs")
                self._map(size)
                self._handshake(deadline=time.monotonic() + self.host.limits.handshake_timeout)
            case m.Goodbye() | m.ConnectionClosed() | m.Error():
                raise _EndSession()

    def _reply_busy(self, op_id: int) -> None:
        """REJECTED_BUSY for an EXECUTE while one runs; a client that keeps
        flooding is cut off rather than answered forever."""
        self._busy_replies += 1
        if self._busy_replies > self.host.limits.max_busy_replies:
            self._fatal(ErrorCode.LIMITS_EXCEEDED,
                        f"more than {self.host.limits.max_busy_replies} EXECUTEs while busy")
        if self.proto.transport is Transport.MAPPING:
            self._reply(FrameKind.STARTED, op_id, int(Status.REJECTED_BUSY))
            return
        self._send(m.Started(op_id, int(Status.REJECTED_BUSY)))

    def _handshake_step_event(self, event: m.Event) -> None:
        assert isinstance(event, m.AddrParam) and self.memory is not None
        try:
            self.memory.accept_param(event.address, event.size)
        except HandshakeFailure as exc:
            self._fatal(exc.code, exc.text)

    def _reject(self, op_id: int, status: Status, message: str, **details: Any) -> None:
        payload = encode_payload(ErrorInfo(message=message, details=details))
        log.info("session %d: op %d %s: %s", self.session_id, op_id, status.name, message)
        if self.proto.transport is Transport.SOCKET:
            self._send(m.DoneInline(op_id, int(status), payload))
            return
        if self.mapping is not None:
            if len(payload) > self.mapping.result_capacity:
                payload = encode_payload(ErrorInfo(message=message[:200]))
            self.mapping.ops.finished(op_id, int(status))
            self._reply(FrameKind.DONE, op_id, int(status), payload)
            return
        assert self.memory is not None
        if len(payload) > self.memory.result_capacity:
            payload = encode_payload(ErrorInfo(message=message[:200]))
        self._write_status(op_id, status, payload)
        self._send(m.Started(op_id, int(status)))

    def _write_status(self, op_id: int, status: Status, payload: bytes = b"") -> None:
        """Write the return block (O2); a block the client unmapped or swapped
        for something unwritable is a typed MEMORY_ACCESS, not an internal error."""
        assert self.memory is not None
        try:
            self.memory.write_status(op_id, status, payload)
        except AetherError as exc:
            self._fatal(ErrorCode.MEMORY_ACCESS, f"writing the return block: {exc}")

    def _start(self, op_id: int, op_code: int, payload: bytes | memoryview) -> None:
        self.operations += 1
        spec = self.host.registry.by_code(op_code)
        if spec is None:
            self._reject(op_id, Status.REJECTED_UNKNOWN_OP, f"unknown operation code 0x{op_code:x}")
            return
        handler = self.host.handlers.get(op_code)
        if handler is None:
            self._reject(op_id, Status.REJECTED_UNKNOWN_OP,
                         f"{spec.name} is declared but not implemented by this service")
            return
        try:
            in_place = _IN_PLACE.get(op_code)
            if in_place is not None:
                params = in_place.decode(payload)
            else:
                params = self.host.registry.decode_params(op_code, payload)
        except SchemaError as exc:
            self._reject(op_id, Status.REJECTED_BAD_PARAMS, str(exc), path=exc.path)
            return
        if not self.host.policy.allows(spec, self.caller):
            self.host.audit(spec, self.caller, allowed=False)
            self._reject(op_id, Status.REJECTED_UNAUTHORIZED,
                         f"uid {self.caller.uid} may not call {spec.name}")
            return
        if spec.privileged:
            self.host.audit(spec, self.caller, allowed=True)
        ctx = OperationContext(op_id, spec.name, self.caller, self.session_id, self._progress,
                               self.host.limits.progress_interval)
        op = _RunningOp(op_id, spec, ctx, params)
        if handler.inline:
            # Completes at once: DONE without STARTED (protocol.md step O4).
            self.running = op
            self._run_handler(op, handler)
            self._finish(op)
            return
        if not self.host.reserve_worker(self.caller.uid):
            self._reject(op_id, Status.LIMITS_EXCEEDED,
                         f"uid {self.caller.uid} has too many operations running "
                         f"(limit {self.host.limits.max_workers_per_uid})")
            return
        op.thread = threading.Thread(
            target=self._run_in_worker, args=(op, handler),
            name=f"aether-op-{self.session_id}-{op_id}", daemon=True,
        )
        self.running = op
        if self.mapping is not None:
            self._reply(FrameKind.STARTED, op_id, int(Status.STARTED))
        else:
            if self.memory is not None and self.proto.transport is Transport.MEMORY:
                self._write_status(op_id, Status.STARTED)
            self._send(m.Started(op_id, int(Status.STARTED)))
        try:
            op.thread.start()
        except RuntimeError as exc:  # no more threads: fail this op, keep serving
            self.host.release_worker(self.caller.uid)
            op.error = exc
            op.finished = True
            self._finish(op)

    def _run_handler(self, op: _RunningOp, handler: Handler) -> None:
        try:
            op.result = handler.func(op.params, op.ctx)
        except BaseException as exc:  # reported to the client as FAILED/CANCELLED
            op.error = exc
        finally:
            op.finished = True

    def _run_in_worker(self, op: _RunningOp, handler: Handler) -> None:
        placement = self.host.placement
        placement.free_this_thread()  # a long handler may use every CPU (placement.py)
        try:
            self._run_handler(op, handler)
            self.wake()
        finally:
            placement.thread_done()
            self.host.release_worker(self.caller.uid)

    def _progress(self, op_id: int, permille: int, message: str, done: int, total: int) -> None:
        """Called from the handler's thread; rate-limited by the context."""
        op = self.running
        if op is None or op.op_id != op_id or op.finished:
            return
        info = encode_payload(ProgressInfo(message=message, done=done, total=total))
        mapping = self.mapping
        if mapping is not None:
            try:
                with self._lock:
                    if mapping.ops.current_op_id != op_id or self.mapping is not mapping:
                        return
                    # Lossy by design: a client that does not read drops progress.
                    wake = mapping.replies.put(FrameKind.PROGRESS, op_id, permille, info)
                if wake:
                    osapi.eventfd_signal(mapping.peer_efd)
            except rings.RingFull:
                pass
            except (AetherError, ValueError):
                op.ctx.cancel()
            return
        try:
            with self._lock:
                if self.proto.state is not State.RUNNING or self.proto.current_op_id != op_id:
                    return
                if self.memory is not None and self.proto.transport is Transport.MEMORY:
                    self.memory.write_progress(op_id, permille)
                data = self.proto.send(m.Progress(op_id, permille, info))
            # Progress is lossy by design: a client that does not read must
            # not block the handler (the return header keeps the latest value).
            self.channel.send_nowait(data)
        except (AetherError, ValueError):
            # The client is gone or its blocks are: the session thread will
            # notice and end; the handler learns through cancellation.
            op.ctx.cancel()

    def _finish(self, op: _RunningOp) -> None:
        """Step O4: write the result (payload, then header, or both at once
        within the block's first page), then send DONE."""
        self.running = None
        self._busy_replies = 0
        status, payload = self._outcome(op)
        if len(payload) > TRIM_THRESHOLD or (
                self.memory is not None and self.memory.buffer_size > TRIM_THRESHOLD):
            self._trim_at = time.monotonic() + TRIM_AFTER
        if self.proto.transport is Transport.SOCKET:
            if len(payload) > self.proto.max_payload:
                status, payload = self._too_large(len(payload), self.proto.max_payload)
            self._send(m.DoneInline(op.op_id, int(status), payload))
            self.host.operation_finished(op.spec, status)
            return
        mapping = self.mapping
        if mapping is not None:
            if len(payload) > mapping.result_capacity:
                status, payload = self._too_large(len(payload), mapping.result_capacity,
                                                  rings.ring_size_for(len(payload)))
            mapping.ops.finished(op.op_id, int(status))
            self._reply(FrameKind.DONE, op.op_id, int(status), payload)
            self.host.operation_finished(op.spec, status)
            return
        assert self.memory is not None
        if len(payload) > self.memory.result_capacity:
            status, payload = self._too_large(len(payload), self.memory.result_capacity)
        try:
            self.memory.write_status(op.op_id, status, payload, 1000)
        except AetherError as exc:
            self._fatal(ErrorCode.MEMORY_ACCESS, f"writing the result: {exc}")
        self._send(m.Done(op.op_id, int(status)))
        self.host.operation_finished(op.spec, status)

    @staticmethod
    def _too_large(size: int, capacity: int, needed: int = 0) -> tuple[Status, bytes]:
        needed = needed or osapi.round_to_pages(size + wire.HEADER_SIZE)
        info = ErrorInfo(
            message=f"result of {size} bytes does not fit in {capacity} bytes; "
            f"register a return block of at least {needed} bytes",
            details={"needed": needed, "size": size},
        )
        return Status.RESULT_TOO_LARGE, encode_payload(info)

    def _outcome(self, op: _RunningOp) -> tuple[Status, bytes | memoryview]:
        exc = op.error
        if exc is None:
            # The handler returned: the operation took effect even if a
            # CANCEL came in meanwhile. Only a handler that raised Cancelled
            # reports CANCELLED (a client may safely retry those).
            try:
                try:
                    encode_into(op.result, self._result_buffer)
                except BufferError:
                    # A view of an earlier result is still alive, so the buffer
                    # cannot grow (seen in `aether bench load --soak` on every
                    # transport, a few times in 10^5 calls; it ended the
                    # session as an internal error). A fresh buffer serves
                    # this result; whoever holds the old view keeps it intact.
                    self._result_buffer = bytearray()
                    encode_into(op.result, self._result_buffer)
                return Status.OK, memoryview(self._result_buffer)
            except (TypeError, ValueError, msgspec.EncodeError) as enc:
                log.error("op %s returned an unencodable result: %s", op.spec.name, enc)
                return Status.FAILED, encode_payload(ErrorInfo(message="result not encodable"))
        if isinstance(exc, Cancelled):
            return Status.CANCELLED, encode_payload(ErrorInfo(message="cancelled"))
        if isinstance(exc, OperationFailed):
            return Status.FAILED, encode_payload(
                ErrorInfo(message=exc.message, details=exc.details)
            )
        if isinstance(exc, TimeoutError):
            return Status.TIMED_OUT, encode_payload(ErrorInfo(message=str(exc) or "timed out"))
        log.error(
            "op %s (session %d) raised:\n%s", op.spec.name, self.session_id,
            "".join(traceback.format_exception(exc)),
        )
        return Status.FAILED, encode_payload(
            ErrorInfo(message=f"internal error ({type(exc).__name__}); see the service log")
        )
