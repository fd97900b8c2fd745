"""Files that stand for named objects: atomic creation, safe opening, leases.

Named mappings and mailslots are files in a private namespace directory.
Three properties matter and are provided here:

- *atomic, exclusive creation*: a record is written in an unnamed
  ``O_TMPFILE`` inode (or a random ``O_EXCL`` name where the filesystem lacks
  ``O_TMPFILE``) and only then linked under its final name with ``link(2)``,
  which fails with ``EEXIST`` instead of replacing anything. Readers never see
  a half-written record;
- *no symlinks*: records are opened with ``O_NOFOLLOW``;
- *leases the kernel releases on death*: ``flock(2)`` locks belong to an open
  file description, so a holder killed by SIGKILL drops its lease at once and
  a survivor can tell a live name from a stale one.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import stat
from pathlib import Path

from aether.errors import OSAPIError

from ._libc import translate

_O_TMPFILE = getattr(os, "O_TMPFILE", 0)


def create_unlinked(directory: Path, mode: int = 0o600) -> tuple[int, Path | None]:
    """Create a new empty regular file that has no name yet.

    Returns ``(fd, tmp_path)``: ``tmp_path`` is None when the file is a true
    ``O_TMPFILE`` inode, else the random ``O_EXCL`` name it was created under
    (the caller unlinks it after :func:`link_exclusive`).
    """
    if _O_TMPFILE:
        try:
            fd = os.open(directory, _O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, mode)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise translate(exc, f"open O_TMPFILE in {directory}") from None
        else:
            os.fchmod(fd, mode)  # O_TMPFILE honours the umask; be exact
            return fd, None
    path = directory / f".tmp-{os.getpid()}-{secrets.token_hex(8)}"
    flags = os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, mode)
    except OSError as exc:
        raise translate(exc, f"create {path}") from None
    os.fchmod(fd, mode)
    return fd, path


def link_exclusive(fd: int, tmp_path: Path | None, final: Path) -> bool:
    """Give the file behind ``fd`` the name ``final`` unless it exists.

    Returns True when linked, False when ``final`` already exists (the file
    stays unnamed). ``link(2)`` never replaces an existing name, which is
    what makes creation exclusive.
    """
    source = str(tmp_path) if tmp_path is not None else f"/proc/self/fd/{fd}"
    dir_fd = -1
    try:
        # An explicit dst_dir_fd makes CPython call linkat(AT_SYMLINK_FOLLOW);
        # plain link() would try to link the /proc magic symlink itself.
        dir_fd = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        os.link(source, final.name, dst_dir_fd=dir_fd, follow_symlinks=tmp_path is None)
    except FileExistsError:
        return False
    except OSError as exc:
        raise translate(exc, f"link {final}") from None
    finally:
        close_quietly(dir_fd)
        if tmp_path is not None:
            unlink_quietly(tmp_path)
    return True


def open_nofollow(path: Path, *, write: bool = False) -> int:
    """Open an existing record without following a symlink at its name.

    Raises OSAPIError (``ENOENT`` when missing, ``ELOOP`` for a symlink).
    """
    flags = (os.O_RDWR if write else os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise translate(exc, f"open {path}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise OSAPIError(errno.EINVAL, f"{path} is not a regular file", call="open")
    return fd


def open_file(path: str | os.PathLike[str], *, write: bool) -> int:
    """Open a user's data file (symlinks allowed: the user chose the path)."""
    flags = (os.O_RDWR if write else os.O_RDONLY) | os.O_CLOEXEC
    try:
        return os.open(path, flags)
    except OSError as exc:
        raise translate(exc, f"open {path}") from None


def open_for_win32(
    path: str | os.PathLike[str],
    *,
    read: bool,
    write: bool,
    create: bool,
    exclusive: bool,
    truncate: bool,
) -> tuple[int, bool]:
    """Open a user's file as ``CreateFile`` dispositions need.

    Returns ``(fd, existed)``: ``existed`` tells CREATE_ALWAYS/OPEN_ALWAYS
    apart from a fresh creation (Windows then sets ERROR_ALREADY_EXISTS).
    """
    access = os.O_RDWR if read and write else os.O_WRONLY if write else os.O_RDONLY
    base = access | os.O_CLOEXEC
    if create:
        try:
            return os.open(path, base | os.O_CREAT | os.O_EXCL, 0o666), False
        except FileExistsError:
            if exclusive:
                raise OSAPIError(errno.EEXIST, f"{path} exists", call="open") from None
        except OSError as exc:
            raise translate(exc, f"open {path}") from None
    try:
        return os.open(path, base | (os.O_TRUNC if truncate else 0)), True
    except OSError as exc:
        raise translate(exc, f"open {path}") from None


