"""Anonymous memory files (``memfd_create``) and their seals.

An unnamed mapping needs memory that exists only while someone references
it and that nobody can find by name (threat T34): a memfd is exactly that.
Sealing its size (``F_SEAL_SHRINK|F_SEAL_GROW``) means a process the fd is
handed to cannot truncate it under its other users, which would make their
views fault with SIGBUS (threat T35).
"""

from __future__ import annotations

import fcntl
import os

from ._libc import translate

F_SEAL_SEAL = fcntl.F_SEAL_SEAL
F_SEAL_SHRINK = fcntl.F_SEAL_SHRINK
F_SEAL_GROW = fcntl.F_SEAL_GROW
F_SEAL_WRITE = fcntl.F_SEAL_WRITE
F_SEAL_FUTURE_WRITE = getattr(fcntl, "F_SEAL_FUTURE_WRITE", 0x0010)


def memfd_create(name: str, size: int, *, seal_size: bool = True) -> int:
    """A new close-on-exec memfd of ``size`` zero bytes.

    With ``seal_size`` the size can never change again (any process).
    """
    try:
        fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    except OSError as exc:
        raise translate(exc, "memfd_create") from None
    try:
        os.ftruncate(fd, size)
        if seal_size:
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW)
    except OSError as exc:
        os.close(fd)
        raise translate(exc, "memfd size/seal") from None
    return fd


def add_seals(fd: int, seals: int) -> None:
    """Add ``seals`` (``F_SEAL_*``) to a memfd created with sealing allowed."""
    try:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    except OSError as exc:
        raise translate(exc, "fcntl F_ADD_SEALS") from None


def get_seals(fd: int) -> int:
    """The seals of ``fd`` (``EINVAL`` is reported as 0 for non-memfd files)."""
    try:
        return fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError as exc:
        if exc.errno == 22:
            return 0
        raise translate(exc, "fcntl F_GET_SEALS") from None
