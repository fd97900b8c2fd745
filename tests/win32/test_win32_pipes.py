"""aether.win32 pipe functions against win32-ipc-semantics.md section 3, and
the ReadFile/WriteFile protocol other handle kinds (mailslots) plug into.

Comments cite the reference items ("ref 3.8").
"""

from __future__ import annotations

import ctypes
import selectors
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from aether.errors import InsufficientBufferError, PrimitiveTimeoutError, Win32Error
from aether.win32._handles import CloseHandle, GetLastError, SetLastError, handles
from aether.win32.pipes import (
    DWORD,
    HANDLE,
    HANDLE_FLAG_INHERIT,
    HANDLE_FLAG_PROTECT_FROM_CLOSE,
    PIPE_CLIENT_END,
    PIPE_SERVER_END,
    SECURITY_ATTRIBUTES,
    CreatePipe,
    GetHandleInformation,
    GetNamedPipeInfo,
    PeekNamedPipe,
    ReadFile,
    SetHandleInformation,
    WriteFile,
    byref,
    fd_from_handle,
    handle_from_fd,
)

E = Win32Error
TIMEOUT = 30.0


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    h_read, h_write = HANDLE(), HANDLE()
    assert CreatePipe(byref(h_read), byref(h_write), None, 0)
    yield h_read.value, h_write.value
    CloseHandle(h_read.value)
    CloseHandle(h_write.value)


def write(h: int, data: bytes) -> int:
    n = DWORD()
    assert WriteFile(h, data, len(data), byref(n), None), GetLastError()
    return n.value


def read(h: int, size: int) -> bytes:
    buf, n = bytearray(size), DWORD()
    assert ReadFile(h, buf, size, byref(n), None), GetLastError()
    return bytes(buf[: n.value])


# --------------------------------------------------------------------------
# CreatePipe and GetNamedPipeInfo (ref 3.1-3.3)
# --------------------------------------------------------------------------


def test_create_pipe_gives_two_handles(pipe: tuple[int, int]) -> None:  # ref 3.1
    h_read, h_write = pipe
    assert h_read and h_write and h_read != h_write
    buf, n = bytearray(4), DWORD(99)
    assert not WriteFile(h_read, b"x", 1, n)  # read handle: read-only access
    assert GetLastError() == E.ERROR_ACCESS_DENIED and n.value == 0
    assert not ReadFile(h_write, buf, 4, n)  # write handle: write-only access
    assert GetLastError() == E.ERROR_ACCESS_DENIED


def test_named_pipe_info(pipe: tuple[int, int]) -> None:  # ref 3.2, 3.3
    h_read, h_write = pipe
    flags, out_size, in_size, instances = DWORD(), DWORD(), DWORD(), DWORD()
    assert GetNamedPipeInfo(h_read, flags, out_size, in_size, instances)
    assert flags.value == PIPE_SERVER_END  # the read end is the server end
    assert instances.value == 1
    # nSize 0: Windows reports 4096; Linux gives its 64 KiB default.
    assert out_size.value == in_size.value == 65536
    assert GetNamedPipeInfo(h_write, flags, None, None, None)
    assert flags.value == PIPE_CLIENT_END


@pytest.mark.parametrize(("n_size", "linux"), [(1, 4096), (4096, 4096), (5000, 8192)])
def test_size_is_a_suggestion(n_size: int, linux: int) -> None:  # ref 3.2
    h_read, h_write, size = HANDLE(), HANDLE(), DWORD()
    assert CreatePipe(h_read, h_write, None, n_size)
    assert GetNamedPipeInfo(h_read.value, None, size, None, None)
    assert size.value == linux  # Windows: 1 -> 1; Linux: at least one page
    assert CloseHandle(h_read.value) and CloseHandle(h_write.value)


def test_create_pipe_bad_size() -> None:
    assert not CreatePipe(HANDLE(), HANDLE(), None, -1)
    assert GetLastError() == E.ERROR_INVALID_PARAMETER


