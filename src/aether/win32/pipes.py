"""Win32 face of anonymous pipes, and the generic ``ReadFile``/``WriteFile``.

``ReadFile`` / ``WriteFile`` protocol
-------------------------------------
``ReadFile`` and ``WriteFile`` work on any handle of the Win32 face whose
object (in ``aether.win32._handles.handles``) provides:

``_win32_read(size: int) -> bytes``
    Block as the object's Win32 ``ReadFile`` would; return at most ``size``
    bytes. Return ``b""`` only if ``size`` is 0. Failures raise a
    :class:`aether.errors.PrimitiveError` whose ``win32_code`` becomes the
    last error (e.g. ``PipeBrokenError`` -> ERROR_BROKEN_PIPE at end of a
    pipe, ``InsufficientBufferError`` for a mailslot message larger than
    ``size``, ``PrimitiveTimeoutError`` -> ERROR_SEM_TIMEOUT,
    ``AccessDeniedError`` on a handle opened for the other direction).

``_win32_write(data: bytes) -> int``
    Write ``data`` as Win32 ``WriteFile`` would and return the bytes
    written; failures raise ``PrimitiveError`` likewise (``NoDataError`` ->
    ERROR_NO_DATA for a pipe with no reader).

``close() -> None``
    Called once by ``CloseHandle``.

An object without the method needed gets ERROR_INVALID_HANDLE. Any other
:class:`aether.errors.AetherError` (say a closed descriptor) is reported as
ERROR_INVALID_HANDLE too. Pipe handles also provide ``_win32_peek`` for
``PeekNamedPipe`` and ``_win32_pipe_info`` for ``GetNamedPipeInfo``.

Out-parameters
--------------
Where Win32 writes through a pointer (``PHANDLE``, ``LPDWORD``), pass any
object with a writable ``.value``: :class:`HANDLE` / :class:`DWORD` boxes
(``byref(x)`` returns ``x``, for line-by-line ports), or ctypes objects.
``None`` is allowed where Win32 allows ``NULL``. ``lpOverlapped`` is
ignored: anonymous pipes are synchronous only [3.4].

Handles are integers that mean nothing to another process. A child that
inherits or receives the *descriptor* turns it back into a handle with
:func:`handle_from_fd`; :func:`fd_from_handle` gives the descriptor to pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aether.errors import (
    AccessDeniedError,
    AetherError,
    OSAPIError,
    PipeBrokenError,
    PrimitiveError,
    Win32Error,
)
from aether.primitives.pipes import PipePeek, PipeReader, PipeWriter, adopt_fd, create_pipe

from ._common import DWORD_MAX, is_dword, set_out
from ._handles import SetLastError, handles

__all__ = [
    "DWORD",
    "HANDLE",
    "HANDLE_FLAG_INHERIT",
    "HANDLE_FLAG_PROTECT_FROM_CLOSE",
    "PIPE_CLIENT_END",
    "PIPE_SERVER_END",
    "PIPE_TYPE_BYTE",
    "PIPE_TYPE_MESSAGE",
    "SECURITY_ATTRIBUTES",
    "CreatePipe",
    "GetHandleInformation",
    "GetNamedPipeInfo",
    "PeekNamedPipe",
    "ReadFile",
    "SetHandleInformation",
    "WriteFile",
    "byref",
    "fd_from_handle",
    "handle_from_fd",
]

PIPE_CLIENT_END = 0x0
PIPE_SERVER_END = 0x1
PIPE_TYPE_BYTE = 0x0
PIPE_TYPE_MESSAGE = 0x4


class DWORD:
    """A box for a ``DWORD`` out-parameter (``.value``)."""

    __slots__ = ("value",)

    def __init__(self, value: int = 0) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"DWORD({self.value})"


class HANDLE:
    """A box for a ``HANDLE`` out-parameter (``.value``)."""

    __slots__ = ("value",)

    def __init__(self, value: int = 0) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"HANDLE({self.value})"


def byref(obj: Any) -> Any:
    """``&x`` in a ported call: out-parameters are passed as the box itself."""
    return obj


@dataclass
class SECURITY_ATTRIBUTES:
    """Only ``bInheritHandle`` has an effect; Linux pipes have no DACL."""

    nLength: int = 24
    lpSecurityDescriptor: Any = None
    bInheritHandle: bool = False



def _fail(exc: BaseException) -> bool:
    if isinstance(exc, PrimitiveError):
        SetLastError(exc.win32_code)
    elif isinstance(exc, OSAPIError):
        SetLastError(Win32Error.ERROR_NOT_ENOUGH_MEMORY)
    else:
        SetLastError(Win32Error.ERROR_INVALID_HANDLE)
    return False




# --------------------------------------------------------------------------
# Handle objects of pipe ends
# --------------------------------------------------------------------------


class _PipeReadHandle:
    """What a pipe read handle refers to (the PIPE_SERVER_END [3.2])."""

    def __init__(self, end: PipeReader) -> None:
        self.end = end

    def _win32_read(self, size: int) -> bytes:
        if size == 0:
            return b""
        data = self.end.read(size)
        if not data:
            raise PipeBrokenError("every write handle of the pipe is closed")
        return data

    def _win32_write(self, data: bytes) -> int:
        raise AccessDeniedError("this is the read handle of a pipe")

    def _win32_peek(self, size: int) -> PipePeek:
        peek = self.end.peek(size)
        if peek.at_eof:
            raise PipeBrokenError("every write handle of the pipe is closed")
        return peek

    def _win32_pipe_info(self) -> tuple[int, int]:
        return PIPE_SERVER_END | PIPE_TYPE_BYTE, self.end.buffer_size

    def fileno(self) -> int:
        return self.end.fileno()

    def close(self) -> None:
        self.end.close()


class _PipeWriteHandle:
    """What a pipe write handle refers to (the PIPE_CLIENT_END)."""

    def __init__(self, end: PipeWriter) -> None:
        self.end = end

    def _win32_read(self, size: int) -> bytes:
        raise AccessDeniedError("this is the write handle of a pipe")

    def _win32_write(self, data: bytes) -> int:
        return self.end.write(data)

    def _win32_peek(self, size: int) -> PipePeek:
        raise AccessDeniedError("PeekNamedPipe needs the read handle")

    def _win32_pipe_info(self) -> tuple[int, int]:
        return PIPE_CLIENT_END | PIPE_TYPE_BYTE, self.end.buffer_size

    def fileno(self) -> int:
        return self.end.fileno()

    def close(self) -> None:
        self.end.close()


def _wrap(end: PipeReader | PipeWriter) -> int:
    if isinstance(end, PipeReader):
        return handles.add(_PipeReadHandle(end))
    return handles.add(_PipeWriteHandle(end))


HANDLE_FLAG_INHERIT = 0x1
HANDLE_FLAG_PROTECT_FROM_CLOSE = 0x2


def GetHandleInformation(hObject: int, lpdwFlags: Any) -> bool:
    """``HANDLE_FLAG_INHERIT`` if the pipe handle's descriptor survives ``exec``."""
    obj = handles.get(hObject, (_PipeReadHandle, _PipeWriteHandle))
    if obj is None:
        return False
    try:
        flags = HANDLE_FLAG_INHERIT if obj.end.inheritable else 0
    except AetherError as exc:
        return _fail(exc)
    set_out(lpdwFlags, flags)
    return True


