"""Benchmarks of atom tables and anonymous pipes against their floors.

- atoms: add + find + delete cycles per second, for the global table (a
  shared file under ``flock``) and the local table, against a plain ``dict``
  doing the same reference counting in one process (the floor);
- pipes: throughput from one process to another through
  :mod:`aether.primitives.pipes` against raw ``os.pipe`` + ``os.read`` /
  ``os.write`` between two processes (the floor).

``ratio`` is value / floor (1.0 = as fast as the floor). The global table
runs in a private temporary runtime directory, never in the user's own.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aether.primitives.atoms import AtomTable, GlobalAtomTable, LocalAtomTable
from aether.primitives.pipes import create_pipe

NAMES = [f"bench-atom-{i:03d}" for i in range(64)]
CHUNK = 65536
TIMEOUT = 120.0


def _result(name: str, value: float, unit: str, floor: float) -> dict[str, Any]:
    return {
        "name": name,
        "value": round(value, 1),
        "unit": unit,
        "floor": round(floor, 1),
        "ratio": round(value / floor, 4) if floor else 0.0,
    }


def _best_rate(func: Any, count: int, repeats: int) -> float:
    """Operations per second of the best of ``repeats`` runs of ``func(count)``."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        func(count)
        elapsed = time.perf_counter() - start
        best = max(best, count / elapsed)
    return best


def _table_cycles(table: AtomTable) -> Any:
    def run(count: int) -> None:
        add, find, delete = table.add, table.find, table.delete
        for i in range(count):
            name = NAMES[i & 63]
            atom = add(name)
            find(name)
            delete(atom)

    return run


def _dict_cycles(count: int) -> None:
    """The floor: the same refcounted add/find/delete on a dict, case-folded."""
    table: dict[str, int] = {}
    for i in range(count):
        key = NAMES[i & 63].upper()
        table[key] = table.get(key, 0) + 1
        _ = table[key]
        left = table[key] - 1
        if left:
            table[key] = left
        else:
            del table[key]


def bench_atoms(quick: bool) -> list[dict[str, Any]]:
    count, repeats = (5_000, 2) if quick else (50_000, 3)
    floor = _best_rate(_dict_cycles, count * 10, repeats)
    results = []
    with tempfile.TemporaryDirectory(prefix="aether-bench-") as tmp:
        directory = Path(tmp) / "atoms"
        directory.mkdir(mode=0o700)
        with GlobalAtomTable(directory) as table:
            rate = _best_rate(_table_cycles(table), count, repeats)
        results.append(_result("atoms.global.add_find_delete", rate, "cycles/s", floor))
    rate = _best_rate(_table_cycles(LocalAtomTable()), count, repeats)
    results.append(_result("atoms.local.add_find_delete", rate, "cycles/s", floor))
    return results


_READER = """
import os, sys
fd, mode = int(sys.argv[1]), sys.argv[2]
if mode == "aether":
    from aether.primitives.pipes import adopt_fd
    end = adopt_fd(fd)
    read = end.read
else:
    read = lambda n: os.read(fd, n)
os.write(1, b"r")
total = 0
while chunk := read(65536):
    total += len(chunk)
os.write(1, str(total).encode())
"""


def _pipe_rate(mode: str, total: int) -> float:
    """Bytes per second from this process to a child reading to end of stream."""
    reader, writer = create_pipe()
    with reader, writer:
        proc = subprocess.Popen(
            [sys.executable, "-c", _READER, str(reader.fileno()), mode],
            stdout=subprocess.PIPE,
            pass_fds=(reader.fileno(),),
        )
        try:
            assert proc.stdout is not None
            reader.close()
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ)
                if not sel.select(TIMEOUT) or proc.stdout.read(1) != b"r":
                    raise RuntimeError("benchmark reader did not start")
            block = memoryview(bytes(CHUNK))
            fd = writer.fileno()
            start = time.perf_counter()
            if mode == "aether":
                for _ in range(total // CHUNK):
                    writer.write(block)
            else:
                for _ in range(total // CHUNK):
                    sent = 0
                    while sent < CHUNK:
                        sent += os.write(fd, block[sent:])
            writer.close()
            received = int(proc.stdout.read())
            elapsed = time.perf_counter() - start
        finally:
            try:
                proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()  # our own child
                proc.wait(timeout=TIMEOUT)
            if proc.stdout is not None:
                proc.stdout.close()
    if received != total // CHUNK * CHUNK:
        raise RuntimeError(f"benchmark reader got {received} bytes")
    return received / elapsed


def bench_pipes(quick: bool) -> list[dict[str, Any]]:
    total, repeats = (64 << 20, 3) if quick else (256 << 20, 5)
    best = {"raw": 0.0, "aether": 0.0}
    for _ in range(repeats):  # alternate, so that machine noise hits both alike
        for mode in best:
            best[mode] = max(best[mode], _pipe_rate(mode, total) / (1 << 20))
    return [_result("pipes.throughput_2proc", best["aether"], "MiB/s", best["raw"])]


def run(quick: bool) -> list[dict[str, Any]]:
    """All benchmarks of this module; ``quick`` shortens them for CI."""
    return bench_atoms(quick) + bench_pipes(quick)


if __name__ == "__main__":
    import json

    for row in run(quick="--quick" in sys.argv):
        print(json.dumps(row))
