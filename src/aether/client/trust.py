"""Checking a service before trusting it (threats T9, T31).

Before the client grants anything (``PR_SET_PTRACER``, its memory's
addresses), it checks that the socket sits in a directory only the expected
owner controls and that the process listening is that owner (``SO_PEERCRED``
of the server end).
"""

from __future__ import annotations

import os
import socket
import stat

from aether import osapi
from aether.errors import AetherError, ConnectError

from .discovery import ServiceAddress


def verify_service(sock: socket.socket, address: ServiceAddress) -> osapi.PeerCredentials:
    """Raise ConnectError unless the service is who it should be."""
    expected = address.expected_uid
    directory = address.path.parent
    max_mode = 0o755 if address.scope == "system" else 0o700
    try:
        osapi.check_directory(directory, owner=expected, max_mode=max_mode)
    except AetherError as exc:
        raise ConnectError(f"refusing to trust {address.path}: {exc}", path=str(address.path)) \
            from None
    try:
        st = os.lstat(address.path)
    except OSError as exc:
        raise ConnectError(f"{address.path}: {exc.strerror}", path=str(address.path)) from None
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != expected:
        raise ConnectError(
            f"refusing to trust {address.path}: not a socket owned by uid {expected}",
            path=str(address.path),
        )
    peer = osapi.peer_credentials(sock)
    if peer.uid != expected:
        raise ConnectError(
            f"refusing to trust {address.path}: the service runs as uid {peer.uid}, "
            f"expected uid {expected}",
            path=str(address.path),
        )
    return peer
