r"""Win32 face of mailslots: CreateMailslot, CreateFile, Get/SetMailslotInfo.

    h = CreateMailslot(r"\\.\mailslot\app", 0, MAILSLOT_WAIT_FOREVER, None)
    c = CreateFile(r"\\.\mailslot\app", GENERIC_WRITE, FILE_SHARE_READ, None,
                   OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, None)
    WriteFile(c, b"hi", 2, written, None)   # aether.win32.pipes.WriteFile
    GetMailslotInfo(h, None, next_size, count, None)

Failures return INVALID_HANDLE_VALUE (CreateMailslot, CreateFile; reference
4.7) or FALSE and set the last error. ``ReadFile``/``WriteFile`` work on
these handles through the ``_win32_read``/``_win32_write`` protocol (see
``aether.win32.pipes``): one message per call, ERROR_INSUFFICIENT_BUFFER
when the next message is larger than the buffer (it stays queued),
ERROR_SEM_TIMEOUT when the read timeout passes, ERROR_ACCESS_DENIED for the
wrong direction (4.20, 4.22).

``CreateFile`` also opens ordinary paths (for ``CreateFileMapping``), with
the usual dispositions; its handles support ReadFile/WriteFile too.
"""

from __future__ import annotations

import io
from typing import Any

from aether.errors import (
    AccessDeniedError,
    AetherError,
    InvalidParameterError,
    OSAPIError,
    PrimitiveError,
    Win32Error,
)
from aether.osapi import namedfiles as nf
from aether.primitives.mailslots import (
    FOREVER,
    NO_MESSAGE,
    Mailslot,
    MailslotWriter,
    open_mailslot,
)

from ._common import DWORD_MAX, set_out
from ._handles import INVALID_HANDLE_VALUE, SetLastError, handles

__all__ = [
    "CREATE_ALWAYS",
    "CREATE_NEW",
    "FILE_ATTRIBUTE_NORMAL",
    "FILE_SHARE_DELETE",
    "FILE_SHARE_READ",
    "FILE_SHARE_WRITE",
    "GENERIC_READ",
    "GENERIC_WRITE",
    "MAILSLOT_NO_MESSAGE",
    "MAILSLOT_WAIT_FOREVER",
    "OPEN_ALWAYS",
    "OPEN_EXISTING",
    "TRUNCATE_EXISTING",
    "CreateFile",
    "CreateFileA",
    "CreateFileW",
    "CreateMailslot",
    "CreateMailslotA",
    "CreateMailslotW",
    "GetMailslotInfo",
    "SetMailslotInfo",
]

MAILSLOT_WAIT_FOREVER = FOREVER
MAILSLOT_NO_MESSAGE = NO_MESSAGE

GENERIC_READ = 0x80000000
GENERIC_WRITE = 0x40000000
FILE_SHARE_READ = 0x1
FILE_SHARE_WRITE = 0x2
FILE_SHARE_DELETE = 0x4
CREATE_NEW = 1
CREATE_ALWAYS = 2
OPEN_EXISTING = 3
OPEN_ALWAYS = 4
TRUNCATE_EXISTING = 5
FILE_ATTRIBUTE_NORMAL = 0x80

_ERROR_FILE_EXISTS = 80


def _fail(exc: BaseException) -> None:
    if isinstance(exc, PrimitiveError):
        SetLastError(exc.win32_code)
    elif isinstance(exc, OSAPIError):
        SetLastError(_code_for_errno(exc.errno))
    elif isinstance(exc, AetherError):
        SetLastError(Win32Error.ERROR_INVALID_HANDLE)
    else:
        SetLastError(Win32Error.ERROR_INVALID_PARAMETER)


def _code_for_errno(err: int | None) -> int:
    return {
        2: Win32Error.ERROR_FILE_NOT_FOUND,
        13: Win32Error.ERROR_ACCESS_DENIED,
        1: Win32Error.ERROR_ACCESS_DENIED,
        21: Win32Error.ERROR_ACCESS_DENIED,
        17: _ERROR_FILE_EXISTS,
        20: Win32Error.ERROR_PATH_NOT_FOUND,
        36: Win32Error.ERROR_FILENAME_EXCED_RANGE,
        28: Win32Error.ERROR_DISK_FULL,
    }.get(err or 0, Win32Error.ERROR_INVALID_PARAMETER)


