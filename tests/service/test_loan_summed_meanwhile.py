"""A large mapping loan filled with Loan.write is summed by the service
while the client writes it (rings.FillNotice / LoanSums): the frame's crc
check then reads only what came after. Checked on the session's objects,
so the service runs in this process (a thread), as in test_session_trim."""

from __future__ import annotations

import os
from pathlib import Path

import aether
from aether.schema.builtins import Echo, Sink
from aether.testing.inprocess import serving_in_thread
from aether.testing.waiting import wait_until

MiB = 1024 * 1024


def test_the_service_sums_a_large_loan_while_it_is_written(tmp_path: Path) -> None:
    svc = aether.Service("summing")
    data = os.urandom(4 * MiB)
    half = 2 * MiB
    with serving_in_thread(svc, tmp_path / "s.ctl"), \
            aether.Client(tmp_path / "s.ctl", transport="mapping",
                          block_size=8 * MiB) as client:
        (session,) = svc._sessions.values()
        sums = session.mapping.sums
        fill = client._mapped.fill

        def summed_half() -> bool:
            return sums.gen == fill.gen and sums.summed >= half

        with client.loan(Sink(data=b""), len(data)) as loan:
            loan.write(data[:half])
            wait_until(summed_half, 20, "the service to sum the first half",
                       watch_pid=os.getpid())
            loan.write(data[half:])
            assert loan.call(timeout=20) == len(data)
        assert sums.presummed >= half  # the check did not read those bytes again

        # Changed through the buffer after the service summed it: the client
        # retracted its word first, so the service checks the bytes as they are.
        before = sums.presummed
        with client.loan(Echo(data=b""), len(data)) as loan:
            loan.write(data[:half])
            wait_until(summed_half, 20, "the service to sum the first half",
                       watch_pid=os.getpid())
            loan.buffer[0:1] = b"\x00" if data[0] else b"\x01"
            loan.write(data[half:])
            changed = loan.buffer[0:1].tobytes()
            assert loan.call(timeout=20) == changed + data[1:]
        assert sums.presummed == before

        # Given up half-written: the next request at the same place is checked whole.
        with client.loan(Echo(data=b""), len(data)) as loan:
            loan.write(data[:half])
            wait_until(summed_half, 20, "the service to sum the first half",
                       watch_pid=os.getpid())
        assert client.call(Echo(data=data[::-1]), timeout=20) == data[::-1]
        assert client.echo(b"after") == b"after"
