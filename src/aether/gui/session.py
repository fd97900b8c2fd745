"""The panel's link to one service, and the operations it runs there.

A :class:`Link` owns a *monitor* session (handshake shown step by step,
``aether.describe``, periodic ``aether.status``) and a small pool of
*operation* sessions: the protocol allows one operation in flight per
session (the seed's mutex), so each concurrently running operation takes a
session of its own, and an idle one is reused by the next operation.

Everything that can block runs on a pool thread (:mod:`aether.gui.tasks`);
the Qt signals of these objects are emitted only in the GUI thread.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from PySide6.QtCore import QObject, QTimer, Signal

from aether.client import Client
from aether.client.discovery import ServiceAddress, resolve
from aether.client.operation import Operation
from aether.errors import (
    AetherError,
    ClosedResourceError,
    ConnectError,
    OperationError,
    OutcomeUnknownError,
    PeerGoneError,
)
from aether.schema import builtins as b

from . import tasks

POLL_INTERVAL_MS = 1000


@dataclass
class OperationSpec:
    """One operation as ``aether.describe`` published it."""

    code: int
    name: str
    summary: str
    privileged: bool
    params_schema: dict[str, Any]
    result_schema: dict[str, Any]


@dataclass
class Connected:
    """What the panel knows about a session once the handshake is done."""

    address: ServiceAddress
    transport: str
    fallback_reason: str
    service: str
    version: str
    pid: int
    fingerprint: int
    protocol: int
    operations: list[OperationSpec]
    status: dict[str, Any]
    steps: list[tuple[str, str, float]] = field(default_factory=list)


def plain(value: Any) -> Any:
    """A result as plain Python data (dicts, lists, str, numbers; bytes kept)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, msgspec.Struct | list | tuple | dict):
        return msgspec.to_builtins(value, builtin_types=(bytes,))
    return value


def _operation_specs(desc: b.Description) -> list[OperationSpec]:
    import json

    return [OperationSpec(op.code, op.name, op.summary, op.privileged,
                          json.loads(op.params_schema), json.loads(op.result_schema))
            for op in desc.operations]


class Link(QObject):
    """A connection to one service that notices stops and restarts."""

    step = Signal(str, str, float)  # step name, text, milliseconds since the attempt began
    attempt_started = Signal()
    connected = Signal(object)  # Connected
    failed = Signal(object)  # the exception of a failed connect or handshake
    status = Signal(dict)  # aether.status, as plain data
    lost = Signal(str)  # the service stopped answering (why)
    restarted = Signal(int, int)  # old pid, new pid
    message = Signal(str, str)  # level ("info", "warning", "error"), text

    def __init__(self, target: str, *, transport: str = "auto", timeout: float = 5.0,
                 poll_ms: int = POLL_INTERVAL_MS, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.target = target
        self.transport = transport
        self.timeout = timeout
        self.info: Connected | None = None
        self.state = "disconnected"
        self._monitor: Client | None = None
        self._busy = False
        self._attempt = 0
        self._last_pid = 0
        self._closing = False
        self._pool_lock = threading.Lock()
        self._idle: list[tuple[int, Client]] = []
        self._generation = 0
        self._timer = QTimer(self)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self._tick)

    # -- connecting -----------------------------------------------------------------
    def open(self) -> None:
        """Connect (in the background) and keep watching the service."""
        self._closing = False
        self.state = "connecting"
        self._timer.start()
        self._connect()

    def _connect(self) -> None:
        if self._busy:
            return
        self._busy = True
        self._attempt += 1
        attempt = self._attempt
        started = time.monotonic()
        first = [True]

        def on_step(step: str, text: str) -> None:  # called on the worker thread
            ms = (time.monotonic() - started) * 1000
            tasks.post(lambda: self._on_step(attempt, first, step, text, ms))

        def work() -> tuple[Client, Connected]:
            address = resolve(self.target)
            client = Client(address.path, transport=self.transport, timeout=self.timeout,
                            on_step=on_step)
            try:
                desc = client.describe()
                st = client.status()
            except BaseException:
                client.close()
                raise
            hello = client.hello
            info = Connected(
                address=client.address, transport=client.transport,
                fallback_reason=client.fallback_reason, service=desc.service,
                version=desc.version, pid=st.pid,
                fingerprint=desc.fingerprint, protocol=hello.version if hello else 0,
                operations=_operation_specs(desc), status=plain(st))
            return client, info

        tasks.submit(work, lambda r: self._on_connected(attempt, r),
                     lambda e: self._on_connect_failed(attempt, e))

    def _on_step(self, attempt: int, first: list[bool], step: str, text: str,
                 ms: float) -> None:
        if attempt != self._attempt or self._closing:
            return
        if first[0]:
            first[0] = False
            self.attempt_started.emit()
        self.step.emit(step, text, ms)

    def _on_connected(self, attempt: int, result: tuple[Client, Connected]) -> None:
        self._busy = False
        client, info = result
        if self._closing or attempt != self._attempt:
            tasks.submit(client.close)
            return
        old_pid = self._last_pid
        was_lost = self.state == "lost"
        self._monitor = client
        self.info = info
        self._last_pid = info.pid
        self.state = "connected"
        if old_pid and old_pid != info.pid:
            self._drop_pool()
            self.message.emit("warning", f"{info.service} restarted: pid {old_pid} -> {info.pid}")
            self.restarted.emit(old_pid, info.pid)
        elif was_lost:
            self.message.emit("info", f"{info.service} is answering again")
        self.connected.emit(info)
        self.status.emit(info.status)

    def _on_connect_failed(self, attempt: int, exc: BaseException) -> None:
        self._busy = False
        if self._closing or attempt != self._attempt:
            return
        if self.state in ("lost", "failed"):
            return  # still down: keep retrying quietly on the timer
        self.state = "failed"
        if not isinstance(exc, ConnectError):
            # A refused handshake will not change by itself; a missing or
            # not-yet-started service may: keep trying to connect.
            self._timer.stop()
        self.failed.emit(exc)

    # -- watching ----------------------------------------------------------------
    def _tick(self) -> None:
        if self._busy or self._closing:
            return
        if self.state in ("lost", "failed"):
            self._connect()
            return
        monitor = self._monitor
        if self.state != "connected" or monitor is None:
            return
        self._busy = True
        tasks.submit(lambda: plain(monitor.status()), self._on_status, self._on_poll_failed)

    def refresh(self) -> None:
        """Ask for a status now (F5)."""
        self._tick()

    def _on_status(self, st: dict[str, Any]) -> None:
        self._busy = False
        if self._closing:
            return
        if st.get("pid") != self._last_pid:
            # Another service answers at the same socket: treat it as a restart.
            self._lose(f"service pid changed to {st.get('pid')}")
            return
        self.status.emit(st)

    def _on_poll_failed(self, exc: BaseException) -> None:
        self._busy = False
        if self._closing:
            return
        self._lose(str(exc))

    def _lose(self, why: str) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            tasks.submit(monitor.close)
        self._drop_pool()
        self.state = "lost"
        self.message.emit("error", f"lost the service: {why}; reconnecting")
        self.lost.emit(why)

    # -- operation sessions ---------------------------------------------------------
    def acquire(self) -> tuple[int, Client]:
        """(worker thread) An idle operation session, or a new one."""
        with self._pool_lock:
            generation = self._generation
            while self._idle:
                gen, client = self._idle.pop()
                if gen == generation and not client.closed:
                    return gen, client
                client.close()
        address = self.info.address if self.info else resolve(self.target)
        return generation, Client(address.path, transport=self.transport, timeout=self.timeout)

    def release(self, generation: int, client: Client, reusable: bool) -> None:
        """(worker thread) Give a session back after its operation."""
        with self._pool_lock:
            if reusable and generation == self._generation and not self._closing:
                self._idle.append((generation, client))
                return
        client.close()

    def _drop_pool(self) -> None:
        with self._pool_lock:
            self._generation += 1
            idle, self._idle = self._idle, []
        for _, client in idle:
            tasks.submit(client.close)

    def close(self) -> None:
        """Disconnect: say GOODBYE on every idle session (in the background)."""
        self._closing = True
        self._timer.stop()
        self.state = "disconnected"
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            tasks.submit(monitor.close)
        self._drop_pool()


