"""Peer servers the benchmarks compare against, each run as its own process:
``python -m aether.bench.peers KIND SOCKET_PATH``. They print ``READY`` on
stdout once listening and echo every message back until the client leaves."""

from __future__ import annotations

import os
import socket
import struct
import sys


def _serve_seqpacket(path: str) -> None:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    srv.bind(path)
    srv.listen(1)
    print("READY", flush=True)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    while True:  # one client at a time, for as many runs as the benchmark makes
        conn, _ = srv.accept()
        _grow_buffers(conn)
        with conn:
            while n := conn.recv_into(buf):
                conn.sendall(view[:n])


def _recv_exact(conn: socket.socket, view: memoryview) -> bool:
    got = 0
    while got < len(view):
        n = conn.recv_into(view[got:])
        if n == 0:
            return False
        got += n
    return True


def _serve_stream(path: str) -> None:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    print("READY", flush=True)
    header = bytearray(4)
    buf = bytearray(1 << 20)
    while True:  # one client at a time
        conn, _ = srv.accept()
        with conn:
            while _recv_exact(conn, memoryview(header)):
                (n,) = struct.unpack("<I", header)
                if n > len(buf):
                    buf = bytearray(n)
                view = memoryview(buf)[:n]
                if not _recv_exact(conn, view):
                    break
                conn.sendall(bytes(header) + view)


def _grow_buffers(sock: socket.socket) -> None:
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, 1 << 20)
        except OSError:
            pass


SERVERS = {"seqpacket": _serve_seqpacket, "stream": _serve_stream}


def main(argv: list[str]) -> int:
    kind, path = argv[1], argv[2]
    if os.path.exists(path):
        os.unlink(path)
    try:
        SERVERS[kind](path)
    except (BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
