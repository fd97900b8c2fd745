"""aether.wire.rings: the mapping transport's rings and frames (protocol.md §10.2)."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import pytest
from hypothesis import given, settings, strategies as st

from aether.errors import RemoteProtocolError
from aether.wire import ErrorCode, FrameKind, Status, rings

RING = 4096


@pytest.fixture(autouse=True, scope="module", params=["native", "python"])
def implementation(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test here runs on the C ring paths and on the Python ones."""
    if request.param == "native" and not rings.NATIVE:
        pytest.skip("the C extension is not built")
    with pytest.MonkeyPatch.context() as mp:
        if request.param == "python":
            mp.setattr(rings, "RingWriter", rings.PyRingWriter)
            mp.setattr(rings, "RingReader", rings.PyRingReader)
        yield request.param


def region(ring_size: int = RING) -> tuple[memoryview, memoryview, memoryview]:
    mem = memoryview(bytearray(rings.region_size(ring_size)))
    ctl = mem[:rings.CONTROL_BYTES].cast("Q")
    rings.init_control(ctl, ring_size)
    start = rings.CONTROL_BYTES
    return ctl, mem[start:start + ring_size], mem[start + ring_size:]


def pair(ring_size: int = RING) -> tuple[rings.RingWriter, rings.RingReader, memoryview,
                                         memoryview]:
    ctl, req, _rep = region(ring_size)
    return rings.request_writer(ctl, req), rings.request_reader(ctl, req), ctl, req


def test_fresh_control_area_checks() -> None:
    ctl, _req, _rep = region()
    assert rings.check_control(ctl, RING) == ""
    assert "ring size" in rings.check_control(ctl, 2 * RING)
    ctl[rings.W_REQ_HEAD] = 8
    assert "not empty" in rings.check_control(ctl, RING)
    ctl[rings.W_MAGIC] = 0
    assert "magic" in rings.check_control(ctl, RING)


@pytest.mark.parametrize(("size", "code"), [(4096, ErrorCode.NONE), (8192, ErrorCode.NONE),
                                            (0, ErrorCode.BAD_BLOCK), (4097, ErrorCode.BAD_BLOCK),
                                            (1 << 30, ErrorCode.BLOCK_TOO_LARGE)])
def test_ring_size_rules(size: int, code: ErrorCode) -> None:
    assert rings.check_ring_size(size, max_size=1 << 20)[0] is code


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=1500), min_size=1, max_size=40))
def test_frames_arrive_in_order_across_wraps(payloads: list[bytes]) -> None:
    writer, reader, _ctl, _req = pair()
    got = []
    for i, p in enumerate(payloads, 1):
        try:
            writer.put(FrameKind.EXECUTE, i, 7, p)
        except rings.RingFull:
            pytest.fail("a ring drained after every frame is never full")
        frame = reader.poll()
        assert frame is not None
        kind, op_id, arg, view = frame
        got.append((kind, op_id, arg, bytes(view)))
        view.release()
        reader.release()
        assert reader.poll() is None
    assert got == [(FrameKind.EXECUTE, i, 7, p) for i, p in enumerate(payloads, 1)]


def test_full_ring_and_oversized_frames() -> None:
    writer, reader, _ctl, _req = pair()
    with pytest.raises(ValueError):
        writer.reserve(RING)
    writer.put(FrameKind.EXECUTE, 1, 1, bytes(3000))
    with pytest.raises(rings.RingFull):
        writer.put(FrameKind.CANCEL, 1, 0, bytes(2000))
    frame = reader.poll()
    assert frame is not None
    frame[3].release()
    reader.release()
    writer.put(FrameKind.CANCEL, 1, 0, bytes(2000))  # wraps to offset 0


def test_loan_is_filled_in_place() -> None:
    writer, reader, _ctl, req = pair()
    view = writer.reserve(100)
    view[:] = b"x" * 100
    writer.commit(FrameKind.EXECUTE, 1, 9, 100)
    assert bytes(req[32:132]) == b"x" * 100
    frame = reader.poll()
    assert frame is not None and bytes(frame[3]) == b"x" * 100


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=1500), st.data())
def test_a_commit_with_the_writer_s_tail_crc_writes_the_same_frame(payload: bytes,
                                                                   data: st.DataObject
                                                                   ) -> None:
    """Loan.write sums the bytes it copies; the frame must be the one a
    commit that reads the whole payload writes, whatever part was summed."""
    n = data.draw(st.integers(0, len(payload)))
    frames = []
    for tail_crc in (None, (zlib.crc32(payload[len(payload) - n:]), n)):
        writer, reader, _ctl, req = pair()
        writer.reserve(len(payload))[:] = payload
        writer.commit(FrameKind.EXECUTE, 7, 5, len(payload), 0, tail_crc)
        frames.append(bytes(req[:32 + len(payload)]))
        frame = reader.poll()
        assert frame is not None and bytes(frame[3]) == payload
        frame[3].release()
    assert frames[0] == frames[1]


