"""Where Aether keeps its sockets and named objects.

- system services: ``/run/aether`` (created by systemd's ``RuntimeDirectory=``
  or by the service as root, mode 0755);
- per-user: ``$AETHER_RUNTIME_DIR`` if set (tests use it for isolation),
  else ``$XDG_RUNTIME_DIR/aether``, else ``/tmp/aether-<uid>``; always 0700,
  owned by the user, never a symlink.
"""

from __future__ import annotations

import os
from pathlib import Path

from aether.osapi import check_directory, ensure_private_directory

SYSTEM_RUNTIME_DIR = Path("/run/aether")
ENV_RUNTIME_DIR = "AETHER_RUNTIME_DIR"


def user_runtime_dir(create: bool = True) -> Path:
    """The calling user's private Aether directory (created 0700 if missing)."""
    override = os.environ.get(ENV_RUNTIME_DIR)
    if override:
        path = Path(override)
    else:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        if xdg and os.path.isdir(xdg) and os.stat(xdg).st_uid == os.geteuid():
            path = Path(xdg) / "aether"
        else:
            path = Path(f"/tmp/aether-{os.geteuid()}")
    if create:
        ensure_private_directory(path, 0o700)
    else:
        check_directory(path, owner=os.geteuid(), max_mode=0o700)
    return path


def namespace_dir(kind: str, create: bool = True) -> Path:
    """A per-user directory for named objects of one kind (``atoms``,
    ``mappings``, ``mailslots`` ...), 0700 inside :func:`user_runtime_dir`."""
    if not kind.isidentifier():
        raise ValueError(f"bad namespace kind {kind!r}")
    base = user_runtime_dir(create=create)
    path = base / kind
    if create:
        ensure_private_directory(path, 0o700)
    return path
