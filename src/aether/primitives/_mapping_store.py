"""Named mappings across processes: records, leases and the name's lifetime.

Rules (the lifetime of reference 2.41-2.43, and robust against SIGKILL):

1. A named mapping is one *record* file ``<sha256>.map`` in its namespace
   directory: a 64 KiB header (what the object is) followed, for
   memory-backed objects, by the object's bytes.
2. Every open handle holds a *lease*: its own open file description of the
   record with a shared ``flock``. The kernel drops a lease when its holder
   closes it or dies, however it dies.
3. A record is born complete and leased: it is written in an unnamed inode,
   leased, then linked under its name (``link(2)`` is exclusive).
4. The closer of a handle tries to turn its lease into an exclusive lock
   without waiting. Success means no other lease exists: it is the last
   holder, and it unlinks the record before letting go. Views keep their own
   mapping of the inode, so they outlive the name (reference 2.42).
5. A holder that dies leaves a record nobody leases. Whoever next opens it
   (or :func:`sweep`) gets the exclusive lock at once, knows it is stale,
   and unlinks it: to them the name does not exist.
6. Whoever takes a lease re-checks, under the lease, that the name still
   points at the same inode, and starts again if a remover got there first.

Only rules 4 and 5 unlink, and only under the exclusive lock, which nobody
can hold while any lease exists; so a live name is never removed.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from aether.errors import BusyResourceError, OSAPIError
from aether.osapi import namedfiles as nf

from ._mapping_errors import MappingNotFoundError, from_os_error

__all__ = ["HEADER_SIZE", "KIND_FILE", "KIND_MEMORY", "Lease", "Record", "create", "open_", "sweep"]

HEADER_SIZE = 0x10000  # keeps data offsets multiples of the 64 KiB granularity
KIND_MEMORY = 1
KIND_FILE = 2
_MAGIC = b"AEMAP\x00\x00\x01"
_FIXED = struct.Struct("<8sIIIIQQQHH")  # magic ver kind protect pid size dev ino nlen plen
_MAX_TEXT = HEADER_SIZE - _FIXED.size
_RETRIES = 16


@dataclass(frozen=True)
class Record:
    """What a record says about its object (immutable after creation)."""

    kind: int
    protect: int
    size: int
    creator_pid: int
    name: str
    path: str = ""
    dev: int = 0
    ino: int = 0

    def encode(self) -> bytes:
        name = self.name.encode("utf-8")
        path = self.path.encode("utf-8", "surrogateescape")
        if len(name) + len(path) > _MAX_TEXT:
            raise ValueError("name and path do not fit the record header")
        fixed = _FIXED.pack(
            _MAGIC, 1, self.kind, self.protect, self.creator_pid, self.size,
            self.dev, self.ino, len(name), len(path),
        )
        return fixed + name + path

    @classmethod
    def decode(cls, data: bytes) -> Record:
        """Parse a header, refusing anything malformed (a record is only as
        trustworthy as the processes of its namespace's owner)."""
        if len(data) < _FIXED.size:
            raise ValueError("record header truncated")
        magic, ver, kind, protect, pid, size, dev, ino, nlen, plen = _FIXED.unpack_from(data)
        if magic != _MAGIC or ver != 1 or kind not in (KIND_MEMORY, KIND_FILE):
            raise ValueError("not a mapping record")
        if size <= 0 or nlen + plen > _MAX_TEXT or _FIXED.size + nlen + plen > len(data):
            raise ValueError("record header out of bounds")
        start = _FIXED.size
        name = data[start:start + nlen].decode("utf-8")
        path = data[start + nlen:start + nlen + plen].decode("utf-8", "surrogateescape")
        return cls(kind, protect, size, pid, name, path, dev, ino)


class Lease:
    """One handle's claim on a name (rule 2). Owns exactly one fd."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path
        self._pid = os.getpid()

    def release(self) -> None:
        """Give the lease up, removing the name if this was the last (rule 4).

        In a forked child that inherited the descriptor, only close it: the
        lock belongs to the description the parent still uses.
        """
        fd, self.fd = self.fd, -1
        if fd < 0:
            return
        try:
            if os.getpid() == self._pid and nf.try_lock_exclusive(fd) and nf.still_named(
                fd, self.path
            ):
                nf.unlink_quietly(self.path)
        except OSAPIError:
            pass  # best effort: a survivor or sweep() removes it (rule 5)
        finally:
            nf.close_quietly(fd)

    @property
    def released(self) -> bool:
        return self.fd < 0


def create(directory: Path, key: str, record: Record, mode: int) -> tuple[Lease, Record, bool]:
    """Create the named record, or lease the live one already there.

    Returns ``(lease, record, created)``; ``record`` is the existing
    object's when ``created`` is False (reference 2.13).
    """
    final = directory / key
    total = HEADER_SIZE + (record.size if record.kind == KIND_MEMORY else 0)
    header = record.encode()
    for _ in range(_RETRIES):
        try:
            fd, tmp = nf.create_unlinked(directory, mode)
        except OSAPIError as exc:
            raise from_os_error(exc, f"create mapping {record.name!r}") from None
        try:
            nf.lease_shared(fd)  # leased before anyone can see it (rule 3)
            nf.pwrite_all(fd, header, 0)
            nf.set_size(fd, total)
            if nf.link_exclusive(fd, tmp, final):
                return Lease(fd, final), record, True
        except OSAPIError as exc:
            nf.close_quietly(fd)
            if exc.errno == 2 and tmp is not None:
                continue  # sweep() took our temporary file before we leased it
            raise from_os_error(exc, f"create mapping {record.name!r}") from None
        except BaseException:
            nf.close_quietly(fd)
            raise
        nf.close_quietly(fd)
        try:
            lease, existing = open_(directory, key, record.name)
        except MappingNotFoundError:
            continue  # it was stale, or went away meanwhile: try again
        return lease, existing, False
    raise BusyResourceError(f"mapping {record.name!r} keeps appearing and vanishing")


def open_(directory: Path, key: str, name: str) -> tuple[Lease, Record]:
    """Lease the live record named ``key``.

    Raises:
        MappingNotFoundError: no record, or only a stale one (removed now).
    """
    final = directory / key
    for _ in range(_RETRIES):
        try:
            fd = nf.open_nofollow(final)
        except OSAPIError as exc:
            if exc.errno == 2:
                raise MappingNotFoundError(name) from None
            raise from_os_error(exc, f"open mapping {name!r}") from None
        try:
            if nf.try_lock_exclusive(fd):  # nobody holds a lease: stale (rule 5)
                if nf.still_named(fd, final):
                    nf.unlink_quietly(final)
                raise MappingNotFoundError(name)
            nf.lease_shared(fd)
            if not nf.still_named(fd, final):  # rule 6
                nf.close_quietly(fd)
                continue
            data = nf.pread_exact(fd, HEADER_SIZE, 0)
        except OSAPIError as exc:
            nf.close_quietly(fd)
            raise from_os_error(exc, f"open mapping {name!r}") from None
        except BaseException:
            nf.close_quietly(fd)
            raise
        try:
            record = Record.decode(data)
        except (ValueError, UnicodeDecodeError) as exc:
            nf.close_quietly(fd)
            raise MappingNotFoundError(name, f"corrupt record: {exc}") from None
        return Lease(fd, final), record
    raise BusyResourceError(f"mapping {name!r} keeps appearing and vanishing")


def sweep(directory: Path) -> int:
    """Remove every stale record (and leftover temporary file) in
    ``directory``; returns how many were removed. Live ones are untouched."""
    removed = 0
    for entry in nf.list_names(directory):
        if not (entry.endswith(".map") or entry.startswith(".tmp-")):
            continue
        path = directory / entry
        try:
            fd = nf.open_nofollow(path)
        except OSAPIError:
            continue
        try:
            if nf.try_lock_exclusive(fd) and nf.still_named(fd, path):
                nf.unlink_quietly(path)
                removed += 1
        except OSAPIError:
            pass
        finally:
            nf.close_quietly(fd)
    return removed
