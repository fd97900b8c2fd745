"""Atom tables: 16-bit numbers that stand for case-insensitive strings.

Two kinds of table, as on Windows (``docs/primitives.md``):

- :class:`GlobalAtomTable` is shared by every process of the same user and
  outlives the process that added an atom; it is a file in the user's 0700
  runtime directory, updated under ``flock`` with an undo journal, so many
  processes can add and delete at once and one killed mid-update is rolled
  back by the next (see :mod:`aether.primitives._atom_store`).
- :class:`LocalAtomTable` lives in one process (default 37 hash buckets).

Security boundary: a table belongs to exactly one uid. The file is refused
unless it is ours and closed to everyone else, so no other user can read it
or corrupt it. Windows' global table is readable and writable by every
process of the session [1.40]; a table shared *between* users would have to
be owned by a service that checks each request, which Aether does not offer.

Example::

    >>> table = LocalAtomTable()
    >>> atom = table.add("Foobar")
    >>> hex(atom), table.find("FOOBAR") == atom, table.get_name(atom)
    ('0xc000', True, 'Foobar')
    >>> table.add("#1234"), table.get_name(1234)
    (1234, '#1234')
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from aether.errors import InvalidParameterError, NotFoundError
from aether.runtime import namespace_dir

from ._atom_local import DEFAULT_BUCKETS, MemoryAtomStore
from ._atom_names import (
    MAX_ATOM_LEN,
    MAX_STRING_ATOMS,
    MAXINTATOM,
    AtomName,
    AtomTableCorruptError,
    AtomTableFullError,
    check_atom_value,
    integer_atom_name,
    is_string_atom,
    parse_atom,
    parse_integer_name,
)
from ._atom_store import FileAtomStore

__all__ = [
    "DEFAULT_BUCKETS",
    "MAXINTATOM",
    "MAX_ATOM_LEN",
    "MAX_STRING_ATOMS",
    "AtomInfo",
    "AtomName",
    "AtomTable",
    "AtomTableCorruptError",
    "AtomTableFullError",
    "GlobalAtomTable",
    "LocalAtomTable",
    "integer_atom_name",
    "parse_atom",
    "parse_integer_name",
]


@dataclass(frozen=True, slots=True)
class AtomInfo:
    """One string atom as seen at one instant."""

    atom: int
    name: str
    refcount: int


class _Store(Protocol):
    def add(self, name: AtomName) -> int: ...
    def find(self, key: str) -> int | None: ...
    def delete(self, index: int, expect_key: str | None = None) -> int: ...
    def query(self, index: int) -> tuple[str, int]: ...
    def snapshot(self) -> list[tuple[int, str, int]]: ...
    def count(self) -> int: ...


class AtomTable:
    """Operations common to both tables. Integer atoms (1-0xBFFF) never touch
    the store: they have no storage and no reference count [1.13-1.16]."""

    _store: _Store

    def add(self, name: str | int) -> int:
        """Add ``name`` (or a reference to it) and return its atom.

        A string takes a value 0xC000-0xFFFF; adding it again returns the same
        atom and counts one more reference [1.17]. ``"#dddd"`` and ints
        1-0xBFFF are integer atoms, returned as they are [1.10-1.13].

        Raises:
            InvalidNameError: ``""`` [1.8].
            InvalidParameterError: over 255 characters, ``"#0"``,
                ``"#49152"``, or an int outside 1-0xBFFF [1.3, 1.11, 1.13].
            AtomTableFullError: 16,384 string atoms exist (ERROR_NOT_ENOUGH_MEMORY) [1.38].
        """
        parsed = parse_atom(name)
        if isinstance(parsed, int):
            return parsed
        return MAXINTATOM + self._store.add(parsed)

    def find(self, name: str | int) -> int:
        """The atom of ``name``, compared without case [1.4, 1.5].

        Raises:
            NotFoundError: no such string atom (ERROR_FILE_NOT_FOUND).
            InvalidNameError, InvalidParameterError: as for :meth:`add`.
        """
        parsed = parse_atom(name)
        if isinstance(parsed, int):
            return parsed  # integer atoms are found without being added [1.14]
        index = self._store.find(parsed.key)
        if index is None:
            raise NotFoundError(f"no atom named {parsed.text[:64]!r}")
        return MAXINTATOM + index

    def delete(self, atom: int, *, name: str | None = None) -> int:
        """Drop one reference to ``atom``; it is removed at zero [1.18].

        Args:
            name: if given, delete only if ``atom`` still names this string
                (guards against deleting a value that was freed and reused).

        Returns:
            The references left (0 once removed). Integer atoms are not
            counted: deleting one does nothing and returns 1 [1.15].

        Raises:
            InvalidHandleError: no such string atom [1.21].
            InvalidParameterError: 0 or not a 16-bit value.
        """
        check_atom_value(atom)
        if not is_string_atom(atom):
            return 1
        expect = None if name is None else AtomName.from_str(name).key
        return self._store.delete(atom - MAXINTATOM, expect)

    def get_name(self, atom: int) -> str:
        """The string of ``atom`` with the case it was first added in [1.4];
        ``"#n"`` for an integer atom [1.16].

        Raises:
            InvalidHandleError: no such string atom [1.21].
            InvalidParameterError: atom 0 [1.16].
        """
        check_atom_value(atom)
        if not is_string_atom(atom):
            return integer_atom_name(atom)
        return self._store.query(atom - MAXINTATOM)[0]

    def refcount(self, atom: int) -> int:
        """References held on ``atom`` (integer atoms report 1 [1.14])."""
        check_atom_value(atom)
        if not is_string_atom(atom):
            return 1
        return self._store.query(atom - MAXINTATOM)[1]

    def info(self, atom: int) -> AtomInfo:
        check_atom_value(atom)
        if not is_string_atom(atom):
            return AtomInfo(atom, integer_atom_name(atom), 1)
        name, refcount = self._store.query(atom - MAXINTATOM)
        return AtomInfo(atom, name, refcount)

    def __iter__(self) -> Iterator[AtomInfo]:
        """The string atoms, in atom order, as a snapshot taken now."""
        return iter([AtomInfo(MAXINTATOM + i, name, rc) for i, name, rc in self._store.snapshot()])

    def __len__(self) -> int:
        """The number of string atoms."""
        return self._store.count()

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str | int):
            return False
        try:
            self.find(name)
        except (NotFoundError, InvalidParameterError, ValueError):
            return False
        return True


class LocalAtomTable(AtomTable):
    """A table private to this process, gone when it exits [1.30, 1.34].

    Args:
        buckets: number of hash chains (Windows' default 37; the seed's
            ``InitAtomTable`` argument). Raises InvalidParameterError outside 1-0xFFFF.
    """

    def __init__(self, buckets: int = DEFAULT_BUCKETS) -> None:
        self._local = MemoryAtomStore(buckets)
        self._store = self._local

    @property
    def buckets(self) -> int:
        return self._local.buckets

    def __repr__(self) -> str:
        return f"<LocalAtomTable buckets={self.buckets} atoms={len(self)}>"


_default_lock = threading.Lock()
_default_tables: dict[tuple[str | None, str | None, int, int], GlobalAtomTable] = {}


class GlobalAtomTable(AtomTable):
    """The calling user's global table, shared by all their processes [1.35, 1.36].

    Args:
        directory: where the table file lives; default
            ``aether.runtime.namespace_dir("atoms")`` (honours
            ``AETHER_RUNTIME_DIR``). It must be a private (0700) directory.

    Raises:
        OSAPIError: the directory or file is not private to this user.
        AtomTableCorruptError: the file is not a valid table.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self._file_store = FileAtomStore(namespace_dir("atoms") if directory is None else directory)
        self._store = self._file_store

    @classmethod
    def default(cls) -> GlobalAtomTable:
        """A shared instance for the current runtime directory (used by the
        Win32 face and the CLI); reopened if the environment changes."""
        key = (
            os.environ.get("AETHER_RUNTIME_DIR"),
            os.environ.get("XDG_RUNTIME_DIR"),
            os.geteuid(),
            os.getpid(),
        )
        with _default_lock:
            table = _default_tables.get(key)
            if table is None or table.closed:
                table = cls()
                _default_tables[key] = table
            return table

    @property
    def path(self) -> Path:
        return self._file_store.path

    @property
    def closed(self) -> bool:
        return self._file_store.closed

    @property
    def recoveries(self) -> int:
        """How many unfinished updates of dead processes this object rolled back."""
        return self._file_store.recoveries

    def generation(self) -> int:
        """A counter bumped by every atom added or removed (by any process)."""
        return self._file_store.generation()

    def verify(self) -> None:
        """Check the file's invariants; raises :class:`AtomTableCorruptError`."""
        self._file_store.verify()

    def close(self) -> None:
        """Unmap the table (idempotent). The atoms stay for other processes."""
        self._file_store.close()

    def __enter__(self) -> GlobalAtomTable:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<GlobalAtomTable {self.path}>"
