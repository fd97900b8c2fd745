"""The seed's memory transport, client side: two private blocks filled with
the pattern, parameters written in, results read out.

The parameter block stays ``PROT_READ``: requests are written into it through
``/proc/self/mem``, or, where the kernel refuses that, inside a short
read-write window (``osapi.PrivateBlock.write_pieces``). The return block is
``PROT_READ|PROT_WRITE``; neither is ever executable (seed step 1).
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from aether import osapi, wire
from aether.errors import RemoteProtocolError
from aether.wire import ParamHeader, ReturnHeader


class MemoryClientSide:
    """The two blocks of one session."""

    def __init__(self, param_size: int, retn_size: int, *, forced_writes: bool = True) -> None:
        # False: write requests inside an mprotect window, never through
        # /proc/self/mem (osapi.blocks explains both).
        self.forced_writes = forced_writes
        self.param = osapi.PrivateBlock(param_size, osapi.PROT_READ)
        try:
            self.retn = osapi.PrivateBlock(retn_size, osapi.PROT_READ | osapi.PROT_WRITE)
        except BaseException:
            self.param.close()
            raise
        self._loan_window: AbstractContextManager[memoryview] | None = None

    @property
    def param_capacity(self) -> int:
        return self.param.size - wire.HEADER_SIZE

    @property
    def retn_capacity(self) -> int:
        return self.retn.size - wire.HEADER_SIZE

    def fill_pattern(self) -> None:
        """Seed step 1: fill both blocks with 0x1337D00D."""
        self.param.fill_pattern(wire.PATTERN)
        self.retn.fill_pattern(wire.PATTERN)

    def zeros_written(self) -> bool:
        """Seed step 16: the service replaced the pattern with zeros."""
        return self.param.is_zero() and self.retn.is_zero()

    def write_params(self, op_id: int, op_code: int,
                     payload: bytes | bytearray | memoryview) -> None:
        """Operation step O1: payload first, then the header, or both in one
        write when they fit in the block's first page (protocol.md §5); the
        block stays read-only (``osapi.PrivateBlock.write_pieces``)."""
        with memoryview(payload) as view, view.cast("B") as data:  # lengths in bytes
            n = len(data)
            if n > self.param_capacity:
                raise ValueError(
                    f"parameters of {n} bytes exceed the block ({self.param_capacity})")
            header = ParamHeader.for_payload(op_id, op_code, data).pack()
            if wire.HEADER_SIZE + n <= osapi.PAGE_SIZE:
                # One forced write instead of two: a syscall costs 5-10 µs
                # inside a round trip on this class of VM.
                self.param.write_pieces(((0, header + data),), forced=self.forced_writes)
            else:
                self.param.write_pieces(((wire.HEADER_SIZE, data), (0, header)),
                                        forced=self.forced_writes)

    def lend(self, n: int) -> memoryview:
        """A loan (:mod:`aether.client.loan`): the payload's place in the
        parameter block, writable until :meth:`commit_loan` or
        :meth:`abandon_loan`, so a bulk parameter is written once."""
        if n > self.param_capacity:
            raise ValueError(f"parameters of {n} bytes exceed the block ({self.param_capacity})")
        self.abandon_loan()
        window = self.param.writable(wire.HEADER_SIZE + n)
        view = window.__enter__()
        self._loan_window = window
        return view[wire.HEADER_SIZE:wire.HEADER_SIZE + n]

    def commit_loan(self, op_id: int, op_code: int, n: int,
                    tail_crc: tuple[int, int] | None = None) -> None:
        """Step O1 for a loan: the payload is in place; the header goes last.
        ``tail_crc``: the CRC-32 of the payload's last bytes and their count,
        summed as they were written (the crc then reads only the rest)."""
        view = self.param.view
        try:
            payload = view[wire.HEADER_SIZE:wire.HEADER_SIZE + n]
            if tail_crc is None:
                header = ParamHeader.for_payload(op_id, op_code, payload)
            else:
                summed, tail = tail_crc
                if not 0 <= tail <= n:
                    raise ValueError(f"a crc of the last {tail} bytes of a {n}-byte payload")
                crc = wire.crc32_then(payload[:n - tail], summed, tail)
                header = ParamHeader(op_id, op_code, n, crc, 0)
            view[:wire.HEADER_SIZE] = header.pack()
        finally:
            self.abandon_loan()

    def abandon_loan(self) -> None:
        """Make the loaned pages read-only again (idempotent)."""
        window, self._loan_window = self._loan_window, None
        if window is not None:
            window.__exit__(None, None, None)

    def read_return(self, op_id: int) -> tuple[ReturnHeader, memoryview]:
        """Operation step O4: check op id, length and crc.

        Returns a view of the payload inside the return block: decode it
        before the next operation reuses the block."""
        view = self.retn.view
        header = ReturnHeader.unpack(view[:wire.HEADER_SIZE])
        if header.op_id != op_id:
            raise RemoteProtocolError(
                f"return block holds op {header.op_id}, expected {op_id}", event="Done"
            )
        if header.length > self.retn_capacity:
            raise RemoteProtocolError("return length exceeds the block", event="Done")
        payload = view[wire.HEADER_SIZE:wire.HEADER_SIZE + header.length]
        if wire.crc32(payload) != header.crc:
            raise RemoteProtocolError("return payload fails its crc32", event="Done")
        return header, payload

    def close(self, *, retire: bool = False) -> None:
        """Unmap both blocks; ``retire``: keep their addresses reserved
        instead, because the service may still write a result into them
        (``osapi.PrivateBlock.retire``)."""
        if retire:
            try:
                self.param.retire()
            finally:
                self.retn.retire()
            return
        self.param.close()
        self.retn.close()