def SetHandleInformation(hObject: int, dwMask: int, dwFlags: int) -> bool:
    """Change ``HANDLE_FLAG_INHERIT`` of a pipe handle, so that a child
    started with inheritance gets only the end it needs [3.17, 3.20].
    ``HANDLE_FLAG_PROTECT_FROM_CLOSE`` is not supported (ERROR_INVALID_PARAMETER).
    """
    obj = handles.get(hObject, (_PipeReadHandle, _PipeWriteHandle))
    if obj is None:
        return False
    if dwMask & ~HANDLE_FLAG_INHERIT:
        SetLastError(Win32Error.ERROR_INVALID_PARAMETER)
        return False
    if dwMask & HANDLE_FLAG_INHERIT:
        try:
            obj.end.inheritable = bool(dwFlags & HANDLE_FLAG_INHERIT)
        except AetherError as exc:
            return _fail(exc)
    return True


def handle_from_fd(fd: int) -> int:
    """A handle for a pipe descriptor this process inherited or received
    (takes ownership of ``fd``). Returns 0 with ERROR_INVALID_HANDLE if
    ``fd`` is not a pipe end (``fd`` stays open)."""
    try:
        return _wrap(adopt_fd(fd))
    except AetherError as exc:
        _fail(exc)
        return 0


