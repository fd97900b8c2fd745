"""Process file descriptors: open, watch for exit, signal, and borrow fds.

A pidfd names one process for its whole life; unlike a pid number it is
never reused. ``pidfd_getfd`` has no wrapper in Python 3.11 and is called
through ``syscall(2)``.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal

from aether.errors import OSAPIError

from ._libc import libc, raise_errno, translate

SYS_PIDFD_OPEN = 434
SYS_PIDFD_GETFD = 438
SYS_PIDFD_SEND_SIGNAL = 424


def pidfd_open(pid: int) -> int:
    """Open a pidfd for ``pid``. Prefer :func:`aether.osapi.peer_pidfd`: a pid
    number can be reused between the moment it was learnt and this call."""
    try:
        return os.pidfd_open(pid)
    except OSError as exc:
        raise translate(exc, "pidfd_open") from None


def pidfd_exited(pidfd: int) -> bool:
    """True once the process behind ``pidfd`` has exited (pidfd readable)."""
    return wait_pidfd(pidfd, 0.0)


def wait_pidfd(pidfd: int, timeout: float | None) -> bool:
    """Wait up to ``timeout`` seconds (None: forever) for the process to exit.

    Returns True if it exited, False on timeout.
    """
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    ms = -1 if timeout is None else max(0, int(timeout * 1000))
    try:
        events = poller.poll(ms)
    except OSError as exc:
        raise translate(exc, "poll(pidfd)") from None
    return bool(events)


def pidfd_send_signal(pidfd: int, sig: signal.Signals | int) -> None:
    """Send ``sig`` to the process behind ``pidfd`` (never to a reused pid)."""
    res = libc.syscall(SYS_PIDFD_SEND_SIGNAL, ctypes.c_int(pidfd), ctypes.c_int(int(sig)),
                       None, ctypes.c_uint(0))
    if res != 0:
        raise_errno("pidfd_send_signal")


def pidfd_getfd(pidfd: int, target_fd: int) -> int:
    """Duplicate file descriptor ``target_fd`` of the process behind ``pidfd``
    into this process (needs ptrace access to it). The new fd is close-on-exec."""
    res = libc.syscall(SYS_PIDFD_GETFD, ctypes.c_int(pidfd), ctypes.c_int(target_fd),
                       ctypes.c_uint(0))
    if res < 0:
        raise_errno("pidfd_getfd")
    return int(res)


def close_fd(fd: int) -> None:
    """Close ``fd``, ignoring EBADF (already closed)."""
    try:
        os.close(fd)
    except OSError as exc:
        if exc.errno != 9:
            raise OSAPIError(exc.errno or 0, str(exc), call="close") from None
