"""ctypes access to libc and the translation of OS errors into Aether errors.

Python's standard library has no wrapper for ``mprotect``, ``prctl``,
``pidfd_getfd`` or ``mmap`` returning a raw address, so they are bound here
with ctypes. This is the only module that loads libc; every ``OSError`` that
leaves :mod:`aether.osapi` has passed through :func:`translate` once.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
from typing import NoReturn

from aether.errors import OSAPIError

libc = ctypes.CDLL(None, use_errno=True)

libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
libc.munmap.restype = ctypes.c_int
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mprotect.restype = ctypes.c_int
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.madvise.restype = ctypes.c_int
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.prctl.restype = ctypes.c_int
libc.prctl.argtypes = [
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
]
libc.syscall.restype = ctypes.c_long

MAP_FAILED = ctypes.c_void_p(-1).value


def raise_errno(call: str, err: int | None = None) -> NoReturn:
    """Raise the OSAPIError for ``err`` (default: ctypes' saved errno)."""
    code = ctypes.get_errno() if err is None else err
    raise OSAPIError(code, os.strerror(code), call=call)


def translate(exc: OSError, call: str) -> OSAPIError:
    """Turn an OSError from the standard library into an OSAPIError."""
    if isinstance(exc, OSAPIError):
        return exc
    code = exc.errno if exc.errno is not None else _errno.EIO
    return OSAPIError(code, exc.strerror or os.strerror(code), call=call)
