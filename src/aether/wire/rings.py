"""The mapping transport's shared region, its two rings and their frames, sans-IO.

``docs/protocol.md`` section 10 is the specification. The region is one
memfd the service creates per session: a 4096-byte control area, then the
request ring (client -> service), then the reply ring (service -> client),
``ring_size`` bytes each. The control area holds little-endian u64 words,
each index on its own cache line so the two ends never write one line::

    word 0 magic | 1 layout version | 2 ring size
    word 8  request head (client)   | word 16 request tail (service)
    word 24 reply head (service)    | word 32 reply tail (client)
    word 40 service sleeping (0/1/2)| word 48 client sleeping (1/0)
    word 56 loan at (client)        | word 57 loan filled (client)

Words 56-57 are optional (a reader that ignores them loses nothing): a
client filling a large loan in order says how far it got, so the service
can sum the payload for its crc while the client is still writing it
(:class:`FillNotice`, :class:`LoanSums`).

Heads and tails are byte counters that only grow; a frame starts at
``counter % ring_size``, 8-byte aligned, and never wraps: a producer that
reaches the end writes a WRAP frame (or, with under 32 bytes left, nothing)
and continues at offset 0. A frame is a 32-byte header, ``<IIQHHIII``::

    crc u32 | seq u32 | op_id u64 | kind u16 | flags u16 | arg u32 |
    length u32 | reserved u32

``arg`` is the op code (EXECUTE), the status (STARTED, DONE) or permille
(PROGRESS). ``crc`` is CRC-32 over everything after it: the other 28 header
bytes and the payload, one contiguous run of the ring, so a torn or forged
header or payload is rejected, never decoded, at the cost of one pass.
``seq`` counts the frames of one ring from 1.

Everything here works on buffers the caller hands in (``memoryview``s of
the mapped region, or plain ``bytearray``s in tests) and makes no system
call other than reading the monotonic clock (``spin``'s bound, a vDSO
read). The peer writes the same memory concurrently, so every value read
from it is checked before use and each end keeps its own index privately:
only the *peer's* index is read back, and a value out of range raises
:class:`RemoteProtocolError` (the session is over). Writers store the
payload, then the header, then the head; on x86-64 (total store order)
a reader that sees the head sees the frame. Readers unpack the header once
into integers and check those; the payload is checked and decoded in place,
so a peer that rewrites it meanwhile can only spoil its own request
(decoding is typed and never executes anything).

The per-frame paths (``put``, ``poll``, ``release``, ``pending``, ``spin``) exist
twice: in C (``_ringc.c``, used when it was built: a few hundred
nanoseconds where Python takes microseconds) and here in Python
(:class:`PyRingWriter`, :class:`PyRingReader`), which is the specification
and the fallback; the tests hold the two to the same bytes, indices and
errors. The Python ones are written for CPython's interpreter: they pack
and check in place and leave the rare cases (wrap, full ring) to a slower
path, which the C ``put`` calls back into (``_put_slow``).
"""

from __future__ import annotations

import importlib
import os
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from aether.errors import RemoteProtocolError

from .codes import ErrorCode, FrameKind, Status
from .crc import (
    crc32_combine as _crc32_combine,
    crc32_then as _crc32_then,
    crc32_update as _crc32,
)

MAGIC: Final = 0x3150414D48544541  # b"AETHMAP1", little-endian
LAYOUT_VERSION: Final = 2  # 2: crc first in the frame header
CONTROL_BYTES: Final = 4096
FRAME_SIZE: Final = 32
RING_ALIGN: Final = 4096
DEFAULT_RING_SIZE: Final = 256 * 1024
MIN_RING_SIZE: Final = 4096

# u64 word indices in the control area
# Frame flag, EXECUTE only: the crc covers the header, not the payload. Only a
# loan may set it (the caller skips a pass over bulk data), and the service
# accepts it only for operations that treat the payload as opaque bytes
# (aether.sink); any other operation rejects the frame's parameters.
FLAG_HEADER_CRC: Final = 1

