"""aether.win32 atom functions against win32-ipc-semantics.md section 1.

Most assertions transcribe Wine's kernel32 atom conformance tests (run on
real Windows): the ``0xDEADBEEF`` last-error sentinel shows which calls must
leave the last error alone. Comments cite the reference items.
"""

from __future__ import annotations

import array
import ctypes
from collections.abc import Iterator
from pathlib import Path

import pytest

from aether.errors import Win32Error
from aether.win32._handles import GetLastError, SetLastError
from aether.win32.atoms import (
    MAKEINTATOM,
    MAXINTATOM,
    AddAtom,
    AddAtomA,
    AddAtomW,
    DeleteAtom,
    FindAtom,
    FindAtomA,
    FindAtomW,
    GetAtomName,
    GetAtomNameA,
    GetAtomNameW,
    GlobalAddAtom,
    GlobalAddAtomA,
    GlobalAddAtomW,
    GlobalDeleteAtom,
    GlobalFindAtom,
    GlobalFindAtomA,
    GlobalFindAtomW,
    GlobalGetAtomName,
    GlobalGetAtomNameA,
    GlobalGetAtomNameW,
    InitAtomTable,
    _local,
    _reset_local_atom_table,
    create_string_buffer,
    create_unicode_buffer,
)

SENTINEL = 0xDEADBEEF
E = Win32Error


@pytest.fixture(autouse=True)
def fresh_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    path = tmp_path / "rt"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("AETHER_RUNTIME_DIR", str(path))
    _reset_local_atom_table()
    SetLastError(0)
    yield
    _reset_local_atom_table()


def dots_a(n: int = 10) -> bytearray:
    return bytearray(b"." * n)


def dots_w(n: int = 10) -> array.array:
    return array.array("H", [ord(".")] * n)


def wide(text: str, fill: str = ".", n: int = 10) -> list[int]:
    units = [ord(c) for c in text]
    return units + [ord(fill)] * (n - len(units))


# --------------------------------------------------------------------------
# Add / find (ref 1.1, 1.4, 1.7, 1.9, 1.13)
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("add", "find_a", "find_w", "add_w"),
    [
        (GlobalAddAtomA, GlobalFindAtomA, GlobalFindAtomW, GlobalAddAtomW),
        (AddAtomA, FindAtomA, FindAtomW, AddAtomW),
    ],
    ids=["global", "local"],
)
def test_add_and_find(add, find_a, find_w, add_w) -> None:  # ref 1.1, 1.4, 1.7, 1.9
    SetLastError(SENTINEL)
    atom = add(b"foobar")
    assert atom >= 0xC000
    assert GetLastError() == SENTINEL  # ref 1.9: success leaves the last error
    assert find_a(b"foobar") == atom
    assert find_a(b"FOOBAR") == atom
    assert find_a(b"_foobar") == 0
    assert GetLastError() == E.ERROR_FILE_NOT_FOUND
    SetLastError(SENTINEL)
    assert add_w("foobar") == atom  # ref 1.7: A and W share one table
    assert GetLastError() == SENTINEL
    assert find_w("FOOBAR") == atom and find_w("_foobar") == 0


@pytest.mark.parametrize("add", [GlobalAddAtomA, GlobalAddAtomW, AddAtomA, AddAtomW])
def test_integer_atoms_by_value(add) -> None:  # ref 1.13
    SetLastError(SENTINEL)
    assert add(0) == 0 and GetLastError() == SENTINEL
    for i in range(1, 0xC000):
        if add(i) != i:
            pytest.fail(f"integer atom {i:#x}")
    assert GetLastError() == SENTINEL
    for i in (0xC000, 0xC001, 0xFFFF):
        assert add(i) == 0
        assert GetLastError() == E.ERROR_INVALID_PARAMETER


def test_makeintatom() -> None:  # ref 1.13
    assert MAKEINTATOM(5) == 5 and MAKEINTATOM(0x10005) == 5 and MAXINTATOM == 0xC000
    assert GlobalAddAtom(MAKEINTATOM(0x1234)) == 0x1234


