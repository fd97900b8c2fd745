"""The global atom table's storage: one file per user, shared by mapping it.

Theory of operation
-------------------
The table is the file ``global.atoms`` in the user's 0700 ``atoms``
namespace directory (:func:`aether.runtime.namespace_dir`). Every process
maps it ``MAP_SHARED`` and changes it only while holding ``flock(LOCK_EX)``
on it, so updates from many processes are serialised and none is lost. The
table therefore lives as long as the file, not as long as the process that
added an atom [1.35], and disappears with the runtime directory at logout,
which matches Windows' per-session global table [1.36].

Crash safety. ``flock`` is released by the kernel when its holder dies, so a
process killed while holding the lock never blocks the others. What it may
leave is a half-done update. Every change therefore goes through an undo
journal in the file itself:

1. begin: bump ``tx_seq``, then set ``active = 1`` (one byte, cannot tear);
2. before each write, append a record ``(seq, offset, length, crc32)`` +
   the *old* bytes; the record is complete before the table is touched;
3. commit: set ``active = 0``.

Whoever takes the lock next and finds ``active == 1`` walks the records
whose ``seq`` is current and whose CRC matches, and restores the old bytes
in reverse order; a torn record fails its CRC and its write never happened.
The killed operation is thus undone entirely (its caller never got an
answer). Only a process crash is covered: the file is on tmpfs and does not
outlive a reboot, as on Windows.

Layout (little-endian)::

    0      header      magic, version, slots, buckets, slot_size, count, generation
    256    journal     active u8 @256, tx_seq u64 @264, records @272 .. 4096
    4096   buckets     4096 x u32: first slot + 1 of each hash chain (0 = empty)
    20480  used map    16384 x u8: 1 if the slot holds an atom
    36864  slots       16384 x 528: refcount u32, hash u32, next u32 (slot+1),
                                    nbytes u16, flags u16, name UTF-16-LE [512]

A string atom's value is ``0xC000 + slot``; a new atom takes the lowest free
slot, as Wine does [1.22].

Nothing read from the file is trusted blindly: indices, lengths and chain
lengths are bounds-checked and a violation raises
:class:`AtomTableCorruptError` instead of looping or reading out of range.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import weakref
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

from aether.errors import ClosedResourceError, InvalidHandleError, InvalidParameterError
from aether.osapi.tablefile import SharedTableFile, open_table_file

from ._atom_names import (
    MAX_STRING_ATOMS,
    AtomName,
    AtomTableCorruptError,
    AtomTableFullError,
    fold,
)

TABLE_FILE_NAME: Final = "global.atoms"
MAGIC: Final = b"AETHATOM"
VERSION: Final = 1
SLOTS: Final = MAX_STRING_ATOMS
BUCKETS: Final = 4096
NAME_BYTES: Final = 512
SLOT_SIZE: Final = 16 + NAME_BYTES

_HEADER = struct.Struct("<8sIIIIIIQ")  # magic version slots buckets slot_size count rsv gen
OFF_COUNT: Final = 24
OFF_GENERATION: Final = 32
OFF_ACTIVE: Final = 256
OFF_SEQ: Final = 264
OFF_RECORDS: Final = 272
JOURNAL_END: Final = 4096
OFF_BUCKETS: Final = 4096
OFF_USED: Final = OFF_BUCKETS + 4 * BUCKETS
OFF_SLOTS: Final = OFF_USED + SLOTS
FILE_SIZE: Final = OFF_SLOTS + SLOTS * SLOT_SIZE

_U32 = struct.Struct("<I")
_COUNTS = struct.Struct("<IIQ")  # count reserved generation, at OFF_COUNT
_U64 = struct.Struct("<Q")
_SLOT = struct.Struct("<IIIHH")  # refcount hash next nbytes flags
_REC = struct.Struct("<QIIII")  # seq offset length crc pad
_REC_PREFIX = struct.Struct("<QII")
MAX_REFCOUNT: Final = 0xFFFFFFFF

# Set by tests to stop a process in the middle of an update (then SIGKILL it).
CrashHook = Callable[[str], None]

_stores: weakref.WeakSet[FileAtomStore] = weakref.WeakSet()
_fork_epoch = 0


def _after_fork_in_child() -> None:
    # A forked child shares the parent's open file description, and with it
    # the parent's flock: it must reopen the file before using the table.
    global _fork_epoch
    _fork_epoch += 1
    for store in list(_stores):
        store._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def key_hash(key: str) -> int:
    """Hash of a folded name (CRC-32 of its UTF-16-LE bytes)."""
    return zlib.crc32(key.encode("utf-16-le", "surrogatepass"))


def _pad8(n: int) -> int:
    return (n + 7) & ~7


def _target_ok(offset: int, n: int) -> bool:
    """A journal record may restore the header or the table, never the journal."""
    return offset + n <= OFF_ACTIVE or (offset >= JOURNAL_END and offset + n <= FILE_SIZE)


def _initialize(mm: mmap.mmap) -> None:
    _HEADER.pack_into(mm, 0, MAGIC, VERSION, SLOTS, BUCKETS, SLOT_SIZE, 0, 0, 0)


class _Journal:
    """The undo journal (see the module docstring for the protocol)."""

    def __init__(self, mm: mmap.mmap) -> None:
        self.mm = mm
        self.seq = 0
        self.pos = -1  # -1: no transaction open
        self.crash_hook: CrashHook | None = None

    def _begin(self) -> None:
        self.seq = _U64.unpack_from(self.mm, OFF_SEQ)[0] + 1
        _U64.pack_into(self.mm, OFF_SEQ, self.seq)
        self.mm[OFF_ACTIVE] = 1
        self.pos = OFF_RECORDS

    def write(self, offset: int, data: bytes) -> None:
        """Journal the old bytes at ``offset``, then write ``data`` there."""
        if self.pos < 0:
            self._begin()
        mm, n, pos = self.mm, len(data), self.pos
        end = pos + _REC.size + n
        if end > JOURNAL_END:
            raise RuntimeError("atom table transaction too large for the journal")
        old = mm[offset : offset + n]
        crc = zlib.crc32(old, zlib.crc32(_REC_PREFIX.pack(self.seq, offset, n)))
        # One record = header + old bytes. The order of its bytes does not
        # matter: a record cut short fails its CRC and is ignored.
        mm[pos:end] = _REC.pack(self.seq, offset, n, crc, 0) + old
        self.pos = _pad8(end)
        mm[offset : offset + n] = data
        if self.crash_hook is not None:
            self.crash_hook(f"wrote {n} bytes at {offset}")

    def commit(self) -> None:
        if self.pos >= 0:
            self.mm[OFF_ACTIVE] = 0
            self.pos = -1

    def rollback(self) -> int:
        """Undo an unfinished transaction (ours or a dead process's).

        Returns the number of writes undone.
        """
        mm = self.mm
        self.pos = -1
        if not mm[OFF_ACTIVE]:
            return 0
        seq = _U64.unpack_from(mm, OFF_SEQ)[0]
        undo: list[tuple[int, bytes]] = []
        pos = OFF_RECORDS
        while pos + _REC.size <= JOURNAL_END:
            rseq, offset, n, crc, _pad = _REC.unpack_from(mm, pos)
            data_end = pos + _REC.size + n
            if rseq != seq or data_end > JOURNAL_END or not _target_ok(offset, n):
                break
            old = mm[pos + _REC.size : data_end]
            if zlib.crc32(old, zlib.crc32(_REC_PREFIX.pack(rseq, offset, n))) != crc:
                break
            undo.append((offset, old))
            pos += _REC.size + _pad8(n)
        for offset, old in reversed(undo):
            mm[offset : offset + len(old)] = old
        mm[OFF_ACTIVE] = 0
        return len(undo)


class _Guard:
    """Context manager for :meth:`FileAtomStore._locked` (cheaper than a
    generator-based one on this hot path)."""

    __slots__ = ("store",)

    def __init__(self, store: FileAtomStore) -> None:
        self.store = store

    def __enter__(self) -> mmap.mmap:
        return self.store._enter()

    def __exit__(self, exc_type: type[BaseException] | None, exc: object, tb: object) -> None:
        self.store._exit(exc_type is None)


class FileAtomStore:
    """String-atom storage in the shared table file; indices are slots."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._file = self._open()
        self._epoch = _fork_epoch
        self.recoveries = 0  # unfinished updates rolled back by this process
        self._guard = _Guard(self)
        _stores.add(self)

    # -- opening and locking ------------------------------------------------

    def _open(self) -> SharedTableFile:
        table = open_table_file(self.directory, TABLE_FILE_NAME, FILE_SIZE, _initialize)
        try:
            magic, version, slots, buckets, slot_size, count, _rsv, _gen = _HEADER.unpack_from(
                table.mm, 0
            )
            if (magic, version, slots, buckets, slot_size) != (
                MAGIC,
                VERSION,
                SLOTS,
                BUCKETS,
                SLOT_SIZE,
            ) or count > SLOTS:
                raise AtomTableCorruptError(f"{table.path}: not an Aether v{VERSION} atom table")
        except BaseException:
            table.close()
            raise
        self._journal = _Journal(table.mm)
        return table

    @property
    def path(self) -> Path:
        return self._file.path

    @property
    def crash_hook(self) -> CrashHook | None:
        return self._journal.crash_hook

    @crash_hook.setter
    def crash_hook(self, hook: CrashHook | None) -> None:
        self._journal.crash_hook = hook

    def close(self) -> None:
        self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.fd < 0

    def _locked(self) -> _Guard:
        """``with self._locked() as mm``: the table, locked against threads and
        processes; commits on success, rolls back on any exception."""
        return self._guard

    def _enter(self) -> mmap.mmap:
        self._lock.acquire()
        try:
            if self._epoch != _fork_epoch:
                hook = self._journal.crash_hook
                self._file.close()
                self._file = self._open()
                self._journal.crash_hook = hook
                self._epoch = _fork_epoch
            if self.closed:
                raise ClosedResourceError("the atom table is closed")
            self._file.lock()
        except BaseException:
            self._lock.release()
            raise
        try:
            if self._journal.rollback():
                self.recoveries += 1
        except BaseException:
            self._exit(False)
            raise
        return self._file.mm

    def _exit(self, ok: bool) -> None:
        try:
            if ok:
                self._journal.commit()
            else:
                self._journal.rollback()
        finally:
            try:
                self._file.unlock()
            finally:
                self._lock.release()

    # -- reading helpers (caller holds the lock) ------------------------------

    @staticmethod
    def _corrupt(what: str) -> AtomTableCorruptError:
        return AtomTableCorruptError(f"global atom table: {what}")

    def _slot(self, mm: mmap.mmap, index: int) -> tuple[int, int, int, int]:
        refcount, hsh, nxt, nbytes, _flags = _SLOT.unpack_from(mm, OFF_SLOTS + index * SLOT_SIZE)
        if nbytes > NAME_BYTES - 2 or nbytes % 2 or nxt > SLOTS:
            raise self._corrupt(f"slot {index} is malformed")
        return refcount, hsh, nxt, nbytes

    def _name(self, mm: mmap.mmap, index: int, nbytes: int) -> str:
        start = OFF_SLOTS + index * SLOT_SIZE + _SLOT.size
        return mm[start : start + nbytes].decode("utf-16-le", "surrogatepass")

    def _used(self, mm: mmap.mmap, index: int) -> bool:
        return 0 <= index < SLOTS and mm[OFF_USED + index] == 1

    def _chain(self, mm: mmap.mmap, bucket: int) -> Iterator[int]:
        link = _U32.unpack_from(mm, OFF_BUCKETS + 4 * bucket)[0]
        for _step in range(SLOTS + 1):
            if link == 0:
                return
            index = link - 1
            if not self._used(mm, index):
                raise self._corrupt(f"bucket {bucket} links to free slot {index}")
            yield index
            link = self._slot(mm, index)[2]
        raise self._corrupt(f"bucket {bucket} has a cycle")

    def _lookup(self, mm: mmap.mmap, key: str, hsh: int) -> int | None:
        for index in self._chain(mm, hsh % BUCKETS):
            _rc, slot_hash, _nxt, nbytes = self._slot(mm, index)
            if slot_hash == hsh and fold(self._name(mm, index, nbytes)) == key:
                return index
        return None

    def _count(self, mm: mmap.mmap) -> int:
        return int(_U32.unpack_from(mm, OFF_COUNT)[0])

    def _set_count(self, mm: mmap.mmap, count: int) -> None:
        """Write the atom count and bump the generation, in one journaled write."""
        _count, reserved, gen = _COUNTS.unpack_from(mm, OFF_COUNT)
        self._journal.write(
            OFF_COUNT, _COUNTS.pack(count, reserved, (gen + 1) & 0xFFFFFFFFFFFFFFFF)
        )

    # -- operations --------------------------------------------------------------

    def add(self, name: AtomName) -> int:
        """Add a reference to ``name``; returns its slot [1.17]."""
        hsh = key_hash(name.key)
        encoded = name.text.encode("utf-16-le", "surrogatepass")
        with self._locked() as mm:
            index = self._lookup(mm, name.key, hsh)
            journal = self._journal
            if index is not None:
                refcount = self._slot(mm, index)[0]
                if refcount >= MAX_REFCOUNT:
                    raise InvalidParameterError(f"atom {0xC000 + index:#x}: reference count full")
                journal.write(OFF_SLOTS + index * SLOT_SIZE, _U32.pack(refcount + 1))
                return index
            count = self._count(mm)
            if count >= SLOTS:
                raise AtomTableFullError(f"the global atom table holds {SLOTS} string atoms")
            found = mm.find(b"\0", OFF_USED, OFF_USED + SLOTS)
            if found < 0:
                raise self._corrupt(f"count is {count} but no slot is free")
            index = found - OFF_USED
            bucket_off = OFF_BUCKETS + 4 * (hsh % BUCKETS)
            head = _U32.unpack_from(mm, bucket_off)[0]
            journal.write(
                OFF_SLOTS + index * SLOT_SIZE,
                _SLOT.pack(1, hsh, head, len(encoded), 0) + encoded,
            )
            journal.write(OFF_USED + index, b"\x01")
            journal.write(bucket_off, _U32.pack(index + 1))
            self._set_count(mm, count + 1)
            return index

    def find(self, key: str) -> int | None:
        hsh = key_hash(key)
        with self._locked() as mm:
            return self._lookup(mm, key, hsh)

    def delete(self, index: int, expect_key: str | None = None) -> int:
        """Drop one reference; remove the atom at 0 [1.18]. Returns what is left.

        Raises:
            InvalidHandleError: no atom in that slot [1.21], or (with
                ``expect_key``) it now names another string.
        """
        with self._locked() as mm:
            if not self._used(mm, index):
                raise InvalidHandleError(f"atom {0xC000 + index:#x} is not in the table")
            refcount, hsh, nxt, nbytes = self._slot(mm, index)
            if expect_key is not None and fold(self._name(mm, index, nbytes)) != expect_key:
                raise InvalidHandleError(f"atom {0xC000 + index:#x} now names another string")
            journal = self._journal
            slot_off = OFF_SLOTS + index * SLOT_SIZE
            if refcount > 1:
                journal.write(slot_off, _U32.pack(refcount - 1))
                return refcount - 1
            bucket = hsh % BUCKETS
            prev: int | None = None
            for other in self._chain(mm, bucket):
                if other == index:
                    break
                prev = other
            else:
                raise self._corrupt(f"slot {index} is missing from its hash chain")
            if prev is None:
                journal.write(OFF_BUCKETS + 4 * bucket, _U32.pack(nxt))
            else:
                journal.write(OFF_SLOTS + prev * SLOT_SIZE + 8, _U32.pack(nxt))
            journal.write(slot_off, bytes(_SLOT.size))
            journal.write(OFF_USED + index, b"\x00")
            self._set_count(mm, self._count(mm) - 1)
            return 0

    def query(self, index: int) -> tuple[str, int]:
        """``(name, refcount)`` of the atom in ``index``.

        Raises:
            InvalidHandleError: no atom there [1.21].
        """
        with self._locked() as mm:
            if not self._used(mm, index):
                raise InvalidHandleError(f"atom {0xC000 + index:#x} is not in the table")
            refcount, _h, _n, nbytes = self._slot(mm, index)
            return self._name(mm, index, nbytes), refcount

    def snapshot(self) -> list[tuple[int, str, int]]:
        """Every atom as ``(slot, name, refcount)``, in slot order, at one instant."""
        with self._locked() as mm:
            result = []
            pos = mm.find(b"\x01", OFF_USED, OFF_USED + SLOTS)
            while pos >= 0:
                index = pos - OFF_USED
                refcount, _h, _n, nbytes = self._slot(mm, index)
                result.append((index, self._name(mm, index, nbytes), refcount))
                pos = mm.find(b"\x01", pos + 1, OFF_USED + SLOTS)
            return result

    def count(self) -> int:
        with self._locked() as mm:
            return self._count(mm)

    def generation(self) -> int:
        """Committed structural changes so far (an atom added or removed)."""
        with self._locked() as mm:
            return int(_U64.unpack_from(mm, OFF_GENERATION)[0])

    def verify(self) -> None:
        """Check every invariant of the file; raise :class:`AtomTableCorruptError`.

        Invariants: the used map, the count and the hash chains agree; every
        used slot sits in the chain of its hash, once; its stored hash is the
        hash of its folded name; its refcount is at least 1; no two atoms
        share a folded name.
        """
        with self._locked() as mm:
            used = {i for i in range(SLOTS) if mm[OFF_USED + i]}
            if any(mm[OFF_USED + i] not in (0, 1) for i in range(SLOTS)):
                raise self._corrupt("used map holds values other than 0/1")
            if len(used) != self._count(mm):
                raise self._corrupt(f"count {self._count(mm)} but {len(used)} slots used")
            seen: set[int] = set()
            keys: set[str] = set()
            for bucket in range(BUCKETS):
                for index in self._chain(mm, bucket):
                    refcount, hsh, _nxt, nbytes = self._slot(mm, index)
                    key = fold(self._name(mm, index, nbytes))
                    if index in seen:
                        raise self._corrupt(f"slot {index} is linked twice")
                    if hsh != key_hash(key) or hsh % BUCKETS != bucket:
                        raise self._corrupt(f"slot {index} is in the wrong chain")
                    if refcount < 1 or nbytes == 0:
                        raise self._corrupt(f"slot {index} is empty but used")
                    if key in keys:
                        raise self._corrupt(f"name of slot {index} appears twice")
                    seen.add(index)
                    keys.add(key)
            if seen != used:
                raise self._corrupt(f"{len(used - seen)} used slots are in no chain")
