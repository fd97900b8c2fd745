"""Atom names and numbers: the parsing and validation rules of Win32 atoms.

Rules (``win32-ipc-semantics.md`` section 1; item numbers in brackets):

- String atoms are 0xC000-0xFFFF, integer atoms 0x0001-0xBFFF; 0 is never an
  atom [1.1]. A table holds at most 0x4000 string atoms [1.2].
- A string atom name is 1-255 UTF-16 code units [1.3, 1.8], compared without
  regard to case [1.4, 1.6] and only as a whole [1.5].
- ``"#dddd"`` with only ASCII decimal digits after ``#`` is the integer atom
  of that value; leading zeros are unlimited; 0 or >= 0xC000 is an error
  [1.10-1.12]. Anything else (``"#7b"``, ``"# 123"``, ``"123"``) is a string.
  The integer check comes first, so the 255 limit applies to string atoms
  only [1.12].

Names are validated here, once, and become :class:`AtomName` values: a raw
string never reaches the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from aether.errors import InvalidNameError, InvalidParameterError, PrimitiveError, Win32Error

MAXINTATOM: Final = 0xC000
MAX_STRING_ATOMS: Final = 0x4000
MAX_ATOM_LEN: Final = 255

_DIGITS = frozenset("0123456789")


class AtomTableFullError(PrimitiveError, MemoryError):
    """All 16,384 string-atom values of the table are in use [1.2, 1.38]."""

    default_code = Win32Error.ERROR_NOT_ENOUGH_MEMORY


class AtomTableCorruptError(PrimitiveError):
    """The shared table file failed its consistency checks.

    Only reachable if the file was changed by something other than Aether
    (a process killed mid-update is rolled back, see ``_atom_store``).
    """

    default_code = Win32Error.ERROR_FILE_INVALID


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Win32's 255-character limit."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def fold(text: str) -> str:
    """The case-folded key of an atom name.

    Windows upper-cases one character at a time (Wine: ``toupperW``), so a
    character whose upper case is longer (``"ß"`` -> ``"SS"``) stays as it is.
    """
    upper = text.upper()
    if len(upper) == len(text):
        return upper
    return "".join(u if len(u := ch.upper()) == 1 else ch for ch in text)


@dataclass(frozen=True, slots=True)
class AtomName:
    """A validated string-atom name: ``text`` as given, ``key`` folded."""

    text: str
    key: str

    MAX_LEN: ClassVar[int] = MAX_ATOM_LEN

    @classmethod
    def from_str(cls, text: str) -> AtomName:
        """Validate ``text`` as a string-atom name.

        Raises:
            InvalidNameError: empty (ERROR_INVALID_NAME, item 1.8) or contains
                NUL (a Win32 string would end there).
            InvalidParameterError: longer than 255 UTF-16 units (item 1.3).
        """
        if not isinstance(text, str):
            raise InvalidParameterError(f"atom name must be str, not {type(text).__name__}")
        if not text:
            raise InvalidNameError("atom name is empty")
        if "\0" in text:
            raise InvalidNameError("atom name contains NUL")
        length = utf16_len(text)
        if length > MAX_ATOM_LEN:
            raise InvalidParameterError(
                f"atom name is {length} characters, the limit is {MAX_ATOM_LEN}"
            )
        return cls(text, fold(text))


def check_integer_atom(value: int) -> int:
    """Validate an integer atom given as a number (``MAKEINTATOM``) [1.13].

    Raises:
        InvalidParameterError: 0 or outside 1-0xBFFF.
    """
    if not 0 < value < MAXINTATOM:
        raise InvalidParameterError(f"{value:#x} is not an integer atom (1-0xBFFF)")
    return value


def parse_integer_name(text: str) -> int | None:
    """The integer atom named by ``"#dddd"``, or None if ``text`` names a string atom.

    Raises:
        InvalidParameterError: the digits give 0 or a value >= 0xC000 [1.10-1.11].
    """
    if len(text) < 2 or text[0] != "#" or not _DIGITS.issuperset(text[1:]):
        return None
    digits = text[1:].lstrip("0")
    # Leading zeros are unlimited [1.12]; more than 5 significant digits is
    # certainly >= 0xC000, and skipping int() keeps huge inputs cheap.
    value = int(digits) if digits and len(digits) <= 5 else (0 if not digits else MAXINTATOM)
    if value == 0 or value >= MAXINTATOM:
        raise InvalidParameterError(f"{text[:16]!r}: integer atom must be 1-49151")
    return value


def parse_atom(name: str | int) -> int | AtomName:
    """Classify and validate what a caller passed to add/find.

    Returns the integer atom (an ``int``) or a validated :class:`AtomName`.
    """
    if isinstance(name, bool):
        raise InvalidParameterError("atom name must be str or int, not bool")
    if isinstance(name, int):
        return check_integer_atom(name)
    if not isinstance(name, str):
        raise InvalidParameterError(f"atom name must be str or int, not {type(name).__name__}")
    value = parse_integer_name(name)
    if value is not None:
        return value
    return AtomName.from_str(name)


def integer_atom_name(atom: int) -> str:
    """``"#"`` + decimal, no leading zeros [1.16]."""
    return f"#{atom}"


def check_atom_value(atom: int) -> int:
    """Validate an atom number passed to delete/get_name/refcount.

    Raises:
        InvalidParameterError: 0 or outside 16 bits (item 1.16: atom 0 ->
            ERROR_INVALID_PARAMETER).
    """
    if isinstance(atom, bool) or not isinstance(atom, int):
        raise InvalidParameterError(f"atom must be an int, not {type(atom).__name__}")
    if not 0 < atom <= 0xFFFF:
        raise InvalidParameterError(f"{atom:#x} is not an atom (1-0xFFFF)")
    return atom


def is_string_atom(atom: int) -> bool:
    return MAXINTATOM <= atom <= 0xFFFF
