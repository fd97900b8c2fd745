"""File mappings (seed 004): named and unnamed shared memory, and mapped files.

>>> with FileMapping.create("Local\\\\demo", size=4096) as m:        # doctest: +SKIP
...     with m.map_view() as view:
...         view[0:5] = b"hello"

Backing on Linux (see ``docs/primitives.md``):

- unnamed, memory-backed: a sealed ``memfd`` (nobody can find it by name);
- named, memory-backed: a record file in the per-user namespace directory
  holding the bytes after a 64 KiB header (``_mapping_store`` explains the
  lease protocol that makes the name vanish with the last handle, in any
  process, even one killed by SIGKILL);
- file-backed: the user's file; a named one records the file's path and
  identity so other processes can open the same file.

Never built on ``multiprocessing.shared_memory``: on Python 3.11 its
resource tracker unlinks segments other processes still use (threat T36).
"""

from __future__ import annotations

import threading
import warnings
import weakref
from dataclasses import dataclass
from typing import Literal

from aether.errors import (
    AccessDeniedError,
    ClosedResourceError,
    InvalidParameterError,
    OSAPIError,
)
from aether.osapi import namedfiles as nf

from . import _mapping_store as store
from ._mapping_access import (
    FILE_MAP_ALL_ACCESS,
    GRANULARITY,
    Access,
    Protect,
    ViewKind,
    handle_access_for_existing,
    normalize_open_access,
    parse_protect,
    view_kind,
)
from ._mapping_backing import FileArg, prepare_backing, reopen_backing_file
from ._mapping_errors import (
    DiskFullError,
    FileInvalidError,
    MappedAlignmentError,
    MappingExistsError,
    MappingNotFoundError,
    NotEnoughMemoryError,
    from_os_error,
)
from ._mapping_names import MappingName, may_create_global, namespace_for
from ._mapping_view import MappedView

__all__ = [
    "FILE_MAP_ALL_ACCESS",
    "GRANULARITY",
    "Access",
    "DiskFullError",
    "FileInvalidError",
    "FileMapping",
    "MappedAlignmentError",
    "MappedView",
    "MappingExistsError",
    "MappingInfo",
    "MappingName",
    "MappingNotFoundError",
    "NotEnoughMemoryError",
    "Protect",
    "ViewKind",
    "query",
    "sweep_stale",
]



@dataclass(frozen=True)
class MappingInfo:
    """A description of a mapping handle (``aether mapping info``).

    Attributes:
        name: the name as given, or None for an unnamed mapping.
        scope: ``"local"``, ``"global"`` or None (unnamed).
        size: the object's size in bytes.
        protect: the object's protection.
        access: the rights of this handle.
        backing: ``"memory"`` or ``"file"``.
        path: the backing file, for file-backed mappings.
        created: True if this handle created the object.
        creator_pid: the pid of the creating process.
    """

    name: str | None
    scope: str | None
    size: int
    protect: Protect
    access: Access
    backing: Literal["memory", "file"]
    path: str | None
    created: bool
    creator_pid: int

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "scope": self.scope,
            "size": self.size,
            "protect": self.protect.name,
            "access": [
                str(a.name) for a in (Access.READ, Access.WRITE, Access.EXECUTE)
                if normalize_open_access(int(self.access)) & a
            ],
            "backing": self.backing,
            "path": self.path,
            "created": self.created,
            "creator_pid": self.creator_pid,
        }


