"""Every mechanism ``aether bench`` measures, behind one small interface.

A :class:`Mechanism` knows whether it can run here (else the reason it is
skipped) and how to start its server for one row (:meth:`Mechanism.serve`,
a context manager giving a :class:`Served`). ``Served.connect()`` opens a
client :class:`Endpoint` in this process, whose :meth:`Endpoint.samples`
times round trips one by one with ``perf_counter_ns``. In ``sink`` mode the
server acks with one byte instead of echoing: that is how bulk throughput is
taken. Aether's transports are rows of :class:`AetherVariant`, parametrized
by transport name and spin, so a new transport is one more entry in
:data:`AETHER_VARIANTS`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .procs import ServerProcess, pin_process
from .shmfloor import ShmPair, memcpy_caller

SERVERS = "aether.bench.servers"


def time_loop(fn: Callable[[], object], warmup: int, count: int) -> list[int]:
    """Time ``count`` calls of ``fn`` one by one (ns) after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    clock = time.perf_counter_ns
    samples = [0] * count
    for i in range(count):
        t0 = clock()
        fn()
        samples[i] = clock() - t0
    return samples


def make_payload(size: int) -> bytes:
    """Deterministic, non-constant bytes (cheap even at 64 MiB)."""
    block = bytes(range(256))
    return (block * (size // 256 + 1))[:size]


class Endpoint:
    """A connected client. Subclasses give ``caller`` (or override ``samples``)."""

    def caller(self, payload: bytes) -> Callable[[], object]:
        raise TypeError(f"{type(self).__name__} gives neither caller() nor samples()")

    def samples(self, payload: bytes, warmup: int, count: int) -> list[int]:
        return time_loop(self.caller(payload), warmup, count)

    def check(self, payload: bytes, sink: bool) -> None:
        """One call whose answer is verified: a peer that echoes wrongly is caught."""
        got = self.caller(payload)()
        if isinstance(got, bytes | bytearray | memoryview):
            want = b"k" if sink else payload
            if bytes(got) != want:
                raise RuntimeError(f"wrong answer ({len(got)} bytes, expected {len(want)})")

    def close(self) -> None:
        pass


@dataclass
class Served:
    """A running server for one row."""

    connect: Callable[[], Endpoint]
    pid: int | None = None  # the process whose RSS is the service's
    spec: dict[str, Any] | None = None  # how a load-generator process connects
    note: str = ""
    rss_note: str = ""
    # bulk again without the payload crc (a mapping loan's checksum=False)
    connect_unchecked: Callable[[], Endpoint] | None = None


@dataclass
class Mechanism:
    id: str
    busy: bool = False  # spins while waiting: no same-cpu row
    blocking_peer: bool = False  # one of the "every blocking peer" of the goals
    latency: bool = True
    bulk: bool = False
    concurrency: bool = False
    rss: bool = False
    note: str = ""
    requires: tuple[str, ...] = ()

    def unavailable(self) -> str | None:
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                return f"python module {module!r} is not installed (pip install -e '.[bench]')"
        return None

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Around all of this mechanism's rows: a server that can serve every row
        (another placement, sink mode, a bigger capacity) starts here once."""
        yield

    @contextlib.contextmanager
    def serve(self, server_cpus: frozenset[int] | None, *, sink: bool,
              capacity: int) -> Iterator[Served]:
        """A server for this mechanism's rows; every measured mechanism gives one."""
        raise TypeError(f"{type(self).__name__} has no server to measure")
        yield


# -- floors ---------------------------------------------------------------------------

class _ShmEndpoint(Endpoint):
    def __init__(self, pair: ShmPair, server: ServerProcess) -> None:
        self.pair, self.server = pair, server

    def caller(self, payload: bytes) -> Callable[[], object]:
        return self.pair.caller(payload, self.server.alive)


@dataclass
class ShmFloor(Mechanism):
    eventfd: bool = False

    @contextlib.contextmanager
    def serve(self, server_cpus: frozenset[int] | None, *, sink: bool,
              capacity: int) -> Iterator[Served]:
        pair = ShmPair.create(capacity, self.eventfd)
        try:
            server = ServerProcess(SERVERS, ["floor", *pair.server_args(),
                                             *(["--sink"] if sink else [])],
                                   cpus=server_cpus, pass_fds=pair.fds)
            try:
                yield Served(lambda: _ShmEndpoint(pair, server), pid=server.pid)
            finally:
                server.stop()
        finally:
            pair.close()


class _MemcpyEndpoint(Endpoint):
    def caller(self, payload: bytes) -> Callable[[], object]:
        return memcpy_caller(len(payload))


@dataclass
class MemcpyFloor(Mechanism):
    @contextlib.contextmanager
    def serve(self, server_cpus: frozenset[int] | None, *, sink: bool,
              capacity: int) -> Iterator[Served]:
        yield Served(_MemcpyEndpoint)


class _ProcMemEndpoint(Endpoint):
    def __init__(self, memory: Any, address: int, capacity: int) -> None:
        self.memory, self.address = memory, address
        self.into = memoryview(bytearray(capacity))

    def caller(self, payload: bytes) -> Callable[[], object]:
        view, read, address = self.into[:len(payload)], self.memory.readinto, self.address

        def once() -> None:
            read(address, view)
        return once


@dataclass
class ProcMemFloor(Mechanism):
    """The memory transport's bulk floor: one process copying another's memory
    through ``/proc/<pid>/mem``, as the service reads a parameter block. The
    kernel copies that file a page at a time (``access_remote_vm``), so no
    transport that reads the client's memory can pass this row."""

    @contextlib.contextmanager
    def serve(self, server_cpus: frozenset[int] | None, *, sink: bool,
              capacity: int) -> Iterator[Served]:
        from aether.osapi import PrivateBlock, ProcessMemory, Region

        block = PrivateBlock(max(capacity, 1))
        block.view[:] = make_payload(block.size)  # pages present, as a filled block's are
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the "client": holds its copy of the block until told to go
            try:
                os.close(ready_w)
                os.read(ready_r, 1)
            finally:
                os._exit(0)
        os.close(ready_r)
        memory = None
        try:
            memory = ProcessMemory(pid)
            memory.register(Region(block.address, block.size))
            yield Served(lambda: _ProcMemEndpoint(memory, block.address, block.size),
                         pid=pid)
        finally:
            if memory is not None:
                memory.close()
            os.close(ready_w)
            os.waitpid(pid, 0)
            block.close()


# -- socket peers ---------------------------------------------------------------------

@contextlib.contextmanager
def _socket_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="aether-bench-"))
    try:
        yield path
    finally:
        import shutil

        shutil.rmtree(path, ignore_errors=True)


