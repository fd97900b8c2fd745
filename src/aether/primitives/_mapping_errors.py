"""Errors of file mappings, each carrying the code Windows reports.

The generic classes live in :mod:`aether.errors`; the ones below add the
codes only mappings produce, and :func:`from_os_error` turns an
:class:`~aether.errors.OSAPIError` from ``osapi`` into the error a Win32
caller would see (translated once, here).
"""

from __future__ import annotations

import errno

from aether.errors import (
    AccessDeniedError,
    AlreadyExistsError,
    InvalidParameterError,
    NotFoundError,
    OSAPIError,
    PrimitiveError,
    Win32Error,
)

__all__ = [
    "DiskFullError",
    "FileInvalidError",
    "MappedAlignmentError",
    "MappingExistsError",
    "MappingNotFoundError",
    "NotEnoughMemoryError",
    "from_os_error",
]


class MappingExistsError(AlreadyExistsError):
    """``FileMapping.create`` found the name in use (ERROR_ALREADY_EXISTS).

    Attributes:
        name: the mapping name, as given.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"a file mapping named {name!r} already exists")


class MappingNotFoundError(NotFoundError):
    """No mapping has this name (ERROR_FILE_NOT_FOUND).

    Attributes:
        name: the mapping name, as given.
    """

    def __init__(self, name: str, detail: str = "") -> None:
        self.name = name
        text = f"no file mapping named {name!r}"
        if detail:
            text += f" ({detail})"
        super().__init__(text)


class MappedAlignmentError(InvalidParameterError):
    """A view offset is not a multiple of the 64 KiB allocation granularity."""

    default_code = Win32Error.ERROR_MAPPED_ALIGNMENT

    def __init__(self, offset: int, granularity: int) -> None:
        self.offset = offset
        self.granularity = granularity
        super().__init__(f"view offset {offset:#x} is not a multiple of {granularity:#x}")


class FileInvalidError(PrimitiveError, ValueError):
    """A file-backed mapping of size 0 over an empty file (ERROR_FILE_INVALID)."""

    default_code = Win32Error.ERROR_FILE_INVALID


class DiskFullError(PrimitiveError, OSError):
    """The file behind a mapping could not be grown (ERROR_DISK_FULL)."""

    default_code = Win32Error.ERROR_DISK_FULL


class NotEnoughMemoryError(PrimitiveError, MemoryError):
    """A read-only mapping larger than its file (STATUS_SECTION_TOO_BIG)."""

    default_code = Win32Error.ERROR_NOT_ENOUGH_MEMORY


def from_os_error(exc: OSAPIError, what: str) -> PrimitiveError:
    """The primitive error for an OS failure while doing ``what``."""
    code = exc.errno
    text = f"{what}: {exc}"
    if code == errno.ENOENT:
        return NotFoundError(text)
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return AccessDeniedError(text)
    if code == errno.EEXIST:
        return AlreadyExistsError(text)
    if code in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return DiskFullError(text)
    if code == errno.ENOMEM:
        return NotEnoughMemoryError(text)
    if code == errno.ELOOP:
        return AccessDeniedError(f"{text} (a symlink stands where a record should)")
    return InvalidParameterError(text)
