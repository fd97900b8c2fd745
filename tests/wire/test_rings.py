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


# -- a loan summed while it is filled (words 56-57: FillNotice, LoanSums) ----------------
BIG_RING = 512 * 1024
BIG = rings.PRESUM_MIN + 10_000  # frames from PRESUM_MIN on ask the reader's sums


def summing_pair() -> tuple[rings.RingWriter, rings.RingReader, rings.FillNotice,
                            rings.LoanSums, memoryview]:
    writer, reader, ctl, req = pair(BIG_RING)
    sums = rings.LoanSums(ctl, req)
    reader.sums = sums
    return writer, reader, rings.FillNotice(ctl), sums, req


def fill_in_pieces(writer: rings.RingWriter, notice: rings.FillNotice, sums: rings.LoanSums,
                   payload: bytes, cuts: list[int], looks: list[bool]) -> memoryview:
    """Reserve, announce and write ``payload`` piece by piece, the reader
    summing after the pieces ``looks`` says; returns the loan's view."""
    view = writer.reserve(len(payload))
    notice.begin(writer.loan_offset)
    done = 0
    for cut, look in zip(cuts, looks, strict=True):
        view[done:cut] = payload[done:cut]
        notice.filled(cut)
        done = cut
        if look:
            sums.advance()
    view[done:] = payload[done:]
    return view


def read_frame(reader: rings.RingReader) -> bytes:
    frame = reader.poll()
    assert frame is not None
    data = bytes(frame[3])
    frame[3].release()
    reader.release()
    return data


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_a_loan_summed_while_filled_is_read_again_only_past_the_sum(data: st.DataObject
                                                                    ) -> None:
    writer, reader, notice, sums, _req = summing_pair()
    seed = data.draw(st.integers(0, 255))
    payload = bytes((seed + i * 7) & 0xFF for i in range(BIG))
    cuts = sorted(data.draw(st.sets(st.integers(1, BIG), min_size=1, max_size=6)))
    looks = data.draw(st.lists(st.booleans(), min_size=len(cuts), max_size=len(cuts)))
    fill_in_pieces(writer, notice, sums, payload, cuts, looks)
    summed_at_send = max((c for c, look in zip(cuts, looks, strict=True) if look), default=0)
    writer.commit(FrameKind.EXECUTE, 1, 5, BIG)  # the writer's crc reads it all
    assert read_frame(reader) == payload
    assert sums.presummed == summed_at_send  # the check skipped exactly what was summed


