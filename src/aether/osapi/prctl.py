"""prctl(2) calls: Yama's ptracer exception and dumpability (the handshake),
and the parent-death signal (processes a test harness starts)."""

from __future__ import annotations

import os
from pathlib import Path

from ._libc import libc, raise_errno

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
PR_SET_PTRACER = 0x59616D61  # "Yama"
PR_SET_PTRACER_ANY = 0xFFFFFFFFFFFFFFFF

YAMA_SCOPE_PATH = Path("/proc/sys/kernel/yama/ptrace_scope")


def yama_ptrace_scope() -> int | None:
    """Yama's ``ptrace_scope`` (0-3), or None when Yama is not active."""
    try:
        return int(YAMA_SCOPE_PATH.read_text().strip())
    except (OSError, ValueError):
        return None


def set_ptracer(pid: int) -> None:
    """Allow process ``pid`` to ptrace (and so read our memory) under Yama scope 1.

    Only ever called for a service that was verified first (socket directory
    and peer uid), and undone with :func:`clear_ptracer` at session end.
    """
    if pid <= 0:
        raise ValueError("ptracer pid must be positive")
    if libc.prctl(PR_SET_PTRACER, pid, 0, 0, 0) != 0:
        raise_errno("prctl(PR_SET_PTRACER)")


def clear_ptracer() -> None:
    """Remove any ptracer exception set with :func:`set_ptracer`."""
    if libc.prctl(PR_SET_PTRACER, 0, 0, 0, 0) != 0:
        raise_errno("prctl(PR_SET_PTRACER, 0)")


def set_dumpable(flag: bool) -> None:
    if libc.prctl(PR_SET_DUMPABLE, 1 if flag else 0, 0, 0, 0) != 0:
        raise_errno("prctl(PR_SET_DUMPABLE)")


def is_dumpable() -> bool:
    res = libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)
    if res < 0:
        raise_errno("prctl(PR_GET_DUMPABLE)")
    return bool(res == 1)


def set_parent_death_signal(sig: int, *, parent: int) -> None:
    """Have the kernel send ``sig`` to this process when the thread that
    forked it dies; for a child between fork and exec. ``parent`` is the
    pid that forked us: if it is already gone (we were reparented before
    the call), the signal is raised at once, as the kernel would have."""
    if libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise_errno("prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)
