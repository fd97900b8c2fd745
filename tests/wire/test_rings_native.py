"""The C ring paths (aether/wire/_ringc.c) against the Python specification.

Both implementations run the same operations on two copies of a region,
hostile ones included (flipped bytes, scribbled indices), and must leave
identical bytes, identical indices and identical results or errors.
"""

from __future__ import annotations

import mmap
import os
import time
import zlib
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from aether.errors import RemoteProtocolError
from aether.wire import FrameKind, rings

needs_native = pytest.mark.skipif(not rings.NATIVE, reason="the C extension is not built")

RING = 8192  # small enough to wrap often; frames up to 3000 B cross CRC_IN_C_MAX


def test_the_test_install_built_the_extension() -> None:
    # The test extra installs a compiler (scripts/install.sh), so a missing
    # extension there means a broken build, not a machine without gcc.
    if os.environ.get("AETHER_PURE_PYTHON_RINGS"):
        pytest.skip("AETHER_PURE_PYTHON_RINGS is set")
    assert rings.RingReader is not rings.PyRingReader
    assert rings.RingWriter is not rings.PyRingWriter


@needs_native
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=5000))
def test_crc32_matches_zlib(data: bytes) -> None:
    native: Any = rings._native
    assert native.crc32(data) == zlib.crc32(data)


class Side:
    """One implementation's writer and reader over its own region."""

    def __init__(self, writer_cls: Any, reader_cls: Any) -> None:
        # The ring is its own allocation, so that under scripts/sanitize-rings.sh
        # a byte read or written past its end is an AddressSanitizer error.
        self.ctl = memoryview(bytearray(rings.CONTROL_BYTES)).cast("Q")
        rings.init_control(self.ctl, RING)
        self.mem = data = memoryview(bytearray(RING))
        self.writer = writer_cls(self.ctl, data, rings.W_REQ_HEAD, rings.W_REQ_TAIL)
        self.reader = reader_cls(self.ctl, data, rings.W_REQ_HEAD, rings.W_REQ_TAIL,
                                 frozenset({int(FrameKind.EXECUTE), int(FrameKind.CANCEL)}))

    def apply(self, op: tuple[Any, ...]) -> Any:
        try:
            return self._apply(op)
        except Exception as exc:
            return type(exc).__name__, str(exc)

    def _apply(self, op: tuple[Any, ...]) -> Any:
        name = op[0]
        if name == "put":
            _, kind, op_id, arg, payload = op
            return self.writer.put(kind, op_id, arg, payload)
        if name == "loan":
            _, payload, header_only = op
            view = self.writer.reserve(len(payload))
            view[:] = payload
            flags = rings.FLAG_HEADER_CRC if header_only else 0
            return self.writer.commit(int(FrameKind.EXECUTE), 9, 1, len(payload), flags)
        if name == "bell":
            self.writer.bell_word = op[1]
            return None
        if name in ("poll", "take"):
            frame = self.reader.poll() if name == "poll" else self.reader.take(0.0)
            if frame is None:
                return None
            kind, op_id, arg, view = frame
            got = (kind, op_id, arg, bytes(view), self.reader.flags)
            view.release()
            self.reader.release()
            return got
        if name == "flip":
            _, offset, xor = op
            self.mem[offset] ^= xor
            return None
        if name == "scribble":
            _, word, value = op
            self.ctl[word] = value
            return None
        if name == "nudge":  # an index moved by a little: misaligned, or past the other
            _, word, delta = op
            self.ctl[word] = max(0, self.ctl[word] + delta)
            return None
        raise AssertionError(name)

    def state(self) -> tuple[Any, ...]:
        w, r = self.writer, self.reader
        return (bytes(self.mem), bytes(self.ctl), w.head, w.seq, w.bell_word, r.tail, r.seq,
                r.flags, r.pending())


_payload = st.one_of(st.binary(max_size=64),
                     st.integers(0, 3000).map(lambda n: bytes(i % 251 for i in range(n))))
