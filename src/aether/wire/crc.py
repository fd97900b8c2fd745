"""CRC-32 (zlib's polynomial) for frames and blocks: one place that picks the
implementation, and the combination of two CRCs.

ISA-L (``isal``, a dependency) computes the same CRC-32 as zlib about ten
times faster; zlib is the fallback. ``crc32_combine`` lets a writer that
summed bulk data while copying it (``Loan.write``, where the data is still
in the cache) add that sum to the header's without a second pass over the
data; zlib has the function in C but Python's ``zlib`` does not expose it,
so the fallback is zlib's algorithm (``multmodp``/``x2nmodp``, 1.2.12) here.

``copy_crc32_update`` copies and sums in one pass where the CPU allows it
(``_crccopy.c``, AVX-512 with VPCLMULQDQ: ``FUSED_COPY``), so bulk data is
read once; elsewhere it is a copy then ISA-L's crc of the copy.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Final

_U32: Final = 0xFFFFFFFF
_POLY: Final = 0xEDB88320  # reflected


def _multmodp(a: int, b: int) -> int:
    """a(x) * b(x) modulo the CRC polynomial, reflected bit order."""
    m = 1 << 31
    p = 0
    while True:
        if a & m:
            p ^= b
            if (a & (m - 1)) == 0:
                break
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return p


_X2N: Final[list[int]] = [1 << 30]  # x^(2^k) mod p, from x^1
for _ in range(31):
    _X2N.append(_multmodp(_X2N[-1], _X2N[-1]))


def _x2nmodp(n: int, k: int) -> int:
    """x^(n * 2^k) modulo the CRC polynomial."""
    p = 1 << 31  # x^0
    while n:
        if n & 1:
            p = _multmodp(_X2N[k & 31], p)
        n >>= 1
        k += 1
    return p


def py_crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32 of A + B from ``crc1`` (of A), ``crc2`` (of B) and len(B)."""
    if len2 < 0:
        raise ValueError("a length cannot be negative")
    return (_multmodp(_x2nmodp(len2, 3), crc1 & _U32) ^ crc2) & _U32


if TYPE_CHECKING:
    def crc32_update(data: bytes | bytearray | memoryview, value: int = 0, /) -> int:
        """The CRC-32 of ``data`` continuing ``value`` (zlib's running form)."""

    def crc32_combine(crc1: int, crc2: int, len2: int, /) -> int:
        """The CRC-32 of A + B from ``crc1`` (of A), ``crc2`` (of B) and len(B)."""
else:
    try:
        from isal.isal_zlib import crc32 as crc32_update, crc32_combine
    except ImportError:  # pragma: no cover - isal is a dependency
        crc32_update = zlib.crc32
        crc32_combine = py_crc32_combine


def _copy_then_crc32(dst: bytearray | memoryview, src: bytes | bytearray | memoryview,
                     value: int = 0, /) -> int:
    """Copy ``src`` into ``dst`` (the same length) and return the CRC-32 of
    the bytes copied, continuing ``value``."""
    if len(dst) != len(src):
        raise ValueError(f"copy_crc32: {len(src)} bytes do not go into {len(dst)}")
    dst[:] = src
    return crc32_update(dst, value) & _U32


if TYPE_CHECKING:
    def copy_crc32_update(dst: bytearray | memoryview, src: bytes | bytearray | memoryview,
                          value: int = 0, /) -> int:
        """Copy ``src`` into ``dst`` (the same length) and return the CRC-32
        of the bytes copied, continuing ``value`` (zlib's running form)."""

    FUSED_COPY: bool
else:
    try:
        from ._crccopy import FUSED as FUSED_COPY, copy_crc32 as _fused_copy_crc32
    except ImportError:  # built without a compiler: the copy, then the crc
        FUSED_COPY = False
    copy_crc32_update = _fused_copy_crc32 if FUSED_COPY else _copy_then_crc32


def crc32(data: bytes | bytearray | memoryview) -> int:
    """CRC-32 (the zlib/IEEE polynomial) of ``data``."""
    return crc32_update(data) & _U32


def crc32_then(head: bytes | bytearray | memoryview, summed: int, n: int) -> int:
    """The CRC-32 of ``head`` followed by ``n`` bytes whose CRC-32 is
    ``summed`` (their writer's sum: those bytes are not read)."""
    return crc32_combine(crc32_update(head), summed, n) & _U32