# --------------------------------------------------------------------------
# ReadFile / WriteFile (ref 3.4-3.10)
# --------------------------------------------------------------------------


def test_overlapped_is_ignored(pipe: tuple[int, int]) -> None:  # ref 3.4
    h_read, h_write = pipe
    n = DWORD()
    assert WriteFile(h_write, b"sync", 4, n, object())
    assert ReadFile(h_read, bytearray(4), 4, n, object()) and n.value == 4


def test_byte_stream_and_partial_reads(pipe: tuple[int, int]) -> None:  # ref 3.5, 3.6
    h_read, h_write = pipe
    write(h_write, b"abc")
    write(h_write, b"def")
    assert read(h_read, 100) == b"abcdef"
    write(h_write, b"xyz")
    assert read(h_read, 2) == b"xy" and read(h_read, 2) == b"z"


def test_write_32k_completes(pipe: tuple[int, int]) -> None:  # ref 3.7
    h_read, h_write = pipe
    assert write(h_write, b"q" * 32768) == 32768
    avail = DWORD()
    assert PeekNamedPipe(h_read, None, 0, None, avail, None) and avail.value == 32768


def test_write_blocks_until_read() -> None:  # ref 3.7
    h_read, h_write = HANDLE(), HANDLE()
    assert CreatePipe(h_read, h_write, None, 4096)
    data = bytes(range(256)) * 1024  # 256 KiB into a 4 KiB pipe
    written: list[int] = []
    thread = threading.Thread(target=lambda: written.append(write(h_write.value, data)))
    thread.start()
    got = bytearray()
    while len(got) < len(data):
        got += read(h_read.value, 65536)
    thread.join(TIMEOUT)
    assert written == [len(data)] and got == data
    CloseHandle(h_read.value)
    CloseHandle(h_write.value)


def test_broken_pipe_after_buffered_data(pipe: tuple[int, int]) -> None:  # ref 3.8
    h_read, h_write = pipe
    write(h_write, b"tail")
    assert CloseHandle(h_write)
    assert read(h_read, 2) == b"ta" and read(h_read, 10) == b"il"
    n = DWORD(7)
    assert not ReadFile(h_read, bytearray(10), 10, n, None)
    assert GetLastError() == E.ERROR_BROKEN_PIPE and n.value == 0


def test_zero_byte_write_not_seen(pipe: tuple[int, int]) -> None:  # ref 3.9 (not applicable)
    h_read, h_write = pipe
    assert write(h_write, b"") == 0
    avail = DWORD(5)
    assert PeekNamedPipe(h_read, None, 0, None, avail, None) and avail.value == 0
    n = DWORD(5)
    assert ReadFile(h_read, bytearray(1), 0, n) and n.value == 0  # 0-byte read: no wait


def test_write_without_reader(pipe: tuple[int, int]) -> None:  # ref 3.10
    h_read, h_write = pipe
    assert CloseHandle(h_read)
    n = DWORD()
    assert not WriteFile(h_write, b"lost", 4, n, None)
    assert GetLastError() in (E.ERROR_NO_DATA, E.ERROR_BROKEN_PIPE)
    assert GetLastError() == E.ERROR_NO_DATA  # what Windows really reports


def test_buffer_smaller_than_count(pipe: tuple[int, int]) -> None:
    h_read, h_write = pipe
    assert not WriteFile(h_write, b"ab", 3, DWORD())
    assert GetLastError() == E.ERROR_NOACCESS
    assert not ReadFile(h_read, bytearray(2), 3, DWORD())
    assert GetLastError() == E.ERROR_NOACCESS


