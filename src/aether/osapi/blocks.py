"""Private anonymous, page-aligned memory blocks with explicit protection.

Python's ``mmap.mmap(-1, n)`` maps shared memory, and an ``mmap`` object
hides its address and cannot change its protection. The seed's blocks must be
``MAP_PRIVATE|MAP_ANONYMOUS`` (a forked child must not share them), their
address is sent to the service, and the parameter block is read-only except
while the client writes it, so they are mapped here with ctypes.

Writing a read-only block (:meth:`PrivateBlock.write_pieces`) goes through
``/proc/self/mem`` where the kernel allows it: its writes are forced
(``FOLL_FORCE``) past the page protection, so the block never becomes
writable at all, and one ``pwrite`` costs ~3 µs where ``mprotect`` to
read-write and back costs 11-28 µs on this VM (more with threads on other
CPUs, whose TLBs the downgrade must flush). Where the kernel refuses forced
writes (``proc_mem.force_override=never``, some LSMs), the block is opened
read-write for the write and closed again, as before.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Final

from aether.errors import ClosedResourceError, OSAPIError

from ._libc import MAP_FAILED, libc, raise_errno

PAGE_SIZE: Final = mmap.PAGESIZE
PROT_NONE: Final = 0
PROT_READ: Final = mmap.PROT_READ
PROT_WRITE: Final = mmap.PROT_WRITE
PROT_EXEC: Final = mmap.PROT_EXEC
MAP_PRIVATE: Final = mmap.MAP_PRIVATE
MAP_ANONYMOUS: Final = mmap.MAP_ANONYMOUS
CHUNK: Final = 1 << 20  # bytes per pass of a whole-block fill or check

Piece = tuple[int, "bytes | bytearray | memoryview"]


class _SelfMemory:
    """This process's ``/proc/self/mem``, for writes past page protection.

    The descriptor is tied to the memory of the process that opened it, and a
    forked child inherits it: written there, it would change the *parent's*
    memory, read-only pages included, whatever the child's privileges. So a
    child made with ``os.fork`` closes it before anything else runs
    (``os.register_at_fork``), and every write checks the pid too, for a
    fork made outside Python. It is close-on-exec.
    """

    def __init__(self) -> None:
        self._fd = -1
        self._pid = 0
        self._lock = threading.Lock()
        self.refused = False  # the kernel said no once: use mprotect from then on

    def forget_in_child(self) -> None:
        """Right after ``fork`` in the child: close the parent's descriptor."""
        fd, self._fd, self._pid = self._fd, -1, 0
        self._lock = threading.Lock()  # another thread may have held it at fork
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass

    def _descriptor(self) -> int:
        pid = os.getpid()
        if self._pid == pid:
            return self._fd
        with self._lock:
            if self._pid != pid:
                inherited, self._fd = self._fd, -1
                if inherited >= 0 and _names_memory_of(inherited, self._pid):
                    os.close(inherited)  # a fork outside Python: the parent's memory
                self._fd = os.open("/proc/self/mem", os.O_RDWR | os.O_CLOEXEC)
                self._pid = pid
            return self._fd

    def write(self, address: int, pieces: Sequence[tuple[int, memoryview]]) -> bool:
        """Write each (offset, byte view) at ``address`` + offset, in order;
        False, having maybe written some, if the kernel refuses forced writes."""
        try:
            fd = self._descriptor()
            for offset, view in pieces:
                if os.pwrite(fd, view, address + offset) != len(view):
                    self.refused = True
                    return False
        except OSError:
            self.refused = True
            return False
        return True