class RunningOperation(QObject):
    """One operation started from the panel, on an operation session."""

    progress = Signal(int, str)  # permille, message
    finished = Signal(object, object)  # result (plain), error (an exception or None)

    def __init__(self, link: Link, name: str, params: dict[str, Any],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.link = link
        self.name = name
        self.params = params
        self.started_at = time.monotonic()
        self.ended_at: float | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.permille = 0
        self.message_text = ""
        self.cancel_requested = False
        self._lock = threading.Lock()
        self._op: Operation | None = None

    @property
    def elapsed(self) -> float:
        return (self.ended_at or time.monotonic()) - self.started_at

    @property
    def done(self) -> bool:
        return self.ended_at is not None

    def start(self) -> None:
        self.started_at = time.monotonic()
        tasks.submit(self._work, self._on_done, self._on_failed)

    def cancel(self) -> None:
        """Ask the service to cancel; the CANCEL itself is sent off the GUI thread."""
        if self.done:
            return
        with self._lock:
            self.cancel_requested = True
            op = self._op
        if op is not None:
            tasks.submit(op.cancel)

    def _on_progress(self, op: Operation) -> None:  # worker thread
        permille, text = op.permille, op.progress_info.message
        tasks.post(lambda: self._set_progress(permille, text))

    def _set_progress(self, permille: int, text: str) -> None:
        if self.done:
            return
        self.permille = permille
        self.message_text = text
        self.progress.emit(permille, text)

    def _work(self) -> Any:
        for attempt in range(2):
            generation, client = self.link.acquire()
            try:
                op = client.start_by_name(self.name, self.params, on_progress=self._on_progress)
            except (PeerGoneError, ClosedResourceError):
                # Nothing was delivered (a stale pooled session): one fresh try.
                self.link.release(generation, client, False)
                if attempt:
                    raise
                continue
            except BaseException:
                self.link.release(generation, client, not client.closed)
                raise
            break
        with self._lock:
            self._op = op
            cancel = self.cancel_requested
        if cancel:
            op.cancel()
        reusable = True
        try:
            return plain(op.wait())
        except OutcomeUnknownError:
            reusable = False
            raise
        except OperationError:
            raise
        except AetherError:
            reusable = False
            raise
        finally:
            self.link.release(generation, client, reusable and not client.closed)

    def _on_done(self, result: Any) -> None:
        self.ended_at = time.monotonic()
        self.result = result
        self.permille = 1000
        self.finished.emit(result, None)

    def _on_failed(self, exc: BaseException) -> None:
        self.ended_at = time.monotonic()
        self.error = exc
        self.finished.emit(None, exc)
