"""The server half of every peer, run as its own process:
``python -m aether.bench.servers KIND [--path P] [--sink] [...]``.

Each prints ``READY`` on stdout once it can take requests and then serves
until it is terminated. In echo mode a request comes back unchanged; with
``--sink`` the server reads the request (in place where the mechanism allows)
and answers with a 1-byte ack, which is how the bulk figures are taken.
Written by hand because these are the plain programs a user would write with
each mechanism: the point is to measure the mechanism, not a framework.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys
import threading

from . import shmfloor

ACK = b"k"


def _ready() -> None:
    sys.stdout.write("READY\n")
    sys.stdout.flush()


def _grow_buffers(sock: socket.socket, size: int = 1 << 20) -> None:
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
        except OSError:
            pass


def _recv_exact(conn: socket.socket, view: memoryview) -> bool:
    got = 0
    while got < len(view):
        n = conn.recv_into(view[got:])
        if n == 0:
            return False
        got += n
    return True


def _accept_threads(srv: socket.socket, handle: object) -> None:
    """One thread per connection, as a hand-written service would do."""
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def serve_seqpacket(args: argparse.Namespace) -> None:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    srv.bind(args.path)
    srv.listen(512)

    def handle(conn: socket.socket) -> None:
        _grow_buffers(conn)
        buf = bytearray(args.capacity + 1)
        view = memoryview(buf)
        with conn:
            try:
                while n := conn.recv_into(buf):
                    conn.sendall(ACK if args.sink else view[:n])
            except OSError:
                pass

    _ready()
    _accept_threads(srv, handle)


def serve_stream(args: argparse.Namespace) -> None:
    """4-byte length prefix; the reply is the same frame (echo) or one byte (sink)."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(args.path)
    srv.listen(512)

    def handle(conn: socket.socket) -> None:
        header = bytearray(4)
        buf = bytearray(args.capacity)
        with conn:
            try:
                while _recv_exact(conn, memoryview(header)):
                    (n,) = struct.unpack("<I", header)
                    if n > len(buf):
                        buf = bytearray(n)
                    view = memoryview(buf)[:n]
                    if not _recv_exact(conn, view):
                        break
                    if args.sink:
                        conn.sendall(ACK)
                    else:
                        conn.sendall(header)
                        conn.sendall(view)
            except OSError:
                pass

    _ready()
    _accept_threads(srv, handle)


def serve_mp_connection(args: argparse.Namespace) -> None:
    from multiprocessing.connection import Listener

    with Listener(args.path, family="AF_UNIX") as listener:
        _ready()
        while True:
            conn = listener.accept()
            with conn:
                try:
                    while True:
                        data = conn.recv_bytes()
                        conn.send_bytes(ACK if args.sink else data)
                except (EOFError, OSError):
                    pass


def serve_zmq(args: argparse.Namespace) -> None:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.REP)
    sock.bind("ipc://" + args.path)
    _ready()
    while True:
        frame = sock.recv(copy=False)
        if args.sink:
            sock.send(ACK)
        else:
            sock.send(frame, copy=False)


def serve_floor(args: argparse.Namespace) -> None:
    floor = shmfloor.ShmPair.attach(args.shm_fd, args.capacity, args.req_efd, args.resp_efd)
    _ready()
    floor.serve(sink=args.sink)


def serve_iceoryx2(args: argparse.Namespace) -> None:
    from . import iox

    iox.serve(args.path, blocking=args.blocking, sink=args.sink, capacity=args.capacity,
              ready=_ready)


def serve_dbus(args: argparse.Namespace) -> None:
    from . import dbus_peer

    dbus_peer.serve(args.path, sink=args.sink, ready=_ready)


SERVERS = {
    "seqpacket": serve_seqpacket,
    "stream": serve_stream,
    "mp": serve_mp_connection,
    "zmq": serve_zmq,
    "floor": serve_floor,
    "iceoryx2": serve_iceoryx2,
    "dbus": serve_dbus,
}


def _exit_with_parent(also_kill: int) -> None:
    """If the benchmark dies without stopping us (SIGKILL), go too, and take the
    private dbus-daemon along: nothing of a benchmark outlives it for long."""
    import signal
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        if also_kill > 0:
            try:
                os.kill(also_kill, signal.SIGTERM)
            except ProcessLookupError:
                pass
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aether.bench.servers")
    parser.add_argument("kind", choices=sorted(SERVERS))
    parser.add_argument("--path", default="", help="socket path, service name or bus address")
    parser.add_argument("--sink", action="store_true", help="ack with one byte instead of echo")
    parser.add_argument("--capacity", type=int, default=1 << 20, help="largest request")
    parser.add_argument("--blocking", action="store_true", help="iceoryx2: wait on events")
    parser.add_argument("--shm-fd", type=int, default=-1)
    parser.add_argument("--req-efd", type=int, default=-1)
    parser.add_argument("--resp-efd", type=int, default=-1)
    parser.add_argument("--kill-with-me", type=int, default=0, help="pid to end if orphaned")
    args = parser.parse_args(argv)
    _exit_with_parent(args.kill_with_me)
    if args.kind in ("seqpacket", "stream", "mp", "zmq") and os.path.exists(args.path):
        os.unlink(args.path)
    try:
        SERVERS[args.kind](args)
    except (BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