def reopen(fd: int, *, write: bool) -> int:
    """A new open file description of the same inode as ``fd``.

    A separate description matters: ``flock`` leases live on descriptions,
    and the copies ``mmap`` keeps must not hold a holder's lease.
    """
    return open_file(f"/proc/self/fd/{fd}", write=write)


def dup(fd: int) -> int:
    try:
        return os.dup(fd)
    except OSError as exc:
        raise translate(exc, "dup") from None


def fd_is_writable(fd: int) -> bool:
    """True if ``fd`` was opened for writing."""
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError as exc:
        raise translate(exc, "fcntl F_GETFL") from None
    return (flags & os.O_ACCMODE) in (os.O_WRONLY, os.O_RDWR)


def fd_is_readable(fd: int) -> bool:
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError as exc:
        raise translate(exc, "fcntl F_GETFL") from None
    return (flags & os.O_ACCMODE) in (os.O_RDONLY, os.O_RDWR)


def fd_path(fd: int) -> str:
    """The path the kernel reports for ``fd`` (``/proc/self/fd`` link)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError as exc:
        raise translate(exc, "readlink /proc/self/fd") from None


def file_identity(fd: int) -> tuple[int, int, int]:
    """``(st_dev, st_ino, st_size)`` of an open file."""
    try:
        st = os.fstat(fd)
    except OSError as exc:
        raise translate(exc, "fstat") from None
    return st.st_dev, st.st_ino, st.st_size


def still_named(fd: int, path: Path) -> bool:
    """True if ``path`` currently names the same inode as ``fd``."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise translate(exc, f"lstat {path}") from None
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def lease_shared(fd: int) -> None:
    """Take a shared ``flock`` lease (blocks only while someone holds it
    exclusively, which the protocols here do for a few syscalls)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except OSError as exc:
        raise translate(exc, "flock LOCK_SH") from None


def try_lease_shared(fd: int) -> bool:
    """Take a shared lease without waiting; False if someone holds it exclusively."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        raise translate(exc, "flock LOCK_SH|LOCK_NB") from None
    return True


def try_lock_exclusive(fd: int) -> bool:
    """Take an exclusive lock without waiting; False if anyone else holds a lease.

    Converting a shared lease is not atomic on Linux (``flock(2)``): on
    failure the caller may have lost its shared lease. Callers use this only
    when they are about to give the lease up anyway.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        raise translate(exc, "flock LOCK_EX|LOCK_NB") from None
    return True


def lock_exclusive(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:
        raise translate(exc, "flock LOCK_EX") from None


def unlink_quietly(path: Path) -> None:
    """Remove ``path`` if it is there; a missing file is not an error."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise translate(exc, f"unlink {path}") from None


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.pwrite(fd, view, offset)
        except OSError as exc:
            raise translate(exc, "pwrite") from None
        view = view[n:]
        offset += n


def pread_exact(fd: int, size: int, offset: int) -> bytes:
    """Read ``size`` bytes at ``offset``; fewer only at end of file."""
    try:
        return os.pread(fd, size, offset)
    except OSError as exc:
        raise translate(exc, "pread") from None


def set_size(fd: int, size: int) -> None:
    """``ftruncate``: grow (sparse, zero-filled) or shrink a file."""
    try:
        os.ftruncate(fd, size)
    except OSError as exc:
        raise translate(exc, "ftruncate") from None


def close_quietly(fd: int) -> None:
    if fd < 0:
        return
    try:
        os.close(fd)
    except OSError:
        pass


def list_names(directory: Path) -> list[str]:
    """Entries of a namespace directory (no error if it is missing)."""
    try:
        return os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise translate(exc, f"listdir {directory}") from None