_op = st.one_of(
    st.tuples(st.just("put"), st.sampled_from([int(FrameKind.EXECUTE), int(FrameKind.CANCEL),
                                               int(FrameKind.DONE), 0x10000]),
              st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 32) - 1), _payload),
    st.tuples(st.just("loan"), _payload, st.booleans()),
    st.just(("poll",)),
    st.just(("poll",)),
    st.just(("take",)),
    st.tuples(st.just("bell"), st.sampled_from([-1, rings.W_CLIENT_SLEEPING,
                                                rings.W_SERVICE_SLEEPING])),
    st.tuples(st.just("scribble"), st.sampled_from([rings.W_CLIENT_SLEEPING,
                                                    rings.W_SERVICE_SLEEPING]),
              st.integers(0, 1)),
    st.tuples(st.just("flip"), st.integers(0, RING - 1), st.integers(1, 255)),
    st.tuples(st.just("scribble"), st.sampled_from([rings.W_REQ_HEAD, rings.W_REQ_TAIL]),
              st.one_of(st.integers(0, 4 * RING), st.integers(0, (1 << 64) - 1))),
    st.tuples(st.just("nudge"), st.sampled_from([rings.W_REQ_HEAD, rings.W_REQ_TAIL]),
              st.one_of(st.integers(-64, 64), st.integers(-8, 8).map(lambda k: 8 * k))),
)


@needs_native
@settings(max_examples=600, deadline=None)
@given(st.lists(_op, min_size=1, max_size=60))
def test_c_and_python_rings_agree_on_everything(ops: list[tuple[Any, ...]]) -> None:
    python = Side(rings.PyRingWriter, rings.PyRingReader)
    native = Side(rings.RingWriter, rings.RingReader)
    for op in ops:
        assert native.apply(op) == python.apply(op), op
        assert native.state() == python.state(), op


@needs_native
def test_released_region_raises_instead_of_reading_freed_memory() -> None:
    side = Side(rings.RingWriter, rings.RingReader)
    side.writer.put(int(FrameKind.EXECUTE), 1, 2, b"x" * 40)
    side.ctl.release()
    with pytest.raises(ValueError, match="released"):
        side.reader.poll()
    with pytest.raises(ValueError, match="released"):
        side.writer.put(int(FrameKind.EXECUTE), 2, 2, b"y")
    with pytest.raises(ValueError, match="released"):
        side.reader.pending()



_READERS = [pytest.param(rings.PyRingReader, id="python"),
            pytest.param(getattr(rings._native, "RingReader", None), id="c", marks=needs_native)]


@pytest.mark.parametrize("reader_cls", _READERS)
def test_spin_answers_at_once_for_a_published_frame_and_gives_up_on_an_empty_ring(
        reader_cls: Any) -> None:
    side = Side(rings.PyRingWriter, reader_cls)
    reader = side.reader
    assert reader.spin(0.0) is False
    started = time.monotonic()
    assert reader.spin(0.002) is False
    assert time.monotonic() - started >= 0.002  # it looked for the whole time it was given
    side.writer.put(int(FrameKind.EXECUTE), 1, 7, b"x")
    assert reader.spin(0.0) is True and reader.spin(30.0) is True
    assert reader.poll() is not None
    reader.release()
    assert reader.spin(0.0) is False
    with pytest.raises(TypeError):
        reader.spin("1")


@pytest.mark.parametrize("reader_cls", _READERS)
def test_spin_sees_a_frame_another_process_publishes_meanwhile(reader_cls: Any) -> None:
    region = mmap.mmap(-1, rings.region_size(RING))
    whole = memoryview(region)
    ctl = whole[:rings.CONTROL_BYTES].cast("Q")
    data = whole[rings.CONTROL_BYTES:rings.CONTROL_BYTES + RING]
    rings.init_control(ctl, RING)
    reader = reader_cls(ctl, data, rings.W_REQ_HEAD, rings.W_REQ_TAIL,
                        frozenset({int(FrameKind.EXECUTE)}))
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the peer: publish once the parent says it is about to spin
        try:
            os.read(go_r, 1)
            writer = rings.PyRingWriter(ctl, data, rings.W_REQ_HEAD, rings.W_REQ_TAIL)
            writer.put(int(FrameKind.EXECUTE), 1, 7, b"from the peer")
        finally:
            os._exit(0)
    try:
        os.write(go_w, b"x")
        assert reader.spin(60.0) is True  # holds the GIL: only another process can publish
        frame = reader.poll()
        assert frame is not None and bytes(frame[3]) == b"from the peer"
        frame[3].release()
        reader.release()
    finally:
        os.close(go_r)
        os.close(go_w)
        assert os.waitpid(pid, 0)[1] == 0
    del reader, ctl, data
    whole.release()
    region.close()


