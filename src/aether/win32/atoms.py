"""Win32 face of the atom tables: ``GlobalAddAtom`` and friends.

Code written against the seed ports line by line::

    atom = GlobalAddAtom("foobar")              # ATOM, 0 on failure
    buf = create_unicode_buffer(256)
    n = GlobalGetAtomName(atom, buf, 256)        # buf.value == "foobar"
    GlobalDeleteAtom(atom)                        # always 0; check GetLastError()

Conventions (the same for every function of ``aether.win32``):

- failures return what Win32 returns (0 here) and set the thread's last
  error (``GetLastError()``); successes leave it alone [1.9];
- a Python ``int`` where Win32 takes ``LPCTSTR`` is ``MAKEINTATOM(n)``;
- the undecorated names are the Unicode (``W``) functions and take ``str``;
  the ``A`` functions take ``bytes`` in the "ANSI" code page, which Aether
  fixes to UTF-8 (Windows' own ``ACP = 65001`` setting);
- ``lpBuffer`` arguments are writable buffers: for ``A`` functions any byte
  buffer (``bytearray``, :func:`create_string_buffer`, a ctypes char
  array); for ``W`` functions a buffer of 16-bit units
  (:func:`create_unicode_buffer`, ``array.array("H")``) or of 32-bit
  units (a ctypes ``c_wchar`` array on Linux). ``nSize`` counts elements
  and must not exceed the buffer (else ERROR_NOACCESS, where C would fault).

The four different "buffer too small" behaviours of the ``Get*AtomName``
family are reproduced exactly [1.24-1.29]; see
``docs/primitives.md`` for the table.
"""

from __future__ import annotations

import array
import errno
import threading
from typing import Any

from aether.errors import AetherError, OSAPIError, PrimitiveError, Win32Error
from aether.primitives.atoms import (
    DEFAULT_BUCKETS,
    MAXINTATOM,
    AtomTable,
    GlobalAtomTable,
    LocalAtomTable,
)

from ._handles import SetLastError

__all__ = [
    "MAKEINTATOM",
    "MAXINTATOM",
    "AddAtom",
    "AddAtomA",
    "AddAtomW",
    "DeleteAtom",
    "FindAtom",
    "FindAtomA",
    "FindAtomW",
    "GetAtomName",
    "GetAtomNameA",
    "GetAtomNameW",
    "GlobalAddAtom",
    "GlobalAddAtomA",
    "GlobalAddAtomW",
    "GlobalDeleteAtom",
    "GlobalFindAtom",
    "GlobalFindAtomA",
    "GlobalFindAtomW",
    "GlobalGetAtomName",
    "GlobalGetAtomNameA",
    "GlobalGetAtomNameW",
    "InitAtomTable",
    "StringBuffer",
    "WideBuffer",
    "create_string_buffer",
    "create_unicode_buffer",
]

ANSI_CODEPAGE = "utf-8"

# --------------------------------------------------------------------------
# Buffers
# --------------------------------------------------------------------------


class StringBuffer(bytearray):
    """A ``char[]`` buffer; ``.value`` is the bytes before the first NUL."""

    @property
    def value(self) -> bytes:
        end = self.find(0)
        return bytes(self if end < 0 else self[:end])


class WideBuffer(array.array):  # type: ignore[type-arg]
    """A ``WCHAR[]`` buffer of UTF-16 code units; ``.value`` decodes up to NUL."""

    def __new__(cls, size: int) -> WideBuffer:
        return super().__new__(cls, "H", bytes(2 * size))  # type: ignore[return-value]

    @property
    def value(self) -> str:
        units = self.tolist()
        end = units.index(0) if 0 in units else len(units)
        return array.array("H", units[:end]).tobytes().decode("utf-16-le", "surrogatepass")


def create_string_buffer(init: bytes | int, size: int | None = None) -> StringBuffer:
    """Like ``ctypes.create_string_buffer``: a NUL-filled ``char`` buffer."""
    if isinstance(init, int):
        return StringBuffer(init)
    buf = StringBuffer(len(init) + 1 if size is None else size)
    buf[: len(init)] = init
    return buf


def create_unicode_buffer(init: str | int, size: int | None = None) -> WideBuffer:
    """Like ``ctypes.create_unicode_buffer`` but with 16-bit ``WCHAR``s, as on Windows."""
    if isinstance(init, int):
        return WideBuffer(init)
    units = array.array("H", init.encode("utf-16-le", "surrogatepass"))
    buf = WideBuffer(len(units) + 1 if size is None else size)
    buf[: len(units)] = units
    return buf


def _byte_view(buffer: Any) -> memoryview:
    view = memoryview(buffer)
    if view.readonly:
        raise TypeError("lpBuffer must be writable")
    return view.cast("B")


def _wide_view(buffer: Any) -> memoryview:
    view = memoryview(buffer)
    if view.readonly:
        raise TypeError("lpBuffer must be writable")
    if view.itemsize == 2:
        return view.cast("B").cast("H")
    if view.itemsize == 4:
        return view.cast("B").cast("I")
    raise TypeError("a W function needs a buffer of 16- or 32-bit characters")


