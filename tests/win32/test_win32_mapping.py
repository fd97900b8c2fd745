"""aether.win32.mapping: the Win32 calls and conventions (reference section 2).

Failures return NULL (0) and set the thread's last error; addresses are
real addresses used through ctypes, as C code would. Comments cite the
reference items ("ref 2.44" = section 2, item 44).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import pytest

from aether.errors import Win32Error
from aether.osapi import read_maps
from aether.win32._handles import INVALID_HANDLE_VALUE, CloseHandle, GetLastError, SetLastError
from aether.win32.mailslots import (
    CREATE_ALWAYS,
    FILE_ATTRIBUTE_NORMAL,
    GENERIC_READ,
    GENERIC_WRITE,
    OPEN_EXISTING,
    CreateFile,
)
from aether.win32.mapping import (
    FILE_MAP_ALL_ACCESS,
    FILE_MAP_COPY,
    FILE_MAP_READ,
    FILE_MAP_WRITE,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_WRITECOPY,
    SEC_COMMIT,
    SEC_IMAGE,
    SEC_RESERVE,
    CreateFileMapping,
    FlushViewOfFile,
    MapViewOfFile,
    OpenFileMapping,
    UnmapViewOfFile,
    view_at,
)

ERROR_SUCCESS = 0
PAGE = os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "rt"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("AETHER_RUNTIME_DIR", str(path))
    return path


def memory_mapping(size: int, name: str | None = None, protect: int = PAGE_READWRITE) -> int:
    return CreateFileMapping(INVALID_HANDLE_VALUE, None, protect, size >> 32, size & 0xFFFFFFFF,
                             name)


def mapped_regions() -> set[int]:
    return {region.start for region in read_maps(os.getpid())}


def test_create_returns_null_on_failure() -> None:
    # ref 2.1 items 1 and 3: NULL, not INVALID_HANDLE_VALUE; size 0 -> 87
    assert memory_mapping(0) == 0
    assert GetLastError() == Win32Error.ERROR_INVALID_PARAMETER


def test_fresh_create_sets_last_error_zero() -> None:
    # ref 2.1 item 14
    SetLastError(1234)
    h = memory_mapping(0x3457, "fresh")
    assert h and GetLastError() == ERROR_SUCCESS
    assert CloseHandle(h)


def test_existing_name_returns_existing_object() -> None:
    # ref 2.1 item 13: existing object, its size, ERROR_ALREADY_EXISTS
    h1 = memory_mapping(2 * PAGE, "dup")
    p1 = MapViewOfFile(h1, FILE_MAP_WRITE, 0, 0, 0)
    ctypes.memmove(p1, b"first", 5)
    h2 = memory_mapping(PAGE, "dup")
    assert h2 and h2 != h1 and GetLastError() == Win32Error.ERROR_ALREADY_EXISTS
    p2 = MapViewOfFile(h2, FILE_MAP_READ, 0, 0, 0)
    assert len(view_at(p2) or b"") == 2 * PAGE
    assert ctypes.string_at(p2, 5) == b"first"
    assert UnmapViewOfFile(p1) and UnmapViewOfFile(p2)
    assert CloseHandle(h1) and CloseHandle(h2)


def test_size_from_high_and_low_halves() -> None:
    # ref 2.1 item 2: 64-bit size = high << 32 | low (past 4 GiB, sparse)
    h = CreateFileMapping(INVALID_HANDLE_VALUE, None, PAGE_READWRITE, 1, 0x10000, "huge")
    assert h
    p = MapViewOfFile(h, FILE_MAP_WRITE, 1, 0, 0)
    assert p and len(view_at(p) or b"") == 0x10000
    ctypes.memmove(p, b"beyond 4 GiB", 12)
    h2 = OpenFileMapping(FILE_MAP_READ, False, "huge")
    q = MapViewOfFile(h2, FILE_MAP_READ, 1, 0, 12)
    assert ctypes.string_at(q, 12) == b"beyond 4 GiB"
    for addr in (p, q):
        assert UnmapViewOfFile(addr)
    assert CloseHandle(h) and CloseHandle(h2)


@pytest.mark.parametrize("protect", [PAGE_NOACCESS, 0, 0x03, PAGE_READWRITE | 0x100])
def test_invalid_protection(protect: int) -> None:
    # ref 2.1 item 9
    assert memory_mapping(PAGE, protect=protect) == 0
    assert GetLastError() == Win32Error.ERROR_INVALID_PARAMETER


@pytest.mark.parametrize(
    ("sec", "ok"),
    [(SEC_COMMIT, True), (SEC_RESERVE, True), (SEC_COMMIT | SEC_RESERVE, False),
     (SEC_IMAGE, False)],
)
def test_sec_flags(sec: int, ok: bool) -> None:
    # ref 2.1 item 10 (SEC_IMAGE is not supported on Linux)
    h = memory_mapping(PAGE, protect=PAGE_READWRITE | sec)
    assert bool(h) == ok
    if h:
        assert CloseHandle(h)
    else:
        assert GetLastError() == Win32Error.ERROR_INVALID_PARAMETER


def test_open_missing() -> None:
    # ref 2.3 item 22
    assert OpenFileMapping(FILE_MAP_READ, False, "absent") == 0
    assert GetLastError() == Win32Error.ERROR_FILE_NOT_FOUND


def test_invalid_file_handle() -> None:
    assert CreateFileMapping(0x7FF0, None, PAGE_READWRITE, 0, PAGE, None) == 0
    assert GetLastError() == Win32Error.ERROR_INVALID_HANDLE


class TestAccessChecks:
    """ref 2.4: the Windows-tested matrix, through the Win32 calls."""

    @pytest.fixture(autouse=True)
    def owner(self) -> object:
        h = memory_mapping(PAGE, "acl")
        yield h
        CloseHandle(h)

    def _map(self, handle_access: int, view_access: int) -> int:
        h = OpenFileMapping(handle_access, False, "acl")
        assert h
        p = MapViewOfFile(h, view_access, 0, 0, 0)
        code = GetLastError()
        if p:
            assert UnmapViewOfFile(p)
        CloseHandle(h)
        SetLastError(code)
        return p

    def test_read_handle(self) -> None:
        # ref 2.4 item 25
        assert self._map(FILE_MAP_READ, FILE_MAP_WRITE) == 0
        assert GetLastError() == Win32Error.ERROR_ACCESS_DENIED
        assert self._map(FILE_MAP_READ, FILE_MAP_READ)

    def test_write_only_handle(self) -> None:
        # ref 2.4 item 26
        assert self._map(FILE_MAP_WRITE, FILE_MAP_READ) == 0
        assert GetLastError() == Win32Error.ERROR_ACCESS_DENIED
        assert self._map(FILE_MAP_WRITE, FILE_MAP_WRITE)

    def test_access_zero(self) -> None:
        # ref 2.4 item 27
        assert self._map(0, 0) == 0
        assert GetLastError() == Win32Error.ERROR_ACCESS_DENIED
        assert self._map(FILE_MAP_READ, 0)

    def test_all_access(self) -> None:
        # ref 2.4 item 30
        assert self._map(FILE_MAP_ALL_ACCESS, FILE_MAP_ALL_ACCESS)
        assert self._map(FILE_MAP_ALL_ACCESS, FILE_MAP_WRITE | FILE_MAP_READ)


@pytest.mark.parametrize("protect", [PAGE_READONLY, PAGE_WRITECOPY])
def test_readonly_object(protect: int) -> None:
    # ref 2.4 item 29
    h = memory_mapping(PAGE, protect=protect)
    for ok in (FILE_MAP_READ, FILE_MAP_COPY, 0):
        p = MapViewOfFile(h, ok, 0, 0, 0)
        assert p and UnmapViewOfFile(p)
    assert MapViewOfFile(h, FILE_MAP_WRITE, 0, 0, 0) == 0
    assert GetLastError() == Win32Error.ERROR_ACCESS_DENIED
    assert CloseHandle(h)


def test_copy_view_is_private() -> None:
    # ref 2.4 item 31
    h = memory_mapping(PAGE)
    shared = MapViewOfFile(h, FILE_MAP_WRITE, 0, 0, 0)
    cow = MapViewOfFile(h, FILE_MAP_COPY, 0, 0, 0)
    ctypes.memmove(cow, b"private", 7)
    assert ctypes.string_at(shared, 7) == bytes(7)
    assert UnmapViewOfFile(cow) and UnmapViewOfFile(shared) and CloseHandle(h)


def test_geometry() -> None:
    # ref 2.5 items 33, 35, 36, 38
    h = memory_mapping(4 * 0x10000)
    assert MapViewOfFile(h, FILE_MAP_READ, 0, PAGE, 0) == 0
    assert GetLastError() == Win32Error.ERROR_MAPPED_ALIGNMENT
    assert MapViewOfFile(h, FILE_MAP_READ, 0, 0, 4 * 0x10000 + 1) == 0
    assert GetLastError() == Win32Error.ERROR_ACCESS_DENIED
    a = MapViewOfFile(h, FILE_MAP_WRITE, 0, 0x30000, 0)
    b = MapViewOfFile(h, FILE_MAP_READ, 0, 0x30000, 0x10000)
    assert a and b and a != b
    assert len(view_at(a) or b"") == 0x10000
    ctypes.memmove(a + 10, b"coherent", 8)
    assert ctypes.string_at(b + 10, 8) == b"coherent"
    assert UnmapViewOfFile(a) and UnmapViewOfFile(b) and CloseHandle(h)


def test_unmap_accepts_any_address_inside() -> None:
    # ref 2.7 items 44-46
    h = memory_mapping(2 * 0x10000)
    for inside in (100, 4096, 4196):
        p = MapViewOfFile(h, FILE_MAP_WRITE, 0, 0, 0)
        assert p in mapped_regions()
        assert UnmapViewOfFile(p + inside)
        assert p not in mapped_regions()  # ref 2.7 item 46: the range is free
    assert UnmapViewOfFile(p) is False
    assert GetLastError() == Win32Error.ERROR_INVALID_ADDRESS
    buffer = ctypes.create_string_buffer(PAGE)
    for bad in (ctypes.addressof(buffer), 0xDEADBEEF):
        assert UnmapViewOfFile(bad) is False
        assert GetLastError() == Win32Error.ERROR_INVALID_ADDRESS
    assert FlushViewOfFile(0xDEADBEEF, 0) is False
    assert GetLastError() == Win32Error.ERROR_INVALID_ADDRESS
    assert CloseHandle(h)


def test_handle_and_name_lifetime() -> None:
    # ref 2.6 items 41-42: views outlive handles; the name goes with the last handle
    h = memory_mapping(PAGE, "lifetime")
    p = MapViewOfFile(h, FILE_MAP_WRITE, 0, 0, 0)
    assert CloseHandle(h)
    ctypes.memmove(p, b"still here", 10)
    assert OpenFileMapping(FILE_MAP_READ, False, "lifetime") == 0
    assert GetLastError() == Win32Error.ERROR_FILE_NOT_FOUND
    h2 = memory_mapping(PAGE, "lifetime")
    assert h2 and GetLastError() == ERROR_SUCCESS
    q = MapViewOfFile(h2, FILE_MAP_READ, 0, 0, 0)
    assert ctypes.string_at(q, 10) == bytes(10)
    assert ctypes.string_at(p, 10) == b"still here"
    assert UnmapViewOfFile(p) and UnmapViewOfFile(q) and CloseHandle(h2)
    assert CloseHandle(h2) is False
    assert GetLastError() == Win32Error.ERROR_INVALID_HANDLE


def test_file_backed_mapping_with_flush(tmp_path: Path) -> None:
    # ref 2.1 items 4, 7 and ref 2.7 item 48, the seed's file sequence
    path = tmp_path / "mapped.bin"
    hf = CreateFile(str(path), GENERIC_READ | GENERIC_WRITE, 0, None, CREATE_ALWAYS,
                    FILE_ATTRIBUTE_NORMAL, None)
    assert hf != INVALID_HANDLE_VALUE
    assert CreateFileMapping(hf, None, PAGE_READWRITE, 0, 0, None) == 0  # empty file, size 0
    assert GetLastError() == Win32Error.ERROR_FILE_INVALID
    hm = CreateFileMapping(hf, None, PAGE_READWRITE, 0, 3 * PAGE, "Local\\file")
    assert hm and path.stat().st_size == 3 * PAGE  # grown
    p = MapViewOfFile(hm, FILE_MAP_ALL_ACCESS, 0, 0, 0)
    ctypes.memmove(p + PAGE, b"on disk", 7)
    assert FlushViewOfFile(p + PAGE, 0)
    with open(path, "rb") as fh:
        fh.seek(PAGE)
        assert fh.read(7) == b"on disk"
    assert UnmapViewOfFile(p) and CloseHandle(hm) and CloseHandle(hf)


def test_readonly_file_cannot_back_readwrite(tmp_path: Path) -> None:
    # ref 2.1 item 8: the file's access must allow the protection
    path = tmp_path / "ro.bin"
    path.write_bytes(b"r" * PAGE)
    hf = CreateFile(str(path), GENERIC_READ, 0, None, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, None)
    assert CreateFileMapping(hf, None, PAGE_READWRITE, 0, 0, None) == 0
    assert GetLastError() == Win32Error.ERROR_ACCESS_DENIED
    hm = CreateFileMapping(hf, None, PAGE_READONLY, 0, 0, None)
    p = MapViewOfFile(hm, FILE_MAP_READ, 0, 0, 0)
    assert ctypes.string_at(p, 3) == b"rrr"
    assert UnmapViewOfFile(p) and CloseHandle(hm) and CloseHandle(hf)
