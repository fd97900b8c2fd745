"""The bytes behind a new file mapping: a memfd, a record, or a user's file.

Split from :mod:`aether.primitives.mapping` so the handle class stays small.
Checks here follow reference 2.1 items 3-8 (sizes, growth, protections
against the file's open mode).
"""

from __future__ import annotations

import os
from typing import IO

from aether.errors import AccessDeniedError, InvalidParameterError, OSAPIError
from aether.osapi import memfd, namedfiles as nf

from . import _mapping_store as store
from ._mapping_access import Protect
from ._mapping_errors import (
    FileInvalidError,
    MappingNotFoundError,
    NotEnoughMemoryError,
    from_os_error,
)
from ._mapping_names import MappingName

__all__ = ["FileArg", "open_user_file", "prepare_backing", "reopen_backing_file"]

FileArg = str | os.PathLike[str] | int | IO[bytes]
_MAX_SIZE = (1 << 63) - 1
_PAGE = os.sysconf("SC_PAGE_SIZE")


def prepare_backing(
    protect: Protect, size: int, file: FileArg | None, name: MappingName | None
) -> tuple[int, int, store.Record]:
    """Open or create the bytes behind a new object.

    Returns ``(data_fd, data_offset, record)``; for named memory-backed
    objects the fd is -1 (the record file will hold the bytes).
    """
    text = name.text if name is not None else ""
    if not isinstance(size, int) or size < 0 or size > _MAX_SIZE:
        raise InvalidParameterError(f"invalid mapping size {size!r}")
    if file is None:
        if size == 0:
            raise InvalidParameterError("a memory-backed mapping needs a size > 0")  # 2.3
        rounded = -(-size // _PAGE) * _PAGE  # 2.6
        record = store.Record(store.KIND_MEMORY, int(protect), rounded, os.getpid(), text)
        if name is not None:
            return -1, store.HEADER_SIZE, record
        try:
            return memfd.memfd_create("aether-mapping", rounded), 0, record
        except OSAPIError as exc:
            raise from_os_error(exc, "CreateFileMapping") from None
    fd = open_user_file(file, protect.writable)
    try:
        dev, ino, file_size = nf.file_identity(fd)
        if size == 0:
            if file_size == 0:
                raise FileInvalidError("cannot map an empty file with size 0")  # 2.4
            size = file_size
        elif size > file_size:
            if not protect.writable:
                raise NotEnoughMemoryError(
                    f"a read-only mapping of {size} bytes is larger than its {file_size}-byte file"
                )
            nf.set_size(fd, size)  # 2.7
        path = nf.fd_path(fd)
    except OSAPIError as exc:
        nf.close_quietly(fd)
        raise from_os_error(exc, "CreateFileMapping") from None
    except BaseException:
        nf.close_quietly(fd)
        raise
    record = store.Record(store.KIND_FILE, int(protect), size, os.getpid(), text, path, dev, ino)
    return fd, 0, record


def open_user_file(file: FileArg, writable: bool) -> int:
    """An fd of our own for the user's file, checked against the protection."""
    try:
        if isinstance(file, str | os.PathLike):
            return nf.open_file(file, write=writable)
        raw = file if isinstance(file, int) else file.fileno()
        if not nf.fd_is_readable(raw) or (writable and not nf.fd_is_writable(raw)):
            raise AccessDeniedError(
                "the file's open mode does not allow this protection"
                " (PAGE_READWRITE needs a file opened for reading and writing)"
            )
        return nf.dup(raw)
    except OSAPIError as exc:
        raise from_os_error(exc, "open the mapping's file") from None


def reopen_backing_file(name: str, record: store.Record, write: bool) -> int:
    """Open the file a named file-backed mapping was created over, checking
    it is still the same file (Linux cannot pin it as Windows does)."""
    try:
        fd = nf.open_file(record.path, write=write)
    except OSAPIError as exc:
        if exc.errno == 2:
            raise MappingNotFoundError(name, f"its file {record.path} is gone") from None
        raise
    dev, ino, _ = nf.file_identity(fd)
    if (dev, ino) != (record.dev, record.ino):
        nf.close_quietly(fd)
        raise MappingNotFoundError(name, f"its file {record.path} was replaced")
    return fd
