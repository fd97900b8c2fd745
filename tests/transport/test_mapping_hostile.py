"""Hostile peers on the mapping transport (protocol.md §10): a client that
scribbles over the shared region, forges frames, never reads, is stopped or
passes descriptors breaks only its own session; the service stays up and
serves a well-behaved client within 1 s."""

from __future__ import annotations

import os
import signal
import time

import aether_testsvc as ts
import pytest
from mapping_rawpeer import RawMapPeer

import aether
from aether import osapi
from aether.testing import ServiceProcess, wait_until
from aether.wire import FrameKind, Status, rings


def assert_serving(svc: ServiceProcess) -> None:
    start = time.monotonic()
    with aether.Client(svc.socket_path, transport="mapping", timeout=1.0) as client:
        assert client.echo(b"still here") == b"still here"
    assert time.monotonic() - start < 1.0
    assert svc.proc.poll() is None


def sessions(svc: ServiceProcess) -> int:
    with aether.Client(svc.socket_path, transport="socket") as client:
        return client.status().sessions


def test_honest_raw_peer_round_trip(testsvc: ServiceProcess) -> None:
    peer = RawMapPeer(testsvc.socket_path)
    try:
        peer.execute(0x0003, {"data": b"raw"})
        deadline = time.monotonic() + 5
        frame = None
        while frame is None and time.monotonic() < deadline:
            frame = peer.reader.poll()
        assert frame is not None
        kind, op_id, status, payload = frame
        assert (kind, op_id, status) == (FrameKind.DONE, 1, Status.OK)
        assert bytes(payload) == b"\xc4\x03raw"
    finally:
        peer.close()


@pytest.mark.parametrize("word", [rings.W_REQ_HEAD, rings.W_REP_TAIL])
@pytest.mark.parametrize("value", [1, 3, (1 << 64) - 8, 1 << 40])
def test_scribbled_indices_end_only_that_session(testsvc: ServiceProcess, word: int,
                                                 value: int) -> None:
    peer = RawMapPeer(testsvc.socket_path)
    try:
        peer.ctl[word] = value
        if word == rings.W_REP_TAIL:
            peer.execute(0x0003, {"data": b"x"})  # the service checks the tail on writing
        peer.ring()
        assert peer.closed_by_service(5)
        assert_serving(testsvc)
    finally:
        peer.close()


def test_forged_crc_is_rejected_never_decoded(testsvc: ServiceProcess) -> None:
    peer = RawMapPeer(testsvc.socket_path)
    try:
        view = peer.writer.reserve(8)
        view[:] = b"\x81\xa4data\xc4\x01"[:8]
        peer.writer.commit(FrameKind.EXECUTE, 1, 0x0003, 8)
        peer.region.request_bytes[28] ^= 0xFF  # the crc
        peer.ring()
        assert peer.closed_by_service(5)
        assert_serving(testsvc)
    finally:
        peer.close()


def test_garbage_over_the_whole_request_ring(testsvc: ServiceProcess) -> None:
    peer = RawMapPeer(testsvc.socket_path)
    try:
        peer.region.request_bytes[:] = os.urandom(len(peer.region.request_bytes))
        peer.ctl[rings.W_REQ_HEAD] = 4096
        peer.ring()
        assert peer.closed_by_service(5)
        assert_serving(testsvc)
    finally:
        peer.close()


def test_frame_kind_of_the_other_ring(testsvc: ServiceProcess) -> None:
    peer = RawMapPeer(testsvc.socket_path)
    try:
        peer.writer.put(FrameKind.DONE, 1, 1, b"")
        peer.ring()
        assert peer.closed_by_service(5)
        assert_serving(testsvc)
    finally:
        peer.close()


def test_skipped_op_id_is_a_protocol_error(testsvc: ServiceProcess) -> None:
    peer = RawMapPeer(testsvc.socket_path)
    try:
        peer.op_id = 5
        peer.execute(0x0003, {"data": b"x"})
        assert peer.closed_by_service(5)
        assert_serving(testsvc)
    finally:
        peer.close()


def test_peer_that_never_reads_is_cut_off_and_others_are_served(runtime_dir) -> None:
    from e2e_support import start_service
    svc = start_service("aether_testsvc:service", runtime_dir / "t.ctl")
    try:
        peer = RawMapPeer(svc.socket_path)
        try:
            peer.execute(0x0F03, {"size": 40_000})  # fills most of the 64 KiB reply ring
            wait_until(lambda: peer.ctl[rings.W_REP_HEAD] > 40_000, 10, "the first result",
                       watch_pid=svc.pid)
            peer.execute(0x0F03, {"size": 40_000})  # cannot fit until the peer reads
            assert_serving(svc)
            assert peer.closed_by_service(15)  # after Limits.send_timeout (5 s)
            assert_serving(svc)
        finally:
            peer.close()
    finally:
        svc.kill()