W_MAGIC: Final = 0
W_VERSION: Final = 1
W_RING_SIZE: Final = 2
W_REQ_HEAD: Final = 8
W_REQ_TAIL: Final = 16
W_REP_HEAD: Final = 24
W_REP_TAIL: Final = 32
W_SERVICE_SLEEPING: Final = 40
W_CLIENT_SLEEPING: Final = 48
W_LOAN_AT: Final = 56  # gen << 32 | ring offset of the loan's payload
W_LOAN_FILLED: Final = 57  # gen << 32 | payload bytes filled, or LOAN_RETRACTED
LOAN_RETRACTED: Final = 0xFFFFFFFF
# The service's sleeping word: 1 wake me for a frame; 2 also for a loan's
# fill moving on (it sums loans ahead and a stalled fill sent it to sleep).
SLEEPING: Final = 1
SLEEPING_SUMS_LOANS: Final = 2
# A reader leaves frames shorter than this to its own crc pass: summing ahead
# pays only where the pass costs more than the bookkeeping (C: _ringc.c).
PRESUM_MIN: Final = 65536

FRAME: Final = struct.Struct("<IIQHHIII")  # crc, seq, op_id, kind, flags, arg, length, reserved
assert FRAME.size == FRAME_SIZE
_BODY: Final = struct.Struct("<IQHHIII")  # the header after its crc (offset 4)
_CRC: Final = struct.Struct("<I")

_EXECUTE: Final = int(FrameKind.EXECUTE)
_CANCEL: Final = int(FrameKind.CANCEL)
_STARTED: Final = int(FrameKind.STARTED)
_PROGRESS: Final = int(FrameKind.PROGRESS)
_DONE: Final = int(FrameKind.DONE)
_WRAP: Final = int(FrameKind.WRAP)
_REQUEST_KINDS: Final = frozenset({_EXECUTE, _CANCEL})
_REPLY_KINDS: Final = frozenset({_STARTED, _PROGRESS, _DONE})
_FINAL: Final = frozenset(int(s) for s in Status if s.is_final)
_REJECTIONS: Final = frozenset(int(s) for s in Status if s.is_rejection)
_U32: Final = 0xFFFFFFFF


def region_size(ring_size: int) -> int:
    """Bytes of the whole memfd for rings of ``ring_size`` bytes."""
    return CONTROL_BYTES + 2 * ring_size


def frame_span(length: int) -> int:
    """Ring bytes a frame with a ``length``-byte payload occupies."""
    return FRAME_SIZE + ((length + 7) & ~7)


def capacity(ring_size: int) -> int:
    """Largest payload one frame in a ring of ``ring_size`` can carry."""
    return ring_size - FRAME_SIZE