def _utf16_units(text: str) -> list[int]:
    return array.array("H", text.encode("utf-16-le", "surrogatepass")).tolist()


# --------------------------------------------------------------------------
# Tables and argument handling
# --------------------------------------------------------------------------

_local_lock = threading.Lock()
_local_table: LocalAtomTable | None = None


def _local() -> LocalAtomTable:
    """The process's local table, created with 37 buckets on first use [1.30]."""
    global _local_table
    with _local_lock:
        if _local_table is None:
            _local_table = LocalAtomTable(DEFAULT_BUCKETS)
        return _local_table


def _reset_local_atom_table() -> None:
    """Forget the local table (tests only: a new process starts without one)."""
    global _local_table
    with _local_lock:
        _local_table = None


def _fail(exc: BaseException) -> None:
    """Record ``exc`` as the thread's last error."""
    if isinstance(exc, PrimitiveError):
        SetLastError(exc.win32_code)
    elif isinstance(exc, OSAPIError) and exc.errno in (errno.EACCES, errno.EPERM):
        SetLastError(Win32Error.ERROR_ACCESS_DENIED)
    else:
        SetLastError(Win32Error.ERROR_NOT_ENOUGH_MEMORY)


def _global() -> GlobalAtomTable:
    return GlobalAtomTable.default()


def _ansi(value: bytes | bytearray | int) -> str | int:
    if isinstance(value, int):
        return value
    raw = bytes(value)
    end = raw.find(b"\0")
    return (raw if end < 0 else raw[:end]).decode(ANSI_CODEPAGE, "replace")


def _wide(value: str | int) -> str | int:
    if isinstance(value, int):
        return value
    end = value.find("\0")
    return value if end < 0 else value[:end]


def MAKEINTATOM(i: int) -> int:
    """The ``LPCTSTR`` that stands for integer atom ``i`` (its low 16 bits)."""
    return i & 0xFFFF


def _add_or_find(table_of: Any, name: str | int, find: bool) -> int:
    if isinstance(name, int) and not isinstance(name, bool):
        if name == 0:
            return 0  # MAKEINTATOM(0): 0, last error untouched [1.13]
        if not 0 < name < MAXINTATOM:
            SetLastError(Win32Error.ERROR_INVALID_PARAMETER)
            return 0
        return name  # no table entry [1.13, 1.14]
    try:
        table: AtomTable = table_of()
        return table.find(name) if find else table.add(name)
    except (AetherError, ValueError) as exc:
        _fail(exc)
        return 0


def _query(table_of: Any, atom: int) -> str | None:
    """The name behind ``atom`` or None with the last error set [1.16, 1.21]."""
    if isinstance(atom, bool) or not isinstance(atom, int) or not 0 < atom <= 0xFFFF:
        SetLastError(Win32Error.ERROR_INVALID_PARAMETER)
        return None
    if atom < MAXINTATOM:
        return f"#{atom}"
    try:
        table: AtomTable = table_of()
        return table.get_name(atom)
    except AetherError as exc:
        _fail(exc)
        return None


def _delete(table_of: Any, atom: int) -> bool:
    if isinstance(atom, bool) or not isinstance(atom, int) or not 0 <= atom <= 0xFFFF:
        SetLastError(Win32Error.ERROR_INVALID_PARAMETER)
        return False
    if atom < MAXINTATOM:
        return True  # integer atoms: nothing to do [1.15]
    try:
        table: AtomTable = table_of()
        table.delete(atom)
    except AetherError as exc:
        _fail(exc)
        return False
    return True


# --------------------------------------------------------------------------
# Global table
# --------------------------------------------------------------------------


def GlobalAddAtomW(lpString: str | int) -> int:
    """Add a string (or a reference to it) to the global table; 0 on failure."""
    return _add_or_find(_global, _wide(lpString), find=False)


def GlobalAddAtomA(lpString: bytes | int) -> int:
    return _add_or_find(_global, _ansi(lpString), find=False)


def GlobalFindAtomW(lpString: str | int) -> int:
    """The atom of a string, case-insensitively; 0 + ERROR_FILE_NOT_FOUND if absent."""
    return _add_or_find(_global, _wide(lpString), find=True)


def GlobalFindAtomA(lpString: bytes | int) -> int:
    return _add_or_find(_global, _ansi(lpString), find=True)


def GlobalDeleteAtom(nAtom: int) -> int:
    """Drop one reference. **Always returns 0** [1.20]: to detect failure,
    ``SetLastError(0)`` before and check ``GetLastError()`` after."""
    _delete(_global, nAtom)
    return 0