def test_integer_atom_strings() -> None:  # ref 1.10, 1.11, 1.12, 1.14
    assert GlobalAddAtom("#1234") == 0x04D2
    assert GlobalFindAtom("#0123") == 123  # found without being added
    assert FindAtom("#01") == 1
    assert GlobalAddAtom("#" + "0" * 280 + "1") == 1
    for bad in ("#0", "#0000", "#49152"):
        assert GlobalAddAtom(bad) == 0
        assert GetLastError() == E.ERROR_INVALID_PARAMETER
    for string_atom in ("#", "#7b", "#0x7b", "# 123", "#+123", "#c000", "123", "0x1", "1"):
        assert GlobalAddAtom(string_atom) >= 0xC000


def test_length_limit() -> None:  # ref 1.3, 1.12
    for add, find, make in (
        (GlobalAddAtomA, GlobalFindAtomA, lambda n: b"a" * n),
        (GlobalAddAtomW, GlobalFindAtomW, lambda n: "b" * n),
        (AddAtomA, FindAtomA, lambda n: b"c" * n),
        (AddAtomW, FindAtomW, lambda n: "d" * n),
    ):
        assert add(make(255))
        assert add(make(256)) == 0
        assert GetLastError() == E.ERROR_INVALID_PARAMETER
        assert find(make(256)) == 0
    assert GlobalAddAtom("0" * 255) and GlobalAddAtom("0" * 256) == 0


def test_empty_string() -> None:  # ref 1.8
    assert GlobalAddAtom("") == 0
    assert GetLastError() == E.ERROR_INVALID_NAME


def test_c_string_ends_at_nul() -> None:
    assert GlobalAddAtomA(b"abc\0def") == GlobalFindAtom("abc")
    assert GlobalAddAtomW("xyz\0tail") == GlobalFindAtom("XYZ")


# --------------------------------------------------------------------------
# Delete (ref 1.15, 1.17-1.21)
# --------------------------------------------------------------------------


def test_global_delete_always_returns_zero() -> None:  # ref 1.17, 1.18, 1.20, 1.21
    atom = GlobalAddAtom("counted")
    assert GlobalAddAtom("COUNTED") == atom
    SetLastError(0)
    assert GlobalDeleteAtom(atom) == 0 and GetLastError() == 0
    assert GlobalFindAtom("counted") == atom  # one reference left
    assert GlobalDeleteAtom(atom) == 0
    assert GlobalFindAtom("counted") == 0
    SetLastError(0)
    assert GlobalDeleteAtom(atom) == 0  # fails, but still returns 0
    assert GetLastError() == E.ERROR_INVALID_HANDLE


def test_local_delete_returns_atom_on_failure() -> None:  # ref 1.19, 1.21
    atom = AddAtom("local")
    assert DeleteAtom(atom) == 0
    assert DeleteAtom(atom) == atom
    assert GetLastError() == E.ERROR_INVALID_HANDLE


def test_delete_integer_atom_does_nothing() -> None:  # ref 1.15
    SetLastError(SENTINEL)
    assert GlobalDeleteAtom(123) == 0 and DeleteAtom(123) == 0
    assert GetLastError() == SENTINEL


def test_deleted_value_is_reused() -> None:  # ref 1.22
    a, b = GlobalAddAtom("one"), GlobalAddAtom("two")
    GlobalDeleteAtom(a)
    assert GlobalAddAtom("three") == a
    assert b == a + 1


# --------------------------------------------------------------------------
# Get*AtomName: the four behaviours (ref 1.16, 1.24-1.29)
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("add", "get"), [(GlobalAddAtomA, GlobalGetAtomNameA), (AddAtomA, GetAtomNameA)]
)
def test_get_name_a_fits(add, get) -> None:  # ref 1.4, 1.24
    atom = add(b"foobar")
    buf = dots_a()
    assert get(atom, buf, 10) == 6
    assert bytes(buf) == b"foobar\0..."