def ring_size_for(payload: int) -> int:
    """Smallest valid ring size whose frames hold ``payload`` bytes."""
    need = frame_span(payload)
    return max(MIN_RING_SIZE, -(-need // RING_ALIGN) * RING_ALIGN)


def check_ring_size(ring_size: int, *, max_size: int) -> tuple[ErrorCode, str]:
    """Pure checks on a ring size (MAP_MODE, MAP_READY): (NONE, "") if fine."""
    if ring_size < MIN_RING_SIZE or ring_size % RING_ALIGN:
        return ErrorCode.BAD_BLOCK, (
            f"ring size {ring_size} must be a multiple of {RING_ALIGN}, at least {MIN_RING_SIZE}"
        )
    if ring_size > max_size:
        return ErrorCode.BLOCK_TOO_LARGE, f"ring size {ring_size} exceeds the limit {max_size}"
    return ErrorCode.NONE, ""


def init_control(ctl: memoryview, ring_size: int) -> None:
    """Fill a fresh (zeroed) control area; ``ctl`` is the region cast to 'Q'."""
    ctl[W_RING_SIZE] = ring_size
    ctl[W_VERSION] = LAYOUT_VERSION
    ctl[W_MAGIC] = MAGIC


def check_control(ctl: memoryview, ring_size: int) -> str:
    """What is wrong with a control area the client was handed ("" if fine)."""
    if ctl[W_MAGIC] != MAGIC or ctl[W_VERSION] != LAYOUT_VERSION:
        return "the region does not start with the mapping transport's magic"
    if ctl[W_RING_SIZE] != ring_size:
        return f"the region says ring size {ctl[W_RING_SIZE]}, MAP_READY said {ring_size}"
    for word in (W_REQ_HEAD, W_REQ_TAIL, W_REP_HEAD, W_REP_TAIL):
        if ctl[word]:
            return "the rings of a fresh region are not empty"
    return ""


def frame_crc(header: bytes | bytearray | memoryview, payload: bytes | bytearray | memoryview
              ) -> int:
    """CRC-32 over the header's last 28 bytes, then the payload."""
    return _crc32(payload, _crc32(header[4:FRAME_SIZE], 0)) & _U32


def encode_frame(kind: int, seq: int, op_id: int, arg: int,
                 payload: bytes | bytearray | memoryview = b"", *, flags: int = 0,
                 length: int | None = None, reserved: int = 0, crc: int | None = None) -> bytes:
    """One frame's bytes (header and payload, unpadded), with an honest crc
    unless ``crc`` is given: for tests and adversaries that forge frames."""
    n = len(payload) if length is None else length
    body = _BODY.pack(seq, op_id, kind, flags, arg, n, reserved)
    honest = _crc32(payload if not flags & FLAG_HEADER_CRC else b"", _crc32(body, 0)) & _U32
    return _CRC.pack(honest if crc is None else crc) + body + bytes(payload)


def _corrupt(what: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"ring: {what}", event="ring")


class RingFull(Exception):
    """No room in the ring now (the consumer has not caught up); try again later."""


class _WriterMethods:
    """What both producers share: the loan API (:meth:`reserve`,
    :meth:`commit`) and the rare cases of :meth:`put`. The hot
    :meth:`put` itself is :class:`PyRingWriter`'s or the C extension's.

    ``ctl`` is the control area cast to 'Q', ``data`` the ring's bytes.
    ``head_word``/``tail_word`` are the indices in ``ctl``. The head lives
    here (``self.head``) and is only ever *written* to the region.
    """

    if not TYPE_CHECKING:  # the cores have the slots; mypy reads the annotations below
        __slots__ = ()

    _ctl: memoryview
    _data: memoryview
    _size: int
    _head_word: int
    _tail_word: int
    _pos: int
    _wrap_from: int
    head: int
    seq: int
    bell_word: int  # where the peer announces it sleeps (-1: not watched)

    @property
    def capacity(self) -> int:
        return self._size - FRAME_SIZE

    @property
    def loan_offset(self) -> int:
        """Ring offset of the payload of the frame reserved last."""
        return self._pos + FRAME_SIZE

    def peer_tail(self) -> int:
        """The consumer's tail, checked: head - size <= tail <= head."""
        tail: int = self._ctl[self._tail_word]
        head = self.head
        if tail > head or tail < head - self._size or tail & 7:
            raise _corrupt(f"consumer tail {tail} is impossible with head {head}")
        return tail

    def empty(self) -> bool:
        """True when the consumer has read everything written."""
        return self.peer_tail() == self.head

    def reserve(self, length: int) -> memoryview:
        """Room for one frame with a ``length``-byte payload: returns the
        payload's place in the ring (a loan: fill it, then :meth:`commit`).

        Raises RingFull when there is no room yet (having published a WRAP
        if the frame needs the ring's start), ValueError when a frame of that
        size can never fit.
        """
        span = FRAME_SIZE + ((length + 7) & ~7)
        size = self._size
        if span > size:
            raise ValueError(f"a payload of {length} bytes exceeds the ring's capacity "
                             f"{size - FRAME_SIZE}")
        head = self.head
        pos = head % size
        room = size - pos
        used = head - self.peer_tail()
        if span <= room:
            if span > size - used:
                raise RingFull()
            self._wrap_from = -1
        else:
            if room + span > size - used:
                if room <= size - used:
                    # Publish the wrap on its own: once the consumer has passed
                    # it, the whole ring from offset 0 can hold the frame.
                    self._publish_wrap(pos, room)
                raise RingFull()
            self._wrap_from = pos
            pos = 0
        self._pos = pos
        return self._data[pos + FRAME_SIZE:pos + FRAME_SIZE + length]

    def _write_wrap(self, pos: int, room: int) -> None:
        if room >= FRAME_SIZE:  # under 32 bytes left: the reader skips them unmarked
            FRAME.pack_into(self._data, pos, 0, 0, 0, _WRAP, 0, 0, 0, 0)

    def _publish_wrap(self, pos: int, room: int) -> None:
        self._write_wrap(pos, room)
        self.head += room
        self._ctl[self._head_word] = self.head

    def commit(self, kind: int, op_id: int, arg: int, length: int, flags: int = 0,
               tail_crc: tuple[int, int] | None = None) -> None:
        """Publish the frame reserved last (its payload already in place);
        ``flags`` FLAG_HEADER_CRC leaves the payload out of the crc.

        ``tail_crc``: ``(crc, n)``, the CRC-32 of the payload's last ``n``
        bytes as its writer summed them; the frame's crc then reads only the
        header and the bytes before them. A wrong one makes a frame the
        reader rejects (the session ends), never a frame it accepts wrongly.
        """
        if tail_crc is not None and not 0 <= tail_crc[1] <= length:
            raise ValueError(f"a crc of the last {tail_crc[1]} bytes of a {length}-byte payload")
        pos = self._pos
        if pos < 0:
            raise RuntimeError("commit without reserve")
        self._pos = -1
        data = self._data
        head = self.head
        wrap_from = self._wrap_from
        if wrap_from >= 0:
            room = self._size - wrap_from
            self._write_wrap(wrap_from, room)
            head += room
        seq = self.seq
        _BODY.pack_into(data, pos + 4, seq, op_id, kind, flags, arg, length, 0)
        end = pos + FRAME_SIZE + (0 if flags & FLAG_HEADER_CRC else length)
        if tail_crc is None or flags & FLAG_HEADER_CRC:
            crc = _crc32(data[pos + 4:end], 0)
        else:
            summed, n = tail_crc
            crc = _crc32_then(data[pos + 4:end - n], summed, n)
        _CRC.pack_into(data, pos, crc & _U32)
        self.seq = (seq + 1) & _U32
        head += FRAME_SIZE + ((length + 7) & ~7)
        self.head = head
        self._ctl[self._head_word] = head

    def _put_slow(self, kind: int, op_id: int, arg: int,
                  payload: bytes | bytearray | memoryview = b"") -> bool:
        """:meth:`put`'s rare cases (a wrap, a full ring, a bad tail): raises
        RingFull or ValueError, or loans and commits."""
        n = len(payload)
        view = self.reserve(n)
        if n:
            view[:] = payload
        self.commit(kind, op_id, arg, n)
        return self.peer_sleeps()

    def peer_sleeps(self) -> bool:
        """After publishing: whether the peer announced that it sleeps
        (``bell_word``), so that it must be woken. A full barrier comes
        first: with the peer's "announce, re-check" it is Dekker's pattern
        (aether.transport.mapping), and without it the load could pass the
        head's store and a wake-up be lost."""
        word = self.bell_word
        if word < 0:
            return False
        fence()
        return bool(self._ctl[word])


class PyRingWriter(_WriterMethods):
    """The producer's end of one ring, in Python (see :data:`RingWriter`)."""

    __slots__ = (
        "_ctl",
        "_data",
        "_head_word",
        "_pos",
        "_size",
        "_tail_word",
        "_wrap_from",
        "bell_word",
        "head",
        "seq",
    )

    def __init__(self, ctl: memoryview, data: memoryview, head_word: int, tail_word: int) -> None:
        self.bell_word = -1
        self._ctl = ctl
        self._data = data
        self._size = len(data)
        self._head_word = head_word
        self._tail_word = tail_word
        self.head = 0
        self.seq = 1
        self._pos = -1
        self._wrap_from = -1

    def put(self, kind: int, op_id: int, arg: int,
            payload: bytes | bytearray | memoryview = b"") -> bool:
        """Copy one frame in and publish it (raises RingFull, ValueError).
        Returns :meth:`peer_sleeps`: True when the peer must be woken.

        The common case (room before the ring's end, the consumer's tail
        sane) is done here in one pass; the rest goes through
        :meth:`reserve` and :meth:`commit`.
        """
        n = len(payload)
        span = FRAME_SIZE + ((n + 7) & ~7)
        head = self.head
        size = self._size
        pos = head % size
        tail: int = self._ctl[self._tail_word]
        if pos + span > size or head + span - tail > size or tail > head or tail & 7:
            return self._put_slow(kind, op_id, arg, payload)  # wrap, full or a bad tail
        data = self._data
        start = pos + FRAME_SIZE
        end = start + n
        if n:
            data[start:end] = payload
        seq = self.seq
        _BODY.pack_into(data, pos + 4, seq, op_id, kind, 0, arg, n, 0)
        _CRC.pack_into(data, pos, _crc32(data[pos + 4:end], 0) & _U32)
        self.seq = (seq + 1) & _U32
        head += span
        self.head = head
        self._ctl[self._head_word] = head
        return self.peer_sleeps()


class PyRingReader:
    """The consumer's end of one ring, in Python (see :data:`RingReader`);
    the tail lives here and is only ever written to the region."""

    __slots__ = (
        "_ctl",
        "_data",
        "_head_word",
        "_next",
        "_size",
        "_tail_word",
        "flags",
        "kinds",
        "seq",
        "sums",
        "tail",
    )

    def __init__(self, ctl: memoryview, data: memoryview, head_word: int, tail_word: int,
                 kinds: frozenset[int]) -> None:
        self.sums: LoanSums | None = None  # a loan's crc summed ahead (request ring)
        self._ctl = ctl
        self._data = data
        self._size = len(data)
        self._head_word = head_word
        self._tail_word = tail_word
        self.tail = 0
        self.seq = 1
        self.kinds = kinds
        self._next = -1
        self.flags = 0  # of the frame polled last

    def pending(self) -> bool:
        """True when the producer has published something not yet read
        (the head is not checked here: :meth:`poll` does that)."""
        return bool(self._ctl[self._head_word] != self.tail)

    def spin(self, seconds: float) -> bool:
        """True once :meth:`pending`, looking for up to ``seconds`` without
        sleeping (the C version pauses the CPU between looks)."""
        if self._ctl[self._head_word] != self.tail:
            return True
        if not seconds > 0:
            return False
        clock = time.monotonic
        end = clock() + min(seconds, 86400.0)
        while True:
            for _ in range(32):
                if self._ctl[self._head_word] != self.tail:
                    return True
            if clock() >= end:
                return False

    def take(self, seconds: float) -> tuple[int, int, int, memoryview] | None:
        """:meth:`spin` for up to ``seconds``, then :meth:`poll` if something
        is pending; None when nothing came."""
        return self.poll() if self.spin(seconds) else None

    def poll(self) -> tuple[int, int, int, memoryview] | None:
        """The next frame as (kind, op_id, arg, payload view), or None if empty.

        The payload view points into the ring: use it before :meth:`release`.
        Raises RemoteProtocolError for anything the producer could not have
        written honestly (the session is over).
        """
        if self._next >= 0:
            raise RuntimeError("poll before release of the previous frame")
        size = self._size
        data = self._data
        skipped = False
        while True:
            tail = self.tail
            head: int = self._ctl[self._head_word]
            if head == tail:
                return None
            avail = head - tail
            if avail < 0 or avail > size or avail & 7:
                raise _corrupt(f"producer head {head} is impossible with tail {tail}")
            pos = tail % size
            room = size - pos
            if room < FRAME_SIZE:
                self._skip(tail + room, avail, room, skipped)
                skipped = True
                continue
            crc, seq, op_id, kind, flags, arg, length, reserved = FRAME.unpack_from(data, pos)
            if kind == _WRAP:
                self._skip(tail + room, avail, room, skipped)
                skipped = True
                continue
            span = FRAME_SIZE + ((length + 7) & ~7)
            if span > avail or span > room:
                raise _corrupt(f"frame of {length} bytes overruns the published data")
            if seq != self.seq:
                raise _corrupt(f"frame sequence {seq}, expected {self.seq}")
            if kind not in self.kinds or reserved or (
                    flags and (flags != FLAG_HEADER_CRC or kind != _EXECUTE)):
                raise _corrupt(f"frame kind 0x{kind:x} flags {flags} reserved {reserved}")
            start = pos + FRAME_SIZE
            end = start + length
            sums = self.sums
            if sums is not None and not flags and length >= PRESUM_MIN:
                got = sums.frame_crc(pos + 4, start, end)
            else:
                got = _crc32(data[pos + 4:start if flags else end], 0) & _U32
            if got != crc:
                raise _corrupt(f"frame {seq} fails its crc32")
            self.flags = flags
            self.seq = (seq + 1) & _U32
            self._next = tail + span
            return kind, op_id, arg, data[start:end]

    def _skip(self, new_tail: int, avail: int, room: int, again: bool) -> None:
        # After one skip the reader is at offset 0, where every frame fits: an
        # honest producer never wraps there. A peer that kept publishing wraps
        # would otherwise hold the reader (and its GIL) in this loop.
        if again:
            raise _corrupt("a wrap right after a wrap")
        if avail < room:
            raise _corrupt("wrap before the producer reached the end of the ring")
        self.tail = new_tail
        self._ctl[self._tail_word] = new_tail

    def release(self) -> None:
        """Give the last polled frame's bytes back to the producer."""
        nxt = self._next
        if nxt >= 0:
            self._next = -1
            self.tail = nxt
            self._ctl[self._tail_word] = nxt



class FillNotice:
    """The writer's side of words 56-57: how far the loan it holds is filled.

    Each announced loan gets a new generation (1..2^32-1), so a sum the
    reader took of an abandoned loan is never taken for the next loan at the
    same place. :meth:`retract` must come before the loan's bytes change out
    of order (``Loan.buffer``) and before a loan is abandoned: the reader
    then drops what it summed. A retracted loan is not announced again.
    """

    __slots__ = ("_ctl", "gen", "live")

    def __init__(self, ctl: memoryview) -> None:
        self._ctl = ctl
        self.gen = 0
        self.live = False

    def begin(self, offset: int) -> None:
        """Announce a loan whose payload starts at ring offset ``offset``
        (not past 4 GiB, where the word has no room: such loans stay quiet)."""
        if not 0 <= offset <= _U32:
            return
        gen = self.gen % _U32 + 1
        self.gen = gen
        self._ctl[W_LOAN_AT] = gen << 32 | offset  # before any count of this gen
        self.live = True

    def filled(self, n: int) -> None:
        """The loan's first ``n`` payload bytes are written and final."""
        if self.live and n < LOAN_RETRACTED:
            self._ctl[W_LOAN_FILLED] = self.gen << 32 | n

    def retract(self) -> None:
        """What :meth:`filled` said no longer holds (or the loan is gone)."""
        if self.live:
            self.live = False
            self._ctl[W_LOAN_FILLED] = self.gen << 32 | LOAN_RETRACTED

    def end(self) -> None:
        """The loan's frame is published: nothing more to say about it."""
        self.live = False


class LoanSums:
    """The reader's side of words 56-57: the CRC-32 of a loan's payload,
    summed while the writer is still filling it, so that the frame's crc
    check reads again only what came after (:meth:`frame_crc`).

    The words are the writer's claim. Offsets are kept within the ring, so
    a false one costs only a pass over our own mapping; a claim broken
    afterwards (bytes changed after they were summed, without a retraction)
    makes the writer's own frame fail its crc, never pass one it should not.
    A sum is used only for the frame at the announced offset, of the
    generation still announced and not retracted, and once.
    """

    __slots__ = ("_ctl", "_data", "_done_gen", "_seen", "crc", "gen", "offset", "presummed",
                 "summed")

    def __init__(self, ctl: memoryview, data: memoryview) -> None:
        self._ctl = ctl
        self._data = data
        self._seen = 0  # the fill word as advance() last saw it
        self._done_gen = 0  # the generation whose frame was read last
        self.gen = 0  # the generation summed (0: none)
        self.offset = 0
        self.summed = 0
        self.crc = 0
        self.presummed = 0  # bytes whose second read the check was spared (a counter)

    def moved(self) -> bool:
        """True when the writer said something since :meth:`advance` looked."""
        return bool(self._ctl[W_LOAN_FILLED] != self._seen)

    def advance(self) -> bool:
        """Sum what the writer filled since we last looked; True if we did."""
        ctl = self._ctl
        word: int = ctl[W_LOAN_FILLED]
        if word == self._seen:
            return False
        self._seen = word
        gen = word >> 32
        filled = word & _U32
        at: int = ctl[W_LOAN_AT]
        offset = at & _U32
        if (gen == 0 or gen == self._done_gen or filled == LOAN_RETRACTED or at >> 32 != gen
                or offset > len(self._data) or filled > len(self._data) - offset):
            self.gen = 0
            return False
        if gen != self.gen or offset != self.offset:
            self.gen, self.offset, self.summed, self.crc = gen, offset, 0, 0
        done = self.summed
        if filled <= done:
            return False
        crc = _crc32(self._data[offset + done:offset + filled], self.crc)
        # The writer retracts before it changes summed bytes: a retraction
        # stored before any change we read is visible now (x86 keeps stores
        # in order and loads in order).
        after: int = ctl[W_LOAN_FILLED]
        if after >> 32 != gen or after & _U32 == LOAN_RETRACTED:
            self.gen = 0
            return False
        self.summed, self.crc = filled, crc
        return True

    def frame_crc(self, header: int, start: int, end: int) -> int:
        """CRC-32 of the ring's bytes ``[header, end)``: a frame's header
        from its fifth byte, then its payload ``[start, end)``."""
        data = self._data
        ctl = self._ctl
        gen, n = self.gen, self.summed
        self.gen = 0
        word: int = ctl[W_LOAN_FILLED]
        at: int = ctl[W_LOAN_AT]
        if at >> 32 == word >> 32 and at & _U32 == start:
            self._done_gen = word >> 32  # this is that loan's frame: its sum is spent
        if (gen and gen == word >> 32 and start == self.offset and n <= end - start
                and word & _U32 != LOAN_RETRACTED):
            self.presummed += n
            head = _crc32(data[header:start], 0)
            return _crc32(data[start + n:end], _crc32_combine(head, self.crc, n)) & _U32
        return _crc32(data[header:end], 0) & _U32


# The C extension (aether/wire/_ringc.c) does the same per-frame work in a
# few hundred nanoseconds where Python takes microseconds; the Python classes
# above are the specification and serve where it was not built.
# AETHER_PURE_PYTHON_RINGS=1 forces them (for comparisons and debugging).
_native: Any = None
if not os.environ.get("AETHER_PURE_PYTHON_RINGS"):
    try:
        _native = importlib.import_module("aether.wire._ringc")
    except ImportError:  # pragma: no cover - built by the package's install
        _native = None

_fence_lock = threading.Lock()


def _lock_fence() -> None:
    """A full memory barrier where the extension is not built: an
    uncontended lock's acquire and release are a ``lock cmpxchg`` pair in
    glibc (0.15 µs against the extension's mfence at 0.03)."""
    _fence_lock.acquire()
    _fence_lock.release()


fence: Callable[[], None] = _lock_fence
if TYPE_CHECKING or _native is None:
    RingWriter = PyRingWriter
    RingReader = PyRingReader
    NATIVE = False
else:
    _native.configure(corrupt=_corrupt, crc32=_crc32)

    class RingWriter(_WriterMethods, _native.WriterCore):
        """The producer's end of one ring: ``put`` in C, the rest above."""

        __slots__ = ()

    RingReader = _native.RingReader
    NATIVE = True
    fence = _native.fence  # a full barrier (mfence), for the doorbells' Dekker pattern


def request_reader(ctl: memoryview, data: memoryview) -> RingReader:
    return RingReader(ctl, data, W_REQ_HEAD, W_REQ_TAIL, _REQUEST_KINDS)


def request_writer(ctl: memoryview, data: memoryview) -> RingWriter:
    return RingWriter(ctl, data, W_REQ_HEAD, W_REQ_TAIL)


def reply_reader(ctl: memoryview, data: memoryview) -> RingReader:
    return RingReader(ctl, data, W_REP_HEAD, W_REP_TAIL, _REPLY_KINDS)


def reply_writer(ctl: memoryview, data: memoryview) -> RingWriter:
    return RingWriter(ctl, data, W_REP_HEAD, W_REP_TAIL)


class ServiceRingOps:
    """Operation rules for the frames the service reads (protocol.md §10.3):
    op ids strictly +1, one op at a time, CANCEL only for an executed id."""

    __slots__ = ("current_op_id", "last_op_id")

    def __init__(self, last_op_id: int = 0) -> None:
        self.last_op_id = last_op_id
        self.current_op_id = 0

    def execute(self, op_id: int) -> bool:
        """EXECUTE received: True to start it, False when it must get REJECTED_BUSY."""
        if op_id != self.last_op_id + 1:
            raise _corrupt(f"op id {op_id} is not the next one ({self.last_op_id + 1})")
        self.last_op_id = op_id
        if self.current_op_id:
            return False
        self.current_op_id = op_id
        return True

    def cancel(self, op_id: int) -> bool:
        """CANCEL received: True when it names the running op (late ones are ignored)."""
        if op_id == 0 or op_id > self.last_op_id:
            raise _corrupt(f"CANCEL for op {op_id}, which was never executed")
        return op_id == self.current_op_id

    def finished(self, op_id: int, status: int) -> None:
        """The service is about to send DONE (or a rejection) for ``op_id``."""
        if op_id != self.current_op_id or status not in _FINAL:
            raise ValueError(f"DONE {status} for op {op_id}, running {self.current_op_id}")
        self.current_op_id = 0


class ClientRingOps:
    """Operation rules for the frames the client reads."""

    __slots__ = ("current_op_id", "last_op_id")

    def __init__(self, last_op_id: int = 0) -> None:
        self.last_op_id = last_op_id
        self.current_op_id = 0

    def execute(self) -> int:
        """The op id of the next EXECUTE (one at a time)."""
        if self.current_op_id:
            raise ValueError(f"op {self.current_op_id} is still in flight")
        op_id = self.last_op_id + 1
        self.last_op_id = self.current_op_id = op_id
        return op_id

    def abandon(self) -> None:
        """The EXECUTE could not be sent: the id is not used."""
        if self.current_op_id:
            self.last_op_id = self.current_op_id - 1
            self.current_op_id = 0

    def reply(self, kind: int, op_id: int, arg: int) -> bool:
        """Check one reply frame; True when it is the final one (DONE)."""
        if kind == _DONE:
            if op_id != self.current_op_id or arg not in _FINAL:
                raise _corrupt(f"DONE {arg} for op {op_id}, expected op {self.current_op_id}")
            self.current_op_id = 0
            return True
        if kind == _PROGRESS:
            if op_id > self.last_op_id or op_id == 0:
                raise _corrupt(f"PROGRESS for op {op_id}, which was never executed")
            return False
        if kind == _STARTED:
            if op_id != self.current_op_id or arg != Status.STARTED:
                raise _corrupt(f"STARTED {arg} for op {op_id}, expected op {self.current_op_id}")
            return False
        raise _corrupt(f"frame kind 0x{kind:x} in the reply ring")


REJECTIONS: Final = _REJECTIONS
