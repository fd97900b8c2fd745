"""Loans: fill a large ``bytes`` parameter in place, read a result in place.

``Client.loan(params, size)`` hands out a writable buffer for the *last*
field of ``params`` (a ``bytes`` field left empty). On the mapping transport
the buffer is the payload's place inside the request ring, so the bulk data
is written once, by the caller, and read by the service where it lies (the
``aether.sink`` built-in reads it without a copy). On the memory transport
it is the payload's place in the parameter block, which the service reads
as it reads any request. The socket transport gives a buffer in the
client's memory and sends it as usual, so the same code runs everywhere.

The msgpack framing around the buffer is built by hand (a ``bin 32``
header in place of the empty value) because msgspec can only encode into a
``bytearray`` of its own, never into shared memory.

``Client.call_in_place(params)`` returns an :class:`InPlaceResult`: the
result's encoded bytes as a view into the reply ring (mapping), the return
block (memory) or a received buffer (socket), valid until ``release()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from aether.errors import BusyResourceError, SchemaError
from aether.schema import OperationSpec, Params, encode, spec_of
from aether.wire.crc import copy_crc32_update, crc32_update

if TYPE_CHECKING:
    from .client import Client
    from .operation import Operation, ProgressCallback

_EMPTY_BIN = b"\xc4\x00"
_MAX_LOAN = 0xFFFFFFFF
# write() copies and sums this much at a time, and reports each chunk to the
# service (mapping). Where the copy and the crc are one pass (wire.crc's
# FUSED_COPY) that pass reads the data once; elsewhere the chunk is still in
# L2 when the crc reads it (64 MiB: 3.8-4.0 ms that way, 3.4-3.5 ms fused,
# 3.1-3.3 ms for one memcpy; a separate crc pass after the copy added 2-3 ms).
_WRITE_CHUNK = 256 * 1024


def loan_prefix(params: Params, size: int) -> tuple[OperationSpec, bytes]:
    """The operation and the encoded parameters up to the loaned bytes."""
    spec = spec_of(params)
    if not 0 <= size <= _MAX_LOAN:
        raise ValueError(f"a loan of {size} bytes is out of range")
    encoded = encode(params)
    fields = type(params).__struct_fields__
    if not fields or getattr(params, fields[-1]) != b"" or not encoded.endswith(_EMPTY_BIN):
        raise SchemaError(f"{spec.name}: a loan fills the last field, which must be bytes "
                          "and left empty (b\"\")")
    return spec, encoded[:-len(_EMPTY_BIN)] + b"\xc6" + size.to_bytes(4, "big")


class Loan:
    """A writable buffer for one call's bulk parameter (see the module docstring).

    Use as a context manager; :meth:`call` or :meth:`start` sends it, leaving
    the block without either gives the room back unsent. Fill it through
    :attr:`buffer` (any way you like) or :meth:`write` (in order, like a
    file, which also sums the data for the crc while it is in the cache).
    """

    def __init__(self, client: Client, spec: OperationSpec, prefix: bytes, size: int,
                 *, checksum: bool = True) -> None:
        self.client = client
        self.checksum = checksum
        self.spec = spec
        self.size = size
        self._done = False
        self._total = len(prefix) + size
        self._whole, self.op_id = client._lend(self._total)
        self._whole[:len(prefix)] = prefix
        self._buffer: memoryview = self._whole[len(prefix):]
        self._written = 0  # bytes write() has filled, from the start
        self._summed = 0  # their CRC-32
        self._exposed = False  # buffer was handed out: the sum may be stale
        self._prefix_len = len(prefix)
        # The mapping transport's rings, told how far write() got so that the
        # service sums the payload meanwhile (only with the crc, and until the
        # buffer is handed out).
        self._progress = client._loan_progress() if checksum else None

    @property
    def buffer(self) -> memoryview:
        """The ``size`` writable bytes (valid until the call is sent)."""
        # Whoever holds this view can change what write() summed, so the frame's
        # crc is then computed over the whole payload at the end, as without write().
        self._exposed = True
        if self._progress is not None:
            self._progress.loan_exposed()
            self._progress = None
        return self._buffer

    @property
    def written(self) -> int:
        """How many bytes :meth:`write` has filled, from the buffer's start."""
        return self._written

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Copy ``data`` into the buffer after what earlier writes filled;
        returns ``len(data)`` in bytes. Raises ValueError, having written
        nothing, when it does not fit or the loan was sent or released.

        The bytes are summed into the frame's crc right after they are copied,
        chunk by chunk, while they are in the cache: a loan filled this way
        is not read a second time when it is sent. On the mapping transport
        a large loan also says how far it is filled, and the service sums
        those bytes for its own check while the rest is written. (Touching
        :attr:`buffer` too is allowed; both crcs then read the whole
        payload at the send.)
        """
        if self._done:
            raise ValueError("this loan was already used or released")
        src = memoryview(data).cast("B")
        n = len(src)
        start = self._written
        if n > self.size - start:
            raise ValueError(f"{n} bytes do not fit: {self.size - start} of the loan's "
                             f"{self.size} are left")
        dst = self._buffer
        summed = self._summed
        checksum = self.checksum
        progress = self._progress
        for offset in range(0, n, _WRITE_CHUNK):
            end = min(offset + _WRITE_CHUNK, n)
            if checksum:
                summed = copy_crc32_update(dst[start + offset:start + end], src[offset:end],
                                           summed)
            else:
                dst[start + offset:start + end] = src[offset:end]
            if progress is not None:
                progress.loan_filled(self._prefix_len + start + end)
        self._summed = summed
        self._written = start + n
        return n

    def _tail_crc(self) -> tuple[int, int] | None:
        """The buffer's CRC-32 and size when write() summed all it holds."""
        if self._exposed or not self.checksum or self._written == 0:
            return None
        rest = self._buffer[self._written:]
        return crc32_update(rest, self._summed), self.size

    def start(self, *, on_progress: ProgressCallback | None = None) -> Operation:
        if self._done:
            raise BusyResourceError("this loan was already used or released")
        tail_crc = self._tail_crc()
        self._done = True
        self._buffer.release()
        whole, self._whole = self._whole, memoryview(b"")
        return self.client._start_loan(self.spec, whole, self._total, self.op_id, on_progress,
                                       self.checksum, tail_crc)

    def call(self, *, timeout: float | None = None,
             on_progress: ProgressCallback | None = None) -> Any:
        return self.start(on_progress=on_progress).wait(timeout)

    def release(self) -> None:
        """Give the room back without sending anything."""
        if self._done:
            return
        self._done = True
        self._buffer.release()
        self._whole.release()
        self.client._end_loan()

    def __enter__(self) -> Loan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class InPlaceResult:
    """A result's encoded bytes, in place until :meth:`release` (a context
    manager). ``view`` is the msgpack payload; :meth:`decode` gives the typed
    value; :meth:`bytes_view` the content of a ``bytes`` result, not copied."""

    def __init__(self, op: Operation, view: memoryview, release: Any) -> None:
        self.op = op
        self.view = view
        self._release = release

    def decode(self) -> Any:
        return self.op.client.registry.decode_result(self.op.code, self.view)

    def bytes_view(self) -> memoryview:
        """The content of a msgpack ``bin`` result, as a view."""
        v = self.view
        if len(v) < 2:
            raise SchemaError("the result is not a bytes value")
        tag = v[0]
        if tag == 0xC4:
            start, n = 2, v[1]
        elif tag == 0xC5 and len(v) >= 3:
            start, n = 3, int.from_bytes(v[1:3], "big")
        elif tag == 0xC6 and len(v) >= 5:
            start, n = 5, int.from_bytes(v[1:5], "big")
        else:
            raise SchemaError("the result is not a bytes value")
        if start + n != len(v):
            raise msgspec.DecodeError("truncated bytes result")
        return v[start:start + n]

    def release(self) -> None:
        if self._release is not None:
            release, self._release = self._release, None
            release()

    def __enter__(self) -> InPlaceResult:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