def test_a_wrong_tail_crc_makes_a_frame_the_reader_rejects() -> None:
    writer, reader, _ctl, _req = pair()
    writer.reserve(100)[:] = b"y" * 100
    writer.commit(FrameKind.EXECUTE, 1, 5, 100, 0, (zlib.crc32(b"y" * 60) ^ 1, 60))
    with pytest.raises(RemoteProtocolError, match="crc"):
        reader.poll()


def test_a_tail_longer_than_the_payload_is_refused_and_the_loan_kept() -> None:
    writer, reader, _ctl, _req = pair()
    writer.reserve(10)[:] = b"0123456789"
    with pytest.raises(ValueError, match="last 11 bytes"):
        writer.commit(FrameKind.EXECUTE, 1, 5, 10, 0, (0, 11))
    assert reader.poll() is None  # nothing published
    writer.commit(FrameKind.EXECUTE, 1, 5, 10)  # the reservation is still there
    frame = reader.poll()
    assert frame is not None and bytes(frame[3]) == b"0123456789"


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 63), st.integers(0, 255))
def test_any_flipped_byte_of_a_frame_is_rejected(offset: int, xor: int) -> None:
    """A torn or forged frame (one byte changed anywhere) is rejected, never returned."""
    writer, reader, _ctl, req = pair()
    writer.put(FrameKind.EXECUTE, 1, 0x0101, b"0123456789abcdefghijklmnopqrstuv")
    if xor == 0:
        return
    req[offset] ^= xor
    with pytest.raises(RemoteProtocolError):
        reader.poll()


@settings(max_examples=200, deadline=None)
@given(st.integers(0, (1 << 64) - 1))
def test_scribbled_indices_are_rejected_or_harmless(head: int) -> None:
    """Any head the peer writes either names whole frames or raises; nothing else."""
    writer, reader, ctl, _req = pair()
    writer.put(FrameKind.EXECUTE, 1, 1, b"abc")
    ctl[rings.W_REQ_HEAD] = head
    try:
        frame = reader.poll()
    except RemoteProtocolError:
        return
    if head == 0:
        assert frame is None
    else:  # only the genuine frame can come out (the rest is checked on the next poll)
        assert frame is not None and frame[:3] == (FrameKind.EXECUTE, 1, 1)
        assert bytes(frame[3]) == b"abc"


@settings(max_examples=100, deadline=None)
@given(st.integers(0, (1 << 64) - 1))
def test_scribbled_tail_is_checked_by_the_writer(tail: int) -> None:
    writer, _reader, ctl, _req = pair()
    writer.put(FrameKind.EXECUTE, 1, 1, b"abc")
    ctl[rings.W_REQ_TAIL] = tail
    if tail <= writer.head and tail % 8 == 0:  # a range the consumer could reach
        writer.put(FrameKind.CANCEL, 1, 0)
    else:
        with pytest.raises(RemoteProtocolError):
            writer.put(FrameKind.CANCEL, 1, 0)


def test_wrong_kind_for_the_ring_is_rejected() -> None:
    ctl, req, _rep = region()
    rings.RingWriter(ctl, req, rings.W_REQ_HEAD, rings.W_REQ_TAIL).put(FrameKind.DONE, 1, 1)
    with pytest.raises(RemoteProtocolError, match="kind"):
        rings.request_reader(ctl, req).poll()


def test_sequence_must_continue() -> None:
    writer, reader, _ctl, _req = pair()
    writer.seq = 5
    writer.put(FrameKind.EXECUTE, 1, 1)
    with pytest.raises(RemoteProtocolError, match="sequence"):
        reader.poll()


def test_service_op_rules() -> None:
    ops = rings.ServiceRingOps()
    assert ops.execute(1) is True
    assert ops.execute(2) is False  # busy
    assert ops.cancel(1) is True and ops.cancel(2) is False
    with pytest.raises(RemoteProtocolError):
        ops.cancel(3)
    with pytest.raises(RemoteProtocolError):
        ops.execute(2)
    ops.finished(1, Status.OK)
    assert ops.execute(3) is True


def test_client_op_rules() -> None:
    ops = rings.ClientRingOps()
    op = ops.execute()
    assert ops.reply(FrameKind.STARTED, op, Status.STARTED) is False
    assert ops.reply(FrameKind.PROGRESS, op, 500) is False
    with pytest.raises(RemoteProtocolError):
        ops.reply(FrameKind.DONE, op, Status.STARTED)
    assert ops.reply(FrameKind.DONE, op, Status.OK) is True
    assert ops.reply(FrameKind.PROGRESS, op, 1000) is False  # late progress is fine
    with pytest.raises(RemoteProtocolError):
        ops.reply(FrameKind.DONE, op, Status.OK)
    with pytest.raises(RemoteProtocolError):
        ops.reply(FrameKind.PROGRESS, op + 1, 0)