class _SeqpacketEndpoint(Endpoint):
    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.connect(path)
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            self.sock.setsockopt(socket.SOL_SOCKET, opt, 1 << 20)

    def caller(self, payload: bytes) -> Callable[[], object]:
        sock = self.sock
        buf = bytearray(len(payload) + 1)
        view = memoryview(buf)

        def once() -> bytes:
            sock.sendall(payload)
            return bytes(view[:sock.recv_into(buf)])
        return once

    def close(self) -> None:
        self.sock.close()


class _StreamEndpoint(Endpoint):
    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sink = False

    def caller(self, payload: bytes) -> Callable[[], object]:
        sock, sink = self.sock, self.sink
        header = struct.pack("<I", len(payload))
        reply = bytearray(1 if sink else len(payload) + 4)
        view = memoryview(reply)

        def once() -> bytes:
            sock.sendall(header)
            sock.sendall(payload)
            got = 0
            while got < len(reply):
                n = sock.recv_into(view[got:])
                if n == 0:
                    raise ConnectionError("peer closed")
                got += n
            return bytes(view if sink else view[4:])
        return once

    def close(self) -> None:
        self.sock.close()


class _MpEndpoint(Endpoint):
    def __init__(self, path: str) -> None:
        from multiprocessing.connection import Client as MpClient

        self.conn = MpClient(path, family="AF_UNIX")

    def caller(self, payload: bytes) -> Callable[[], object]:
        conn = self.conn

        def once() -> bytes:
            conn.send_bytes(payload)
            return conn.recv_bytes()
        return once

    def close(self) -> None:
        self.conn.close()