def test_peer_that_never_reads_and_writes_to_its_socket_does_not_starve_the_service(
        runtime_dir) -> None:
    """While the service waits for room in a full reply ring, a datagram the
    peer sent meanwhile (or a stray wake-up) keeps the session's descriptors
    readable. The wait must still sleep between its looks: spinning on them
    held the GIL and starved the accept loop (a new client's handshake took
    over 1 s)."""
    from e2e_support import start_service
    svc = start_service("aether_testsvc:service", runtime_dir / "t.ctl")
    try:
        peer = RawMapPeer(svc.socket_path)
        try:
            doorbell = peer.fds[2]
            peer.execute(0x0F03, {"size": 40_000})  # fills most of the 64 KiB reply ring
            wait_until(lambda: peer.ctl[rings.W_REP_HEAD] > 40_000, 10, "the first result",
                       watch_pid=svc.pid)
            peer.ctl[rings.W_CLIENT_SLEEPING] = 1  # "I sleep": rung at every frame and retry
            peer.execute(0x0F03, {"size": 40_000})  # cannot fit until the peer reads
            # Rung for STARTED, then again only from the wait for room (the
            # result never fits): after the second ring the service is in it.
            for _ in range(2):
                assert osapi.wait_readable((doorbell,), 10) == [doorbell]
                osapi.eventfd_drain(doorbell)
            peer.channel.send(b"\x00unread")  # readable until the session reads it
            for _ in range(3):
                assert_serving(svc)
            assert peer.closed_by_service(15)
            assert_serving(svc)
        finally:
            peer.close()
    finally:
        svc.kill()


def test_stopped_raw_peer_mid_handshake_and_mid_op(testsvc: ServiceProcess) -> None:
    from aether.testing import ScriptedChild
    script = (
        "import sys, aether\n"
        "c = aether.Client(sys.argv[1], transport='mapping')\n"
        "op = c.start_by_name('test.slow', {'steps': 100000, 'delay': 0.01})\n"
        "print('started', flush=True)\n"
        "op.wait()\n"
    )
    child = ScriptedChild(script, str(testsvc.socket_path))
    try:
        assert child.line() == "started"
        os.kill(child.proc.pid, signal.SIGSTOP)
        assert_serving(testsvc)
        child.kill()  # SIGKILL works on a stopped process
        wait_until(lambda: sessions(testsvc) == 1, 10, "the stopped peer's session to end",
                   watch_pid=testsvc.pid)
        assert_serving(testsvc)
    finally:
        child.kill()


def test_descriptors_sent_by_a_client_are_not_kept(testsvc: ServiceProcess) -> None:
    before = len(os.listdir(f"/proc/{testsvc.pid}/fd"))
    r, w = os.pipe()
    try:
        peer = RawMapPeer(testsvc.socket_path, extra_fds=[r, w, r, w])
        try:
            peer.execute(0x0003, {"data": b"x"})
        finally:
            peer.close()
    finally:
        os.close(r)
        os.close(w)
    wait_until(lambda: len(os.listdir(f"/proc/{testsvc.pid}/fd")) <= before, 10,
               "the service's descriptors to return to the baseline", watch_pid=testsvc.pid)
    assert_serving(testsvc)


def test_region_is_sealed_and_unnamed(testsvc: ServiceProcess) -> None:
    peer = RawMapPeer(testsvc.socket_path)
    try:
        memfd = peer.fds[0]
        assert osapi.check_sealed_memfd(memfd, peer.region.size) == ""
        with pytest.raises(OSError):
            os.ftruncate(memfd, 4096)
        with pytest.raises(OSError):
            os.ftruncate(memfd, peer.region.size * 2)
        assert os.readlink(f"/proc/self/fd/{memfd}").startswith("/memfd:")
        assert not any("aether" in name for name in os.listdir("/dev/shm"))
    finally:
        peer.close()


