"""aether.wire._crccopy: a copy and a CRC-32 in one pass (Loan.write's bulk path).

The fused version runs only on CPUs with AVX-512 and VPCLMULQDQ; the test
machine has them, and a test below fails if the module then does not use
them, so the hypothesis tests exercise the folding code and not only the
bytewise fallback.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from aether.wire import crc as crcmod

_crccopy = pytest.importorskip("aether.wire._crccopy",
                               reason="built without a C compiler (the Python path is tested too)")

SOURCE = Path(__file__).resolve().parents[2] / "src/aether/wire/_crccopy.c"
POLY = 0x104C11DB7  # x^32 + ... (zlib's CRC-32, normal bit order)
COPIES = [_crccopy.copy_crc32, crcmod._copy_then_crc32, crcmod.copy_crc32_update]


def _x_pow_mod_p(e: int) -> int:
    r = 1
    for _ in range(e):
        r <<= 1
        if r >> 32:
            r ^= POLY
    return r


def _reflected_shifted(v: int) -> int:
    """The 32-bit value bit-reflected, shifted left by one (the paper's form)."""
    return int(f"{v:032b}"[::-1], 2) << 1


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def test_every_fold_constant_is_x_to_the_distance_mod_p() -> None:
    """Each K_<D>_LO is x^(D+32) mod P and K_<D>_HI x^(D-32) mod P (reflected)."""
    defines = dict(re.findall(r"#define (K_\w+) (0x[0-9a-f]+)ULL", SOURCE.read_text()))
    folds = {k: int(v, 16) for k, v in defines.items() if re.fullmatch(r"K_\d+_(LO|HI)", k)}
    assert len(folds) == 10  # 2048, 512, 384, 256, 128
    for name, value in folds.items():
        distance = int(name.split("_")[1])
        exponent = distance + 32 if name.endswith("LO") else distance - 32
        assert value == _reflected_shifted(_x_pow_mod_p(exponent)), name
    assert int(defines["K_64"], 16) == _reflected_shifted(_x_pow_mod_p(64))


def test_the_barrett_constants_are_the_polynomial_and_its_quotient() -> None:
    text = SOURCE.read_text()
    p_reflected = int(re.search(r"#define BARRETT_P (0x[0-9a-f]+)ULL", text)[1], 16)
    mu_reflected = int(re.search(r"#define BARRETT_MU (0x[0-9a-f]+)ULL", text)[1], 16)
    assert p_reflected == int(f"{POLY:033b}"[::-1], 2)
    quotient, remainder = 0, 1 << 64  # floor(x^64 / P) by long division over GF(2)
    for shift in range(32, -1, -1):
        if remainder >> (shift + 32) & 1:
            quotient |= 1 << shift
            remainder ^= POLY << shift
    assert mu_reflected == int(f"{quotient:033b}"[::-1], 2)


def test_the_fused_pass_is_used_where_the_cpu_has_it() -> None:
    flags = _cpu_flags()
    wanted = {"avx512f", "vpclmulqdq", "pclmulqdq", "sse4_1"} <= flags
    assert _crccopy.FUSED is wanted
    assert crcmod.FUSED_COPY is wanted
    if wanted:
        assert crcmod.copy_crc32_update is _crccopy.copy_crc32


@settings(max_examples=1500, deadline=None)
@given(data=st.binary(max_size=5000), value=st.integers(0, 0xFFFFFFFF),
       src_skew=st.integers(0, 63), dst_skew=st.integers(0, 63))
def test_a_copy_holds_the_bytes_and_their_crc_at_any_length_and_alignment(
        data: bytes, value: int, src_skew: int, dst_skew: int) -> None:
    n = len(data)
    source = bytearray(src_skew) + bytearray(data)
    for copy in COPIES:
        room = bytearray(b"\xa5" * (dst_skew + n + 64))  # canaries on both sides
        crc = copy(memoryview(room)[dst_skew:dst_skew + n], memoryview(source)[src_skew:],
                   value)
        assert crc == zlib.crc32(data, value), copy
        assert room[dst_skew:dst_skew + n] == data
        assert room[:dst_skew] == b"\xa5" * dst_skew
        assert room[dst_skew + n:] == b"\xa5" * 64


@pytest.mark.parametrize("size", [256, 4 << 20, (4 << 20) + 255, (1 << 16) + 17])
def test_large_copies_match_zlib(size: int) -> None:
    """Past the size that releases the GIL, and the 256-byte block boundary."""
    data = bytes((i * 131 + (i >> 9)) & 0xFF for i in range(size))
    dst = bytearray(size)
    assert _crccopy.copy_crc32(dst, data, 0x1337D00D) == zlib.crc32(data, 0x1337D00D)
    assert dst == data


@settings(max_examples=300, deadline=None)
@given(data=st.binary(min_size=1, max_size=3000), shift=st.integers(-600, 600))
def test_overlapping_ranges_move_like_memmove_and_sum_the_source(data: bytes,
                                                                 shift: int) -> None:
    n = len(data)
    buf = bytearray(600) + bytearray(data) + bytearray(600)
    expected = bytearray(buf)
    expected[600 + shift:600 + shift + n] = data
    view = memoryview(buf)
    crc = _crccopy.copy_crc32(view[600 + shift:600 + shift + n], view[600:600 + n], 7)
    assert crc == zlib.crc32(data, 7)
    assert buf == expected


def test_bad_arguments_are_refused_and_change_nothing() -> None:
    dst = bytearray(b"x" * 10)
    for copy in COPIES:
        with pytest.raises(ValueError, match="do not go into"):
            copy(dst, b"y" * 11)
        assert dst == b"x" * 10
    with pytest.raises(BufferError):
        _crccopy.copy_crc32(b"read-only!", b"y" * 10)
    with pytest.raises(TypeError):
        _crccopy.copy_crc32(dst)