def _names_memory_of(fd: int, pid: int) -> bool:
    """Whether ``fd`` is still ``/proc/<pid>/mem`` (and not a number the
    process closed and reused since)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == f"/proc/{pid}/mem"
    except OSError:
        return False


_self_memory = _SelfMemory()
os.register_at_fork(after_in_child=_self_memory.forget_in_child)


def round_to_pages(size: int) -> int:
    """Round ``size`` up to a whole number of pages (at least one)."""
    if size <= 0:
        return PAGE_SIZE
    return (size + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE


class PrivateBlock:
    """A page-aligned ``MAP_PRIVATE|MAP_ANONYMOUS`` block of this process.

    The block is never executable. ``view`` is a writable memoryview of the
    whole block; writing through it while the protection lacks
    ``PROT_WRITE`` crashes the process, so callers switch protection with
    :meth:`protect` or the :meth:`writable` context manager first.
    """

    def __init__(self, size: int, prot: int = PROT_READ | PROT_WRITE) -> None:
        if prot & PROT_EXEC:
            raise ValueError("blocks are never executable")
        self.size = round_to_pages(size)
        addr = libc.mmap(
            None, self.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0
        )
        if addr is None or addr == MAP_FAILED:
            raise_errno("mmap")
        self.address: int = addr
        self._array = (ctypes.c_char * self.size).from_address(addr)
        self.view: memoryview = memoryview(self._array).cast("B")
        self._prot = PROT_READ | PROT_WRITE
        self._lock = threading.Lock()
        self._closed = False
        if prot != self._prot:
            self.protect(prot)

    @property
    def prot(self) -> int:
        return self._prot

    def protect(self, prot: int) -> None:
        """Change the block's protection (``PROT_READ``, ``PROT_READ|PROT_WRITE`` ...)."""
        self._check_open()
        if prot & PROT_EXEC:
            raise ValueError("blocks are never executable")
        self._mprotect(self.size, prot)
        self._prot = prot

    def _mprotect(self, span: int, prot: int) -> None:
        if libc.mprotect(self.address, span, prot) != 0:
            raise_errno("mprotect")

    # Whole-block passes go a chunk at a time: a 64 MiB block must not cost
    # two more 64 MiB temporaries (and their page faults) to fill or check.
    def _chunks(self) -> Iterator[tuple[int, int]]:
        for start in range(0, self.size, CHUNK):
            yield start, min(CHUNK, self.size - start)

    def fill_pattern(self, word: int) -> None:
        """Fill the whole block with a repeated little-endian 32-bit word."""
        self._check_open()
        pattern = struct.pack("<I", word) * (min(CHUNK, self.size) // 4)
        with self.writable():
            for start, n in self._chunks():
                self.view[start:start + n] = pattern[:n]

    def holds_only(self, word: int) -> bool:
        """True if every 32-bit word of the block equals ``word``."""
        self._check_open()
        if not self._prot & PROT_READ:
            return False
        pattern = struct.pack("<I", word) * (min(CHUNK, self.size) // 4)
        return all(self.view[start:start + n].tobytes() == pattern[:n]
                   for start, n in self._chunks())

    def is_zero(self) -> bool:
        """True if every byte of the block is zero."""
        self._check_open()
        zeros = bytes(min(CHUNK, self.size))
        return all(self.view[start:start + n].tobytes() == zeros[:n]
                   for start, n in self._chunks())

    def write_pieces(self, pieces: Iterable[Piece], *, forced: bool = True) -> None:
        """Write each ``(offset, data)`` in order, whatever the block's
        protection, and leave the protection as it was.

        A read-only block is written through ``/proc/self/mem`` (see the
        module's docstring) and never becomes writable; ``forced=False``, or a
        kernel that refuses, opens the pages read-write for the write instead.
        The block's lock is held meanwhile, so :meth:`close` cannot unmap it
        and let a forced write land in whatever is mapped there next. Each
        piece is taken as one contiguous byte view, checked and written from
        that same view (a buffer resized in between cannot overrun).
        """
        views: list[tuple[int, memoryview]] = []
        end = 0
        for offset, data in pieces:
            view = memoryview(data)
            if not view.c_contiguous:
                raise ValueError("pieces must be contiguous buffers")
            view = view.cast("B")
            n = len(view)
            if offset < 0 or offset + n > self.size:
                raise ValueError(f"{n} bytes at offset {offset} overrun the block ({self.size})")
            views.append((offset, view))
            end = max(end, offset + n)
        try:
            if not self._prot & PROT_WRITE and forced and not _self_memory.refused:
                with self._lock:
                    self._check_open()
                    if _self_memory.write(self.address, views):
                        return
            with self.writable(end) as block:
                for offset, view in views:
                    block[offset:offset + len(view)] = view
        finally:
            for _, view in views:
                view.release()

    def writable(self, length: int | None = None) -> _Writable:
        """Context manager: the block, or only the pages holding its first
        ``length`` bytes, is read-write inside, back to its protection after.

        The cost of ``mprotect`` grows with the pages it changes: 26 µs for a
        whole 1 MiB block, 400 µs for 16 MiB, 4 µs for one page (measured on
        this VM), so a small request opens only its own pages.
        """
        self._check_open()
        span = self.size if length is None else min(self.size, round_to_pages(length))
        return _Writable(self, span)

    def retire(self) -> None:
        """Give the block's pages back but keep its addresses mapped, and out
        of every later ``mmap``, for the rest of the process's life
        (idempotent; a retired block is closed).

        For a block a service may still write to: a session that ended with
        an operation running (the client was interrupted, timed out and
        closed, lost the connection) leaves the service's write of that
        operation's result on its way, through ``/proc/<pid>/mem``, which
        forces its way past page protection. Unmapped, the range would be
        handed to the next ``mmap`` of this process (a new session's blocks,
        the Python heap) and the late write would land there. Retired
        (``MADV_DONTNEED``), the mapping stays and its pages are freed: a
        late write reaches only a page of its own, and a view of the block
        still held somewhere (a result being decoded on another thread, a
        loan's buffer) reads zeros instead of faulting.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.view.release()
            if libc.madvise(self.address, self.size, mmap.MADV_DONTNEED) != 0:
                raise_errno("madvise")

    def close(self) -> None:
        """Unmap the block. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.view.release()
            if libc.munmap(self.address, self.size) != 0:
                raise_errno("munmap")

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedResourceError("block is closed")

    def __enter__(self) -> PrivateBlock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PrivateBlock 0x{self.address:x} size={self.size} prot={self._prot}>"


class _Writable(AbstractContextManager[memoryview]):
    def __init__(self, block: PrivateBlock, span: int) -> None:
        self._block = block
        self._span = span
        self._opened = False

    def __enter__(self) -> memoryview:
        block = self._block
        if not block.prot & PROT_WRITE:
            block._mprotect(self._span, PROT_READ | PROT_WRITE)
            self._opened = True
        return block.view

    def __exit__(self, *exc: object) -> None:
        block = self._block
        if self._opened and not block.closed:
            try:
                block._mprotect(self._span, block.prot)
            except OSAPIError:
                if exc[0] is None:
                    raise