class _ZmqEndpoint(Endpoint):
    def __init__(self, path: str) -> None:
        import zmq

        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.REQ)
        self.sock.connect("ipc://" + path)

    def caller(self, payload: bytes) -> Callable[[], object]:
        sock = self.sock

        def once() -> bytes:
            sock.send(payload, copy=len(payload) < 65536)
            return sock.recv()
        return once

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()


@dataclass
class SocketPeer(Mechanism):
    kind: str = ""
    endpoint: type[Endpoint] = Endpoint

    @contextlib.contextmanager
    def serve(self, server_cpus: frozenset[int] | None, *, sink: bool,
              capacity: int) -> Iterator[Served]:
        with _socket_dir() as tmp:
            path = str(tmp / f"{self.kind}.sock")
            server = ServerProcess(SERVERS, [self.kind, "--path", path, "--capacity",
                                             str(capacity), *(["--sink"] if sink else [])],
                                   cpus=server_cpus)
            endpoint = self.endpoint

            def connect() -> Endpoint:
                ep = endpoint(path)  # type: ignore[call-arg]
                if isinstance(ep, _StreamEndpoint):
                    ep.sink = sink
                return ep
            try:
                if self.kind == "zmq":  # the REP socket binds asynchronously
                    from aether.testing import wait_until

                    wait_until(lambda: os.path.exists(path), 10, "the zmq socket",
                               watch_pid=server.pid)
                yield Served(connect, pid=server.pid,
                             spec={"kind": self.kind, "path": path})
            finally:
                server.stop()


# -- iceoryx2 and D-Bus ---------------------------------------------------------------

class _IoxEndpoint(Endpoint):
    def __init__(self, name: str, blocking: bool, capacity: int,
                 alive: Callable[[], bool]) -> None:
        from .iox import IoxClient

        self.client = IoxClient(name, blocking=blocking, capacity=capacity)
        self.client.wait_for_server(alive)

    def caller(self, payload: bytes) -> Callable[[], object]:
        return self.client.caller(payload)

    def close(self) -> None:
        self.client.close()


@dataclass
class Iceoryx2(Mechanism):
    blocking: bool = False

    @contextlib.contextmanager
    def serve(self, server_cpus: frozenset[int] | None, *, sink: bool,
              capacity: int) -> Iterator[Served]:
        name = f"aether-bench/{os.getpid()}/{time.monotonic_ns()}"
        server = ServerProcess(SERVERS, ["iceoryx2", "--path", name, "--capacity",
                                         str(capacity), *(["--blocking"] if self.blocking else []),
                                         *(["--sink"] if sink else [])], cpus=server_cpus)
        try:
            yield Served(lambda: _IoxEndpoint(name, self.blocking, capacity, server.alive),
                         pid=server.pid)
        finally:
            server.stop()


class _DbusEndpoint(Endpoint):
    def __init__(self, address: str) -> None:
        from .dbus_peer import DbusClient

        self.client = DbusClient(address)
        self.client.wait_for_server()

    def samples(self, payload: bytes, warmup: int, count: int) -> list[int]:
        return self.client.samples(payload, warmup, count)

    def check(self, payload: bytes, sink: bool) -> None:
        self.client.samples(payload, 0, 1)

    def close(self) -> None:
        self.client.close()


@dataclass
class DbusFast(Mechanism):
    def unavailable(self) -> str | None:
        from .dbus_peer import daemon_binary

        if daemon_binary() is None:
            return "dbus-daemon is not installed (scripts/install.sh bench installs Debian's dbus)"
        return super().unavailable()

    @contextlib.contextmanager
    def serve(self, server_cpus: frozenset[int] | None, *, sink: bool,
              capacity: int) -> Iterator[Served]:
        from .dbus_peer import PrivateBus
        from .procs import _all_cpus

        # The daemon sits on the client's CPU in a pinned placement, as in the anchors
        # (procs.placement always gives the client the first usable CPU).
        daemon_cpus = frozenset({min(_all_cpus())}) if server_cpus is not None else None
        bus = PrivateBus(set(daemon_cpus) if daemon_cpus else None)
        try:
            server = ServerProcess(SERVERS, ["dbus", "--path", bus.address,
                                             "--kill-with-me", str(bus.pid),
                                             *(["--sink"] if sink else [])], cpus=server_cpus)
            try:
                yield Served(lambda: _DbusEndpoint(bus.address), pid=bus.pid,
                             rss_note="the dbus-daemon's RSS (the bus holds the sessions)")
            finally:
                server.stop()
        finally:
            bus.stop()


