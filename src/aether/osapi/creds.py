"""Changing the identity of the current process (used by forked children in
tests and by services that drop privileges)."""

from __future__ import annotations

import os

from ._libc import translate


def drop_privileges(uid: int, gid: int | None = None) -> None:
    """Irrevocably become ``uid``/``gid`` with no supplementary groups.

    Must run as root. Order matters: groups, then gid, then uid.
    """
    target_gid = uid if gid is None else gid
    try:
        os.setgroups([])
        os.setresgid(target_gid, target_gid, target_gid)
        os.setresuid(uid, uid, uid)
    except OSError as exc:
        raise translate(exc, "drop_privileges") from None
