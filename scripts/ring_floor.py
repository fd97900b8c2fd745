"""The floor under the mapping transport's spinning round trip: two Python
processes echoing 64 B through the same C rings, with nothing of Aether's
layers between them.

    python scripts/ring_floor.py            # frames only
    python scripts/ring_floor.py --msgpack  # + encode, decode and a handler call per side

Each end spins on the ring (``RingReader.spin``) as the transport does.
The difference between this and ``aether.mapping.spin`` in the same minute
is what the client's call and the service's dispatch cost (op rules,
policy, contexts, the doorbell checks). A diagnostic for
docs/benchmarks.md, not a benchmark.
"""

from __future__ import annotations

import argparse
import mmap
import os
import time

import msgspec

from aether.wire import FrameKind, rings

RING = 1 << 16
EXECUTE, DONE = int(FrameKind.EXECUTE), int(FrameKind.DONE)
SPIN = 1.0  # seconds: spin only, as a spinning pair does


class Echo(msgspec.Struct, array_like=True):
    data: bytes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--msgpack", action="store_true")
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    region = mmap.mmap(-1, rings.region_size(RING))
    whole = memoryview(region)
    ctl = whole[:rings.CONTROL_BYTES].cast("Q")
    requests = whole[rings.CONTROL_BYTES:rings.CONTROL_BYTES + RING]
    replies = whole[rings.CONTROL_BYTES + RING:rings.CONTROL_BYTES + 2 * RING]
    rings.init_control(ctl, RING)
    encoder, decoder = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder(Echo)
    n = args.calls
    pid = os.fork()
    if pid == 0:  # the service
        try:
            reader = rings.request_reader(ctl, requests)
            writer = rings.reply_writer(ctl, replies)
            for _ in range(n):
                while not reader.spin(SPIN):
                    pass
                frame = reader.poll()
                assert frame is not None
                _, op_id, _, payload = frame
                if args.msgpack:
                    writer.put(DONE, op_id, 0, encoder.encode(decoder.decode(payload)))
                else:
                    writer.put(DONE, op_id, 0, payload)
                payload.release()
                reader.release()
        finally:
            os._exit(0)
    writer = rings.request_writer(ctl, requests)
    reader = rings.reply_reader(ctl, replies)
    request = Echo(b"x" * 64)
    raw = b"x" * 64
    clock = time.perf_counter_ns
    times = []
    for op_id in range(1, n + 1):
        start = clock()
        writer.put(EXECUTE, op_id, 7, encoder.encode(request) if args.msgpack else raw)
        while not reader.spin(SPIN):
            pass
        frame = reader.poll()
        assert frame is not None
        if args.msgpack:
            decoder.decode(frame[3])
        frame[3].release()
        reader.release()
        times.append(clock() - start)
    os.waitpid(pid, 0)
    times = sorted(times[n // 10:])
    print(f"{'msgpack' if args.msgpack else 'frames'}: p50 {times[len(times) // 2] / 1e3:.2f} µs, "
          f"p99 {times[int(len(times) * 0.99)] / 1e3:.2f} µs ({len(times)} calls after warm-up)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
