"""The mapping transport under a hostile client (docs/protocol.md §10;
threats T14, T19, T22, T27, T28, T35 applied to the rings).

A raw client (no ``aether.Client``) asks for rings with MAP_MODE, maps the
sealed memfd MAP_READY hands over (``aether.transport.mapping
.MappingClientSide``, the same checks the real client makes), and then
scribbles the control words, forges frames, rewrites a published frame while
the service reads it, resizes the region, and attaches descriptors to its
control messages. Each case: the service ends only that session
(ERROR(PROTOCOL) and the close), never crashes, keeps no descriptor of the
client's, and answers a well-behaved client within 1 s; the ``svc`` fixture
checks it is back to its idle threads and descriptors.

The sans-IO ring checks (every flipped byte of a frame, scribbled indices,
wrong kinds, sequence) are tested in tests/wire/test_rings.py; this file
runs them against a live service process.
"""

from __future__ import annotations

import fcntl
import os
import select
import threading
import time

import msgspec
import pytest
from adv_support import ECHO, RING, MappedPeer, SessionEnded as _SessionEnded
from rawpeer import RawPeer

from aether import osapi, wire
from aether.osapi.fdpass import recv_fds, send_fds
from aether.primitives.pipes import create_pipe
from aether.schema import builtins as b, encode
from aether.schema.params import spec_of
from aether.transport.mapping import MappingClientSide
from aether.wire import ErrorCode, FrameKind, Status, messages as m, rings


def _echo_payload(data: bytes) -> bytes:
    return encode(b.Echo(data=data))


def test_raw_mapped_echo_works(svc):
    """The harness is right: a raw mapped session echoes."""
    client = MappedPeer(svc.path)
    try:
        for op_id in (1, 2, 3):
            client.execute(op_id, _echo_payload(b"ring %d" % op_id))
            status, data = client.result(op_id)
            assert status == Status.OK and msgspec.msgpack.decode(data) == b"ring %d" % op_id
    finally:
        client.close()
    svc.assert_serving()


def _expect_protocol_error(client: MappedPeer) -> None:
    try:
        client.reply(3.0)
    except _SessionEnded as ended:
        kind, code = ended.outcome
        assert (kind, ErrorCode(code)) == ("error", ErrorCode.PROTOCOL), ended.outcome
    else:
        raise AssertionError("the service answered a corrupt ring")


# -- scribbled control words -----------------------------------------------------------------
SCRIBBLES = {
    "head_beyond_ring": lambda c: c.ctl.__setitem__(rings.W_REQ_HEAD, RING + 64),
    "head_unaligned": lambda c: c.ctl.__setitem__(rings.W_REQ_HEAD, 36),
    "head_u64_max": lambda c: c.ctl.__setitem__(rings.W_REQ_HEAD, (1 << 64) - 8),
    # words only the service writes: it keeps its indices privately
    "request_tail_moved_by_client": lambda c: (c.ctl.__setitem__(rings.W_REQ_TAIL, 1 << 40),
                                               _forge(c, payload=_echo_payload(b"x"))),
    "reply_tail_beyond_head": lambda c: (c.ctl.__setitem__(rings.W_REP_TAIL, 1 << 20),
                                         c.execute(1, _echo_payload(b"x"))),
    "reply_tail_backwards": lambda c: (c.ctl.__setitem__(rings.W_REP_TAIL, (1 << 64) - 4096),
                                       c.execute(1, _echo_payload(b"x"))),
    "magic_and_size_rewritten": lambda c: (c.ctl.__setitem__(rings.W_MAGIC, 0),
                                           c.ctl.__setitem__(rings.W_RING_SIZE, 1 << 30),
                                           c.execute(1, _echo_payload(b"x"))),
}


@pytest.mark.parametrize("case", sorted(SCRIBBLES))
def test_scribbled_control_words_end_only_that_session(svc, case):
    client = MappedPeer(svc.path)
    try:
        SCRIBBLES[case](client)
        client.wake()
        if case in ("request_tail_moved_by_client", "magic_and_size_rewritten"):
            # The service keeps its own indices and size privately: what the
            # client wrote there moves nothing; the op is answered normally.
            status, data = client.result(1)
            assert status == Status.OK and msgspec.msgpack.decode(data) == b"x"
        else:
            _expect_protocol_error(client)
    finally:
        client.close()
    svc.assert_serving()


# -- forged frames ---------------------------------------------------------------------------
def _forge(client: MappedPeer, *, kind: int = int(FrameKind.EXECUTE), flags: int = 0,
           seq: int = 1, op_id: int = 1, arg: int = ECHO, length: int | None = None,
           reserved: int = 0, crc: int | None = None, head: int | None = None,
           payload: bytes | None = None) -> None:
    payload = _echo_payload(b"forged") if payload is None else payload
    n = len(payload) if length is None else length
    unsigned = rings.encode_frame(kind, seq, op_id, arg, payload, flags=flags, length=n,
                                  reserved=reserved, crc=0)
    # Over header and payload even with flags set, as a client that lies about them would.
    good = rings.frame_crc(unsigned, payload)
    frame = rings.encode_frame(kind, seq, op_id, arg, payload, flags=flags, length=n,
                               reserved=reserved, crc=good if crc is None else crc)
    client.requests[0:len(frame)] = frame
    span = 32 + ((len(payload) + 7) & ~7)
    client.ctl[rings.W_REQ_HEAD] = span if head is None else head
    client.wake()