def test_bytes_changed_after_the_sum_without_a_retraction_fail_the_crc() -> None:
    """The reader really uses its sum: a writer that breaks its word (changes
    summed bytes without retracting) spoils its own frame."""
    writer, reader, notice, sums, _req = summing_pair()
    payload = bytes(range(256)) * (BIG // 256) + b"x" * (BIG % 256)
    view = fill_in_pieces(writer, notice, sums, payload, [BIG // 2], [True])
    view[10:11] = b"!"
    writer.commit(FrameKind.EXECUTE, 1, 5, BIG)
    with pytest.raises(RemoteProtocolError, match="crc"):
        reader.poll()


def test_a_retraction_makes_the_reader_read_it_all() -> None:
    writer, reader, notice, sums, _req = summing_pair()
    payload = b"a" * BIG
    view = fill_in_pieces(writer, notice, sums, payload, [BIG // 2], [True])
    notice.retract()
    view[10:11] = b"!"
    writer.commit(FrameKind.EXECUTE, 1, 5, BIG)
    assert read_frame(reader) == b"a" * 10 + b"!" + b"a" * (BIG - 11)
    assert sums.presummed == 0


def test_a_retraction_while_the_reader_sums_drops_the_sum(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """Writer and reader at once: the writer retracts and changes a summed
    byte while the reader is reading those bytes. The reader's second look
    at the word sees the retraction and keeps no sum."""
    writer, reader, notice, sums, _req = summing_pair()
    view = fill_in_pieces(writer, notice, sums, b"b" * BIG, [BIG], [False])
    real = rings._crc32

    def crc_with_a_writer_in_between(buf: memoryview, value: int = 0) -> int:
        monkeypatch.setattr(rings, "_crc32", real)
        got = real(buf, value)  # the reader read the old bytes...
        notice.retract()  # ...and the writer retracted and changed one
        view[0:1] = b"!"
        return got

    monkeypatch.setattr(rings, "_crc32", crc_with_a_writer_in_between)
    assert not sums.advance()
    writer.commit(FrameKind.EXECUTE, 1, 5, BIG)
    assert read_frame(reader) == b"!" + b"b" * (BIG - 1)
    assert sums.presummed == 0


def test_an_abandoned_loan_s_sum_is_not_used_for_the_next_frame_there() -> None:
    for announce_next in (False, True):
        writer, reader, notice, sums, _req = summing_pair()
        fill_in_pieces(writer, notice, sums, b"c" * BIG, [BIG], [True])
        notice.retract()  # abandoned (MappedCalls.abandon_loan retracts)
        view = writer.reserve(BIG)  # the next frame, at the same place
        if announce_next:
            notice.begin(writer.loan_offset)
        view[:] = b"d" * BIG
        writer.commit(FrameKind.EXECUTE, 1, 5, BIG)
        assert read_frame(reader) == b"d" * BIG


def test_a_spent_sum_is_not_used_for_a_later_frame_at_the_same_place() -> None:
    """A loan's frame read, the reader looks at the words once more (the
    writer's last count came after its last look): that loan is spent, so
    a frame landing at the same offset after the ring wrapped is read
    whole, not checked against the old loan's sum."""
    writer, reader, notice, sums, _req = summing_pair()
    view = fill_in_pieces(writer, notice, sums, b"e" * BIG, [1000], [True])
    notice.filled(BIG)
    writer.commit(FrameKind.EXECUTE, 1, 5, BIG)
    notice.end()
    assert read_frame(reader) == b"e" * BIG
    assert not sums.advance()
    # Fill the rest of the ring so that the next big frame starts at offset 0.
    op_id = 2
    while writer.head % BIG_RING + rings.frame_span(BIG) <= BIG_RING:
        writer.put(FrameKind.EXECUTE, op_id, 5, b"f" * 100)
        assert read_frame(reader) == b"f" * 100
        op_id += 1
    view = writer.reserve(BIG)
    assert writer.loan_offset == rings.FRAME_SIZE  # where the first loan's payload was
    view[:] = b"g" * BIG
    writer.commit(FrameKind.EXECUTE, op_id, 5, BIG)
    assert read_frame(reader) == b"g" * BIG


@settings(max_examples=300, deadline=None)
@given(st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 64) - 1), st.binary(max_size=64))
def test_scribbled_fill_words_never_break_the_reader(at: int, filled: int, noise: bytes) -> None:
    """Words 56-57 are the writer's claim: any values give no exception; a
    frame written afterwards is read correctly, unless the words claimed its
    very payload (then summed as the noise it was): that frame fails its crc."""
    writer, reader, _notice, sums, req = summing_pair()
    ctl = sums._ctl
    req[:len(noise)] = noise
    ctl[rings.W_LOAN_AT] = at
    ctl[rings.W_LOAN_FILLED] = filled
    sums.advance()
    summed = bytes(req[32:32 + BIG])
    writer.reserve(BIG)[:] = b"h" * BIG
    writer.commit(FrameKind.EXECUTE, 1, 5, BIG)
    sums.advance()
    gen, n = filled >> 32, filled & rings._U32
    claimed = (gen != 0 and at >> 32 == gen and at & rings._U32 == rings.FRAME_SIZE
               and 0 < n <= BIG and summed[:n] != b"h" * n)
    if claimed:
        with pytest.raises(RemoteProtocolError, match="crc"):
            reader.poll()
    else:
        assert read_frame(reader) == b"h" * BIG


def test_fill_words_naming_the_frame_are_used_even_when_scribbled() -> None:
    # The case above that random words rarely hit, made on purpose.
    writer, reader, _notice, sums, _req = summing_pair()
    ctl = sums._ctl
    ctl[rings.W_LOAN_AT] = 5 << 32 | rings.FRAME_SIZE
    ctl[rings.W_LOAN_FILLED] = 5 << 32 | 100
    assert sums.advance()  # summed 100 zero bytes
    writer.reserve(BIG)[:] = b"h" * BIG
    writer.commit(FrameKind.EXECUTE, 1, 5, BIG)
    with pytest.raises(RemoteProtocolError, match="crc"):
        reader.poll()


def test_the_fill_notice_words() -> None:
    ctl = memoryview(bytearray(rings.CONTROL_BYTES)).cast("Q")
    notice = rings.FillNotice(ctl)
    notice.filled(5)  # nothing announced: nothing said
    assert ctl[rings.W_LOAN_FILLED] == 0
    notice.begin(4128)
    notice.filled(99)
    assert (ctl[rings.W_LOAN_AT], ctl[rings.W_LOAN_FILLED]) == (1 << 32 | 4128, 1 << 32 | 99)
    notice.retract()
    assert ctl[rings.W_LOAN_FILLED] == 1 << 32 | rings.LOAN_RETRACTED
    notice.filled(100)  # a retracted loan stays retracted
    assert ctl[rings.W_LOAN_FILLED] == 1 << 32 | rings.LOAN_RETRACTED
    notice.begin(1 << 32)  # past 4 GiB the word has no room: not announced
    assert not notice.live and notice.gen == 1
    notice.gen = rings._U32
    notice.begin(32)  # generations skip 0, which means "never announced"
    assert notice.gen == 1 and ctl[rings.W_LOAN_AT] == 1 << 32 | 32
