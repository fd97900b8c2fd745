"""Who is on the other end of a Unix socket, as the kernel says.

``SO_PEERPIDFD`` (Linux >= 6.5) has no name in Python 3.11's ``socket``
module, so its number is given here. A pidfd taken from the socket refers to
the process that called ``connect()`` (or ``listen()``), so no pid-reuse race
lies between the credential check and the pidfd.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass
from typing import Final

from aether.errors import OSAPIError, UnsupportedError

from ._libc import translate

SO_PEERCRED: Final = getattr(socket, "SO_PEERCRED", 17)
SO_PEERPIDFD: Final = 77  # asm-generic/socket.h; 0x404B on parisc, 0x56 on sparc

_UCRED = struct.Struct("=iII")


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """The peer's pid, uid and gid as the kernel recorded them at connect()."""

    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCredentials:
    """Return the peer's credentials (``SO_PEERCRED``)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERCRED, _UCRED.size)
    except OSError as exc:
        raise translate(exc, "getsockopt(SO_PEERCRED)") from None
    pid, uid, gid = _UCRED.unpack(raw)
    return PeerCredentials(pid, uid, gid)


def peer_pidfd(sock: socket.socket) -> int:
    """Return a new pidfd for the peer process (``SO_PEERPIDFD``).

    Raises:
        UnsupportedError: the kernel has no ``SO_PEERPIDFD`` (before 6.5).
        OSAPIError: any other failure (e.g. ``ESRCH`` once the peer exited).
    """
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD)
    except OSError as exc:
        if exc.errno in (errno.ENOPROTOOPT, errno.EINVAL):
            raise UnsupportedError(
                exc.errno,
                "SO_PEERPIDFD is not supported by this kernel (needs Linux >= 6.5)",
                call="getsockopt(SO_PEERPIDFD)",
            ) from None
        raise translate(exc, "getsockopt(SO_PEERPIDFD)") from None
    if raw < 0:
        raise OSAPIError(errno.ESRCH, "peer has no pidfd", call="getsockopt(SO_PEERPIDFD)")
    return int(raw)


def peer_pidfd_supported() -> bool:
    """Whether this kernel has ``SO_PEERPIDFD``, probed once on a socket pair
    (a per-connection error then means the peer is gone, not "unsupported")."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        fd = peer_pidfd(a)
    except UnsupportedError:
        return False
    except OSAPIError:
        return False
    finally:
        a.close()
        b.close()
    os.close(fd)
    return True
