"""Benchmarks of mailslots and file-mapping views against their floors.

- mailslots: messages per second from a writer process to a reader
  (this process) through :mod:`aether.primitives.mailslots`, against raw
  AF_UNIX ``SOCK_DGRAM`` between two processes doing the same (the floor),
  in the same run;
- mappings: bytes per second written into and read back out of a shared
  view (``view[:] = src``, ``dst[:] = view``), against the same two copies
  between two ``bytearray`` objects (memcpy, the floor). Copies go through
  ``memoryview`` slices on both sides: ``bytearray[:] = bytes`` would first
  build a temporary bytearray and measure the allocator, not memcpy.

``ratio`` is value / floor (1.0 = as fast as the floor). Everything runs in
a private temporary runtime directory, never in the user's own.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aether.primitives.mailslots import Mailslot
from aether.primitives.mapping import FileMapping

TIMEOUT = 120.0
MESSAGE = 100
SLOT = r"\\.\mailslot\aether\bench"

_SLOT_WRITER = textwrap.dedent(
    """
    import sys
    from aether.primitives.mailslots import open_mailslot
    n, size = int(sys.argv[2]), int(sys.argv[3])
    msg = b"m" * size
    with open_mailslot(sys.argv[1]) as w:
        write = w.write
        print("ready", flush=True)
        sys.stdin.readline()
        for _ in range(n):
            write(msg)
    """
)

_RAW_WRITER = textwrap.dedent(
    """
    import socket, sys
    n, size = int(sys.argv[2]), int(sys.argv[3])
    msg = b"m" * size
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.connect(sys.argv[1])
    send = s.send
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(n):
        send(msg)
    """
)


def _result(name: str, value: float, unit: str, floor: float) -> dict[str, Any]:
    return {
        "name": name,
        "value": round(value, 1),
        "unit": unit,
        "floor": round(floor, 1),
        "ratio": round(value / floor, 4) if floor else 0.0,
    }


@contextlib.contextmanager
def _private_runtime() -> Iterator[Path]:
    """A temporary AETHER_RUNTIME_DIR for this process and its children."""
    old = os.environ.get("AETHER_RUNTIME_DIR")
    with tempfile.TemporaryDirectory(prefix="aether-bench-") as tmp:
        path = Path(tmp) / "rt"
        path.mkdir(mode=0o700)
        os.environ["AETHER_RUNTIME_DIR"] = str(path)
        try:
            yield path
        finally:
            if old is None:
                os.environ.pop("AETHER_RUNTIME_DIR", None)
            else:
                os.environ["AETHER_RUNTIME_DIR"] = old


class _Writer:
    """A writer child that sends ``count`` messages when told to go."""

    def __init__(self, script: str, target: str, count: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, target, str(count), str(MESSAGE)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=os.environ.copy(),
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT)
        if not ready or self.proc.stdout.readline().strip() != b"ready":
            self.close()
            raise RuntimeError("benchmark writer did not start")

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=TIMEOUT)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


def _mailslot_rate(count: int) -> float:
    with Mailslot.create(SLOT, read_timeout=int(TIMEOUT * 1000)) as slot:
        writer = _Writer(_SLOT_WRITER, SLOT, count)
        try:
            read = slot.read
            start = time.perf_counter()
            writer.go()
            for _ in range(count):
                read()
            elapsed = time.perf_counter() - start
        finally:
            writer.close()
    return count / elapsed


def _raw_rate(count: int) -> float:
    # a short path: sun_path holds only 108 bytes
    with tempfile.TemporaryDirectory(prefix="aeb-", dir="/tmp") as tmp:
        path = str(Path(tmp) / "s")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(TIMEOUT)
        writer = _Writer(_RAW_WRITER, path, count)
        try:
            recv = sock.recv
            start = time.perf_counter()
            writer.go()
            for _ in range(count):
                recv(65536)
            elapsed = time.perf_counter() - start
        finally:
            writer.close()
            sock.close()
    return count / elapsed


def bench_mailslots(quick: bool) -> list[dict[str, Any]]:
    count = 20_000 if quick else 200_000
    repeats = 1 if quick else 3
    slot = raw = 0.0
    with _private_runtime():
        for _ in range(repeats):  # alternate, so background noise hits both alike
            slot = max(slot, _mailslot_rate(count))
            raw = max(raw, _raw_rate(count))
    return [_result(f"mailslots.messages_{MESSAGE}B_2proc", slot, "msg/s", raw)]


def bench_mapping(quick: bool) -> list[dict[str, Any]]:
    size = (16 if quick else 64) << 20
    repeats = 3 if quick else 5
    src = os.urandom(1 << 20) * (size >> 20)
    dst = bytearray(size)
    out = memoryview(dst)
    out[:] = src  # fault every page in before timing, here and below
    plain = memoryview(bytearray(size))
    plain[:] = src
    best_view = best_copy = 0.0
    with _private_runtime(), FileMapping.create("Local\\bench", size=size) as m, \
            m.map_view() as view:
        view[:] = src
        for _ in range(repeats):  # alternate, so background noise hits both alike
            start = time.perf_counter()
            view[:] = src
            out[:] = view
            best_view = max(best_view, 2 * size / (time.perf_counter() - start))
            start = time.perf_counter()
            plain[:] = src
            out[:] = plain
            best_copy = max(best_copy, 2 * size / (time.perf_counter() - start))
        assert bytes(out[:16]) == src[:16]
    out.release()
    plain.release()
    mib = float(1 << 20)
    return [
        _result("mapping.view_write_read", best_view / mib, "MiB/s", best_copy / mib),
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    """Figures for ``aether bench primitives``: one dict per measure."""
    return bench_mailslots(quick) + bench_mapping(quick)


if __name__ == "__main__":  # pragma: no cover
    for row in run("--quick" in sys.argv):
        print(row)
