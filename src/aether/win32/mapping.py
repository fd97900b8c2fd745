"""Win32 face of file mappings: CreateFileMapping ... UnmapViewOfFile.

Code written against the seed ports line by line::

    h = CreateFileMapping(INVALID_HANDLE_VALUE, None, PAGE_READWRITE, 0, 4096, "Local\\\\cfg")
    if not h: raise OSError(GetLastError())
    already = GetLastError() == ERROR_ALREADY_EXISTS
    p = MapViewOfFile(h, FILE_MAP_WRITE, 0, 0, 0)
    ctypes.memmove(p, b"hello", 5)
    UnmapViewOfFile(p); CloseHandle(h)

Conventions: handles are integers; CreateFileMapping / OpenFileMapping
return 0 (NULL, not INVALID_HANDLE_VALUE; reference 2.1) on failure and
MapViewOfFile returns address 0; the reason is in ``GetLastError()``. A view
address is a real address in this process (use ``ctypes``); writing through
a read-only view's address faults, as on Windows. Each call is a thin
wrapper over :mod:`aether.primitives.mapping`.
"""

from __future__ import annotations

import threading
from typing import Any

from aether.errors import AetherError, InvalidParameterError, PrimitiveError, Win32Error
from aether.primitives.mapping import FileMapping, MappedView

from ._common import is_dword
from ._handles import INVALID_HANDLE_VALUE, SetLastError, handles

__all__ = [
    "ALLOCATION_GRANULARITY",
    "FILE_MAP_ALL_ACCESS",
    "FILE_MAP_COPY",
    "FILE_MAP_EXECUTE",
    "FILE_MAP_READ",
    "FILE_MAP_WRITE",
    "PAGE_EXECUTE_READ",
    "PAGE_EXECUTE_READWRITE",
    "PAGE_EXECUTE_WRITECOPY",
    "PAGE_NOACCESS",
    "PAGE_READONLY",
    "PAGE_READWRITE",
    "PAGE_WRITECOPY",
    "SEC_COMMIT",
    "SEC_IMAGE",
    "SEC_IMAGE_NO_EXECUTE",
    "SEC_LARGE_PAGES",
    "SEC_NOCACHE",
    "SEC_RESERVE",
    "SEC_WRITECOMBINE",
    "CreateFileMapping",
    "CreateFileMappingA",
    "CreateFileMappingW",
    "FlushViewOfFile",
    "MapViewOfFile",
    "OpenFileMapping",
    "OpenFileMappingA",
    "OpenFileMappingW",
    "UnmapViewOfFile",
    "view_at",
]

PAGE_NOACCESS = 0x01
PAGE_READONLY = 0x02
PAGE_READWRITE = 0x04
PAGE_WRITECOPY = 0x08
PAGE_EXECUTE_READ = 0x20
PAGE_EXECUTE_READWRITE = 0x40
PAGE_EXECUTE_WRITECOPY = 0x80

SEC_IMAGE = 0x01000000
SEC_RESERVE = 0x04000000
SEC_COMMIT = 0x08000000
SEC_NOCACHE = 0x10000000
SEC_IMAGE_NO_EXECUTE = 0x11000000
SEC_WRITECOMBINE = 0x40000000
SEC_LARGE_PAGES = 0x80000000

FILE_MAP_COPY = 0x0001
FILE_MAP_WRITE = 0x0002
FILE_MAP_READ = 0x0004
FILE_MAP_EXECUTE = 0x0020
FILE_MAP_ALL_ACCESS = 0xF001F

ALLOCATION_GRANULARITY = 0x10000



def _fail(exc: BaseException, result: int = 0) -> int:
    if isinstance(exc, PrimitiveError):
        SetLastError(exc.win32_code)
    elif isinstance(exc, AetherError):
        SetLastError(Win32Error.ERROR_INVALID_HANDLE)
    else:
        SetLastError(Win32Error.ERROR_INVALID_PARAMETER)
    return result




def _split_protect(fl_protect: int) -> int:
    """The PAGE_* part of ``flProtect``, after checking the SEC_* flags (2.10).

    SEC_COMMIT is the default; SEC_RESERVE is accepted (Linux commits pages
    on first touch anyway); SEC_NOCACHE / SEC_WRITECOMBINE are accepted and
    ignored; SEC_IMAGE and SEC_LARGE_PAGES are not supported.
    """
    sec = fl_protect & ~0xFF
    if sec & ~(SEC_COMMIT | SEC_RESERVE | SEC_NOCACHE | SEC_WRITECOMBINE | SEC_IMAGE
               | SEC_IMAGE_NO_EXECUTE | SEC_LARGE_PAGES):
        raise InvalidParameterError(f"unknown flProtect bits {sec:#x}")
    if sec & SEC_COMMIT and sec & SEC_RESERVE:
        raise InvalidParameterError("SEC_COMMIT and SEC_RESERVE exclude each other")
    if sec & (SEC_IMAGE | SEC_LARGE_PAGES):
        raise InvalidParameterError("SEC_IMAGE and SEC_LARGE_PAGES are not supported on Linux")
    return fl_protect & 0xFF


