"""Protections, access rights and the checks between them (reference 2.4).

Pure functions, no I/O: which view a handle may map is decided here, from
three numbers, exactly as Windows decides it (tests on real Windows, via
Wine's and ReactOS's conformance suites):

- the *object's* protection (``PAGE_*``, fixed at creation);
- the *handle's* access (``FILE_MAP_*``/``SECTION_*`` rights, fixed when the
  handle was created or opened);
- the *view's* desired access.

A write view needs the handle's MAP_WRITE right and a writable object; a
read, copy or no-access view needs MAP_READ (so a write-only handle cannot
map a read view, reference 2.26, although Linux itself cannot express a
write-only mapping); an execute view also needs MAP_EXECUTE and a
``PAGE_EXECUTE_*`` object.
"""

from __future__ import annotations

import enum
import mmap
from dataclasses import dataclass

from aether.errors import AccessDeniedError, InvalidParameterError

__all__ = [
    "FILE_MAP_ALL_ACCESS",
    "GRANULARITY",
    "Access",
    "Protect",
    "ViewKind",
    "handle_access_for_existing",
    "normalize_open_access",
    "parse_protect",
    "view_kind",
]

GRANULARITY = 0x10000  # dwAllocationGranularity on x86/x64 (reference 2.33)

SECTION_QUERY = 0x0001
SECTION_MAP_WRITE = 0x0002
SECTION_MAP_READ = 0x0004
SECTION_MAP_EXECUTE = 0x0008
SECTION_EXTEND_SIZE = 0x0010
FILE_MAP_ALL_ACCESS = 0xF001F
_KNOWN_ACCESS_BITS = FILE_MAP_ALL_ACCESS | 0x20


class Protect(enum.IntEnum):
    """Object protection (``flProtect`` of CreateFileMapping, reference 2.8)."""

    READONLY = 0x02
    READWRITE = 0x04
    WRITECOPY = 0x08
    EXECUTE_READ = 0x20
    EXECUTE_READWRITE = 0x40
    EXECUTE_WRITECOPY = 0x80

    @property
    def writable(self) -> bool:
        """Whether shared write views of the object are possible."""
        return self in (Protect.READWRITE, Protect.EXECUTE_READWRITE)

    @property
    def executable(self) -> bool:
        return self >= Protect.EXECUTE_READ


class Access(enum.IntFlag):
    """Handle and view access (``FILE_MAP_*``)."""

    COPY = 0x01
    WRITE = 0x02
    READ = 0x04
    EXECUTE = 0x20
    ALL = FILE_MAP_ALL_ACCESS


@dataclass(frozen=True)
class ViewKind:
    """How a permitted view is mapped on Linux.

    Attributes:
        prot: ``PROT_*`` bits for mmap.
        private: True for a copy-on-write (``MAP_PRIVATE``) view.
        win32_protect: the page protection Windows would report.
    """

    prot: int
    private: bool
    win32_protect: int

    @property
    def writable(self) -> bool:
        return bool(self.prot & mmap.PROT_WRITE)


def parse_protect(value: int) -> Protect:
    """The object protection in ``value`` (SEC_* bits already removed).

    Raises:
        InvalidParameterError: PAGE_NOACCESS or any other value (reference 2.9).
    """
    try:
        return Protect(value)
    except ValueError:
        raise InvalidParameterError(f"invalid page protection {value:#x}") from None


def _has_execute(access: int) -> bool:
    return bool(access & (SECTION_MAP_EXECUTE | Access.EXECUTE))


def normalize_open_access(access: int) -> int:
    """The rights a handle opened with ``access`` holds.

    FILE_MAP_COPY asks for FILE_MAP_READ (reference 2.23).
    """
    if access & ~_KNOWN_ACCESS_BITS:
        raise InvalidParameterError(f"unknown access bits {access & ~_KNOWN_ACCESS_BITS:#x}")
    rights = 0
    if access & (SECTION_MAP_READ | Access.COPY):
        rights |= Access.READ
    if access & SECTION_MAP_WRITE:
        rights |= Access.WRITE
    if _has_execute(access):
        rights |= Access.EXECUTE
    return rights


def handle_access_for_existing(protect: int) -> int:
    """Rights CreateFileMapping asks for when the name already exists
    (reference 2.17): READ, plus WRITE for PAGE_READWRITE objects requested,
    plus EXECUTE for PAGE_EXECUTE_* requests."""
    rights = int(Access.READ)
    if protect in (Protect.READWRITE, Protect.EXECUTE_READWRITE):
        rights |= Access.WRITE
    if protect >= Protect.EXECUTE_READ:
        rights |= Access.EXECUTE
    return rights


def view_kind(handle_access: int, protect: Protect, desired: int) -> ViewKind:
    """Check a MapViewOfFile request and say how to map it.

    ``handle_access`` is the handle's rights as :func:`normalize_open_access`
    returns them (READ, WRITE, EXECUTE).

    ``desired`` follows MapViewOfFile: exactly FILE_MAP_COPY (optionally
    with FILE_MAP_EXECUTE) is a copy-on-write view; any request with
    FILE_MAP_WRITE (including FILE_MAP_ALL_ACCESS) is a read-write view
    (reference 2.30); FILE_MAP_READ a read-only view; 0 a no-access view,
    which Python cannot touch safely and is mapped read-only.

    Raises:
        InvalidParameterError: unknown access bits.
        AccessDeniedError: the handle lacks the right, or the object's
            protection does not allow the view (references 2.25-2.29, 2.32).
    """
    if desired & ~_KNOWN_ACCESS_BITS:
        raise InvalidParameterError(f"unknown view access bits {desired & ~_KNOWN_ACCESS_BITS:#x}")
    execute = bool(desired & Access.EXECUTE)  # only FILE_MAP_EXECUTE asks for it
    plain = desired & ~(SECTION_MAP_EXECUTE | Access.EXECUTE)
    if plain == Access.COPY:
        kind, needs = "copy", Access.READ
    elif plain & Access.WRITE:
        kind, needs = "write", Access.WRITE
    elif plain & Access.READ:
        kind, needs = "read", Access.READ
    else:
        kind, needs = "none", Access.READ
    if not handle_access & needs:
        raise AccessDeniedError(
            f"the handle lacks FILE_MAP_{needs.name} needed for a {kind} view"
        )
    if execute:
        if not handle_access & Access.EXECUTE:
            raise AccessDeniedError("the handle lacks FILE_MAP_EXECUTE")
        if not protect.executable:
            raise AccessDeniedError(
                f"an execute view needs a PAGE_EXECUTE_* mapping, not PAGE_{protect.name}"
            )
    if kind == "write" and not protect.writable:
        raise AccessDeniedError(f"a write view needs a writable mapping, not PAGE_{protect.name}")
    exec_bit = mmap.PROT_EXEC if execute else 0
    read_write = mmap.PROT_READ | mmap.PROT_WRITE | exec_bit
    if kind == "write":
        return ViewKind(read_write, False, 0x40 if execute else 0x04)
    if kind == "copy":
        return ViewKind(read_write, True, 0x80 if execute else 0x08)
    if kind == "read":
        return ViewKind(mmap.PROT_READ | exec_bit, False, 0x20 if execute else 0x02)
    return ViewKind(mmap.PROT_READ, False, 0x01)
