"""One load-generating client for the concurrency figures, as its own process:
``python -m aether.bench.loadgen SPEC_JSON SECONDS``. It connects, prints
``READY``, waits for ``GO`` on stdin (so every client starts together), calls
64-byte echoes for SECONDS and prints ``CALLS ELAPSED_S``."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from .mechanisms import AetherEndpoint, Endpoint, make_payload


def connect(spec: dict[str, Any]) -> Endpoint:
    from . import mechanisms as m

    kind = spec["kind"]
    if kind == "aether":
        return AetherEndpoint(spec["path"], spec["transport"], spec["spin"], spec["capacity"],
                              spec["op"], spec.get("loan", False))
    endpoints: dict[str, type[Endpoint]] = {
        "seqpacket": m._SeqpacketEndpoint, "stream": m._StreamEndpoint,
        "mp": m._MpEndpoint, "zmq": m._ZmqEndpoint}
    return endpoints[kind](spec["path"])  # type: ignore[call-arg]


def main(argv: list[str]) -> int:
    spec, seconds = json.loads(argv[1]), float(argv[2])
    ep = connect(spec)
    call = ep.caller(make_payload(64))
    for _ in range(50):
        call()
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        return 1
    clock = time.perf_counter
    calls = 0
    t0 = clock()
    end = t0 + seconds
    while True:
        for _ in range(16):
            call()
        calls += 16
        now = clock()
        if now >= end:
            break
    print(calls, now - t0, flush=True)
    ep.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
