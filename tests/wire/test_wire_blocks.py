"""aether.wire.blocks: block headers and the pure block checks (docs/protocol.md §5).

(Named test_wire_blocks.py, not test_blocks.py, so that it cannot clash with
tests/osapi/test_blocks.py under rootdir-relative test discovery.)
"""

from __future__ import annotations

import zlib

import pytest

from aether.errors import RemoteProtocolError
from aether.wire import (
    HEADER_SIZE,
    BlockSpec,
    ErrorCode,
    ParamHeader,
    ReturnHeader,
    check_block,
    check_pair,
    check_param_header,
    crc32,
)

PAGE = 4096
MAX = 16 * 1024 * 1024
TOP = 1 << 64  # one past the last address

PARAM_GOLDEN = bytes.fromhex(
    "01 00 00 00 00 00 00 00"  # op_id u64 = 1
    "01 01 00 00"  # op_code u32 = 0x0101
    "05 00 00 00"  # length u32 = 5
    "86 a6 10 36"  # crc32 u32 = zlib.crc32(b"hello")
    "00 00 00 00"  # flags u32
    "00 00 00 00 00 00 00 00"  # reserved u64
)
RETN_GOLDEN = bytes.fromhex(
    "01 00 00 00 00 00 00 00"  # op_id u64 = 1
    "01 00 00 00"  # status u32 = OK
    "05 00 00 00"  # length u32 = 5
    "e8 03 00 00"  # progress u32 = 1000
    "86 a6 10 36"  # crc32 u32
    "00 00 00 00 00 00 00 00"  # reserved u64
)


class TestHeaders:
    def test_crc32_is_zlib_crc32_of_the_payload(self) -> None:
        """protocol.md §5."""
        assert crc32(b"hello") == zlib.crc32(b"hello") == 0x3610A686
        assert crc32(b"") == 0
        assert crc32(memoryview(b"hello")) == crc32(bytearray(b"hello"))

    def test_param_header_golden(self) -> None:
        """protocol.md §5.1, byte by byte."""
        header = ParamHeader.for_payload(1, 0x0101, b"hello")
        assert header == ParamHeader(1, 0x0101, 5, 0x3610A686, 0)
        assert header.pack() == PARAM_GOLDEN
        assert len(PARAM_GOLDEN) == HEADER_SIZE
        assert ParamHeader.unpack(PARAM_GOLDEN) == header

    def test_return_header_golden(self) -> None:
        """protocol.md §5.2, byte by byte."""
        header = ReturnHeader.for_payload(1, 1, b"hello")
        assert header == ReturnHeader(1, 1, 5, 1000, 0x3610A686)
        assert header.pack() == RETN_GOLDEN
        assert ReturnHeader.unpack(RETN_GOLDEN) == header

    def test_unpack_reads_only_the_header(self) -> None:
        """protocol.md §5: the payload follows at offset 32."""
        block = PARAM_GOLDEN + b"hello" + b"\0" * 100
        assert ParamHeader.unpack(block).length == 5
        assert ReturnHeader.unpack(memoryview(RETN_GOLDEN + b"hello")).crc == crc32(b"hello")

    def test_round_trip_extremes(self) -> None:
        p = ParamHeader((1 << 64) - 1, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF)
        assert ParamHeader.unpack(p.pack()) == p
        r = ReturnHeader((1 << 64) - 1, 0xFFFF_FFFF, 0, 0xFFFF_FFFF, 0)
        assert ReturnHeader.unpack(r.pack()) == r

    def test_zeroed_block_reads_as_empty(self) -> None:
        """protocol.md §6.1: a block the handshake zeroed never reads as success."""
        assert ReturnHeader.unpack(bytes(HEADER_SIZE)) == ReturnHeader(0, 0, 0, 0, 0)

    @pytest.mark.parametrize("cls", [ParamHeader, ReturnHeader])
    def test_reserved_must_be_zero(self, cls: type[ParamHeader] | type[ReturnHeader]) -> None:
        """protocol.md §5: reserved != 0 is a RemoteProtocolError."""
        good = PARAM_GOLDEN if cls is ParamHeader else RETN_GOLDEN
        for byte in range(24, 32):
            bad = bytearray(good)
            bad[byte] = 1
            with pytest.raises(RemoteProtocolError):
                cls.unpack(bytes(bad))


def ok(result: tuple[ErrorCode, str]) -> bool:
    return result == (ErrorCode.NONE, "")


