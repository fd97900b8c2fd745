"""Views of a file mapping: real ``mmap`` objects with Win32 bookkeeping.

A view is a buffer-protocol object (``memoryview(view)``, ``view[a:b] =
data``), and like ``mmap`` it refuses to close while a memoryview into it is
alive, so closing can never leave a dangling pointer. A read-only view
raises ``TypeError`` on writes instead of crashing the process. A view keeps
its own reference to the object's memory, so it stays valid after the
mapping handle is closed and after the name is gone (reference 2.41-2.42).
"""

from __future__ import annotations

from aether.errors import OSAPIError
from aether.osapi.sharedmap import SharedView

from ._mapping_access import Access, ViewKind
from ._mapping_errors import from_os_error

__all__ = ["MappedView"]


class MappedView(SharedView):
    """A mapped view of a :class:`~aether.primitives.mapping.FileMapping`.

    Attributes:
        access: the FILE_MAP_* access the view was requested with.
        offset: where the view starts in the mapping object.
        kind: how it is mapped (protection, copy-on-write).
        mapping_name: the name of its mapping, or None.
    """

    access: Access
    offset: int
    kind: ViewKind
    mapping_name: str | None

    @classmethod
    def _open(
        cls,
        fd: int,
        *,
        file_offset: int,
        offset: int,
        size: int,
        kind: ViewKind,
        access: int,
        mapping_name: str | None,
    ) -> MappedView:
        try:
            view = cls.map(fd, size, offset=file_offset, prot=kind.prot, private=kind.private)
        except OSAPIError as exc:
            raise from_os_error(exc, "MapViewOfFile") from None
        except ValueError as exc:  # the file shrank below the object's size
            raise from_os_error(OSAPIError(22, str(exc), call="mmap"), "MapViewOfFile") from None
        view.access = Access(access)
        view.offset = offset
        view.kind = kind
        view.mapping_name = mapping_name
        return view

    @property
    def writable(self) -> bool:
        """True for read-write and copy-on-write views."""
        return self.kind.writable

    @property
    def copy_on_write(self) -> bool:
        """True for FILE_MAP_COPY views: writes stay private (reference 2.31)."""
        return self.kind.private

    def flush(self, offset: int = 0, size: int = 0) -> None:
        """Write dirty pages of ``[offset, offset+size)`` back to the file and
        wait for it (``msync(MS_SYNC)``; size 0: to the end of the view,
        reference 2.48). For memory-backed objects this is harmless and
        cheap. Offsets need not be page-aligned."""
        if offset < 0 or size < 0 or offset > len(self):
            raise from_os_error(OSAPIError(22, "flush range outside the view"), "FlushViewOfFile")
        if self.kind.private or len(self) == 0:
            return
        try:
            self.sync(offset, size)
        except OSAPIError as exc:
            raise from_os_error(exc, "FlushViewOfFile") from None

    def __repr__(self) -> str:
        if self.closed:
            return f"<MappedView closed offset={self.offset:#x}>"
        return (
            f"<MappedView 0x{self.address:x} offset={self.offset:#x} size={len(self)}"
            f" writable={self.writable} cow={self.copy_on_write}>"
        )