def fd_from_handle(hPipe: int) -> int:
    """The descriptor behind a pipe handle (still owned by the handle), to
    pass to a child in ``pass_fds``; -1 with ERROR_INVALID_HANDLE."""
    obj = handles.get(hPipe, (_PipeReadHandle, _PipeWriteHandle))
    if obj is None:
        return -1
    try:
        return int(obj.fileno())
    except AetherError as exc:
        _fail(exc)
        return -1


# --------------------------------------------------------------------------
# The calls
# --------------------------------------------------------------------------


def CreatePipe(
    hReadPipe: Any,
    hWritePipe: Any,
    lpPipeAttributes: SECURITY_ATTRIBUTES | None,
    nSize: int,
) -> bool:
    """Create an anonymous pipe; the handles go to ``hReadPipe.value`` and
    ``hWritePipe.value`` [3.1].

    ``nSize`` is a suggestion (0: Linux's default of 64 KiB, Windows 4 KiB)
    [3.2]; ``GetNamedPipeInfo`` reports what Linux gave. With
    ``bInheritHandle`` both descriptors survive ``exec`` [3.16].
    """
    if not is_dword(nSize):
        SetLastError(Win32Error.ERROR_INVALID_PARAMETER)
        return False
    inherit = bool(lpPipeAttributes is not None and lpPipeAttributes.bInheritHandle)
    try:
        reader, writer = create_pipe(nSize, inheritable=inherit)
    except (AetherError, OSError) as exc:
        return _fail(exc)
    set_out(hReadPipe, _wrap(reader))
    set_out(hWritePipe, _wrap(writer))
    return True


def _buffer_view(buffer: Any, size: int, writable: bool) -> memoryview | None:
    """``size`` bytes of ``buffer``, or None (ERROR_NOACCESS) if it is smaller."""
    view = memoryview(buffer).cast("B")
    if writable and view.readonly:
        raise TypeError("lpBuffer must be writable")
    if size > len(view):
        SetLastError(Win32Error.ERROR_NOACCESS)
        return None
    return view[:size]


def ReadFile(
    hFile: int,
    lpBuffer: Any,
    nNumberOfBytesToRead: int,
    lpNumberOfBytesRead: Any,
    lpOverlapped: Any = None,
) -> bool:
    """Read from a pipe (or any handle implementing ``_win32_read``).

    On a pipe: returns once some bytes are there, so partial reads are
    normal [3.6]; after every write handle is closed the buffered bytes are
    returned, then FALSE with ERROR_BROKEN_PIPE [3.8].
    """
    set_out(lpNumberOfBytesRead, 0)
    if not is_dword(nNumberOfBytesToRead):
        SetLastError(Win32Error.ERROR_INVALID_PARAMETER)
        return False
    obj = handles.get(hFile)
    if obj is None:
        return False
    read = getattr(obj, "_win32_read", None)
    if read is None:
        SetLastError(Win32Error.ERROR_INVALID_HANDLE)
        return False
    view = _buffer_view(lpBuffer, nNumberOfBytesToRead, writable=True)
    if view is None:
        return False
    try:
        data = read(nNumberOfBytesToRead)
    except AetherError as exc:
        return _fail(exc)
    view[: len(data)] = data
    set_out(lpNumberOfBytesRead, len(data))
    return True