# --------------------------------------------------------------------------
# Mailslots
# --------------------------------------------------------------------------


def CreateMailslot(
    lpName: str | None,
    nMaxMessageSize: int,
    lReadTimeout: int,
    lpSecurityAttributes: Any = None,
) -> int:
    r"""Create a mailslot; returns its server (read) handle or
    INVALID_HANDLE_VALUE. ``lpName`` None fails with ERROR_PATH_NOT_FOUND, a
    malformed name with ERROR_INVALID_NAME (4.3), an existing one with
    ERROR_ALREADY_EXISTS (4.4). ``lReadTimeout`` -1 is MAILSLOT_WAIT_FOREVER."""
    if lpName is None:
        SetLastError(Win32Error.ERROR_PATH_NOT_FOUND)
        return INVALID_HANDLE_VALUE
    try:
        slot = Mailslot.create(lpName, nMaxMessageSize, lReadTimeout)
    except Exception as exc:
        _fail(exc)
        return INVALID_HANDLE_VALUE
    SetLastError(Win32Error.ERROR_SUCCESS)
    return handles.add(slot)


CreateMailslotA = CreateMailslotW = CreateMailslot



def GetMailslotInfo(
    hMailslot: int,
    lpMaxMessageSize: Any,
    lpNextSize: Any,
    lpMessageCount: Any,
    lpReadTimeout: Any,
) -> bool:
    """Fill each non-None out-parameter (anything with ``.value``): the
    maximum message size, the size of the next message or
    MAILSLOT_NO_MESSAGE, the number of messages and the read timeout
    (4.27). Needs the server handle (4.30), else ERROR_INVALID_HANDLE."""
    slot = handles.get(hMailslot, Mailslot)
    if slot is None:
        return False
    try:
        info = slot.info()
    except Exception as exc:
        _fail(exc)
        return False
    set_out(lpMaxMessageSize, info.max_message_size)
    set_out(lpNextSize, NO_MESSAGE if info.next_size is None else info.next_size)
    set_out(lpMessageCount, info.message_count)
    set_out(lpReadTimeout, info.read_timeout)
    return True


def SetMailslotInfo(hMailslot: int, lReadTimeout: int) -> bool:
    """Change the read timeout only (4.29); -1 is MAILSLOT_WAIT_FOREVER."""
    slot = handles.get(hMailslot, Mailslot)
    if slot is None:
        return False
    try:
        slot.read_timeout = lReadTimeout
    except Exception as exc:
        _fail(exc)
        return False
    return True


class _MailslotClient:
    """A client handle's object: a writer and the access it was opened with."""

    def __init__(self, writer: MailslotWriter, access: int) -> None:
        self.writer = writer
        self.access = access

    def _win32_write(self, data: bytes) -> int:
        if not self.access & GENERIC_WRITE:
            raise AccessDeniedError("the mailslot handle was not opened with GENERIC_WRITE")
        return self.writer.write(data)

    def _win32_read(self, size: int) -> bytes:
        raise AccessDeniedError("a mailslot client handle cannot read (4.22)")

    def close(self) -> None:
        self.writer.close()


# --------------------------------------------------------------------------
# Ordinary files
# --------------------------------------------------------------------------


class _Win32File:
    """An ordinary file opened by CreateFile (ReadFile/WriteFile protocol)."""

    def __init__(self, fd: int, access: int) -> None:
        readable = bool(access & GENERIC_READ)
        writable = bool(access & GENERIC_WRITE)
        mode = "r+b" if readable and writable else "wb" if writable else "rb"
        self._file = io.FileIO(fd, mode, closefd=True)
        self.access = access

    def _win32_file_fd(self) -> int:
        return self._file.fileno()

    def _win32_read(self, size: int) -> bytes:
        if not self.access & GENERIC_READ:
            raise AccessDeniedError("the file was not opened with GENERIC_READ")
        return self._file.read(size) or b""

    def _win32_write(self, data: bytes) -> int:
        if not self.access & GENERIC_WRITE:
            raise AccessDeniedError("the file was not opened with GENERIC_WRITE")
        written = self._file.write(data)
        return int(written or 0)

    def close(self) -> None:
        self._file.close()