def CreateFileMapping(
    hFile: int,
    lpFileMappingAttributes: Any,
    flProtect: int,
    dwMaximumSizeHigh: int,
    dwMaximumSizeLow: int,
    lpName: str | None,
) -> int:
    """Create or open a file-mapping object; returns a handle or 0.

    ``hFile`` is INVALID_HANDLE_VALUE for memory (2.2) or a handle from
    ``CreateFile``. The size is ``high << 32 | low`` (0 for a file: its
    size). If ``lpName`` exists, the existing object is returned and
    ``GetLastError()`` is ERROR_ALREADY_EXISTS (2.13); else it is 0 (2.14).
    ``lpFileMappingAttributes`` is accepted and ignored (handles are not
    inherited on Linux; named objects are opened by name instead).
    """
    try:
        if not (is_dword(dwMaximumSizeHigh) and is_dword(dwMaximumSizeLow) and is_dword(flProtect)):
            raise InvalidParameterError("sizes and flProtect are DWORDs")
        protect = _split_protect(flProtect)
        size = dwMaximumSizeHigh << 32 | dwMaximumSizeLow
        file = None
        if hFile != INVALID_HANDLE_VALUE:
            obj = handles.get(hFile)
            fileno = getattr(obj, "_win32_file_fd", None)
            if fileno is None:
                SetLastError(Win32Error.ERROR_INVALID_HANDLE)
                return 0
            file = fileno()
        mapping = FileMapping.open_or_create(lpName or None, size, protect, file)
    except Exception as exc:
        return _fail(exc)
    SetLastError(Win32Error.ERROR_SUCCESS if mapping.created else Win32Error.ERROR_ALREADY_EXISTS)
    return handles.add(mapping)


def OpenFileMapping(dwDesiredAccess: int, bInheritHandle: bool, lpName: str) -> int:
    """Open a named file-mapping object; 0 with ERROR_FILE_NOT_FOUND if
    there is none (2.22). FILE_MAP_COPY asks for FILE_MAP_READ (2.23)."""
    if lpName is None:
        SetLastError(Win32Error.ERROR_INVALID_PARAMETER)
        return 0
    try:
        mapping = FileMapping.open(lpName, dwDesiredAccess)
    except Exception as exc:
        return _fail(exc)
    SetLastError(Win32Error.ERROR_SUCCESS)
    return handles.add(mapping)


CreateFileMappingA = CreateFileMappingW = CreateFileMapping
OpenFileMappingA = OpenFileMappingW = OpenFileMapping


class _ViewTable:
    """Views by address, so Flush/Unmap accept any address inside (2.44)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._views: dict[int, MappedView] = {}

    def add(self, view: MappedView) -> int:
        base = view.address
        with self._lock:
            self._views[base] = view
        return base

    def find(self, address: int) -> tuple[int, MappedView] | None:
        with self._lock:
            for base, view in self._views.items():
                if base <= address < base + max(len(view), 1):
                    return base, view
        return None

    def pop(self, base: int) -> MappedView | None:
        with self._lock:
            return self._views.pop(base, None)


_views = _ViewTable()


def MapViewOfFile(
    hFileMappingObject: int,
    dwDesiredAccess: int,
    dwFileOffsetHigh: int,
    dwFileOffsetLow: int,
    dwNumberOfBytesToMap: int,
) -> int:
    """Map a view; returns its address, or 0 (NULL) with the last error:
    ERROR_ACCESS_DENIED for a right the handle or object lacks (2.25-2.29)
    or a view past the end (2.36), ERROR_MAPPED_ALIGNMENT for an offset not
    a multiple of 64 KiB (2.33). 0 bytes maps to the end (2.35)."""
    mapping = handles.get(hFileMappingObject, FileMapping)
    if mapping is None:
        return 0
    if not (is_dword(dwFileOffsetHigh) and is_dword(dwFileOffsetLow) and is_dword(dwDesiredAccess)):
        SetLastError(Win32Error.ERROR_INVALID_PARAMETER)
        return 0
    offset = dwFileOffsetHigh << 32 | dwFileOffsetLow
    try:
        view = mapping.map_view(dwDesiredAccess, offset, dwNumberOfBytesToMap)
    except Exception as exc:
        return _fail(exc)
    return _views.add(view)


def FlushViewOfFile(lpBaseAddress: int, dwNumberOfBytesToFlush: int) -> bool:
    """Write a view's dirty pages from ``lpBaseAddress`` (0 bytes: to the
    end of the view) back to its file, waiting for it (``msync(MS_SYNC)``,
    stronger than Windows' start-the-writeback, 2.48)."""
    found = _views.find(lpBaseAddress)
    if found is None:
        SetLastError(Win32Error.ERROR_INVALID_ADDRESS)
        return False
    base, view = found
    try:
        view.flush(lpBaseAddress - base, dwNumberOfBytesToFlush)
    except Exception as exc:
        return bool(_fail(exc))
    return True


def UnmapViewOfFile(lpBaseAddress: int) -> bool:
    """Unmap the view containing ``lpBaseAddress`` (any address inside it,
    as Windows accepts, 2.44); FALSE with ERROR_INVALID_ADDRESS if no view
    contains it (2.45). Pages already written stay in the object (2.47).

    If Python code still holds a ``memoryview`` of the view (see
    :func:`view_at`), the memory is unmapped when that is released.
    """
    found = _views.find(lpBaseAddress)
    if found is None:
        SetLastError(Win32Error.ERROR_INVALID_ADDRESS)
        return False
    view = _views.pop(found[0])
    if view is not None:
        try:
            view.close()
        except BufferError:
            pass  # unmapped by mmap's own dealloc once the exports are gone
    return True


def view_at(lpBaseAddress: int) -> MappedView | None:
    """The view object mapped at an address MapViewOfFile returned, for
    Python code that prefers slicing to ``ctypes`` (None if not a view)."""
    found = _views.find(lpBaseAddress)
    return found[1] if found else None