def WriteFile(
    hFile: int,
    lpBuffer: Any,
    nNumberOfBytesToWrite: int,
    lpNumberOfBytesWritten: Any,
    lpOverlapped: Any = None,
) -> bool:
    """Write to a pipe (or any handle implementing ``_win32_write``).

    On a pipe it returns only when every byte is written [3.7]; with no read
    handle left it fails with ERROR_NO_DATA [3.10].
    """
    set_out(lpNumberOfBytesWritten, 0)
    if not is_dword(nNumberOfBytesToWrite):
        SetLastError(Win32Error.ERROR_INVALID_PARAMETER)
        return False
    obj = handles.get(hFile)
    if obj is None:
        return False
    write = getattr(obj, "_win32_write", None)
    if write is None:
        SetLastError(Win32Error.ERROR_INVALID_HANDLE)
        return False
    view = _buffer_view(lpBuffer, nNumberOfBytesToWrite, writable=False)
    if view is None:
        return False
    try:
        written = write(bytes(view))
    except AetherError as exc:
        return _fail(exc)
    set_out(lpNumberOfBytesWritten, written)
    return True


def PeekNamedPipe(
    hNamedPipe: int,
    lpBuffer: Any,
    nBufferSize: int,
    lpBytesRead: Any,
    lpTotalBytesAvail: Any,
    lpBytesLeftThisMessage: Any,
) -> bool:
    """Copy up to ``nBufferSize`` waiting bytes without removing them and
    report how many wait; never blocks [3.12].

    ``lpBytesLeftThisMessage`` gets what Windows gives for a byte-mode
    pipe: 0 minus the bytes copied, as a DWORD [3.13]. An empty pipe whose
    write handles are all closed fails with ERROR_BROKEN_PIPE and the
    outputs untouched [3.14]. The read handle is needed (ERROR_ACCESS_DENIED).
    """
    obj = handles.get(hNamedPipe)
    if obj is None:
        return False
    peek = getattr(obj, "_win32_peek", None)
    if peek is None:
        SetLastError(Win32Error.ERROR_INVALID_HANDLE)
        return False
    if lpBuffer is None:
        nBufferSize = 0
    if not is_dword(nBufferSize):
        SetLastError(Win32Error.ERROR_INVALID_PARAMETER)
        return False
    view = _buffer_view(lpBuffer, nBufferSize, writable=True) if nBufferSize else None
    if nBufferSize and view is None:
        return False
    try:
        result: PipePeek = peek(nBufferSize)
    except AetherError as exc:
        return _fail(exc)
    if view is not None:
        view[: len(result.data)] = result.data
    set_out(lpBytesRead, len(result.data))
    set_out(lpTotalBytesAvail, result.available)
    set_out(lpBytesLeftThisMessage, (0 - len(result.data)) & DWORD_MAX)
    return True


def GetNamedPipeInfo(
    hNamedPipe: int,
    lpFlags: Any,
    lpOutBufferSize: Any,
    lpInBufferSize: Any,
    lpMaxInstances: Any,
) -> bool:
    """Flags (PIPE_SERVER_END for the read end [3.2], PIPE_TYPE_BYTE), the
    buffer size Linux gave (both quotas), and 1 instance [3.2, 3.3]."""
    obj = handles.get(hNamedPipe)
    if obj is None:
        return False
    info = getattr(obj, "_win32_pipe_info", None)
    if info is None:
        SetLastError(Win32Error.ERROR_INVALID_HANDLE)
        return False
    try:
        flags, size = info()
    except AetherError as exc:
        return _fail(exc)
    set_out(lpFlags, flags)
    set_out(lpOutBufferSize, size)
    set_out(lpInBufferSize, size)
    set_out(lpMaxInstances, 1)
    return True