_DISPOSITIONS = {
    # disposition: (create, exclusive, truncate, must_exist)
    CREATE_NEW: (True, True, False),
    CREATE_ALWAYS: (True, False, True),
    OPEN_EXISTING: (False, False, False),
    OPEN_ALWAYS: (True, False, False),
    TRUNCATE_EXISTING: (False, False, True),
}


def CreateFile(
    lpFileName: str | None,
    dwDesiredAccess: int,
    dwShareMode: int,
    lpSecurityAttributes: Any,
    dwCreationDisposition: int,
    dwFlagsAndAttributes: int,
    hTemplateFile: Any,
) -> int:
    r"""Open a mailslot for writing (``\\.\mailslot\...``, ``\\*\...``,
    ``\\host\...``; OPEN_EXISTING) or an ordinary file; returns a handle or
    INVALID_HANDLE_VALUE.

    A missing local mailslot fails with ERROR_FILE_NOT_FOUND (4.11).
    ``dwShareMode`` is ignored (Vista and later accept a mailslot open
    without FILE_SHARE_READ, 4.10; Linux has no share modes). For files,
    CREATE_ALWAYS / OPEN_ALWAYS on an existing file succeed with
    ERROR_ALREADY_EXISTS; CREATE_NEW on one fails with ERROR_FILE_EXISTS.
    """
    if lpFileName is None:
        SetLastError(Win32Error.ERROR_PATH_NOT_FOUND)
        return INVALID_HANDLE_VALUE
    if dwCreationDisposition not in _DISPOSITIONS:
        SetLastError(Win32Error.ERROR_INVALID_PARAMETER)
        return INVALID_HANDLE_VALUE
    if lpFileName.startswith("\\\\"):
        return _open_mailslot_client(lpFileName, dwDesiredAccess, dwCreationDisposition)
    create, exclusive, truncate = _DISPOSITIONS[dwCreationDisposition]
    if truncate and not dwDesiredAccess & GENERIC_WRITE:
        SetLastError(Win32Error.ERROR_INVALID_PARAMETER)
        return INVALID_HANDLE_VALUE
    try:
        fd, existed = nf.open_for_win32(
            lpFileName,
            read=bool(dwDesiredAccess & GENERIC_READ) or not dwDesiredAccess & GENERIC_WRITE,
            write=bool(dwDesiredAccess & GENERIC_WRITE),
            create=create,
            exclusive=exclusive,
            truncate=truncate,
        )
    except Exception as exc:
        _fail(exc)
        return INVALID_HANDLE_VALUE
    already = existed and dwCreationDisposition in (CREATE_ALWAYS, OPEN_ALWAYS)
    SetLastError(Win32Error.ERROR_ALREADY_EXISTS if already else Win32Error.ERROR_SUCCESS)
    return handles.add(_Win32File(fd, dwDesiredAccess))


CreateFileA = CreateFileW = CreateFile


def _open_mailslot_client(name: str, access: int, disposition: int) -> int:
    if disposition not in (OPEN_EXISTING, OPEN_ALWAYS):
        SetLastError(Win32Error.ERROR_INVALID_PARAMETER)
        return INVALID_HANDLE_VALUE
    try:
        if not 0 <= access <= DWORD_MAX:
            raise InvalidParameterError("dwDesiredAccess is a DWORD")
        writer = open_mailslot(name)
    except Exception as exc:
        _fail(exc)
        return INVALID_HANDLE_VALUE
    SetLastError(Win32Error.ERROR_SUCCESS)
    return handles.add(_MailslotClient(writer, access))
