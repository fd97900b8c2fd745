r"""aether.win32.mailslots with ReadFile/WriteFile (reference section 4).

Failures return INVALID_HANDLE_VALUE or FALSE and set the last error, as
Wine's conformance test ``dlls/kernel32/tests/mailslot.c`` expects from
Windows. Comments cite the reference items ("ref 4.24"). Remote names use
loopback only.
"""

from __future__ import annotations

import ctypes
import socket
import time
from pathlib import Path

import pytest

from aether.errors import Win32Error
from aether.win32._handles import INVALID_HANDLE_VALUE, CloseHandle, GetLastError, SetLastError
from aether.win32.mailslots import (
    FILE_ATTRIBUTE_NORMAL,
    FILE_SHARE_READ,
    FILE_SHARE_WRITE,
    GENERIC_READ,
    GENERIC_WRITE,
    MAILSLOT_NO_MESSAGE,
    MAILSLOT_WAIT_FOREVER,
    OPEN_EXISTING,
    CreateFile,
    CreateMailslot,
    GetMailslotInfo,
    SetMailslotInfo,
)
from aether.win32.pipes import ReadFile, WriteFile

NAME = r"\\.\mailslot\wine_mailslot_test"
DWORD = ctypes.c_uint32


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "rt"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("AETHER_RUNTIME_DIR", str(path))
    monkeypatch.setenv("AETHER_MAILSLOT_BROADCAST", "127.255.255.255")
    monkeypatch.setenv("AETHER_MAILSLOT_BIND", "127.0.0.1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("AETHER_MAILSLOT_PORT", str(s.getsockname()[1]))
    return path


def client(name: str = NAME, access: int = GENERIC_WRITE, share: int = FILE_SHARE_READ) -> int:
    return CreateFile(name, access, share, None, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, None)


def write(h: int, data: bytes) -> bool:
    written = DWORD(99)
    ok = WriteFile(h, data, len(data), ctypes.byref(written), None)
    assert written.value == (len(data) if ok else 0)
    return ok


def read(h: int, size: int = 1024) -> bytes | None:
    buffer = ctypes.create_string_buffer(max(size, 1))
    got = DWORD(99)
    if not ReadFile(h, buffer, size, ctypes.byref(got), None):
        return None
    return buffer.raw[: got.value]


def info(h: int) -> tuple[int, int, int, int]:
    values = [DWORD(7) for _ in range(4)]
    assert GetMailslotInfo(h, *(ctypes.byref(v) for v in values))
    return tuple(v.value for v in values)  # type: ignore[return-value]


@pytest.fixture
def server() -> object:
    h = CreateMailslot(NAME, 0, 0, None)
    assert h != INVALID_HANDLE_VALUE
    yield h
    CloseHandle(h)


def test_create_errors() -> None:
    # ref 4.1 items 3, 5, 7: INVALID_HANDLE_VALUE, not NULL
    assert CreateMailslot(None, 0, 0, None) == INVALID_HANDLE_VALUE
    assert GetLastError() == Win32Error.ERROR_PATH_NOT_FOUND
    assert CreateMailslot("blah", 0, 0, None) == INVALID_HANDLE_VALUE
    assert GetLastError() == Win32Error.ERROR_INVALID_NAME
    assert CreateMailslot("\\\\.\\mailslot\\" + "x" * 260, 0, 0, None) == INVALID_HANDLE_VALUE
    assert GetLastError() == Win32Error.ERROR_FILENAME_EXCED_RANGE


def test_second_create_fails(server: int) -> None:
    # ref 4.1 item 4
    assert CreateMailslot(NAME.upper(), 0, 0, None) == INVALID_HANDLE_VALUE
    assert GetLastError() == Win32Error.ERROR_ALREADY_EXISTS


def test_info_with_null_pointers_and_verbatim_max(server: int) -> None:
    # ref 4.1 item 8 and ref 4.3 item 27
    assert GetMailslotInfo(server, None, None, None, None)
    assert info(server) == (0, MAILSLOT_NO_MESSAGE, 0, 0)
    h = CreateMailslot(r"\\.\mailslot\max", 0xFFFFFFFF, MAILSLOT_WAIT_FOREVER, None)
    assert info(h) == (0xFFFFFFFF, MAILSLOT_NO_MESSAGE, 0, MAILSLOT_WAIT_FOREVER)
    assert CloseHandle(h)


def test_client_open(server: int) -> None:
    # ref 4.2 items 10-12: FILE_SHARE_READ or not (Vista+), many writers
    a = client()
    b = client(share=0)
    c = client(share=FILE_SHARE_READ | FILE_SHARE_WRITE)
    assert INVALID_HANDLE_VALUE not in (a, b, c)
    assert client(r"\\.\mailslot\absent") == INVALID_HANDLE_VALUE
    assert GetLastError() == Win32Error.ERROR_FILE_NOT_FOUND
    for h in (a, b, c):
        assert CloseHandle(h)


def test_wrong_direction(server: int) -> None:
    # ref 4.2 item 20 and ref 4.3 item 22
    assert not write(server, b"x")
    assert GetLastError() == Win32Error.ERROR_ACCESS_DENIED
    c = client()
    assert read(c) is None
    assert GetLastError() == Win32Error.ERROR_ACCESS_DENIED
    r = client(access=GENERIC_READ)
    assert not write(r, b"x")
    assert GetLastError() == Win32Error.ERROR_ACCESS_DENIED
    assert CloseHandle(c) and CloseHandle(r)


def test_sequence_of_wine_test(server: int) -> None:
    # ref 4.3 items 23, 24, 28 and ref 4.2 items 16-17
    c = client()
    assert read(server) is None
    assert GetLastError() == Win32Error.ERROR_SEM_TIMEOUT
    assert write(c, b"a")
    assert info(server)[1:3] == (1, 1)
    assert write(c, b"bc")
    assert info(server)[1:3] == (1, 2)
    assert read(server) == b"a"
    assert info(server)[1:3] == (2, 1)
    assert read(server) == b"bc"
    assert info(server)[1:3] == (MAILSLOT_NO_MESSAGE, 0)
    assert write(c, b"")  # a zero-length message is a message
    assert info(server)[1:3] == (0, 1)
    SetLastError(0)
    assert read(server) == b""
    assert CloseHandle(c)


def test_buffer_too_small(server: int) -> None:
    # ref 4.3 item 26
    c = client()
    assert write(c, b"0123456789")
    assert read(server, 4) is None
    assert GetLastError() == Win32Error.ERROR_INSUFFICIENT_BUFFER
    assert info(server)[1:3] == (10, 1)
    assert read(server, 10) == b"0123456789"
    assert CloseHandle(c)


def test_timeouts(server: int) -> None:
    # ref 4.3 items 25, 29 and ref 4.1 item 9
    assert SetMailslotInfo(server, 300)
    assert info(server)[3] == 300
    start = time.monotonic()
    assert read(server) is None
    assert GetLastError() == Win32Error.ERROR_SEM_TIMEOUT
    assert time.monotonic() - start >= 0.27
    assert SetMailslotInfo(server, -1)
    assert info(server)[3] == MAILSLOT_WAIT_FOREVER


def test_info_needs_server_handle(server: int) -> None:
    # ref 4.3 item 30
    c = client()
    assert GetMailslotInfo(c, None, None, None, None) is False
    assert GetLastError() == Win32Error.ERROR_INVALID_HANDLE
    assert SetMailslotInfo(c, 0) is False
    assert GetMailslotInfo(0x7FFC, None, None, None, None) is False
    assert CloseHandle(c)


def test_close_server_breaks_clients() -> None:
    # ref 4.4 items 31-32
    h = CreateMailslot(NAME, 0, 0, None)
    c = client()
    assert write(c, b"unread")
    assert CloseHandle(h)
    assert not write(c, b"late")
    assert GetLastError() == Win32Error.ERROR_NO_DATA
    assert client() == INVALID_HANDLE_VALUE
    assert GetLastError() == Win32Error.ERROR_FILE_NOT_FOUND
    h2 = CreateMailslot(NAME, 0, 0, None)
    assert info(h2)[2] == 0
    assert CloseHandle(h2) and CloseHandle(c)


def test_max_message_size(server: int) -> None:
    # ref 4.2 item 19
    h = CreateMailslot(r"\\.\mailslot\small", 4, 0, None)
    c = client(r"\\.\mailslot\small")
    assert write(c, b"1234")
    assert not write(c, b"12345")
    assert GetLastError() == Win32Error.ERROR_INVALID_PARAMETER
    assert CloseHandle(c) and CloseHandle(h)


def test_remote_broadcast_limit() -> None:
    # ref 4.2 items 13-14: \\*\ handles refuse more than 424 bytes (loopback)
    c = client(r"\\*\mailslot\remote")
    assert c != INVALID_HANDLE_VALUE
    assert write(c, b"x" * 424)
    assert not write(c, b"x" * 425)
    assert GetLastError() == Win32Error.ERROR_BAD_NETPATH
    assert CloseHandle(c)
