"""Echo round trips: Aether's memory transport beside a raw AF_UNIX peer,
measured in one run on this machine. The benchmark process is the client;
each server is a separate process."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aether.testing import ServiceProcess, python_env

from .stats import median_of, summarize_ns

SIZES = (64, 64 * 1024, 8 * 1024 * 1024)


def _iterations(size: int, quick: bool) -> tuple[int, int]:
    """(warm-up, timed) round trips for a payload size."""
    if size >= 1 << 20:
        return (3, 15) if quick else (5, 60)
    if size >= 16 * 1024:
        return (200, 1000) if quick else (500, 5000)
    return (500, 3000) if quick else (2000, 20000)


def _time_loop(fn: Callable[[], None], warmup: int, count: int) -> list[int]:
    for _ in range(warmup):
        fn()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(count):
        t0 = clock()
        fn()
        samples.append(clock() - t0)
    return samples


class _PeerProcess:
    def __init__(self, kind: str, path: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aether.bench.peers", kind, path],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=python_env(),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != b"READY":
            self.close()
            raise RuntimeError(f"{kind} peer failed to start")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _raw_seqpacket(path: str, size: int, warmup: int, count: int) -> list[int]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.connect(path)
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        sock.setsockopt(socket.SOL_SOCKET, opt, 1 << 20)
    payload = os.urandom(size)
    buf = bytearray(size + 1)

    def once() -> None:
        sock.sendall(payload)
        n = sock.recv_into(buf)
        if n != size:
            raise RuntimeError("short echo")

    try:
        return _time_loop(once, warmup, count)
    finally:
        sock.close()


def _raw_stream(path: str, size: int, warmup: int, count: int) -> list[int]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    payload = struct.pack("<I", size) + os.urandom(size)
    buf = bytearray(size + 4)
    view = memoryview(buf)

    def once() -> None:
        sock.sendall(payload)
        got = 0
        while got < len(buf):
            n = sock.recv_into(view[got:])
            if n == 0:
                raise RuntimeError("peer closed")
            got += n

    try:
        return _time_loop(once, warmup, count)
    finally:
        sock.close()


def _aether(path: Path, transport: str, size: int, warmup: int, count: int,
            spin: float | None = None) -> list[int]:
    from aether.client import Client
    from aether.wire import HEADER_SIZE

    block = max(64 * 1024, size + HEADER_SIZE + 4096)
    extra = {} if spin is None else {"spin": spin}
    with Client(path, transport=transport, block_size=block, **extra) as client:
        payload = os.urandom(size)
        check = client.echo(payload)
        if check != payload:
            raise RuntimeError("echo mismatch")
        return _time_loop(lambda: client.echo(payload), warmup, count)


def run(quick: bool = False, repeats: int | None = None) -> list[dict[str, Any]]:
    """Measure every mechanism at every size; returns one row per combination."""
    repeats = repeats or (1 if quick else 3)
    rows: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="aether-bench-"))
    os.chmod(tmp, 0o700)
    service = ServiceProcess("guard", tmp / "guard.ctl", env={"AETHER_RUNTIME_DIR": str(tmp)})
    service.start()
    # The same service with spinning off on both ends: the wake-up cost shown plainly.
    quiet = ServiceProcess("guard", tmp / "quiet.ctl", args=["--spin-us", "0"],
                           env={"AETHER_RUNTIME_DIR": str(tmp)})
    quiet.start()
    seq = _PeerProcess("seqpacket", str(tmp / "seq.sock"))
    stream = _PeerProcess("stream", str(tmp / "stream.sock"))
    try:
        for size in SIZES:
            warmup, count = _iterations(size, quick)
            measures: dict[str, Callable[[], list[int]]] = {
                "aether.memory": lambda s=size, w=warmup, c=count: _aether(
                    tmp / "guard.ctl", "memory", s, w, c),
            }
            if size <= 64 * 1024:
                measures["aether.memory.nospin"] = lambda s=size, w=warmup, c=count: _aether(
                    tmp / "quiet.ctl", "memory", s, w, c, spin=0.0)
                measures["raw.seqpacket"] = lambda s=size, w=warmup, c=count: _raw_seqpacket(
                    str(tmp / "seq.sock"), s, w, c)
            measures["raw.stream"] = lambda s=size, w=warmup, c=count: _raw_stream(
                str(tmp / "stream.sock"), s, w, c)
            for mechanism, fn in measures.items():
                runs = [summarize_ns(fn()) for _ in range(repeats)]
                fig = median_of(runs)
                row: dict[str, Any] = {
                    "mechanism": mechanism, "kind": "latency", "payload_bytes": size,
                    "pinning": "unpinned", "clients": 1, **fig,
                }
                if size >= 1 << 20:
                    # bytes each way per second: a round trip moves the payload twice
                    row["gbps"] = 2 * size / (fig["p50_us"] * 1e-6) / 1e9
                rows.append(row)
    finally:
        seq.close()
        stream.close()
        service.stop()
        quiet.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return rows