# -- Aether ---------------------------------------------------------------------------

class AetherEndpoint(Endpoint):
    """An Aether ``Client``. With ``loan`` and ``aether.sink``, bulk goes through
    ``Client.loan`` (the payload is written once, in place) where the build has it."""

    def __init__(self, path: str, transport: str, spin: float | None, capacity: int,
                 op: str, loan: bool = False, checksum: bool = True) -> None:
        from aether.client import Client
        from aether.wire import HEADER_SIZE

        block = max(64 * 1024, capacity + HEADER_SIZE + 4096)
        extra: dict[str, Any] = {} if spin is None else {"spin": spin}
        self.client = Client(path, transport=transport, block_size=block, timeout=20.0,
                             **extra)
        self.op = op
        self.loan = loan and op == "aether.sink" and hasattr(self.client, "loan")
        self.checksum = checksum

    def caller(self, payload: bytes) -> Callable[[], object]:
        spec = self.client.registry.by_name(self.op)
        assert spec is not None
        call = self.client.call
        if self.loan:
            empty, n, lend = spec.params(data=b""), len(payload), self.client.loan
            checksum = self.checksum

            def loaned() -> bytes:
                with lend(empty, n, checksum=checksum) as loan:
                    loan.write(payload)
                    loan.call()
                return b"k"
            return loaned
        params = spec.params(data=payload)
        if self.op == "aether.echo":
            return lambda: call(params)

        def sink() -> bytes:
            call(params)
            return b"k"
        return sink

    def check(self, payload: bytes, sink: bool) -> None:
        super().check(payload, sink and self.op != "aether.echo")

    def close(self) -> None:
        self.client.close()


def aether_unavailable(transport: str) -> str | None:
    """Why this build's Client refuses ``transport`` (None: it takes it).

    The Client checks the transport name before it resolves or connects, so a
    path that does not exist tells the two apart without a service."""
    from aether.client import Client
    from aether.errors import AetherError

    try:
        Client("/nonexistent/aether-bench-probe.ctl", transport=transport, timeout=0.1)
    except ValueError as exc:
        if "transport" in str(exc):
            return f"{transport} transport not available in this build"
        raise
    except (AetherError, OSError):
        return None
    return None


def sink_available() -> bool:
    from aether.schema.registry import Registry

    return Registry.from_modules().by_name("aether.sink") is not None


@dataclass
class AetherVariant(Mechanism):
    transport: str = "memory"
    client_spin: float | None = None  # None: the Client's default
    service_spin_us: int | None = None  # None: the service's default
    loan: bool = False  # bulk through Client.loan (written in place)

    def unavailable(self) -> str | None:
        return aether_unavailable(self.transport)

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """One service for all rows: echo and sink are client-side choices of the
        operation, capacity is the client's block size, placement is re-pinned."""
        from aether.testing import ServiceProcess

        with _socket_dir() as tmp:
            os.chmod(tmp, 0o700)
            args = [] if self.service_spin_us is None else ["--spin-us",
                                                            str(self.service_spin_us)]
            svc = ServiceProcess("aether.bench.bench_service:service", tmp / "bench.ctl",
                                 args=args, env={"AETHER_RUNTIME_DIR": str(tmp)})
            self._service = svc
            try:
                svc.start(timeout=60)
                yield
            finally:
                self._service = None
                svc.stop()

    @contextlib.contextmanager
    def serve(self, server_cpus: frozenset[int] | None, *, sink: bool,
              capacity: int) -> Iterator[Served]:
        svc = getattr(self, "_service", None)
        if svc is None:
            with self.session(), self.serve(server_cpus, sink=sink, capacity=capacity) as s:
                yield s
            return
        if svc.proc is None or svc.proc.poll() is not None:
            raise RuntimeError("the aether service exited: " + svc.stderr_text()[-300:])
        op = "aether.sink" if sink and sink_available() else "aether.echo"
        note = ""
        if sink and op == "aether.echo":
            note = ("bulk through aether.echo (this build has no aether.sink): the payload "
                    "also comes back")
        elif sink and self.loan:
            from aether.client import Client

            note = ("aether.sink through Client.loan (payload written in place)"
                    if hasattr(Client, "loan") else
                    "aether.sink, plain call (this build has no Client.loan)")
        # Unpinned rows measure the service as it places itself (one CPU for
        # its threads, service/placement.py); pinned rows override that and
        # give it back afterwards.
        own_cpus = None
        if server_cpus is not None:
            own_cpus = os.sched_getaffinity(svc.pid)
            pin_process(svc.pid, server_cpus)
        path = str(svc.socket_path)
        unchecked = None
        if sink and self.loan and self.transport == "mapping" and op == "aether.sink":
            def unchecked() -> Endpoint:
                return AetherEndpoint(path, self.transport, self.client_spin, capacity, op,
                                      True, checksum=False)
        try:
            yield Served(
                lambda: AetherEndpoint(path, self.transport, self.client_spin, capacity, op,
                                       self.loan),
                pid=svc.pid, note=note, connect_unchecked=unchecked,
                spec={"kind": "aether", "path": path, "transport": self.transport,
                      "spin": self.client_spin, "op": op, "capacity": capacity,
                      "loan": self.loan})
        finally:
            if own_cpus is not None:
                pin_process(svc.pid, own_cpus)