def test_ctypes_buffers_and_out_params(pipe: tuple[int, int]) -> None:
    h_read, h_write = pipe
    src, dst = ctypes.create_string_buffer(b"ctypes", 6), ctypes.create_string_buffer(6)
    n = ctypes.c_ulong()
    assert WriteFile(h_write, src, 6, ctypes.byref(n), None) and n.value == 6
    assert ReadFile(h_read, dst, 6, ctypes.byref(n), None) and dst.raw == b"ctypes"


# --------------------------------------------------------------------------
# PeekNamedPipe (ref 3.12-3.14)
# --------------------------------------------------------------------------


def test_peek_copies_without_removing(pipe: tuple[int, int]) -> None:  # ref 3.12, 3.13
    h_read, h_write = pipe
    got, avail, left = DWORD(9), DWORD(9), DWORD(9)
    buf = bytearray(4)
    assert PeekNamedPipe(h_read, buf, 4, got, avail, left)  # empty: returns at once
    assert (got.value, avail.value, left.value) == (0, 0, 0)
    write(h_write, b"hello")
    assert PeekNamedPipe(h_read, buf, 4, got, avail, left)
    assert bytes(buf) == b"hell" and got.value == 4 and avail.value == 5
    assert left.value == 0xFFFFFFFC  # (DWORD)-4, as Windows returns
    assert PeekNamedPipe(h_read, None, 0, None, None, None)  # NULL outputs allowed
    assert read(h_read, 10) == b"hello"


def test_peek_needs_read_handle(pipe: tuple[int, int]) -> None:  # ref 3.12
    assert not PeekNamedPipe(pipe[1], None, 0, None, DWORD(), None)
    assert GetLastError() == E.ERROR_ACCESS_DENIED


def test_peek_broken_and_empty(pipe: tuple[int, int]) -> None:  # ref 3.14
    h_read, h_write = pipe
    write(h_write, b"z")
    CloseHandle(h_write)
    avail = DWORD()
    assert PeekNamedPipe(h_read, None, 0, None, avail, None) and avail.value == 1
    read(h_read, 1)
    got, avail, left = DWORD(7), DWORD(7), DWORD(7)
    assert not PeekNamedPipe(h_read, bytearray(1), 1, got, avail, left)
    assert GetLastError() == E.ERROR_BROKEN_PIPE
    assert (got.value, avail.value, left.value) == (7, 7, 7)  # outputs untouched


# --------------------------------------------------------------------------
# Handles (ref 3.15-3.17)
# --------------------------------------------------------------------------


def test_close_handle_twice(pipe: tuple[int, int]) -> None:  # ref 3.15
    h_read, h_write = pipe
    write(h_write, b"still here")
    assert CloseHandle(h_write)
    assert read(h_read, 100) == b"still here"  # the pipe lives while a handle does
    assert not CloseHandle(h_write)
    assert GetLastError() == E.ERROR_INVALID_HANDLE


def test_invalid_handles() -> None:
    assert not ReadFile(0x7FF0, bytearray(1), 1, DWORD())
    assert GetLastError() == E.ERROR_INVALID_HANDLE
    assert not WriteFile(0x7FF0, b"x", 1, DWORD())
    assert GetLastError() == E.ERROR_INVALID_HANDLE
    assert fd_from_handle(0x7FF0) == -1


def run_inheriting_child(read_fd: int) -> subprocess.Popen[str]:
    code = (
        "import sys\n"
        "from aether.win32.pipes import DWORD, ReadFile, handle_from_fd\n"
        "from aether.win32._handles import GetLastError\n"
        "h = handle_from_fd(int(sys.argv[1]))\n"
        "buf, n, data = bytearray(100), DWORD(), b''\n"
        "while ReadFile(h, buf, 100, n, None):\n    data += buf[: n.value]\n"
        "print(data.decode(), GetLastError(), flush=True)\n"
    )
    # close_fds=False: every inheritable descriptor goes to the child, as
    # CreateProcess(bInheritHandles=TRUE) does; the fd number is the same.
    return subprocess.Popen(
        [sys.executable, "-c", code, str(read_fd)],
        stdout=subprocess.PIPE,
        text=True,
        close_fds=False,
    )


