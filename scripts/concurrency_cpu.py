"""Where the CPU goes when several clients call one service at once.

    python scripts/concurrency_cpu.py 4             # 4 clients, memory transport
    python scripts/concurrency_cpu.py 16 socket --seconds 5

Starts the bench service (``aether.bench.bench_service``), then N load
generators (``aether.bench.loadgen``, the processes behind ``aether bench``'s
concurrency rows) calling 64-byte echoes together, and prints the aggregate
calls/s beside the CPU the service and the clients used per call, the
machine's idle share, and the service's context switches per call (from
``/proc``). A diagnostic for docs/benchmarks.md ("Many clients"), not a
benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aether.testing import ServiceProcess, python_env

_HZ = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of every thread of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / _HZ, int(fields[12]) / _HZ


def _switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of every thread of ``pid``."""
    voluntary = involuntary = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            text = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except FileNotFoundError:
            continue  # the thread ended meanwhile
        for line in text.splitlines():
            if line.startswith("voluntary_ctxt_switches"):
                voluntary += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches"):
                involuntary += int(line.split()[1])
    return voluntary, involuntary


def _machine_times() -> list[int]:
    return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clients", type=int)
    parser.add_argument("transport", nargs="?", default="memory",
                        choices=["memory", "socket", "mapping"])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o700)
        svc = ServiceProcess("aether.bench.bench_service:service", Path(tmp) / "cpu.ctl",
                             env={"AETHER_RUNTIME_DIR": tmp})
        svc.start(timeout=60)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            spec = {"kind": "aether", "path": str(svc.socket_path), "transport": args.transport,
                    "spin": None, "capacity": 64 * 1024, "op": "aether.echo"}
            procs = [subprocess.Popen(
                [sys.executable, "-m", "aether.bench.loadgen", json.dumps(spec),
                 str(args.seconds)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                env=python_env()) for _ in range(args.clients)]
            for p in procs:
                assert p.stdout is not None and p.stdin is not None
                if p.stdout.readline().strip() != b"READY":
                    raise SystemExit("a load generator failed to connect")
            svc0, sw0, machine0 = _cpu_seconds(svc.pid), _switches(svc.pid), _machine_times()
            clients0 = [_cpu_seconds(p.pid) for p in procs]
            t0 = time.monotonic()
            for p in procs:
                assert p.stdin is not None
                p.stdin.write(b"GO\n")
                p.stdin.flush()
            # Sample inside the run: the clients' counters vanish when they exit.
            time.sleep(args.seconds * 0.9)
            svc1, sw1, machine1 = _cpu_seconds(svc.pid), _switches(svc.pid), _machine_times()
            clients1 = [_cpu_seconds(p.pid) for p in procs]
            elapsed = time.monotonic() - t0
            rate = 0.0
            for p in procs:
                assert p.stdout is not None
                calls, seconds = p.stdout.readline().split()
                rate += int(calls) / float(seconds)
                p.wait(30)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            svc.stop()

    service_cpu = sum(svc1) - sum(svc0)
    client_cpu = sum(sum(b) - sum(a) for a, b in zip(clients0, clients1, strict=True))
    calls = rate * elapsed
    deltas = [b - a for a, b in zip(machine0, machine1, strict=True)]
    print(f"{args.clients} client(s), {args.transport}: {rate:,.0f} calls/s")
    print(f"  service CPU {100 * service_cpu / elapsed:.0f}% "
          f"(user {100 * (svc1[0] - svc0[0]) / elapsed:.0f}%), "
          f"{1e6 * service_cpu / calls:.0f} µs per call")
    print(f"  clients CPU {100 * client_cpu / elapsed:.0f}%, "
          f"{1e6 * client_cpu / calls:.0f} µs per call")
    print(f"  machine idle {100 * deltas[3] / sum(deltas):.0f}%")
    print(f"  service context switches per call: voluntary {(sw1[0] - sw0[0]) / calls:.2f}, "
          f"involuntary {(sw1[1] - sw0[1]) / calls:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
