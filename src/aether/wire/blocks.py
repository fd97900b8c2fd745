"""Layouts of the parameter and return blocks, and pure checks on them.

Parameter block header (32 bytes, little-endian)::

    op_id u64 | op_code u32 | length u32 | crc32 u32 | flags u32 | reserved u64

Return block header (32 bytes)::

    op_id u64 | status u32 | length u32 | progress u32 | crc32 u32 | reserved u64

The payload follows the header. ``crc32`` is zlib's CRC-32 of the payload.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, TypeVar

from aether.errors import RemoteProtocolError

from .codes import HEADER_SIZE, ErrorCode
from .crc import crc32 as crc32, crc32_update as _crc32

_PARAM: Final = struct.Struct("<QIIIIQ")
_RETN: Final = struct.Struct("<QIIIIQ")
U64_MAX: Final = (1 << 64) - 1

assert _PARAM.size == HEADER_SIZE and _RETN.size == HEADER_SIZE



_H = TypeVar("_H", bound=tuple[Any, ...])
# A global, not ErrorCode.NONE at each check: in Python 3.11 an enum member's
# lookup goes through EnumType's __getattr__ hook (~50 ns), once per call.
_NO_ERROR: Final = ErrorCode.NONE


def _new(cls: type[_H], fields: tuple[int, ...]) -> _H:
    """A header from its fields, without the generated ``__new__``'s
    argument handling (checked by the caller: always all five)."""
    return tuple.__new__(cls, fields)


class ParamHeader(NamedTuple):
    """Immutable. A NamedTuple rather than a frozen dataclass: one is built
    and one parsed on every call of the memory transport, and a frozen
    dataclass's ``__init__`` cost 1.5-2 µs of each (tuples: 0.3)."""

    op_id: int
    op_code: int
    length: int
    crc: int
    flags: int = 0

    def pack(self) -> bytes:
        return _PARAM.pack(self.op_id, self.op_code, self.length, self.crc, self.flags, 0)

    @classmethod
    def for_payload(cls, op_id: int, op_code: int, payload: bytes | memoryview) -> ParamHeader:
        return _new(cls, (op_id, op_code, len(payload), _crc32(payload) & 0xFFFFFFFF, 0))

    @classmethod
    def unpack(cls, raw: bytes | bytearray | memoryview) -> ParamHeader:
        fields = _PARAM.unpack_from(raw)
        if fields[5]:
            raise RemoteProtocolError("parameter header: reserved field is not zero",
                                      event="param-header")
        return _new(cls, fields[:5])


class ReturnHeader(NamedTuple):
    """Immutable; a NamedTuple for the same reason as :class:`ParamHeader`."""

    op_id: int
    status: int
    length: int
    progress: int
    crc: int

    def pack(self) -> bytes:
        return _RETN.pack(self.op_id, self.status, self.length, self.progress, self.crc, 0)

    @classmethod
    def for_payload(
        cls, op_id: int, status: int, payload: bytes | memoryview, progress: int = 1000
    ) -> ReturnHeader:
        return _new(cls, (op_id, status, len(payload), progress, _crc32(payload) & 0xFFFFFFFF))

    @classmethod
    def unpack(cls, raw: bytes | bytearray | memoryview) -> ReturnHeader:
        fields = _RETN.unpack_from(raw)
        if fields[5]:
            raise RemoteProtocolError("return header: reserved field is not zero",
                                      event="return-header")
        return _new(cls, fields[:5])


@dataclass(frozen=True, slots=True)
class BlockSpec:
    """A block as the client announced it (ADDR_PARAM / ADDR_RETN)."""

    address: int
    size: int

    @property
    def end(self) -> int:
        return self.address + self.size

    @property
    def capacity(self) -> int:
        """Payload bytes that fit after the header."""
        return self.size - HEADER_SIZE


def check_block(block: BlockSpec, *, page_size: int, max_size: int) -> tuple[ErrorCode, str]:
    """Pure checks on one announced block: (ErrorCode.NONE, "") if fine."""
    if block.size <= HEADER_SIZE:
        return ErrorCode.BAD_BLOCK, f"size {block.size} leaves no room for a payload"
    if block.size > max_size:
        return ErrorCode.BLOCK_TOO_LARGE, f"size {block.size} exceeds the limit {max_size}"
    if block.address == 0 or block.address % page_size or block.size % page_size:
        return ErrorCode.BAD_BLOCK, "address and size must be page-aligned and non-zero"
    if block.end > U64_MAX:
        return ErrorCode.BAD_BLOCK, "block wraps around the address space"
    return _NO_ERROR, ""


def check_pair(param: BlockSpec, retn: BlockSpec) -> tuple[ErrorCode, str]:
    """The two blocks must not overlap."""
    if param.address < retn.end and retn.address < param.end:
        return ErrorCode.BAD_BLOCK, "parameter and return blocks overlap"
    return _NO_ERROR, ""


def check_param_header(
    header: ParamHeader, *, expected_op_id: int, op_code: int | None, capacity: int
) -> tuple[ErrorCode, str]:
    """Checks on a parameter header read from the client's block."""
    if header.op_id != expected_op_id:
        return ErrorCode.PROTOCOL, (
            f"parameter block holds op id {header.op_id}, EXECUTE said {expected_op_id}"
        )
    if header.length > capacity:
        return ErrorCode.PROTOCOL, (
            f"parameter length {header.length} exceeds the block's capacity {capacity}"
        )
    if op_code is not None and header.op_code != op_code:
        return ErrorCode.PROTOCOL, "op code mismatch"
    return _NO_ERROR, ""
