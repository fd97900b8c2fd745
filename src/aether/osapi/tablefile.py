"""A small shared file, mapped ``MAP_SHARED`` and guarded by ``flock``.

Used by the global atom table. Why these choices:

- ``flock(2)`` locks belong to the open file description and the kernel
  drops them when the holder dies, even by ``SIGKILL``, so a crashed process
  can never leave the lock held (a pthread mutex in shared memory needs
  ``PTHREAD_MUTEX_ROBUST``, which Python cannot set up). ``fcntl``/``lockf``
  record locks are avoided: closing *any* descriptor of the file drops them.
- The file is created complete under a temporary name and ``link(2)``-ed into
  place, which fails if the name exists: a reader never sees a half-built
  file, and two creators racing agree on one winner.
- It is opened with ``O_NOFOLLOW`` relative to a directory descriptor and
  refused unless it is a regular file owned by us and closed to group and
  others, so a file another user planted or can write is never mapped.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

from aether.errors import OSAPIError

from ._libc import translate

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC


class SharedTableFile:
    """One open, mapped, lockable table file. Owns its descriptor and mapping."""

    def __init__(self, path: Path, fd: int, mm: mmap.mmap) -> None:
        self.path = path
        self.fd = fd
        self.mm = mm

    def lock(self) -> None:
        """Block until we hold the exclusive lock (``flock(LOCK_EX)``)."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError as exc:
            raise translate(exc, f"flock {self.path}") from None

    def try_lock(self) -> bool:
        """Take the lock if it is free; False if another holder has it."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as exc:
            raise translate(exc, f"flock {self.path}") from None
        return True

    def unlock(self) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        except OSError as exc:
            raise translate(exc, f"flock(LOCK_UN) {self.path}") from None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def close(self) -> None:
        """Unmap and close (idempotent). Closing drops any lock we hold."""
        fd, self.fd = self.fd, -1
        if fd < 0:
            return
        try:
            self.mm.close()
        finally:
            os.close(fd)


def _check_file(fd: int, path: Path, size: int) -> None:
    try:
        st = os.fstat(fd)
    except OSError as exc:
        raise translate(exc, f"fstat {path}") from None
    if not stat.S_ISREG(st.st_mode):
        raise OSAPIError(errno.EINVAL, f"{path} is not a regular file", call="open_table")
    if st.st_uid != os.geteuid():
        raise OSAPIError(
            errno.EPERM,
            f"{path} is owned by uid {st.st_uid}, not {os.geteuid()}",
            call="open_table",
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise OSAPIError(
            errno.EPERM,
            f"{path} has mode {stat.S_IMODE(st.st_mode):04o}: open to other users",
            call="open_table",
        )
    if st.st_size != size:
        raise OSAPIError(
            errno.EINVAL,
            f"{path} is {st.st_size} bytes, expected {size}",
            call="open_table",
        )


def _map(fd: int, path: Path, size: int) -> mmap.mmap:
    try:
        return mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except OSError as exc:
        raise translate(exc, f"mmap {path}") from None


def _open_existing(dir_fd: int, directory: Path, name: str, size: int) -> SharedTableFile | None:
    path = directory / name
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise translate(exc, f"open {path}") from None
    try:
        _check_file(fd, path, size)
        return SharedTableFile(path, fd, _map(fd, path, size))
    except BaseException:
        os.close(fd)
        raise


def _create(
    dir_fd: int, directory: Path, name: str, size: int, initialize: Callable[[mmap.mmap], None]
) -> SharedTableFile | None:
    """Build the file under a temporary name and link it into place.

    Returns None if another process linked its copy first.
    """
    tmp = f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, _FILE_FLAGS | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        raise translate(exc, f"create {directory / tmp}") from None
    try:
        try:
            os.fchmod(fd, 0o600)
            os.ftruncate(fd, size)
        except OSError as exc:
            raise translate(exc, f"ftruncate {directory / tmp}") from None
        mm = _map(fd, directory / name, size)
        try:
            initialize(mm)
            try:
                os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            except FileExistsError:
                mm.close()
                os.close(fd)
                return None
            except OSError as exc:
                raise translate(exc, f"link {directory / name}") from None
        except BaseException:
            mm.close()
            raise
    except BaseException:
        os.close(fd)
        raise
    finally:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
    return SharedTableFile(directory / name, fd, mm)


def open_table_file(
    directory: Path, name: str, size: int, initialize: Callable[[mmap.mmap], None]
) -> SharedTableFile:
    """Open ``directory/name`` (exactly ``size`` bytes), creating it with
    ``initialize`` (called on a zero-filled mapping) if it does not exist.

    ``directory`` must already be a private directory (see
    :func:`aether.osapi.ensure_private_directory`); ``name`` is a fixed name
    chosen by the caller, never user input.
    """
    if "/" in name or name in ("", ".", ".."):
        raise ValueError(f"bad table file name {name!r}")
    try:
        dir_fd = os.open(directory, _DIR_FLAGS)
    except OSError as exc:
        raise translate(exc, f"open {directory}") from None
    try:
        for _attempt in range(8):
            table = _open_existing(dir_fd, directory, name, size)
            if table is None:
                table = _create(dir_fd, directory, name, size, initialize)
            if table is not None:
                return table
        raise OSAPIError(errno.EAGAIN, f"{directory / name} keeps changing", call="open_table")
    finally:
        os.close(dir_fd)