AETHER_VARIANTS: list[AetherVariant] = [
    AetherVariant("aether.memory", transport="memory", bulk=True, loan=True,
                  concurrency=True, rss=True,
                  note="the seed's transport; client and lone session poll up to 300 µs"),
    AetherVariant("aether.mapping.spin", transport="mapping", busy=True, bulk=True, loan=True,
                  concurrency=True, rss=True, note="default spin on both ends"),
    AetherVariant("aether.mapping.blocking", transport="mapping", client_spin=0.0,
                  service_spin_us=0, bulk=True, loan=True, concurrency=True, rss=True,
                  note="spin 0 on both ends: every wait sleeps on the eventfd"),
    AetherVariant("aether.socket", transport="socket", bulk=True, concurrency=True, rss=True,
                  note="payload inside the control socket's messages"),
]


def all_mechanisms() -> list[Mechanism]:
    return [
        ShmFloor("floor.spin", busy=True, note="both processes busy-spin on shared memory"),
        ShmFloor("floor.eventfd", eventfd=True, bulk=True,
                 note="shared memory + eventfd wake-ups; bulk: server reads in place"),
        MemcpyFloor("floor.memcpy", latency=False, bulk=True,
                    note="single process, memoryview slice assignment"),
        ProcMemFloor("floor.procmem", latency=False, bulk=True,
                     note="reading another process's memory through /proc/<pid>/mem, "
                          "as the memory transport's service does"),
        SocketPeer("raw.seqpacket", kind="seqpacket", endpoint=_SeqpacketEndpoint,
                   blocking_peer=True, concurrency=True, rss=True,
                   note="AF_UNIX SOCK_SEQPACKET, thread per connection"),
        SocketPeer("raw.stream", kind="stream", endpoint=_StreamEndpoint, blocking_peer=True,
                   bulk=True, note="AF_UNIX SOCK_STREAM, 4-byte length prefix"),
        SocketPeer("mp.connection", kind="mp", endpoint=_MpEndpoint, blocking_peer=True,
                   note="multiprocessing.connection send_bytes/recv_bytes"),
        SocketPeer("pyzmq", kind="zmq", endpoint=_ZmqEndpoint, blocking_peer=True, bulk=True,
                   requires=("zmq",), note="REQ/REP over ipc://"),
        Iceoryx2("iceoryx2.poll", busy=True, bulk=True, requires=("iceoryx2",),
                 note="request-response, receive() polled in a loop"),
        Iceoryx2("iceoryx2.blocking", blocking=True, blocking_peer=True, bulk=True,
                 requires=("iceoryx2",),
                 note="request-response + event service (Listener.blocking_wait)"),
        DbusFast("dbus-fast", blocking_peer=True, rss=True, requires=("dbus_fast",),
                 note="MessageBus.call(Message) Echo(ay) via a private dbus-daemon"),
        *AETHER_VARIANTS,
    ]


MECHANISM_IDS = [m.id for m in all_mechanisms()]

