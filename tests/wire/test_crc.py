"""aether.wire.crc: one CRC-32, and the combination a loan's writer relies on."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings, strategies as st

from aether.wire import crc as crcmod


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.binary(max_size=3000), st.integers(0, 0xFFFFFFFF))
def test_combining_two_crcs_gives_the_crc_of_the_concatenation(a: bytes, b: bytes,
                                                               start: int) -> None:
    crc_a = zlib.crc32(a, start)
    crc_b = zlib.crc32(b)
    whole = zlib.crc32(a + b, start)
    assert crcmod.crc32_combine(crc_a, crc_b, len(b)) == whole
    assert crcmod.py_crc32_combine(crc_a, crc_b, len(b)) == whole


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF), st.integers(0, 1 << 40))
def test_the_fallback_combination_matches_isal_for_any_length(c1: int, c2: int,
                                                              n: int) -> None:
    """Lengths far beyond what a test could hash: the fallback's x^(8n) is exact."""
    assert crcmod.py_crc32_combine(c1, c2, n) == crcmod.crc32_combine(c1, c2, n)


def test_the_running_form_continues_a_crc() -> None:
    data = bytes(range(256)) * 40
    assert crcmod.crc32_update(data[1000:], crcmod.crc32_update(data[:1000])) \
        == crcmod.crc32(data) == zlib.crc32(data)


def test_a_negative_length_is_refused() -> None:
    with pytest.raises(ValueError):
        crcmod.py_crc32_combine(1, 2, -1)
