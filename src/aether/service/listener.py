"""Creating the control socket safely.

A system service listens in ``/run/aether`` (root-owned, 0755); a user
service in its private 0700 runtime directory. We never unlink a path we did
not create unless it is a stale socket of ours (no one answers on it), so a
name cannot be hijacked from a live service (threat T31). Path sockets only:
abstract sockets have no permissions (T32).
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

from aether import osapi, runtime
from aether.errors import ConnectError


def default_socket_path(name: str) -> Path:
    """``/run/aether/<name>.ctl`` for root, else the user's runtime dir."""
    if os.geteuid() == 0 and not os.environ.get(runtime.ENV_RUNTIME_DIR):
        return runtime.SYSTEM_RUNTIME_DIR / f"{name}.ctl"
    return runtime.user_runtime_dir() / f"{name}.ctl"


def bind_control_socket(path: Path, *, mode: int | None = None) -> socket.socket:
    """Bind and listen on ``path``; its directory is created or checked first."""
    parent = path.parent
    system = os.geteuid() == 0 and parent == runtime.SYSTEM_RUNTIME_DIR
    if system:
        try:
            os.mkdir(parent, 0o755)
        except FileExistsError:
            pass
        osapi.check_directory(parent, owner=0, max_mode=0o755)
    elif not parent.exists():
        osapi.ensure_private_directory(parent, 0o700)
    else:
        st = os.lstat(parent)
        if stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid():
            raise ConnectError(f"{parent} is not a directory owned by us", path=str(parent))
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise ConnectError(f"cannot bind {path}: {exc.strerror}", path=str(path)) from None
    finally:
        os.umask(old_umask)
    final_mode = mode if mode is not None else (0o666 if system else 0o600)
    os.chmod(path, final_mode)
    sock.listen(128)
    return sock


def _remove_stale(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
        raise ConnectError(f"{path} exists and is not our socket; refusing to replace it",
                           path=str(path))
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            path.unlink(missing_ok=True)
            return
        raise ConnectError(f"cannot probe {path}: {exc.strerror}", path=str(path)) from None
    finally:
        probe.close()
    raise ConnectError(f"another service is already listening on {path}", path=str(path))
