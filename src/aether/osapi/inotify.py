"""inotify(7): file system change notification.

Python's standard library has no inotify binding; ``inotify_init1``,
``inotify_add_watch`` and ``inotify_rm_watch`` are bound with ctypes and the
event records parsed with :mod:`struct` (``struct inotify_event``).
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
from dataclasses import dataclass

from aether.errors import OSAPIError

from ._libc import libc, raise_errno, translate

IN_ACCESS = 0x00000001
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

#: What a file-integrity watcher wants: content, metadata, names.
IN_INTEGRITY = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO
                | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF)

_EVENT = struct.Struct("iIII")

libc.inotify_init1.restype = ctypes.c_int
libc.inotify_init1.argtypes = [ctypes.c_int]
libc.inotify_add_watch.restype = ctypes.c_int
libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
libc.inotify_rm_watch.restype = ctypes.c_int
libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]


@dataclass(frozen=True)
class InotifyEvent:
    wd: int
    mask: int
    cookie: int
    name: bytes


class Inotify:
    """One inotify instance (a non-blocking, close-on-exec descriptor)."""

    def __init__(self) -> None:
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise_errno("inotify_init1")
        self.fd: int = fd

    def add_watch(self, path: bytes | str, mask: int = IN_INTEGRITY) -> int:
        """Watch ``path`` (not following a final symlink); returns the watch descriptor."""
        raw = os.fsencode(path)
        wd = libc.inotify_add_watch(self.fd, raw, mask | IN_DONT_FOLLOW)
        if wd < 0:
            raise_errno("inotify_add_watch")
        return int(wd)

    def rm_watch(self, wd: int) -> None:
        if libc.inotify_rm_watch(self.fd, wd) < 0:
            raise_errno("inotify_rm_watch")

    def wait(self, timeout: float | None, wake_fd: int | None = None) -> bool:
        """Wait until events are readable (True) or ``timeout`` runs out / ``wake_fd``
        becomes readable (False)."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        if wake_fd is not None:
            poller.register(wake_fd, select.POLLIN)
        ms = -1 if timeout is None else max(0, int(timeout * 1000))
        try:
            ready = poller.poll(ms)
        except InterruptedError:
            return False
        except OSError as exc:
            raise translate(exc, "poll(inotify)") from None
        return any(fd == self.fd for fd, _ in ready)

    def read(self, size: int = 65536) -> list[InotifyEvent]:
        """The events queued now (empty if none)."""
        try:
            data = os.read(self.fd, size)
        except BlockingIOError:
            return []
        except OSError as exc:
            raise translate(exc, "read(inotify)") from None
        events: list[InotifyEvent] = []
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, cookie, length = _EVENT.unpack_from(data, offset)
            offset += _EVENT.size
            name = data[offset:offset + length].rstrip(b"\0")
            offset += length
            events.append(InotifyEvent(wd, mask, cookie, name))
        return events

    def close(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1

    def __enter__(self) -> Inotify:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Inotify", "InotifyEvent", "OSAPIError"]
