"""A quick probe of the mapping transport against floors measured in the same
run (issue 4 goals): 64-byte echo spinning and blocking, 64 MiB one-way with
a loan, each as a ratio to its floor.

    python -m aether.bench.mapping_probe [--count N] [--json FILE]

Floors, each between two processes (fork) on a shared anonymous mapping:
``floor.spin`` (both sides busy-poll a counter), ``floor.eventfd`` (the
same with eventfd wake-ups), and ``floor.memcpy`` (one process copying
64 MiB). The service runs as ``aether service run`` of :data:`service`.
The full comparison against every peer is ``aether bench``.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from aether.client import Client
from aether.schema import builtins as b
from aether.service import Limits, Service
from aether.testing import ServiceProcess, isolated_runtime

MiB = 1024 * 1024
BULK = 64 * MiB

service = Service("mapping-probe")
service.limits = replace(Limits(), max_payload=BULK + MiB, max_block_size=BULK + MiB)


def _percentiles(samples: list[int]) -> dict[str, float]:
    samples.sort()
    n = len(samples)
    return {"p50_us": samples[n // 2] / 1000, "p99_us": samples[int(n * 0.99)] / 1000,
            "mean_us": statistics.fmean(samples) / 1000}


def floor_spin(count: int) -> dict[str, float]:
    """Two processes ping-pong a counter in shared memory, both busy-polling."""
    shm = mmap.mmap(-1, 4096)
    q = memoryview(shm).cast("Q")
    pid = os.fork()
    if pid == 0:
        try:
            expect = 1
            while expect <= count:
                while q[0] != expect:
                    pass
                q[8] = expect
                expect += 1
        finally:
            os._exit(0)
    clock = time.perf_counter_ns
    samples = []
    for i in range(1, count + 1):
        t = clock()
        q[0] = i
        while q[8] != i:
            pass
        samples.append(clock() - t)
    os.waitpid(pid, 0)
    q.release()
    shm.close()
    return _percentiles(samples[count // 10:])


def floor_eventfd(count: int) -> dict[str, float]:
    """The same round trip, each side sleeping on its eventfd."""
    shm = mmap.mmap(-1, 4096)
    q = memoryview(shm).cast("Q")
    to_child, to_parent = os.eventfd(0), os.eventfd(0)
    pid = os.fork()
    if pid == 0:
        try:
            for _ in range(count):
                os.eventfd_read(to_child)
                q[8] = q[0]
                os.eventfd_write(to_parent, 1)
        finally:
            os._exit(0)
    clock = time.perf_counter_ns
    samples = []
    for i in range(1, count + 1):
        t = clock()
        q[0] = i
        os.eventfd_write(to_child, 1)
        os.eventfd_read(to_parent)
        samples.append(clock() - t)
    os.waitpid(pid, 0)
    q.release()
    shm.close()
    return _percentiles(samples[count // 10:])


def floor_memcpy(size: int = BULK, repeats: int = 7) -> float:
    """GB/s of one process copying ``size`` bytes (memoryview slice assign)."""
    src = bytearray(os.urandom(MiB) * (size // MiB))
    dst = bytearray(size)
    view_d, view_s = memoryview(dst), memoryview(src)
    view_d[:] = view_s
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        view_d[:] = view_s
        times.append(time.perf_counter() - t)
    return size / statistics.median(times) / 1e9


def aether_echo(path: Path, spin: float, count: int) -> dict[str, float]:
    with Client(path, transport="mapping", spin=spin) as client:
        data = b"x" * 64
        call, params = client.call, b.Echo(data=data)
        for _ in range(count // 10):
            call(params)
        clock = time.perf_counter_ns
        samples = []
        for _ in range(count):
            t = clock()
            call(params)
            samples.append(clock() - t)
    return _percentiles(samples)


def aether_bulk(path: Path, size: int = BULK, repeats: int = 7, checksum: bool = True
                ) -> float:
    """GB/s of aether.sink with a loan: the caller writes the bytes into the
    request ring (one copy, like the memcpy floor) and the service reads them
    in place. With ``checksum`` the writer sums each chunk as it copies it
    (``Loan.write``) and the service reads the data once more for the crc."""
    src = memoryview(bytearray(os.urandom(MiB) * (size // MiB)))
    with Client(path, transport="mapping", block_size=size + MiB) as client:
        times = []
        for i in range(repeats + 1):
            t = time.perf_counter()
            with client.loan(b.Sink(data=b""), size, checksum=checksum) as loan:
                loan.write(src)
                assert loan.call(timeout=60) == size
            if i:
                times.append(time.perf_counter() - t)
    return size / statistics.median(times) / 1e9


def run(count: int) -> dict[str, Any]:
    out: dict[str, Any] = {"count": count}
    out["floor.spin"] = floor_spin(count)
    out["floor.eventfd"] = floor_eventfd(count)
    out["floor.memcpy_gbps"] = floor_memcpy()
    with isolated_runtime() as runtime, tempfile.TemporaryDirectory() as tmp:
        for mode, spin_us, client_spin in (("spin", 2000, 0.002), ("blocking", 0, 0.0)):
            sock = Path(tmp) / f"{mode}.ctl"
            env = {"AETHER_RUNTIME_DIR": str(runtime)}
            with ServiceProcess("aether.bench.mapping_probe:service", sock,
                                args=("--spin-us", str(spin_us)), env=env).start() as svc:
                out[f"aether.mapping.{mode}"] = aether_echo(svc.socket_path, client_spin, count)
                if mode == "blocking":
                    out["aether.mapping.loan_gbps"] = aether_bulk(svc.socket_path,
                                                                  checksum=False)
                    out["aether.mapping.loan_crc_gbps"] = aether_bulk(svc.socket_path)
    spin, block = out["aether.mapping.spin"], out["aether.mapping.blocking"]
    out["ratios"] = {
        "spin_p50_vs_floor.spin (goal <= 3)": spin["p50_us"] / out["floor.spin"]["p50_us"],
        "spin_p50_us (goal <= 2.7 = iceoryx2 poll 5.4 / 2)": spin["p50_us"],
        "blocking_p50_vs_floor.eventfd (goal <= 1.3)":
            block["p50_us"] / out["floor.eventfd"]["p50_us"],
        "loan_64MiB_vs_floor.memcpy (goal >= 0.7)":
            out["aether.mapping.loan_gbps"] / out["floor.memcpy_gbps"],
        "loan_64MiB_with_payload_crc_vs_floor.memcpy":
            out["aether.mapping.loan_crc_gbps"] / out["floor.memcpy_gbps"],
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    out = run(args.count)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0



if __name__ == "__main__":
    sys.exit(main())