def GlobalGetAtomNameW(nAtom: int, lpBuffer: Any, nSize: int) -> int:
    """Copy the name; returns its length in WCHARs.

    Too small: copies ``nSize`` units with **no** NUL and returns ``nSize``,
    no error [1.27]. ``nSize`` 0: returns 0, buffer untouched [1.25].
    """
    if nSize <= 0:
        SetLastError(Win32Error.ERROR_MORE_DATA)
        return 0
    view = _wide_view(lpBuffer)
    if nSize > len(view):
        SetLastError(Win32Error.ERROR_NOACCESS)
        return 0
    name = _query(_global, nAtom)
    if name is None:
        return 0
    units = _utf16_units(name)
    length = min(len(units), nSize)
    view[:length] = array.array(view.format, units[:length])
    if length < len(units):
        return nSize
    if length < nSize:
        view[length] = 0
    return length


def GlobalGetAtomNameA(nAtom: int, lpBuffer: Any, nSize: int) -> int:
    """Copy the name; returns its length in bytes.

    Too small: copies ``nSize - 1`` bytes + NUL, returns **0** with
    ERROR_MORE_DATA [1.26, 1.29].
    """
    if nSize <= 0:
        SetLastError(Win32Error.ERROR_MORE_DATA)
        return 0
    view = _byte_view(lpBuffer)
    if nSize > len(view):
        SetLastError(Win32Error.ERROR_NOACCESS)
        return 0
    name = _query(_global, nAtom)
    if name is None:
        return 0
    data = name.encode(ANSI_CODEPAGE, "replace")
    copied = min(len(data), nSize - 1)
    view[:copied] = data[:copied]
    view[copied] = 0
    if len(data) >= nSize:
        SetLastError(Win32Error.ERROR_MORE_DATA)
        return 0
    return len(data)


GlobalAddAtom = GlobalAddAtomW
GlobalFindAtom = GlobalFindAtomW
GlobalGetAtomName = GlobalGetAtomNameW

# --------------------------------------------------------------------------
# Local table
# --------------------------------------------------------------------------


def InitAtomTable(nSize: int) -> bool:
    """Create the local table with ``nSize`` buckets (0: 37) [1.31].

    If the table already exists (made by this call or by any other local
    atom function) it returns True and changes nothing.
    """
    global _local_table
    with _local_lock:
        if _local_table is not None:
            return True
        try:
            _local_table = LocalAtomTable(nSize or DEFAULT_BUCKETS)
        except PrimitiveError as exc:
            _fail(exc)
            return False
        return True


def AddAtomW(lpString: str | int) -> int:
    return _add_or_find(_local, _wide(lpString), find=False)


def AddAtomA(lpString: bytes | int) -> int:
    return _add_or_find(_local, _ansi(lpString), find=False)


def FindAtomW(lpString: str | int) -> int:
    return _add_or_find(_local, _wide(lpString), find=True)


def FindAtomA(lpString: bytes | int) -> int:
    return _add_or_find(_local, _ansi(lpString), find=True)


def DeleteAtom(nAtom: int) -> int:
    """Drop one reference to a local atom: 0 on success, ``nAtom`` on failure [1.19]."""
    return 0 if _delete(_local, nAtom) else nAtom


def GetAtomNameW(nAtom: int, lpBuffer: Any, nSize: int) -> int:
    """Copy a local atom's name; returns its length in WCHARs.

    Too small: copies ``nSize - 1`` units + NUL and returns ``nSize - 1``,
    no error [1.28]; ``nSize`` 1: 0 with ERROR_INSUFFICIENT_BUFFER [1.29].
    """
    if nSize <= 0:
        SetLastError(Win32Error.ERROR_MORE_DATA)
        return 0
    view = _wide_view(lpBuffer)
    if nSize > len(view):
        SetLastError(Win32Error.ERROR_NOACCESS)
        return 0
    name = _query(_local, nAtom)
    if name is None:
        return 0
    units = _utf16_units(name)
    length = min(len(units), nSize - 1)
    view[:length] = array.array(view.format, units[:length])
    view[length] = 0
    if length == 0:
        SetLastError(Win32Error.ERROR_INSUFFICIENT_BUFFER)
    return length


def GetAtomNameA(nAtom: int, lpBuffer: Any, nSize: int) -> int:
    """Copy a local atom's name; returns its length in bytes.

    Too small: ``nSize - 1`` bytes + NUL, returns ``nSize - 1``, no error
    [1.28]; ``nSize`` 1: 0 with ERROR_INSUFFICIENT_BUFFER [1.29].
    """
    if nSize <= 0:
        SetLastError(Win32Error.ERROR_MORE_DATA)
        return 0
    view = _byte_view(lpBuffer)
    if nSize > len(view):
        SetLastError(Win32Error.ERROR_NOACCESS)
        return 0
    name = _query(_local, nAtom)
    if name is None:
        return 0
    data = name.encode(ANSI_CODEPAGE, "replace")
    copied = min(len(data), nSize - 1)
    view[:copied] = data[:copied]
    view[copied] = 0
    if copied == 0:
        SetLastError(Win32Error.ERROR_INSUFFICIENT_BUFFER)
    return copied


AddAtom = AddAtomW
FindAtom = FindAtomW
GetAtomName = GetAtomNameW