class FileMapping:
    """A handle to a file-mapping object. Build with :meth:`create`,
    :meth:`open_or_create` or :meth:`open`; close with :meth:`close` or a
    ``with`` block. Closing the handle never invalidates its views."""

    def __init__(
        self,
        *,
        name: MappingName | None,
        size: int,
        protect: Protect,
        access: int,
        backing: Literal["memory", "file"],
        data_fd: int,
        data_offset: int,
        lease: store.Lease | None,
        path: str | None,
        created: bool,
        creator_pid: int,
    ) -> None:
        self._name = name
        self._size = size
        self._protect = protect
        self._access = Access(access)
        self._backing: Literal["memory", "file"] = backing
        self._data_fd = data_fd
        self._data_offset = data_offset
        self._lease = lease
        # a named object's lease also goes at interpreter exit, so the last
        # holder's normal exit removes the name at once (reference 2.43)
        self._finalizer = weakref.finalize(self, _release, lease) if lease else None
        self._path = path
        self._created = created
        self._creator_pid = creator_pid
        self._lock = threading.Lock()

    # ------------------------------------------------------------------
    # Construction
    # ------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        name: str | MappingName | None = None,
        size: int = 0,
        protect: Protect | int = Protect.READWRITE,
        file: FileArg | None = None,
        *,
        mode: int = 0o600,
    ) -> FileMapping:
        """Create a new mapping object.

        Args:
            name: ``None`` for an unnamed object, else a name such as
                ``"Local\\\\cfg"`` or ``"Global\\\\cfg"`` (case-sensitive).
            size: bytes; required (> 0) for memory-backed objects, where it
                is rounded up to whole pages; for file-backed ones 0 means the
                file's size and a larger size grows a writable file.
            protect: PAGE_READONLY, PAGE_READWRITE, PAGE_WRITECOPY or an
                execute variant.
            file: ``None`` for memory; else a path, an fd or a binary file
                object (duplicated; the caller keeps its own).
            mode: permission bits of a named object's record (only other
                users of a ``Global\\\\`` object are affected).

        Raises:
            MappingExistsError: the name is taken (see :meth:`open_or_create`).
            InvalidNameError, InvalidParameterError, AccessDeniedError,
            FileInvalidError, DiskFullError, NotEnoughMemoryError.
        """
        mapping = cls.open_or_create(name, size, protect, file, mode=mode)
        if not mapping.created:
            text = mapping.name or ""
            mapping.close()
            raise MappingExistsError(text)
        return mapping

    @classmethod
    def open_or_create(
        cls,
        name: str | MappingName | None = None,
        size: int = 0,
        protect: Protect | int = Protect.READWRITE,
        file: FileArg | None = None,
        *,
        mode: int = 0o600,
    ) -> FileMapping:
        """CreateFileMapping's own behaviour: create, or if the name exists
        return a handle to the *existing* object with its current size
        (``created`` is then False; reference 2.13)."""
        prot = parse_protect(int(protect))
        parsed = MappingName.parse(name) if name is not None else None
        if parsed is not None:
            existing = cls._open_existing(parsed, handle_access_for_existing(prot))
            if existing is not None:
                return existing
            if parsed.scope == "global" and not may_create_global():
                raise AccessDeniedError("creating Global\\ mappings needs root (2.20)")
        data_fd, _, record = prepare_backing(prot, size, file, parsed)
        if parsed is None:
            return cls(
                name=None, size=record.size, protect=prot, access=FILE_MAP_ALL_ACCESS,
                backing="file" if record.kind == store.KIND_FILE else "memory",
                data_fd=data_fd, data_offset=0, lease=None, path=record.path or None,
                created=True, creator_pid=record.creator_pid,
            )
        nf.close_quietly(data_fd)  # named objects reopen through their record
        try:
            directory = namespace_for(parsed.scope, create=True)
        except OSAPIError as exc:
            raise from_os_error(exc, f"namespace of {parsed.text!r}") from None
        store.sweep(directory)
        lease, found, created = store.create(directory, parsed.key, record, mode)
        access = FILE_MAP_ALL_ACCESS if created else handle_access_for_existing(prot)
        return cls._from_record(parsed, lease, found, access, created)

    @classmethod
    def _open_existing(cls, name: MappingName, access: int) -> FileMapping | None:
        """The live object called ``name``, or None if there is none."""
        try:
            directory = namespace_for(name.scope, create=False)
            lease, record = store.open_(directory, name.key, name.text)
        except (OSAPIError, MappingNotFoundError):
            return None
        return cls._from_record(name, lease, record, access, False)

    @classmethod
    def open(cls, name: str | MappingName, access: Access | int = Access.ALL) -> FileMapping:
        """Open an existing named mapping (OpenFileMapping).

        ``access`` is FILE_MAP_READ, FILE_MAP_WRITE, FILE_MAP_ALL_ACCESS ...;
        FILE_MAP_COPY means FILE_MAP_READ (reference 2.23).

        Raises:
            MappingNotFoundError: no live object has this name (2.22).
            AccessDeniedError: the record's permissions refuse ``access``.
        """
        parsed = MappingName.parse(name)
        rights = normalize_open_access(int(access))
        try:
            directory = namespace_for(parsed.scope, create=False)
        except OSAPIError:
            raise MappingNotFoundError(parsed.text) from None
        lease, record = store.open_(directory, parsed.key, parsed.text)
        return cls._from_record(parsed, lease, record, rights, False)

    @classmethod
    def _from_record(
        cls,
        name: MappingName,
        lease: store.Lease,
        record: store.Record,
        access: int,
        created: bool,
    ) -> FileMapping:
        try:
            protect = parse_protect(record.protect)
            write = bool(access & Access.WRITE) and protect.writable
            if record.kind == store.KIND_MEMORY:
                data_fd = nf.reopen(lease.fd, write=write)
                offset = store.HEADER_SIZE
            else:
                data_fd = reopen_backing_file(name.text, record, write)
                offset = 0
        except OSAPIError as exc:
            lease.release()
            raise from_os_error(exc, f"open mapping {name.text!r}") from None
        except BaseException:
            lease.release()
            raise
        return cls(
            name=name, size=record.size, protect=protect, access=access,
            backing="memory" if record.kind == store.KIND_MEMORY else "file",
            data_fd=data_fd, data_offset=offset, lease=lease, path=record.path or None,
            created=created, creator_pid=record.creator_pid,
        )

    # ------------------------------------------------------------------
    # Views
    # ------------------------------------------------------------------

    def map_view(
        self, access: Access | int | None = None, offset: int = 0, size: int = 0
    ) -> MappedView:
        """Map ``size`` bytes from ``offset`` (MapViewOfFile).

        Args:
            access: FILE_MAP_READ, FILE_MAP_WRITE, FILE_MAP_COPY (private
                copy-on-write), optionally | FILE_MAP_EXECUTE; None picks
                WRITE when this handle and the object allow it, else READ.
            offset: a multiple of :data:`GRANULARITY` (64 KiB).
            size: 0 maps to the end of the object.

        Raises:
            MappedAlignmentError: offset not a multiple of 64 KiB (2.33).
            AccessDeniedError: access refused (2.25-2.29), or the view would
                pass the end of the object (2.36).
            ClosedResourceError: this handle is closed.
        """
        with self._lock:
            if self._data_fd < 0:
                raise ClosedResourceError("the file mapping handle is closed")
            if access is None:
                can_write = self._access & Access.WRITE and self._protect.writable  # raw 0x2
                access = Access.WRITE if can_write else Access.READ
            rights = normalize_open_access(int(self._access))
            kind = view_kind(rights, self._protect, int(access))
            length = _view_length(offset, size, self._size)
            return MappedView._open(
                self._data_fd,
                file_offset=self._data_offset + offset,
                offset=offset,
                size=length,
                kind=kind,
                access=int(access),
                mapping_name=self.name,
            )

    # ------------------------------------------------------------------
    # Description and lifetime
    # ------------------------------------------------------------------

    @property
    def name(self) -> str | None:
        return self._name.text if self._name is not None else None

    @property
    def size(self) -> int:
        """The object's size (pages for memory, exact for files; 2.6)."""
        return self._size

    @property
    def protect(self) -> Protect:
        return self._protect

    @property
    def access(self) -> Access:
        return self._access

    @property
    def created(self) -> bool:
        """False if CreateFileMapping found the name already in use."""
        return self._created

    @property
    def closed(self) -> bool:
        return self._data_fd < 0

    def fileno(self) -> int:
        """The descriptor of the object's memory or file, for handing it to
        another process (e.g. over ``SCM_RIGHTS``). Still owned by self."""
        if self._data_fd < 0:
            raise ClosedResourceError("the file mapping handle is closed")
        return self._data_fd

    def info(self) -> MappingInfo:
        return MappingInfo(
            name=self.name,
            scope=self._name.scope if self._name else None,
            size=self._size,
            protect=self._protect,
            access=self._access,
            backing=self._backing,
            path=self._path,
            created=self._created,
            creator_pid=self._creator_pid,
        )

    def close(self) -> None:
        """Close the handle (idempotent). Views stay valid. For a named
        object, the last handle in any process removes the name."""
        with self._lock:
            fd, self._data_fd = self._data_fd, -1
            self._lease = None
        nf.close_quietly(fd)
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> FileMapping:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_data_fd", -1) >= 0:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2)
            self.close()

    def __repr__(self) -> str:
        what = repr(self.name) if self._name else "unnamed"
        state = " closed" if self.closed else ""
        return f"<FileMapping {what} size={self._size:#x} {self._protect.name}{state}>"


def _release(lease: store.Lease) -> None:
    lease.release()


def query(name: str | MappingName) -> MappingInfo:
    """Describe a live named mapping without keeping it open."""
    with FileMapping.open(name, Access.READ) as mapping:
        return mapping.info()


def sweep_stale(scope: Literal["local", "global"] = "local") -> int:
    """Remove the names of mappings whose holders all died; returns how many."""
    try:
        directory = namespace_for(scope, create=False)
    except OSAPIError:
        return 0
    return store.sweep(directory)


# ----------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------


def _view_length(offset: int, size: int, total: int) -> int:
    if offset < 0 or size < 0:
        raise InvalidParameterError("view offset and size must not be negative")
    if offset % GRANULARITY:
        raise MappedAlignmentError(offset, GRANULARITY)
    length = total - offset if size == 0 else size
    if length <= 0 or offset + length > total:
        raise AccessDeniedError(
            f"a view of {length} bytes at {offset:#x} passes the end of a {total:#x}-byte mapping"
        )
    return length