@pytest.mark.parametrize("reader_cls", _READERS)
def test_spin_hands_a_scribbled_head_to_poll_which_rejects_it(reader_cls: Any) -> None:
    # A hostile peer's head is only a reason to look: spin answers at once,
    # and poll, which checks it, ends the session.
    side = Side(rings.PyRingWriter, reader_cls)
    for seconds in (float("nan"), -1.0, 0.0):
        assert side.reader.spin(seconds) is False  # never waits for odd bounds
    side.ctl[rings.W_REQ_HEAD] = RING * 3 + 5  # past the ring, misaligned
    assert side.reader.spin(30.0) is True
    with pytest.raises(RemoteProtocolError):
        side.reader.poll()


_WRITERS = [pytest.param(rings.PyRingWriter, id="python"),
            pytest.param(rings.RingWriter, id="c", marks=needs_native)]


@pytest.mark.parametrize("writer_cls", _WRITERS)
def test_put_says_whether_the_peer_announced_it_sleeps(writer_cls: Any) -> None:
    side = Side(writer_cls, rings.PyRingReader)
    writer, word = side.writer, rings.W_SERVICE_SLEEPING
    execute = int(FrameKind.EXECUTE)
    side.ctl[word] = 1
    assert writer.put(execute, 1, 7, b"a") is False  # no bell word: never told
    writer.bell_word = word
    assert writer.put(execute, 2, 7, b"b") is True
    side.ctl[word] = 0
    assert writer.put(execute, 3, 7, b"c") is False
    side.ctl[word] = 1
    # the slow path (a frame that must wrap to the ring's start) tells it too
    filler = RING - writer.head % RING - rings.FRAME_SIZE - 64  # leaves 64 bytes at the end
    assert writer.put(execute, 4, 7, b"f" * filler) is True
    while side.reader.poll() is not None:
        side.reader.release()
    head = writer.head
    assert writer.put(execute, 5, 7, b"w" * 100) is True
    assert writer.head - head > rings.FRAME_SIZE + 104  # the wrap's 64 bytes were skipped


@needs_native
def test_bell_word_outside_the_control_area_is_refused() -> None:
    side = Side(rings.RingWriter, rings.RingReader)
    for bad in (-2, 512, 1 << 40):
        with pytest.raises((ValueError, OverflowError)):
            side.writer.bell_word = bad
    assert side.writer.bell_word == -1


@pytest.mark.parametrize("reader_cls", _READERS)
def test_take_gives_the_frame_once_it_comes_and_none_on_an_empty_ring(reader_cls: Any) -> None:
    side = Side(rings.PyRingWriter, reader_cls)
    reader = side.reader
    assert reader.take(0.0) is None
    started = time.monotonic()
    assert reader.take(0.002) is None
    assert time.monotonic() - started >= 0.002
    side.writer.put(int(FrameKind.EXECUTE), 1, 7, b"x")
    frame = reader.take(30.0)
    assert frame is not None and frame[:3] == (int(FrameKind.EXECUTE), 1, 7)
    assert bytes(frame[3]) == b"x"
    frame[3].release()
    reader.release()
    side.ctl[rings.W_REQ_HEAD] = RING * 3 + 5  # a scribbled head: poll's checks reject it
    with pytest.raises(RemoteProtocolError):
        reader.take(30.0)