@pytest.mark.parametrize(
    ("add", "get"), [(GlobalAddAtomW, GlobalGetAtomNameW), (AddAtomW, GetAtomNameW)]
)
def test_get_name_w_fits(add, get) -> None:  # ref 1.24
    atom = add("foobar")
    buf = dots_w()
    SetLastError(SENTINEL)
    assert get(atom, buf, 10) == 6 and GetLastError() == SENTINEL
    assert buf.tolist() == wide("foobar\0")


@pytest.mark.parametrize(
    ("get", "buf"),
    [
        (GlobalGetAtomNameA, dots_a),
        (GlobalGetAtomNameW, dots_w),
        (GetAtomNameA, dots_a),
        (GetAtomNameW, dots_w),
    ],
)
def test_size_zero_leaves_buffer(get, buf) -> None:  # ref 1.25
    GlobalAddAtom("foobar")
    atom = AddAtom("foobar")
    b = buf()
    before = bytes(b)
    assert get(atom, b, 0) == 0
    assert bytes(b) == before


def test_global_a_too_small() -> None:  # ref 1.26
    atom = GlobalAddAtomA(b"foobar")
    buf = dots_a()
    SetLastError(SENTINEL)
    assert GlobalGetAtomNameA(atom, buf, 6) == 0
    assert GetLastError() == E.ERROR_MORE_DATA
    assert bytes(buf) == b"fooba\0...."
    long_atom = GlobalAddAtomA(b"abcdefghij" * 25 + b"abcde")  # 255 chars
    out = bytearray(b"." * 257)
    assert GlobalGetAtomNameA(long_atom, out, 257) == 255 and out[255] == 0
    out = bytearray(b"." * 257)
    assert GlobalGetAtomNameA(long_atom, out, 10) == 0
    assert GetLastError() == E.ERROR_MORE_DATA
    assert bytes(out[:11]) == b"abcdefghi\0."


def test_global_w_too_small() -> None:  # ref 1.27
    atom = GlobalAddAtomW("foobar")
    buf = dots_w()
    SetLastError(SENTINEL)
    assert GlobalGetAtomNameW(atom, buf, 6) == 6  # returns nSize...
    assert GetLastError() == SENTINEL  # ...with no error...
    assert buf.tolist() == wide("foobar")  # ...and no NUL terminator
    long_atom = GlobalAddAtomW("abcdefghij" * 25 + "abcde")
    out = dots_w(257)
    assert GlobalGetAtomNameW(long_atom, out, 10) == 10
    assert out.tolist()[:11] == wide("abcdefghij", n=11)
    one = dots_w(2)
    assert GlobalGetAtomNameW(123, one, 1) == 1  # integer atom, nSize 1
    assert one.tolist() == [ord("#"), ord(".")]


@pytest.mark.parametrize(("get", "buf"), [(GetAtomNameA, dots_a), (GetAtomNameW, dots_w)])
def test_local_too_small(get, buf) -> None:  # ref 1.28
    atom = AddAtom("foobar")
    b = buf()
    SetLastError(SENTINEL)
    assert get(atom, b, 6) == 5
    assert GetLastError() == SENTINEL
    if get is GetAtomNameA:
        assert bytes(b) == b"fooba\0...."
    else:
        assert b.tolist() == wide("fooba\0")
    long_atom = AddAtom("abcdefghij" * 25 + "abcde")
    assert get(long_atom, buf(257), 10) == 9


def test_local_size_one() -> None:  # ref 1.29
    atom = AddAtom("foobar")
    for get, buf in ((GetAtomNameA, dots_a()), (GetAtomNameW, dots_w())):
        assert get(atom, buf, 1) == 0
        assert GetLastError() == E.ERROR_INSUFFICIENT_BUFFER
        assert get(77, buf, 1) == 0
        assert GetLastError() == E.ERROR_INSUFFICIENT_BUFFER
        assert get(0, buf, 1) == 0
        assert GetLastError() == E.ERROR_INVALID_PARAMETER