def test_sink_reads_in_place(testsvc: ServiceProcess) -> None:
    with aether.Client(testsvc.socket_path, schema=ts, transport="mapping") as client:
        with client.loan(aether.schema.builtins.Sink(data=b""), 1 << 20) as loan:
            loan.buffer[:] = b"\x07" * (1 << 20)
            assert loan.call(timeout=10) == 1 << 20
        with client.loan(aether.schema.builtins.Sink(data=b""), 1 << 20,
                         checksum=False) as loan:
            loan.buffer[:] = b"\x07" * (1 << 20)
            assert loan.call(timeout=10) == 1 << 20
        with client.loan(aether.schema.builtins.Echo(data=b""), 8, checksum=False) as loan:
            loan.buffer[:] = b"12345678"
            with pytest.raises(aether.OperationError) as info:
                loan.call(timeout=10)
            assert info.value.status == Status.REJECTED_BAD_PARAMS
        with client.call_in_place(ts.BigResult(size=10_000)) as result:
            view = result.bytes_view()
            assert len(view) == 10_000 and not any(view)
            view.release()
        assert client.echo(b"next") == b"next"


def test_new_rings_while_an_operation_runs_is_refused(testsvc: ServiceProcess) -> None:
    from aether.wire import messages as m
    peer = RawMapPeer(testsvc.socket_path)
    try:
        peer.execute(0x0F01, {"steps": 1000, "delay": 0.01})  # test.slow, in a worker
        wait_until(lambda: peer.ctl[rings.W_REP_HEAD] > 0, 10, "STARTED",
                   watch_pid=testsvc.pid)
        peer.channel.send(peer.proto.send(m.MapMode(1 << 20)))
        assert peer.closed_by_service(5)
        assert_serving(testsvc)
    finally:
        peer.close()


def test_scribbled_loan_fill_words_break_only_that_session(testsvc: ServiceProcess) -> None:
    """Words 56-57 (protocol.md §10.5) are the client's claim: thousands of
    random claims, each with the doorbell rung, leave the service serving;
    an honest frame they do not name is read correctly, and one they name
    with a false sum ends only that session."""
    import random

    rng = random.Random(7)
    ring = 256 * 1024
    peer = RawMapPeer(testsvc.socket_path, ring_size=ring)
    params = {"data": bytes(range(256)) * 400}  # 102 KB: the reader asks its sums
    try:
        for _ in range(2000):
            gen = rng.choice([0, 1, rng.getrandbits(32)])
            peer.ctl[rings.W_LOAN_AT] = gen << 32 | rng.choice(
                [0, rings.FRAME_SIZE, ring - 8, ring, rng.getrandbits(32)])
            peer.ctl[rings.W_LOAN_FILLED] = rng.choice([gen, rng.getrandbits(32)]) << 32 | \
                rng.choice([0, 1, 4096, ring, rings.LOAN_RETRACTED, rng.getrandbits(32)])
            peer.ring()
        # Claims naming another offset: the frame is checked as it lies.
        peer.ctl[rings.W_LOAN_AT] = 9 << 32 | (rings.FRAME_SIZE + 8)
        peer.ctl[rings.W_LOAN_FILLED] = 9 << 32 | 4096
        peer.ring()
        peer.execute(0x0004, params)
        frame = None
        deadline = time.monotonic() + 5
        while frame is None and time.monotonic() < deadline:
            frame = peer.reader.poll()
        assert frame is not None and frame[:3] == (FrameKind.DONE, 1, Status.OK)
        peer.reader.release()
        assert_serving(testsvc)
        # A claim naming the next frame's payload, whose bytes then change:
        # the service's sum is of the old bytes, so the frame fails its crc.
        offset = peer.writer.head % ring + rings.FRAME_SIZE
        peer.region.request_bytes[offset:offset + 4096] = b"\xee" * 4096
        peer.ctl[rings.W_LOAN_AT] = 10 << 32 | offset
        peer.ctl[rings.W_LOAN_FILLED] = 10 << 32 | 4096
        # The service's sleeping word is in our mapping too: cleared here, it
        # says 2 again only once the service has looked at the claim (summed
        # it) and gone back to sleep. A service that still counted another
        # session (assert_serving's, being torn down) sleeps with 1 without
        # summing: ring it again until it is alone.
        def summed_and_asleep() -> bool:
            word = peer.ctl[rings.W_SERVICE_SLEEPING]
            if word == rings.SLEEPING:
                peer.ctl[rings.W_SERVICE_SLEEPING] = 0
                peer.ring()
            return word == rings.SLEEPING_SUMS_LOANS

        peer.ctl[rings.W_SERVICE_SLEEPING] = 0
        peer.ring()
        wait_until(summed_and_asleep, 5, "the service to sum the claim and sleep",
                   watch_pid=testsvc.pid)
        peer.execute(0x0004, params)
        assert peer.closed_by_service(5)
    finally:
        peer.close()
    assert_serving(testsvc)
