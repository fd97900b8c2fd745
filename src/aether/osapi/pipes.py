"""Pipe system calls for the anonymous-pipe primitive.

Linux pipes differ from Win32 anonymous pipes in ways the primitive has to
bridge (``docs/primitives.md``): the buffer is sized with
``F_SETPIPE_SZ`` (rounded up to a power-of-two number of pages), the byte
count waiting is ``ioctl(FIONREAD)``, and a non-destructive *data* peek is
possible with ``tee(2)``, which duplicates pipe buffers into a scratch pipe
without consuming them. ``tee`` has no wrapper in Python 3.11, so it is bound
with ctypes here.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import select
import stat
import struct
import termios
from pathlib import Path
from typing import Literal

from aether.errors import OSAPIError

from ._libc import libc, raise_errno, translate

F_SETPIPE_SZ: int = getattr(fcntl, "F_SETPIPE_SZ", 1031)
F_GETPIPE_SZ: int = getattr(fcntl, "F_GETPIPE_SZ", 1032)
FIONREAD: int = termios.FIONREAD
SPLICE_F_NONBLOCK = 0x02
PIPE_BUF = 4096  # writes up to this size are atomic (pipe(7))
PIPE_MAX_SIZE_PATH = Path("/proc/sys/fs/pipe-max-size")
DEFAULT_PIPE_MAX_SIZE = 1_048_576

libc.tee.restype = ctypes.c_ssize_t
libc.tee.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint]

_INT = struct.Struct("i")

PipeAccess = Literal["r", "w"]


def make_pipe(*, cloexec: bool = True) -> tuple[int, int]:
    """Create a pipe; returns ``(read_fd, write_fd)``.

    ``cloexec`` False leaves both descriptors inheritable across ``exec``
    (Win32's ``bInheritHandle``); the default matches Win32's default of
    "not inheritable".
    """
    try:
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC if cloexec else 0)
    except OSError as exc:
        raise translate(exc, "pipe2") from None
    if not cloexec:
        os.set_inheritable(read_fd, True)
        os.set_inheritable(write_fd, True)
    return read_fd, write_fd


def pipe_max_size() -> int:
    """The unprivileged maximum for ``F_SETPIPE_SZ`` (``/proc/sys/fs/pipe-max-size``)."""
    try:
        return int(PIPE_MAX_SIZE_PATH.read_text().strip())
    except (OSError, ValueError):
        return DEFAULT_PIPE_MAX_SIZE


def get_pipe_size(fd: int) -> int:
    """The pipe's capacity in bytes (``F_GETPIPE_SZ``)."""
    try:
        return int(fcntl.fcntl(fd, F_GETPIPE_SZ))
    except OSError as exc:
        raise translate(exc, "fcntl(F_GETPIPE_SZ)") from None


def set_pipe_size(fd: int, size: int) -> int:
    """Ask for a capacity of at least ``size`` bytes; returns what the kernel set.

    Raises:
        OSAPIError: ``EPERM`` above ``pipe-max-size`` without CAP_SYS_RESOURCE,
            ``EBUSY`` below the bytes already buffered, ``EINVAL`` otherwise.
    """
    try:
        return int(fcntl.fcntl(fd, F_SETPIPE_SZ, size))
    except OSError as exc:
        raise translate(exc, "fcntl(F_SETPIPE_SZ)") from None


def bytes_available(fd: int) -> int:
    """Bytes waiting in the pipe, without consuming them (``FIONREAD``)."""
    buf = bytearray(_INT.size)
    try:
        fcntl.ioctl(fd, FIONREAD, buf, True)
    except OSError as exc:
        raise translate(exc, "ioctl(FIONREAD)") from None
    return int(_INT.unpack(buf)[0])


def peek_bytes(fd: int, size: int) -> bytes:
    """Up to ``size`` bytes from the front of the pipe, left in place.

    ``tee(2)`` copies pipe buffers (by reference) into a private scratch pipe
    that we then read; the source pipe is not consumed. Never blocks: an empty
    pipe gives ``b""``.
    """
    if size <= 0:
        return b""
    scratch_r, scratch_w = make_pipe()
    try:
        os.set_blocking(scratch_r, False)
        if size > get_pipe_size(scratch_w):
            # The scratch pipe must hold everything we copy; the source cannot
            # hold more than its own capacity anyway.
            want = min(size, get_pipe_size(fd))
            try:
                set_pipe_size(scratch_w, want)
            except OSAPIError:
                pass
        res = libc.tee(fd, scratch_w, size, SPLICE_F_NONBLOCK)
        if res < 0:
            err = ctypes.get_errno()
            if err == errno.EAGAIN:
                return b""
            raise_errno("tee", err)
        chunks: list[bytes] = []
        remaining = int(res)
        while remaining > 0:
            chunk = os.read(scratch_r, remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise translate(exc, "peek") from None
    finally:
        os.close(scratch_r)
        os.close(scratch_w)


def peer_closed(fd: int) -> bool:
    """True when every descriptor of the pipe's other end is closed.

    The read end reports ``POLLHUP`` once no writer remains; the write end
    reports ``POLLERR`` once no reader remains (pipe(7), poll(2)).
    """
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLOUT)
    try:
        events = poller.poll(0)
    except OSError as exc:
        raise translate(exc, "poll") from None
    return any(ev & (select.POLLHUP | select.POLLERR) for _, ev in events)


def pipe_access(fd: int) -> PipeAccess:
    """Whether ``fd`` is the read (``"r"``) or write (``"w"``) end of a pipe.

    Raises:
        OSAPIError: ``EBADF`` for a closed fd, ``EINVAL`` if it is not a pipe.
    """
    try:
        st = os.fstat(fd)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError as exc:
        raise translate(exc, "fstat/F_GETFL") from None
    if not stat.S_ISFIFO(st.st_mode):
        raise OSAPIError(errno.EINVAL, f"fd {fd} is not a pipe", call="pipe_access")
    mode = flags & os.O_ACCMODE
    if mode == os.O_RDONLY:
        return "r"
    if mode == os.O_WRONLY:
        return "w"
    raise OSAPIError(errno.EINVAL, f"fd {fd} is a FIFO opened read-write", call="pipe_access")


def pipe_identity(fd: int) -> tuple[int, int]:
    """``(st_dev, st_ino)`` of the pipe behind ``fd``: both ends share it, and
    no other live pipe has it, so it tells a handed-over fd from a reused
    number."""
    try:
        st = os.fstat(fd)
    except OSError as exc:
        raise translate(exc, "fstat") from None
    return st.st_dev, st.st_ino


def pipe_read(fd: int, size: int) -> bytes:
    """``read(2)``: blocks until at least one byte or end of stream (``b""``)."""
    try:
        return os.read(fd, size)
    except OSError as exc:
        raise translate(exc, "read") from None


def pipe_readinto(fd: int, buffer: memoryview) -> int:
    try:
        return os.readv(fd, [buffer])
    except OSError as exc:
        raise translate(exc, "readv") from None


def pipe_write(fd: int, data: memoryview) -> int:
    """``write(2)``: may write less than asked; ``EPIPE`` when no reader is left
    (CPython ignores SIGPIPE, so it arrives as an error, not a signal)."""
    try:
        return os.write(fd, data)
    except OSError as exc:
        raise translate(exc, "write") from None
