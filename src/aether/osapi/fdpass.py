"""Passing file descriptors over a Unix socket (``SCM_RIGHTS``).

Python's ``socket.recv_fds`` neither sets ``MSG_CMSG_CLOEXEC`` nor reports a
truncated control message, so a descriptor could leak into a child process
or be lost silently; these wrappers do both.
"""

from __future__ import annotations

import array
import errno
import os
import socket
from collections.abc import Sequence

from aether.errors import OSAPIError

from ._libc import translate

MSG_CMSG_CLOEXEC: int = getattr(socket, "MSG_CMSG_CLOEXEC", 0x40000000)
_INT_SIZE = array.array("i").itemsize


def send_fds(sock: socket.socket, data: bytes, fds: Sequence[int]) -> None:
    """Send ``data`` (at least one byte) with ``fds`` attached in one message.

    The receiver gets duplicates; the sender keeps its own descriptors.
    """
    if not data:
        raise ValueError("SCM_RIGHTS needs at least one byte of data")
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
    try:
        sent = sock.sendmsg([data], ancillary, socket.MSG_NOSIGNAL)
    except OSError as exc:
        raise translate(exc, "sendmsg(SCM_RIGHTS)") from None
    if sent != len(data):
        raise OSAPIError(errno.EMSGSIZE, "short sendmsg with SCM_RIGHTS", call="sendmsg")


def recv_fds(sock: socket.socket, bufsize: int, maxfds: int) -> tuple[bytes, list[int]]:
    """Receive one message and up to ``maxfds`` descriptors (close-on-exec).

    Returns ``(data, fds)``; ``data`` is ``b""`` when the peer closed.

    Raises:
        OSAPIError: ``EMSGSIZE`` if the control data was truncated (more fds
            than ``maxfds`` were sent); any descriptors that did arrive are
            closed first so none leak.
    """
    try:
        data, ancdata, flags, _addr = sock.recvmsg(
            bufsize, socket.CMSG_SPACE(maxfds * _INT_SIZE), MSG_CMSG_CLOEXEC
        )
    except OSError as exc:
        raise translate(exc, "recvmsg(SCM_RIGHTS)") from None
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % _INT_SIZE
            fds.extend(array.array("i", payload[:usable]))
    if flags & socket.MSG_CTRUNC:
        for fd in fds:
            os.close(fd)
        raise OSAPIError(
            errno.EMSGSIZE, f"more than {maxfds} descriptors were sent", call="recvmsg"
        )
    return data, fds
