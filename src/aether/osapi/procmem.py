"""Read and write another process's memory through one ``/proc/<pid>/mem`` fd.

Why a ``/proc/<pid>/mem`` descriptor and not ``process_vm_readv``: the fd is
bound to the address space the process had when it was opened. After the
process exits or ``execve``s, reads and writes through it reach nothing, so a
client cannot swap a privileged image in under a session (threat T6). The
accessor only touches ranges registered with it, checks bounds in Python
before every syscall, and treats any short transfer as a failure.
"""

from __future__ import annotations

import errno
import os
import threading
from dataclasses import dataclass

from aether.errors import ClosedResourceError, OSAPIError, PartialTransferError

from ._libc import translate

MAX_ADDRESS = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Region:
    """A registered range [address, address + size) of the client."""

    address: int
    size: int

    @property
    def end(self) -> int:
        return self.address + self.size

    def contains(self, address: int, length: int) -> bool:
        return (
            length >= 0
            and self.address <= address
            and address + length <= self.end
            and address + length <= MAX_ADDRESS
        )


class ProcessMemory:
    """Access to the registered regions of one process's memory.

    Open it right after the process's identity was verified (pidfd alive);
    all later access goes through this one descriptor.
    """

    def __init__(self, pid: int) -> None:
        try:
            self._fd = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise translate(exc, f"open /proc/{pid}/mem") from None
        self.pid = pid
        self._regions: list[Region] = []
        self._lock = threading.Lock()

    # -- regions ---------------------------------------------------------
    def register(self, region: Region) -> None:
        """Allow access to ``region``. Regions never overlap."""
        if region.size <= 0 or region.address <= 0 or region.end > MAX_ADDRESS:
            raise ValueError(f"bad region {region}")
        for other in self._regions:
            if region.address < other.end and other.address < region.end:
                raise ValueError(f"region {region} overlaps {other}")
        self._regions.append(region)

    def clear_regions(self) -> None:
        self._regions.clear()

    @property
    def regions(self) -> tuple[Region, ...]:
        return tuple(self._regions)

    def _check(self, address: int, length: int) -> None:
        if self._fd < 0:
            raise ClosedResourceError("process memory accessor is closed")
        # A plain loop: this runs on every transfer, and ``any()`` over a
        # generator showed up at several percent of the service's time per call.
        for r in self._regions:
            if r.contains(address, length):
                return
        raise OSAPIError(
            errno.EFAULT,
            f"range 0x{address:x}+{length} is outside the registered blocks",
            call="process memory bounds check",
        )

    # -- transfers -------------------------------------------------------
    def read(self, address: int, length: int) -> bytes:
        """Read ``length`` bytes at ``address``; a short read is an error."""
        with self._lock:  # close() cannot free the descriptor number mid-transfer
            self._check(address, length)
            try:
                data = os.pread(self._fd, length, address)
            except OSError as exc:
                raise translate(exc, "pread /proc/pid/mem") from None
        if len(data) != length:
            raise PartialTransferError(
                errno.EIO, f"short read: {len(data)} of {length} bytes (client gone?)",
                call="pread /proc/pid/mem",
            )
        return data

    def readinto(self, address: int, buffer: bytearray | memoryview) -> None:
        """Fill ``buffer`` from ``address``; a short read is an error."""
        length = len(buffer)
        with self._lock:
            self._check(address, length)
            try:
                got = os.preadv(self._fd, [buffer], address)
            except OSError as exc:
                raise translate(exc, "preadv /proc/pid/mem") from None
        if got != length:
            raise PartialTransferError(
                errno.EIO, f"short read: {got} of {length} bytes (client gone?)",
                call="preadv /proc/pid/mem",
            )

    def write(self, address: int, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` at ``address``; a short write is an error."""
        length = len(data)
        with self._lock:
            self._check(address, length)
            try:
                put = os.pwrite(self._fd, data, address)
            except OSError as exc:
                raise translate(exc, "pwrite /proc/pid/mem") from None
        if put != length:
            raise PartialTransferError(
                errno.EIO, f"short write: {put} of {length} bytes (client gone?)",
                call="pwrite /proc/pid/mem",
            )

    def writev(self, address: int, parts: list[bytes | bytearray | memoryview]) -> None:
        """Write several buffers back to back at ``address`` in one syscall."""
        length = sum(len(p) for p in parts)
        with self._lock:
            self._check(address, length)
            try:
                put = os.pwritev(self._fd, parts, address)
            except OSError as exc:
                raise translate(exc, "pwritev /proc/pid/mem") from None
        if put != length:
            raise PartialTransferError(
                errno.EIO, f"short write: {put} of {length} bytes (client gone?)",
                call="pwritev /proc/pid/mem",
            )

    def owner_uid(self) -> int:
        """Owner of ``/proc/<pid>/mem`` as opened: root for a non-dumpable
        process (set-uid/set-gid/file-capability exec, or PR_SET_DUMPABLE 0)."""
        try:
            return os.fstat(self._fd).st_uid
        except OSError as exc:
            raise translate(exc, "fstat /proc/pid/mem") from None

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def __enter__(self) -> ProcessMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
