"""Shared views of files and memfds: ``mmap`` objects that know their address.

A view must support the buffer protocol (``memoryview(view)``, slicing) and
refuse to be unmapped while a buffer still points into it, which is what
:class:`mmap.mmap` does, so views *are* ``mmap`` objects (subclassed). What
the standard class lacks is the address (the Win32 face returns it, and
``UnmapViewOfFile`` looks views up by any address inside them), so
:func:`buffer_address` reads it through the C buffer interface without
keeping an export alive.
"""

from __future__ import annotations

import ctypes
import mmap
from typing import Self

from aether.errors import OSAPIError

from ._libc import translate

PROT_READ = mmap.PROT_READ
PROT_WRITE = mmap.PROT_WRITE
PROT_EXEC = mmap.PROT_EXEC
MAP_SHARED = mmap.MAP_SHARED
MAP_PRIVATE = mmap.MAP_PRIVATE
PAGE_SIZE = mmap.PAGESIZE


class _PyBuffer(ctypes.Structure):
    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.c_void_p),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    ]


_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
_get_buffer.restype = ctypes.c_int
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = [ctypes.POINTER(_PyBuffer)]
_release_buffer.restype = None


def buffer_address(obj: object) -> int:
    """The address of the first byte of a buffer-protocol object.

    The buffer is released at once, so the object can still be closed; the
    address is only meaningful while the object is alive and unclosed.
    """
    view = _PyBuffer()
    if _get_buffer(obj, ctypes.byref(view), 0) != 0:  # PyBUF_SIMPLE
        raise OSAPIError(22, "object does not export a buffer", call="PyObject_GetBuffer")
    try:
        return int(view.buf or 0)
    finally:
        _release_buffer(ctypes.byref(view))


class SharedView(mmap.mmap):
    """A page-aligned ``mmap`` of part of a file or memfd.

    Construct with :meth:`map`; ``prot`` without ``PROT_WRITE`` gives a view
    whose writes raise ``TypeError`` instead of faulting.
    """

    def __new__(
        cls,
        fd: int,
        length: int,
        *,
        offset: int = 0,
        prot: int = PROT_READ | PROT_WRITE,
        private: bool = False,
    ) -> Self:
        flags = MAP_PRIVATE if private else MAP_SHARED
        try:
            return super().__new__(cls, fd, length, flags=flags, prot=prot, offset=offset)
        except OSError as exc:
            raise translate(exc, "mmap") from None

    @classmethod
    def map(
        cls,
        fd: int,
        length: int,
        *,
        offset: int = 0,
        prot: int = PROT_READ | PROT_WRITE,
        private: bool = False,
    ) -> Self:
        """Map ``length`` bytes of ``fd`` from ``offset`` (a page multiple)."""
        return cls(fd, length, offset=offset, prot=prot, private=private)

    @property
    def address(self) -> int:
        """Address of the first byte of the view in this process."""
        return buffer_address(self)

    def sync(self, offset: int = 0, size: int = 0) -> None:
        """``msync(MS_SYNC)`` the pages covering ``[offset, offset+size)``
        (size 0: to the end of the view); offsets need not be page-aligned."""
        length = len(self)
        if size == 0 or offset + size > length:
            size = length - offset
        start = offset - offset % PAGE_SIZE
        try:
            super().flush(start, size + (offset - start))
        except OSError as exc:
            raise translate(exc, "msync") from None