def test_global_a_integer_size_two() -> None:  # ref 1.29
    buf = dots_a()
    for i in (1, 77, 0xBFFF):
        assert GlobalGetAtomNameA(i, buf, 2) == 0
        assert GetLastError() == E.ERROR_MORE_DATA
    assert GlobalGetAtomNameA(0, buf, 2) == 0
    assert GetLastError() == E.ERROR_INVALID_PARAMETER


def test_integer_atom_names_all_values() -> None:  # ref 1.16
    buf_a, buf_w = bytearray(b"a" * 10), array.array("H", [ord("a")] * 10)
    for get, buf in ((GlobalGetAtomNameA, buf_a), (GetAtomNameA, buf_a)):
        assert get(0, buf, 10) == 0
        assert GetLastError() == E.ERROR_INVALID_PARAMETER
    for i in range(1, 0xC000):
        text = f"#{i}".encode()
        n = GlobalGetAtomNameA(i, buf_a, 10)
        if n != len(text) or bytes(buf_a[: n + 1]) != text + b"\0":
            pytest.fail(f"integer atom {i}: {n} {bytes(buf_a)!r}")
    for i in (1, 9, 10, 12345, 0xBFFF):
        n = GlobalGetAtomNameW(i, buf_w, 10)
        assert n in range(2, 7) and buf_w.tolist()[: n + 1] == [*map(ord, f"#{i}"), 0]
        assert GetAtomNameW(i, buf_w, 10) == n


def test_missing_string_atom() -> None:  # ref 1.21
    buf = dots_a()
    assert GlobalGetAtomNameA(0xC100, buf, 10) == 0
    assert GetLastError() == E.ERROR_INVALID_HANDLE
    assert GetAtomNameA(0xC100, buf, 10) == 0
    assert GetLastError() == E.ERROR_INVALID_HANDLE


def test_buffers_and_helpers() -> None:
    atom = GlobalAddAtom("Ünïcode")
    wbuf = create_unicode_buffer(20)
    assert GlobalGetAtomName(atom, wbuf, 20) == 7 and wbuf.value == "Ünïcode"
    sbuf = create_string_buffer(20)
    assert GlobalGetAtomNameA(atom, sbuf, 20) == len("Ünïcode".encode())
    assert sbuf.value.decode() == "Ünïcode"  # the "ANSI" code page is UTF-8
    cbuf = ctypes.create_string_buffer(20)  # ctypes buffers work too
    assert GlobalGetAtomNameA(atom, cbuf, 20) and cbuf.value.decode() == "Ünïcode"
    cwbuf = ctypes.create_unicode_buffer(20)
    assert GlobalGetAtomNameW(atom, cwbuf, 20) == 7 and cwbuf.value == "Ünïcode"
    assert GlobalGetAtomNameA(atom, bytearray(4), 20) == 0  # nSize beyond the buffer
    assert GetLastError() == E.ERROR_NOACCESS
    assert create_unicode_buffer("hi").value == "hi"
    assert create_string_buffer(b"hi", 5).value == b"hi"


# --------------------------------------------------------------------------
# Tables (ref 1.30-1.32)
# --------------------------------------------------------------------------


def test_init_atom_table_before_use() -> None:  # ref 1.30, 1.31
    assert InitAtomTable(101)
    assert _local().buckets == 101
    assert InitAtomTable(7)  # already exists: success, no change
    assert _local().buckets == 101


def test_init_atom_table_after_implicit_creation() -> None:  # ref 1.30, 1.31
    AddAtom("makes the table")
    assert _local().buckets == 37
    assert InitAtomTable(211)
    assert _local().buckets == 37
    assert FindAtom("makes the table")


def test_init_atom_table_zero_is_default() -> None:  # ref 1.31
    assert InitAtomTable(0) and _local().buckets == 37


def test_init_atom_table_leaves_global_alone() -> None:  # ref 1.32
    g = GlobalAddAtom("global one")
    assert InitAtomTable(3)
    assert GlobalFindAtom("global one") == g
    assert FindAtom("global one") == 0  # ref 1.30: separate tables
    assert GetAtomName is GetAtomNameW and GlobalGetAtomName is GlobalGetAtomNameW
