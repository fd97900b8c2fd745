"""Create and check private runtime directories without following symlinks.

Socket and namespace directories decide who can reach a service or a named
object, so a directory that an attacker pre-created, or a symlink planted in
its place, must be refused rather than used (threat T31).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from aether.errors import OSAPIError

from ._libc import translate


def check_directory(path: str | os.PathLike[str], *, owner: int, max_mode: int = 0o755) -> None:
    """Raise unless ``path`` is a real directory (not a symlink) owned by
    ``owner`` whose permission bits are a subset of ``max_mode``."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise translate(exc, f"lstat {path}") from None
    if stat.S_ISLNK(st.st_mode):
        raise OSAPIError(errno.ELOOP, f"{path} is a symlink", call="check_directory")
    if not stat.S_ISDIR(st.st_mode):
        raise OSAPIError(errno.ENOTDIR, f"{path} is not a directory", call="check_directory")
    if st.st_uid != owner:
        raise OSAPIError(
            errno.EPERM,
            f"{path} is owned by uid {st.st_uid}, expected {owner}",
            call="check_directory",
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & ~max_mode:
        raise OSAPIError(
            errno.EPERM,
            f"{path} has mode {mode:04o}, more open than {max_mode:04o}",
            call="check_directory",
        )


def ensure_private_directory(path: str | os.PathLike[str], mode: int = 0o700) -> Path:
    """Create ``path`` with ``mode`` if missing (parents must exist), then
    check it is ours, not a symlink, and not more open than ``mode``."""
    p = Path(path)
    try:
        os.mkdir(p, mode)
    except FileExistsError:
        pass
    except OSError as exc:
        raise translate(exc, f"mkdir {p}") from None
    else:
        # mkdir is subject to the umask; set the exact mode we asked for.
        os.chmod(p, mode)
    check_directory(p, owner=os.geteuid(), max_mode=mode)
    return p
