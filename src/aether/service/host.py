"""The service host: listens on the control socket, admits sessions within
limits, dispatches operations to handlers, and stops cleanly on SIGTERM.

Usage::

    service = Service("guard", schema=aether_guard.schema)

    @service.handler(HashTree)
    def hash_tree(params: HashTree, ctx: OperationContext) -> TreeDigest: ...

    service.serve()          # foreground, until SIGTERM/SIGINT
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import sys
import threading
import time
import types
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aether import osapi, wire
from aether._version import __version__
from aether.errors import AetherError, ConnectError
from aether.schema import OperationSpec, Params, Registry, builtins as b, spec_of
from aether.wire import ErrorCode, messages as m, rings

from .context import OperationContext
from .listener import bind_control_socket, default_socket_path
from .placement import CpuPlacement
from .policy import Caller, Limits, Policy
from .sdnotify import Notifier
from .session import Session

DEFAULT_RING_BUDGET = 256 * 1024 * 1024  # see Limits.max_ring_bytes_per_uid

log = logging.getLogger("aether.service")
audit_log = logging.getLogger("aether.audit")

# Descriptors kept free for the service's own work when admitting sessions
# (a memory-transport session holds five).
FD_RESERVE = 64

H = TypeVar("H", bound=Callable[..., Any])


@dataclass(frozen=True)
class Handler:
    func: Callable[[Any, OperationContext], Any]
    inline: bool


class Service:
    """An Aether service: operations from schema modules, handlers, limits."""

    def __init__(
        self,
        name: str,
        *,
        schema: types.ModuleType | Iterable[types.ModuleType] = (),
        version: str = __version__,
        policy: Policy | None = None,
        limits: Limits | None = None,
        memory_transport: bool = True,
    ) -> None:
        if not name or not all(c.isalnum() or c in "-_." for c in name) or name[0] == ".":
            raise ValueError(f"bad service name {name!r}")
        self.name = name
        self.version = version
        modules = [schema] if isinstance(schema, types.ModuleType) else list(schema)
        self.registry = Registry.from_modules(*modules)
        self.fingerprint = self.registry.fingerprint()
        self.policy = policy or Policy()
        self.limits = limits or Limits()
        self.memory_transport_enabled = memory_transport
        self.handlers: dict[int, Handler] = {}
        self.socket_path: Path | None = None
        self.fd_limit = 1024
        self.placement = CpuPlacement()  # started by serve() in a process's main thread
        self.started_at = time.monotonic()
        self.operations_served = 0
        self._sessions: dict[int, Session] = {}
        self._sessions_lock = threading.Lock()
        self._next_session = 1
        self._stop_r, self._stop_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._workers: Counter[int] = Counter()
        self._workers_lock = threading.Lock()
        self._ring_bytes: Counter[int] = Counter()  # per uid, under _workers_lock
        self._hooks: dict[str, list[Callable[[Service], None]]] = {
            "startup": [], "shutdown": [], "reload": []}
        self._reload_requested = threading.Event()
        self.notifier = Notifier(address="")
        self.pidfd_supported = osapi.peer_pidfd_supported()
        self.registry.max_payload = self.limits.max_payload
        self._install_builtins()

    # -- declaring handlers -------------------------------------------------
    def handler(self, params_type: type[Params], *, inline: bool = False) -> Callable[[H], H]:
        """Register the function that implements ``params_type``'s operation.

        ``inline=True`` runs it on the session's own thread: only for handlers
        that finish in microseconds and never block.
        """
        spec = spec_of(params_type)
        if self.registry.by_code(spec.code) is not spec:
            raise ValueError(f"{spec.name} is not in this service's schema")

        def register(func: H) -> H:
            self.handlers[spec.code] = Handler(func, inline)
            return func

        return register

    def on_startup(self, func: Callable[[Service], None]) -> Callable[[Service], None]:
        """Run ``func(service)`` before the socket is bound; if it raises, the
        service does not start (and says why)."""
        self._hooks["startup"].append(func)
        return func

    def on_shutdown(self, func: Callable[[Service], None]) -> Callable[[Service], None]:
        """Run ``func(service)`` after the sessions ended (flush state here)."""
        self._hooks["shutdown"].append(func)
        return func

    def on_reload(self, func: Callable[[Service], None]) -> Callable[[Service], None]:
        """Run ``func(service)`` on SIGHUP (or :meth:`reload`), on the serving
        thread; an exception is logged and the service goes on as before."""
        self._hooks["reload"].append(func)
        return func

    def reload(self) -> None:
        """Ask the serving thread to run the reload hooks (async-signal safe)."""
        self._reload_requested.set()
        try:
            os.write(self._stop_w, b"r")
        except OSError:
            pass

    def _run_reload(self) -> None:
        self._reload_requested.clear()
        try:
            os.read(self._stop_r, 4096)
        except OSError:
            pass
        self.notifier.notify("RELOADING=1", "STATUS=reloading")
        ok = True
        for hook in self._hooks["reload"]:
            try:
                hook(self)
            except Exception as exc:
                ok = False
                log.error("service %s: reload failed, keeping the previous configuration: %s",
                          self.name, exc)
        if ok:
            log.info("service %s: configuration reloaded", self.name)
        self.notifier.notify("READY=1", "STATUS=" + ("reloaded" if ok else
                                                     "reload failed; previous configuration kept"))

    def _install_builtins(self) -> None:
        @self.handler(b.Describe, inline=True)
        def describe(params: b.Describe, ctx: OperationContext) -> b.Description:
            import json

            ops = [
                b.OperationInfo(
                    code=d["code"], name=d["name"], summary=d["summary"],
                    privileged=d["privileged"],
                    params_schema=json.dumps(d["params"]),
                    result_schema=json.dumps(d["result"]),
                )
                for d in self.registry.describe()
            ]
            return b.Description(service=self.name, version=self.version,
                                 fingerprint=self.fingerprint, operations=ops)

        @self.handler(b.Status, inline=True)
        def status(params: b.Status, ctx: OperationContext) -> b.ServiceStatus:
            with self._sessions_lock:
                sessions = [s for s in self._sessions.values() if s.established]
            infos = [
                b.SessionInfo(
                    session_id=s.session_id, pid=s.peer.pid, uid=s.peer.uid,
                    transport=s.transport_name, operations=s.operations,
                    running=s.running.spec.name if s.running else None,
                )
                for s in sessions
            ]
            return b.ServiceStatus(
                service=self.name, version=self.version, pid=os.getpid(),
                uptime_s=round(time.monotonic() - self.started_at, 3),
                sessions=len(sessions), operations_served=self.operations_served,
                session_list=infos,
            )

        @self.handler(b.Echo, inline=True)
        def echo(params: b.Echo, ctx: OperationContext) -> bytes:
            return params.data

        @self.handler(b.Sink, inline=True)
        def sink(params: b.SinkView, ctx: OperationContext) -> int:
            return len(params.data)  # read in place: decoded as a view (b.IN_PLACE)

    # -- bookkeeping called by sessions ---------------------------------------
    def session_established(self, session: Session) -> None:
        pass

    def session_ended(self, session: Session) -> None:
        with self._sessions_lock:
            self._sessions.pop(session.session_id, None)
        self.placement.sessions_changed(lambda: len(self._sessions))

    def operation_finished(self, spec: OperationSpec, status: wire.Status) -> None:
        self.operations_served += 1

    def audit(self, spec: OperationSpec, caller: Caller, *, allowed: bool) -> None:
        audit_log.log(
            logging.INFO if allowed else logging.WARNING,
            "service=%s op=%s uid=%d pid=%d %s", self.name, spec.name, caller.uid, caller.pid,
            "allowed" if allowed else "DENIED",
        )

    def reserve_worker(self, uid: int) -> bool:
        """Count a handler thread for ``uid``; False if it is at its limit."""
        with self._workers_lock:
            if self._workers[uid] >= self.limits.max_workers_per_uid:
                return False
            self._workers[uid] += 1
            return True

    def release_worker(self, uid: int) -> None:
        with self._workers_lock:
            self._workers[uid] -= 1
            if self._workers[uid] <= 0:
                del self._workers[uid]

    @property
    def ring_budget(self) -> int:
        """Bytes of mapping regions one uid may hold: the configured budget,
        or by default 256 MiB but never less than four sessions with the
        largest rings ``max_payload`` allows (a service raising
        ``max_payload`` must not refuse the sessions that need it, nor a
        client that reconnects while its last session's region is being freed)."""
        if self.limits.max_ring_bytes_per_uid is not None:
            return self.limits.max_ring_bytes_per_uid
        largest = rings.region_size(
            max(rings.MIN_RING_SIZE, rings.ring_size_for(self.limits.max_payload)))
        return max(DEFAULT_RING_BUDGET, 4 * largest)

    def reserve_ring_bytes(self, uid: int, size: int) -> bool:
        """Count ``size`` bytes of mapping regions against ``uid``'s budget."""
        with self._workers_lock:
            if self._ring_bytes[uid] + size > self.ring_budget:
                return False
            self._ring_bytes[uid] += size
            return True

    def release_ring_bytes(self, uid: int, size: int) -> None:
        with self._workers_lock:
            self._ring_bytes[uid] -= size
            if self._ring_bytes[uid] <= 0:
                del self._ring_bytes[uid]

    def ring_bytes(self, uid: int) -> int:
        """Bytes of mapping regions ``uid``'s sessions hold now."""
        with self._workers_lock:
            return self._ring_bytes[uid]

    @property
    def session_count(self) -> int:
        # No lock: len() of a dict is one atomic read under the GIL, and a
        # mapping session asks on every spin decision.
        return len(self._sessions)

    # -- serving ------------------------------------------------------------------
    def serve(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        install_signal_handlers: bool = True,
        on_ready: Callable[[Path], None] | None = None,
    ) -> None:
        """Listen and serve until :meth:`stop` (or SIGTERM/SIGINT)."""
        path = Path(socket_path) if socket_path else default_socket_path(self.name)
        for hook in self._hooks["startup"]:
            hook(self)
        mode = self.limits.socket_mode
        self.fd_limit = osapi.raise_fd_limit()
        osapi.pin_mmap_threshold()  # RSS that follows use (osapi/malloc.py)
        osapi.limit_arenas()  # one arena: free memory any thread can reuse
        # Spinners read /proc/loadavg through a handle kept open; open it now so
        # the descriptors counted from READY on are the steady set.
        osapi.runnable_tasks()
        switch_interval = sys.getswitchinterval()
        if self.limits.gil_switch_interval:
            sys.setswitchinterval(self.limits.gil_switch_interval)
        in_main_thread = threading.current_thread() is threading.main_thread()
        placement = self.placement = CpuPlacement()
        if not self.pidfd_supported:
            log.warning("this kernel has no SO_PEERPIDFD (Linux >= 6.5): the memory transport "
                        "is refused; clients use the socket transport")
        listener = bind_control_socket(path, mode=mode)
        self.socket_path = path
        if install_signal_handlers and in_main_thread:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop())
            signal.signal(signal.SIGHUP, lambda *_: self.reload())
        log.info("service %s %s started, listening on %s (pid %d, uid %d)", self.name,
                 self.version, path, os.getpid(), os.geteuid())
        notifier = self.notifier = Notifier()
        self._ready.set()
        if on_ready is not None:
            on_ready(path)
        notifier.ready(f"listening on {path}")
        notifier.start_watchdog(lambda: not self._stopping.is_set())
        try:
            # Like the signal handlers, only where the service is the process.
            if self.limits.one_cpu and in_main_thread:
                placement.start(time.monotonic())
            self._accept_loop(listener)
        finally:
            notifier.stopping("stopping: finishing running operations")
            listener.close()
            try:
                if path.is_socket():
                    path.unlink()
            except OSError:
                pass
            self._shutdown_sessions()
            for hook in self._hooks["shutdown"]:
                try:
                    hook(self)
                except Exception as exc:
                    log.error("service %s: shutdown hook failed: %s", self.name, exc)
            notifier.close()
            placement.stop()
            sys.setswitchinterval(switch_interval)
            log.info("service %s stopped", self.name)

    def stopping(self) -> bool:
        """True once the service was asked to stop."""
        return self._stopping.is_set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def stop(self) -> None:
        """Stop accepting, cancel or finish running operations, say GOODBYE."""
        self._stopping.set()
        try:
            os.write(self._stop_w, b"x")
        except OSError:
            pass

    def _accept_loop(self, listener: socket.socket) -> None:
        poller = select.poll()
        poller.register(listener.fileno(), select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        interval = self.limits.heap_trim_interval
        next_trim = time.monotonic() + interval
        while not self._stopping.is_set():
            try:
                ready = poller.poll(min(1000, max(1, int(interval * 1000))) if interval
                                    else 1000)
            except InterruptedError:
                continue
            self.placement.tick(time.monotonic())
            if interval and time.monotonic() >= next_trim:
                osapi.trim_heap()
                next_trim = time.monotonic() + interval
            if self._reload_requested.is_set() and not self._stopping.is_set():
                self._run_reload()
            if not ready or self._stopping.is_set():
                continue
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                # EMFILE and friends: keep serving the sessions we have.
                log.error("accept failed: %s", exc)
                time.sleep(0.05)
                continue
            self._admit(conn)

    def _admit(self, conn: socket.socket) -> None:
        try:
            peer = osapi.peer_credentials(conn)
        except AetherError:
            conn.close()
            return
        refusal = self._refusal(peer.uid)
        if refusal:
            log.warning("refusing pid %d uid %d: %s", peer.pid, peer.uid, refusal)
            self._refuse(conn, refusal)
            return
        with self._sessions_lock:
            sid = self._next_session
            self._next_session += 1
        try:
            session = Session(self, conn, sid)
        except Exception as exc:  # EMFILE and the like: refuse this one, serve the rest
            log.warning("could not set up a session for pid %d: %s", peer.pid, exc)
            self._refuse(conn, "the service is out of resources; try again later")
            return
        with self._sessions_lock:
            self._sessions[sid] = session
        # before the thread starts: it inherits this thread's CPUs
        self.placement.sessions_changed(lambda: len(self._sessions))
        try:
            session.thread.start()
        except RuntimeError as exc:
            log.warning("could not start a session thread: %s", exc)
            session.channel.close()
            self.session_ended(session)

    @staticmethod
    def _refuse(conn: socket.socket, reason: str) -> None:
        try:
            conn.sendmsg([wire.encode(m.Error(int(ErrorCode.LIMITS_EXCEEDED), 0, reason))],
                         [], socket.MSG_NOSIGNAL | socket.MSG_DONTWAIT)
        except OSError:
            pass
        conn.close()

    def _refusal(self, uid: int) -> str:
        limits = self.limits
        if osapi.open_fd_count() > self.fd_limit - FD_RESERVE:
            return "the service is near its file-descriptor limit"
        with self._sessions_lock:
            sessions = list(self._sessions.values())
        if len(sessions) >= limits.max_sessions:
            return f"the service has its maximum of {limits.max_sessions} sessions"
        per_uid = Counter(s.peer.uid for s in sessions)
        if per_uid[uid] >= limits.max_sessions_per_uid:
            return f"uid {uid} has its maximum of {limits.max_sessions_per_uid} sessions"
        half_open = [s for s in sessions if not s.established]
        if len(half_open) >= limits.max_half_open:
            return "too many connections are still in their handshake"
        if sum(1 for s in half_open if s.peer.uid == uid) >= limits.max_half_open_per_uid:
            return f"uid {uid} has too many connections in their handshake"
        return ""

    def _shutdown_sessions(self) -> None:
        with self._sessions_lock:
            sessions = list(self._sessions.values())
        for s in sessions:
            s.shutdown()
        deadline = time.monotonic() + self.limits.shutdown_grace
        for s in sessions:
            s.thread.join(max(0.0, deadline - time.monotonic()))
        still = [s for s in sessions if s.thread.is_alive()]
        if still:
            log.warning("%d sessions did not end within %.1f s", len(still),
                        self.limits.shutdown_grace)


def load_service(target: str) -> Service:
    """Load a Service from ``"package.module:attribute"`` or a shipped name."""
    import importlib

    shipped = {"guard": "aether_guard.service:service"}
    target = shipped.get(target, target)
    module_name, _, attr = target.partition(":")
    if not attr:
        attr = "service"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConnectError(f"cannot import {module_name}: {exc}") from None
    service = getattr(module, attr, None)
    if not isinstance(service, Service):
        raise ConnectError(f"{target} is not an aether Service")
    return service
