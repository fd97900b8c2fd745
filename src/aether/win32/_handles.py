"""Win32-style integer handles and the per-thread last error.

The Win32 face (``aether.win32``) returns integers as handles and reports
failures through ``GetLastError()``; this module keeps the table from handle
to the Python object behind it, shared by every Win32 function.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

from aether.errors import Win32Error

INVALID_HANDLE_VALUE = -1
NULL = 0

_tls = threading.local()


def SetLastError(code: int) -> None:
    _tls.code = int(code)


def GetLastError() -> int:
    """The calling thread's last error code (``ERROR_*``)."""
    return int(getattr(_tls, "code", 0))


class HandleTable:
    """Maps small integers (multiples of 4, as on Windows) to objects."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[int, Any] = {}
        self._counter = itertools.count(1)

    def add(self, obj: Any) -> int:
        with self._lock:
            handle = next(self._counter) * 4
            self._objects[handle] = obj
            return handle

    def get(self, handle: int, kind: type | tuple[type, ...] | None = None) -> Any:
        """The object behind ``handle``, or None (last error set to
        ERROR_INVALID_HANDLE) if there is none or it is of another kind."""
        with self._lock:
            obj = self._objects.get(handle)
        if obj is None or (kind is not None and not isinstance(obj, kind)):
            SetLastError(Win32Error.ERROR_INVALID_HANDLE)
            return None
        return obj

    def pop(self, handle: int) -> Any:
        with self._lock:
            return self._objects.pop(handle, None)


handles = HandleTable()


def CloseHandle(handle: int) -> bool:
    """Close any handle of the Win32 face. Returns False (ERROR_INVALID_HANDLE)
    for an unknown handle."""
    obj = handles.pop(handle)
    if obj is None:
        SetLastError(Win32Error.ERROR_INVALID_HANDLE)
        return False
    close = getattr(obj, "close", None)
    if close is not None:
        close()
    return True