FORGERIES = {
    "honest": {},  # the control: the same frame, forged by hand, told the truth
    "bad_crc": dict(crc=0xDEADBEEF),
    "reply_kind_in_request_ring": dict(kind=int(FrameKind.DONE)),
    "unknown_kind": dict(kind=0x42),
    "sequence_skipped": dict(seq=5),
    "flags_set": dict(flags=1),
    "reserved_set": dict(reserved=7),
    "length_past_published_head": dict(length=2000),
    "length_u32_max": dict(length=0xFFFFFFFF),
    "op_id_not_next": dict(op_id=7),
    "op_id_zero": dict(op_id=0),
}


@pytest.mark.parametrize("case", sorted(FORGERIES))
def test_forged_request_frame_ends_only_that_session(svc, case):
    client = MappedPeer(svc.path)
    try:
        _forge(client, **FORGERIES[case])
        if case == "honest":
            status, data = client.result(1)
            assert status == Status.OK and msgspec.msgpack.decode(data) == b"forged"
        else:
            _expect_protocol_error(client)
    finally:
        client.close()
    svc.assert_serving()


def test_wrap_frame_before_the_end_is_refused(svc):
    client = MappedPeer(svc.path)
    try:
        _forge(client, kind=int(FrameKind.WRAP), length=0, payload=b"")
        _expect_protocol_error(client)
    finally:
        client.close()
    svc.assert_serving()


# -- a published frame rewritten while the service reads it (T14) ----------------------------
def test_published_frame_rewritten_during_read(svc):
    """A thread rewrites the payload bytes of the published EXECUTE frame
    between two valid encodings while the service reads it. The service
    checks the frame's crc and decodes the payload in place (documented in
    docs/security.md: the crc guards against torn frames of an honest
    writer, not against the client, and decoding makes private copies). Every
    answer is therefore well-formed: a result of the right length made only
    of the client's own bytes, or a protocol error; the service never fails."""
    a, b_ = _echo_payload(b"A" * 1500), _echo_payload(b"B" * 1500)
    outcomes = {"consistent": 0, "torn-decoded": 0, "refused": 0}
    done = 0
    while done < 40:
        client = MappedPeer(svc.path)
        try:
            for op_id in range(1, 41):
                writer = client.side.requests
                view = writer.reserve(len(a))
                view[:] = a
                pos = writer._pos  # where the payload sits, to flip it
                writer.commit(int(FrameKind.EXECUTE), op_id, ECHO, len(a))
                client.wake()
                stop = threading.Event()
                start = pos + 32

                def flip(start=start, stop=stop, req=client.requests) -> None:
                    images, i = (a, b_), 0
                    while not stop.is_set():
                        i ^= 1
                        req[start:start + len(a)] = images[i]

                t = threading.Thread(target=flip)
                t.start()
                try:
                    status, data = client.result(op_id)
                except _SessionEnded as ended:
                    kind, code = ended.outcome
                    assert (kind, ErrorCode(code)) == ("error", ErrorCode.PROTOCOL)
                    outcomes["refused"] += 1
                    done += 1
                    break
                finally:
                    stop.set()
                    t.join()
                done += 1
                assert status == Status.OK, status
                got = msgspec.msgpack.decode(data)
                assert len(got) == 1500 and set(got) <= {ord("A"), ord("B")}, got[:40]
                outcomes["consistent" if len(set(got)) == 1 else "torn-decoded"] += 1
                if done >= 40:
                    break
        finally:
            client.close()
    assert sum(outcomes.values()) >= 40, outcomes
    print("rewritten-frame outcomes:", outcomes)
    svc.assert_serving()


# -- the region and the descriptors ---------------------------------------------------------
def test_region_cannot_be_resized_or_resealed_by_the_client(svc):
    client = MappedPeer(svc.path)
    try:
        fd = client.side.region.fd
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        want = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
        assert seals & want == want, hex(seals)
        for size in (0, 4096, 1 << 30):
            with pytest.raises(PermissionError):
                os.ftruncate(fd, size)
        with pytest.raises(PermissionError):
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE)
        # the session still works: the service's mapping never faulted
        client.execute(1, _echo_payload(b"after the attempts"))
        status, data = client.result(1)
        assert status == Status.OK and msgspec.msgpack.decode(data) == b"after the attempts"
    finally:
        client.close()
    svc.assert_serving()


