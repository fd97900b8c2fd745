"""Event counters (``eventfd``) as wake-up doorbells, and checks on descriptors
a peer handed over (``SCM_RIGHTS``): is it really an eventfd, a sealed memfd?

Python has ``os.eventfd`` but no way to ask what kind of file a received
descriptor is; ``/proc/self/fd`` names anonymous inodes (``anon_inode:[eventfd]``).
"""

from __future__ import annotations

import errno
import os
import select
import stat

from aether.errors import OSAPIError

from ._libc import translate
from .memfd import F_SEAL_GROW, F_SEAL_SEAL, F_SEAL_SHRINK, get_seals

SIZE_SEALS = F_SEAL_SHRINK | F_SEAL_GROW
ALL_SIZE_SEALS = SIZE_SEALS | F_SEAL_SEAL


def eventfd_create() -> int:
    """A non-blocking, close-on-exec eventfd with count 0."""
    try:
        return os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    except OSError as exc:
        raise translate(exc, "eventfd") from None


def eventfd_signal(fd: int) -> None:
    """Add 1 to the counter (wakes a poller). A full counter already wakes it."""
    try:
        os.eventfd_write(fd, 1)
    except BlockingIOError:
        pass
    except OSError as exc:
        raise translate(exc, "eventfd_write") from None


def eventfd_drain(fd: int) -> int:
    """Reset the counter; returns what it held (0 if nothing was signalled)."""
    try:
        return os.eventfd_read(fd)
    except BlockingIOError:
        return 0
    except OSError as exc:
        raise translate(exc, "eventfd_read") from None


def is_eventfd(fd: int) -> bool:
    """True when ``fd`` is an eventfd (checked through /proc/self/fd)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventfd]"
    except OSError:
        return False


def check_sealed_memfd(fd: int, size: int) -> str:
    """What is wrong with a received memfd ("" if it is a regular memfd of
    exactly ``size`` bytes whose size is sealed for good)."""
    try:
        st = os.fstat(fd)
    except OSError as exc:
        return f"fstat: {exc.strerror}"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if not os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:"):
        return "not a memfd"
    if st.st_size != size:
        return f"size {st.st_size}, expected {size}"
    try:
        seals = get_seals(fd)
    except OSAPIError as exc:
        return str(exc)
    if seals & ALL_SIZE_SEALS != ALL_SIZE_SEALS:
        return f"seals 0x{seals:x} do not fix its size for good"
    return ""


def wait_readable(fds: tuple[int, ...], timeout: float | None) -> list[int]:
    """poll() ``fds`` for input; returns the readable (or hung-up) ones."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    ms = -1 if timeout is None else max(0, int(timeout * 1000 + 0.999))
    try:
        return [fd for fd, _ev in poller.poll(ms)]
    except OSError as exc:
        if exc.errno == errno.EINTR:
            return []
        raise translate(exc, "poll") from None


class Poller:
    """``poll()`` on a fixed set of descriptors, registered once (a sleeper
    that waits on the same descriptors for every call should not rebuild it)."""

    def __init__(self, fds: tuple[int, ...]) -> None:
        self.fds = fds
        self._poll = select.poll()
        for fd in fds:
            self._poll.register(fd, select.POLLIN)

    def wait(self, timeout: float | None) -> list[int]:
        ms = -1 if timeout is None else max(0, int(timeout * 1000 + 0.999))
        try:
            return [fd for fd, _ev in self._poll.poll(ms)]
        except OSError as exc:
            if exc.errno == errno.EINTR:
                return []
            raise translate(exc, "poll") from None