class TestCheckBlock:
    """protocol.md §5.3 check_block (handshake steps H4, H5)."""

    def check(self, address: int, size: int) -> tuple[ErrorCode, str]:
        return check_block(BlockSpec(address, size), page_size=PAGE, max_size=MAX)

    @pytest.mark.parametrize(
        ("address", "size"),
        [
            (0x7F00_0000_0000, PAGE),
            (PAGE, 16 * PAGE),
            (0x7F00_0000_0000, MAX),
            (TOP - 2 * PAGE, PAGE),  # ends one page below the top: no wrap
        ],
    )
    def test_accepts(self, address: int, size: int) -> None:
        assert ok(self.check(address, size))

    @pytest.mark.parametrize("size", [0, 1, HEADER_SIZE])
    def test_no_room_for_a_payload(self, size: int) -> None:
        code, text = self.check(PAGE, size)
        assert code is ErrorCode.BAD_BLOCK and "payload" in text

    @pytest.mark.parametrize("size", [MAX + PAGE, MAX + 1, 1 << 63])
    def test_too_large(self, size: int) -> None:
        code, text = self.check(PAGE, size)
        assert code is ErrorCode.BLOCK_TOO_LARGE and str(MAX) in text

    @pytest.mark.parametrize(
        ("address", "size"),
        [(0, PAGE), (PAGE + 1, PAGE), (PAGE + 2048, PAGE), (PAGE, PAGE + 8), (PAGE, 100)],
    )
    def test_unaligned_or_null(self, address: int, size: int) -> None:
        code, text = self.check(address, size)
        assert code is ErrorCode.BAD_BLOCK and "page-aligned" in text

    @pytest.mark.parametrize(
        ("address", "size"),
        [(TOP - PAGE, PAGE), (TOP - PAGE, 2 * PAGE), (TOP - PAGE, MAX), (TOP, PAGE)],
    )
    def test_wrap_around(self, address: int, size: int) -> None:
        code, text = self.check(address, size)
        assert code is ErrorCode.BAD_BLOCK and "wraps" in text

    def test_block_spec_end_and_capacity(self) -> None:
        block = BlockSpec(PAGE, 2 * PAGE)
        assert block.end == 3 * PAGE
        assert block.capacity == 2 * PAGE - HEADER_SIZE


class TestCheckPair:
    """protocol.md §5.3 check_pair (step H5): blocks must not overlap."""

    @pytest.mark.parametrize(
        ("param", "retn"),
        [
            ((PAGE, PAGE), (PAGE, PAGE)),  # identical
            ((PAGE, 2 * PAGE), (2 * PAGE, 2 * PAGE)),  # tail of one is head of the other
            ((PAGE, 8 * PAGE), (3 * PAGE, PAGE)),  # one inside the other
            ((3 * PAGE, PAGE), (PAGE, 8 * PAGE)),
        ],
    )
    def test_overlap_rejected_both_ways(
        self, param: tuple[int, int], retn: tuple[int, int]
    ) -> None:
        for a, b in ((param, retn), (retn, param)):
            code, text = check_pair(BlockSpec(*a), BlockSpec(*b))
            assert code is ErrorCode.BAD_BLOCK and "overlap" in text

    @pytest.mark.parametrize(
        ("param", "retn"),
        [((PAGE, PAGE), (2 * PAGE, PAGE)), ((8 * PAGE, PAGE), (PAGE, PAGE))],
    )
    def test_adjacent_or_disjoint_accepted(
        self, param: tuple[int, int], retn: tuple[int, int]
    ) -> None:
        assert ok(check_pair(BlockSpec(*param), BlockSpec(*retn)))


class TestCheckParamHeader:
    """protocol.md §5.3 check_param_header (step O1)."""

    CAP = PAGE - HEADER_SIZE

    def test_accepts_matching_header(self) -> None:
        header = ParamHeader(4, 0x101, self.CAP, 0)
        assert ok(check_param_header(header, expected_op_id=4, op_code=0x101, capacity=self.CAP))
        assert ok(check_param_header(header, expected_op_id=4, op_code=None, capacity=self.CAP))

    @pytest.mark.parametrize("op_id", [0, 3, 5, (1 << 64) - 1])
    def test_op_id_mismatch(self, op_id: int) -> None:
        header = ParamHeader(op_id, 1, 0, 0)
        code, text = check_param_header(header, expected_op_id=4, op_code=None,
                                        capacity=self.CAP)
        assert code is ErrorCode.PROTOCOL and "op id" in text

    @pytest.mark.parametrize("length", [CAP + 1, 0xFFFF_FFFF])
    def test_length_over_capacity(self, length: int) -> None:
        header = ParamHeader(4, 1, length, 0)
        code, text = check_param_header(header, expected_op_id=4, op_code=None,
                                        capacity=self.CAP)
        assert code is ErrorCode.PROTOCOL and "capacity" in text

    def test_op_code_mismatch(self) -> None:
        header = ParamHeader(4, 0x102, 0, 0)
        code, _ = check_param_header(header, expected_op_id=4, op_code=0x101, capacity=self.CAP)
        assert code is ErrorCode.PROTOCOL