def test_descriptors_attached_to_map_mode_are_not_kept(svc):
    r, w = create_pipe()
    peer = RawPeer(svc.path)
    try:
        peer.hello()
        send_fds(peer.sock, wire.encode(m.MapMode(RING)), [r.fileno(), w.fileno()] * 100)
        ready, _, _ = select.select([peer.sock], [], [], 5.0)
        assert ready
        data, fds = recv_fds(peer.sock, 4096, 8)
        try:
            assert isinstance(wire.decode(data), m.MapReady)
            assert len(fds) == 3  # exactly the region and two eventfds, none of ours back
        finally:
            for fd in fds:
                os.close(fd)
        ours = f"pipe:[{os.fstat(r.fileno()).st_ino}]"
        held = []
        for fd in os.listdir(f"/proc/{svc.pid}/fd"):
            try:
                held.append(os.readlink(f"/proc/{svc.pid}/fd/{fd}"))
            except OSError:
                continue
        assert ours not in held
    finally:
        peer.close()
        r.close()
        w.close()
    svc.assert_serving()


@pytest.mark.parametrize("case", ["two_fds", "unsealed_memfd", "regular_file",
                                  "wrong_size", "not_eventfds"])
def test_client_refuses_a_bad_map_ready(tmp_path, case):
    """The client side of M2 (an impostor or broken service): exactly three
    descriptors, a sealed memfd of the announced size, two eventfds; anything
    else is refused and every received descriptor closed."""
    from aether.errors import RemoteProtocolError

    size = rings.region_size(RING)
    memfd = os.memfd_create("adv", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(memfd, size)
    ctl = memoryview(bytearray(rings.CONTROL_BYTES)).cast("Q")
    rings.init_control(ctl, RING)
    os.pwrite(memfd, ctl.tobytes(), 0)
    if case != "unsealed_memfd":
        fcntl.fcntl(memfd, fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
    efds = [os.eventfd(0, os.EFD_CLOEXEC) for _ in range(2)]
    fds = [memfd, *efds]
    region = size
    if case == "two_fds":
        os.close(fds.pop())
    elif case == "regular_file":
        os.close(fds[0])
        path = tmp_path / "region"
        path.write_bytes(bytes(size))
        fds[0] = os.open(path, os.O_RDWR)
    elif case == "wrong_size":
        region = size + 4096
    elif case == "not_eventfds":
        r, w = os.pipe()
        os.close(fds[1])
        os.close(fds[2])
        fds[1:] = [r, w]
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(RemoteProtocolError):
        MappingClientSide(fds, RING, region)
    after = len(os.listdir("/proc/self/fd"))
    assert after == before - len(fds)  # every one of them closed


# -- floods through the rings (T25) ------------------------------------------------------------
def test_execute_flood_through_the_ring_while_busy_never_read(svc, slow_tree):
    """A long operation runs; the client then pushes EXECUTE frames as fast as
    the ring takes them and never reads a reply. The service answers
    REJECTED_BUSY into a reply ring nobody drains; its memory and threads do
    not grow with the flood, the session ends (busy limit, or a full ring the
    client does not drain), and other clients are served throughout."""
    from adv_support import footprint

    from aether_guard.schema import HashTree

    before = footprint(svc.pid)
    client = MappedPeer(svc.path)
    try:
        client.execute(1, encode(HashTree(root=str(slow_tree))), op_code=spec_of(HashTree).code)
        kind, op_id, status, _ = client.reply()
        assert (kind, op_id, status) == (FrameKind.STARTED, 1, Status.STARTED)
        sent = 0
        deadline = time.monotonic() + 5.0
        ended = False
        while time.monotonic() < deadline and sent < 2000:
            try:
                client.side.requests.put(int(FrameKind.EXECUTE), 2 + sent, ECHO,
                                         _echo_payload(b"flood"))
            except rings.RingFull:
                client.wake()
                ready, _, _ = select.select([client.peer.sock], [], [], 0.05)
                if ready:
                    ended = True
                    break
                continue
            sent += 1
            client.wake()
        svc.assert_serving()  # during the flood
        if not ended:
            ready, _, _ = select.select([client.peer.sock], [], [], 5.0)
            assert ready, f"the session outlived a flood of {sent} EXECUTEs"
        kind_, code = client.peer.outcome()
        assert kind_ in ("error", "closed"), (kind_, code)
        print(f"flood: {sent} EXECUTE frames, then {kind_} {ErrorCode(code).name}")
        during = footprint(svc.pid)
        assert during["rss_kib"] - before["rss_kib"] < 32 * 1024, (before, during)
    finally:
        client.close()
    svc.assert_serving()


def test_doorbell_hammered_by_a_client(svc):
    """A client rings the service's eventfd in a tight loop with nothing in
    the ring (spurious wake-ups): its session thread wakes for nothing, but
    the session stays correct and everyone else is served within 1 s."""
    client = MappedPeer(svc.path)
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            osapi.eventfd_signal(client.side.peer_efd)

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        for _ in range(3):
            svc.assert_serving()
        client.execute(1, _echo_payload(b"through the noise"))
        status, data = client.result(1)
        assert status == Status.OK and msgspec.msgpack.decode(data) == b"through the noise"
    finally:
        stop.set()
        worker.join()
        client.close()
    svc.assert_serving()