def test_inheritance_with_security_attributes() -> None:  # ref 3.16, 3.17, 3.20
    h_read, h_write = HANDLE(), HANDLE()
    assert CreatePipe(h_read, h_write, SECURITY_ATTRIBUTES(bInheritHandle=True), 0)
    flags = DWORD()
    assert GetHandleInformation(h_read.value, flags) and flags.value == HANDLE_FLAG_INHERIT
    # ref 3.17: the child must not inherit the write end, or it never sees EOF.
    assert SetHandleInformation(h_write.value, HANDLE_FLAG_INHERIT, 0)
    assert GetHandleInformation(h_write.value, flags) and flags.value == 0
    proc = run_inheriting_child(fd_from_handle(h_read.value))
    try:
        CloseHandle(h_read.value)
        write(h_write.value, b"inherited")
        CloseHandle(h_write.value)  # ref 3.17: and the parent closes its copy
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(TIMEOUT), "child saw no end of stream"
        assert proc.stdout.readline().split() == ["inherited", str(int(E.ERROR_BROKEN_PIPE))]
    finally:
        if proc.poll() is None:
            proc.kill()  # our own child, by pid
        proc.wait(timeout=TIMEOUT)
        assert proc.stdout is not None
        proc.stdout.close()


def test_not_inheritable_by_default(pipe: tuple[int, int]) -> None:  # ref 3.16
    flags = DWORD(1)
    assert GetHandleInformation(pipe[0], flags) and flags.value == 0
    assert not SetHandleInformation(pipe[0], HANDLE_FLAG_PROTECT_FROM_CLOSE, 0)
    assert GetLastError() == E.ERROR_INVALID_PARAMETER


def test_handle_from_fd_rejects_non_pipes() -> None:
    import socket

    a, b = socket.socketpair()
    with a, b:
        assert handle_from_fd(a.fileno()) == 0
        assert GetLastError() == E.ERROR_INVALID_HANDLE


# --------------------------------------------------------------------------
# The ReadFile/WriteFile protocol for other handle kinds
# --------------------------------------------------------------------------


class FakeMailslot:
    """An object speaking the protocol documented in aether.win32.pipes."""

    def __init__(self) -> None:
        self.messages = [b"first", b"a longer message"]
        self.written: list[bytes] = []
        self.closed = False

    def _win32_read(self, size: int) -> bytes:
        if not self.messages:
            raise PrimitiveTimeoutError("no message")
        if len(self.messages[0]) > size:
            raise InsufficientBufferError("message larger than the buffer")
        return self.messages.pop(0)

    def _win32_write(self, data: bytes) -> int:
        self.written.append(data)
        return len(data)

    def close(self) -> None:
        self.closed = True


def test_protocol_dispatch() -> None:
    obj = FakeMailslot()
    h = handles.add(obj)
    assert read(h, 10) == b"first"
    buf, n = bytearray(5), DWORD()
    assert not ReadFile(h, buf, 5, n) and GetLastError() == E.ERROR_INSUFFICIENT_BUFFER
    assert read(h, 100) == b"a longer message"
    assert not ReadFile(h, buf, 5, n) and GetLastError() == E.ERROR_SEM_TIMEOUT
    assert write(h, b"hi") == 2 and obj.written == [b"hi"]
    SetLastError(0)
    assert not PeekNamedPipe(h, None, 0, None, DWORD(), None)  # not a pipe
    assert GetLastError() == E.ERROR_INVALID_HANDLE
    assert CloseHandle(h) and obj.closed


def test_object_without_protocol() -> None:
    h = handles.add(object())
    assert not ReadFile(h, bytearray(1), 1, DWORD())
    assert GetLastError() == E.ERROR_INVALID_HANDLE
    assert CloseHandle(h)
