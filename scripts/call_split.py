"""Where one 64-byte echo's time goes, on both ends, for a transport.

    python scripts/call_split.py memory      # or socket, mapping
    python scripts/call_split.py memory --calls 50000

Starts the bench service (``aether.bench.bench_service``) in its own
process with timers wrapped around the steps of a call (this module is also
the service's target, ``call_split:service``), makes a client with the same
timers, runs warm-up and measured echoes, and prints each step's median. A
timer costs about 0.5 µs, so the medians are upper bounds; the point is their
proportions. A diagnostic for docs/benchmarks.md, not a benchmark.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aether.bench.bench_service import service

__all__ = ["service"]  # the service's target: call_split:service

_TIMES: dict[str, list[int]] = {}


def _wrap(owner: Any, name: str, label: str) -> None:
    func = getattr(owner, name)

    @functools.wraps(func)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter_ns()
        try:
            return func(*args, **kwargs)
        finally:
            _TIMES.setdefault(label, []).append(time.perf_counter_ns() - start)

    setattr(owner, name, timed)


def _medians() -> dict[str, tuple[float, int]]:
    return {k: (statistics.median(v) / 1e3, len(v)) for k, v in _TIMES.items()}


def _time_the_service(out: str) -> None:
    from aether.service.session import Session
    from aether.transport.channel import Channel
    from aether.transport.memory_service import MemoryServiceSide
    from aether.wire.connection import ServiceProtocol

    _wrap(MemoryServiceSide, "read_params", "service: read the parameter block")
    _wrap(MemoryServiceSide, "write_status", "service: write the return block")
    _wrap(ServiceProtocol, "receive", "service: protocol receive")
    _wrap(ServiceProtocol, "send", "service: protocol send")
    _wrap(Channel, "send", "service: socket send")
    _wrap(Session, "_run_inline", "service: decode, context, handler")
    _wrap(Session, "_execute_direct", "service: memory/socket short path")
    _wrap(Session, "_execute_inline", "service: mapping short path")
    atexit.register(lambda: Path(out).write_text(json.dumps(_medians())))


if os.environ.get("AETHER_CALL_SPLIT_OUT"):
    _time_the_service(os.environ["AETHER_CALL_SPLIT_OUT"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("transport", choices=["memory", "socket", "mapping"])
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()

    from aether.client import Client
    from aether.schema import builtins as b
    from aether.testing import ServiceProcess

    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o700)
        out = Path(tmp) / "service.json"
        env = {"AETHER_RUNTIME_DIR": tmp, "AETHER_CALL_SPLIT_OUT": str(out),
               "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent),
                                              os.environ.get("PYTHONPATH", "")])}
        svc = ServiceProcess("call_split:service", Path(tmp) / "split.ctl", env=env)
        svc.start(timeout=60)
        try:
            client = Client(str(svc.socket_path), transport=args.transport)
            if client.memory is not None:
                _wrap(client.memory, "write_params", "client: write the parameter block")
                _wrap(client.memory, "read_return", "client: read the return block")
            if args.transport != "mapping":
                assert client.channel is not None
                _wrap(client.channel, "send", "client: socket send")
                _wrap(client.channel, "recv", "client: wait for the reply")
            params = b.Echo(data=b"x" * 64)
            for _ in range(2000):
                client.call(params)
            _TIMES.clear()
            for _ in range(args.calls):
                start = time.perf_counter_ns()
                client.call(params)
                _TIMES.setdefault("client: whole call", []).append(
                    time.perf_counter_ns() - start)
            client.close()
        finally:
            svc.stop()
        timings = {**_medians(), **json.loads(out.read_text())}
    print(f"{args.transport}, 64 B echo, medians of {args.calls} calls (µs):")
    for label, (us, n) in timings.items():
        print(f"  {label:40} {us:7.1f}   n={n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