def test_a_frame_needing_the_ring_start_waits_for_the_consumer_once() -> None:
    """A frame that fits only from offset 0 publishes the WRAP first (RingFull);
    after the consumer passes it the whole ring is usable."""
    writer, reader, _ctl, _req = pair()
    writer.put(FrameKind.EXECUTE, 1, 1, bytes(2000))
    frame = reader.poll()
    assert frame is not None
    frame[3].release()
    reader.release()
    with pytest.raises(rings.RingFull):
        writer.put(FrameKind.EXECUTE, 2, 1, bytes(3000))
    assert reader.poll() is None  # the consumer skips the wrap
    writer.put(FrameKind.EXECUTE, 2, 1, bytes(3000))
    frame = reader.poll()
    assert frame is not None and frame[1] == 2 and len(frame[3]) == 3000


def test_header_only_crc_covers_the_header_but_not_the_payload() -> None:
    writer, reader, _ctl, req = pair()
    view = writer.reserve(16)
    view[:] = b"a" * 16
    writer.commit(FrameKind.EXECUTE, 1, 4, 16, rings.FLAG_HEADER_CRC)
    req[40] ^= 0xFF  # payload: not covered
    frame = reader.poll()
    assert frame is not None and reader.flags == rings.FLAG_HEADER_CRC
    frame[3].release()
    reader.release()
    writer.reserve(16)
    writer.commit(FrameKind.EXECUTE, 2, 4, 16, rings.FLAG_HEADER_CRC)
    req[writer.head - 48 + 20] ^= 1  # the length field of the header: covered
    with pytest.raises(RemoteProtocolError):
        reader.poll()


def test_header_only_crc_only_on_execute() -> None:
    ctl, _req, rep = region()
    w = rings.reply_writer(ctl, rep)
    w.reserve(0)
    w.commit(FrameKind.DONE, 1, 1, 0, rings.FLAG_HEADER_CRC)
    with pytest.raises(RemoteProtocolError, match="flags"):
        rings.reply_reader(ctl, rep).poll()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=700), st.booleans()), min_size=1, max_size=30))
def test_put_and_loan_write_the_frames_encode_frame_describes(frames: list[tuple[bytes, bool]]
                                                               ) -> None:
    """Both write paths (put's one-pass path with its fallback at the ring's
    end, and reserve/commit) leave exactly the documented bytes in the ring."""
    writer, reader, _ctl, req = pair()
    for seq, (payload, loan) in enumerate(frames, start=1):
        if loan:
            view = writer.reserve(len(payload))
            view[:] = payload
            writer.commit(FrameKind.EXECUTE, seq, 5, len(payload))
        else:
            writer.put(FrameKind.EXECUTE, seq, 5, payload)
        pos = (writer.head - rings.frame_span(len(payload))) % RING
        expected = rings.encode_frame(FrameKind.EXECUTE, seq, seq, 5, payload)
        assert bytes(req[pos:pos + len(expected)]) == expected
        frame = reader.poll()
        assert frame is not None and frame[:3] == (FrameKind.EXECUTE, seq, 5)
        assert bytes(frame[3]) == payload
        frame[3].release()
        reader.release()
    assert reader.poll() is None


def test_a_wrap_right_after_a_wrap_is_rejected() -> None:
    # After a wrap the reader is at offset 0, where every frame fits; a peer
    # that kept publishing wraps there would hold the reader in its loop.
    _writer, reader, ctl, req = pair()
    start = RING - 64
    reader.tail = start
    ctl[rings.W_REQ_TAIL] = start
    wrap = int(FrameKind.WRAP)
    rings.FRAME.pack_into(req, start, 0, 0, 0, wrap, 0, 0, 0, 0)
    rings.FRAME.pack_into(req, 0, 0, 0, 0, wrap, 0, 0, 0, 0)
    ctl[rings.W_REQ_HEAD] = start + 64 + 32
    with pytest.raises(RemoteProtocolError, match="a wrap right after a wrap"):
        reader.poll()


def test_an_uninitialised_native_ring_raises_instead_of_crashing() -> None:
    if not rings.NATIVE:
        pytest.skip("the C extension is not built")
    native = rings._native
    with pytest.raises(ValueError, match="not initialised"):
        native.WriterCore.__new__(native.WriterCore).put(1, 2, 3)
    reader = native.RingReader.__new__(native.RingReader)
    for method in (reader.pending, reader.poll, reader.release):
        with pytest.raises(ValueError, match="not initialised"):
            method()
