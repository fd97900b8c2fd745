"""CPU placement: whether two processes can run at the same time at all.

Spinning while waiting for a peer only pays when the peer runs on another
CPU meanwhile. When both processes may run only on one and the same CPU (a
one-CPU machine, or both pinned there), a spinner holds the very CPU its
peer needs, and each round trip costs the whole spin budget
(`aether bench`'s same-cpu rows showed it).
"""

from __future__ import annotations

import os


def one_cpu_with(pid: int) -> bool:
    """True when this process and ``pid`` may together use only one CPU.

    False when either affinity cannot be read (the peer is gone, say): that
    leaves spinning as configured, which is only slower, never wrong.
    """
    try:
        cpus = os.sched_getaffinity(0) | os.sched_getaffinity(pid)
    except OSError:
        return False
    return len(cpus) <= 1


_loadavg_fd: int | None = None


def runnable_tasks() -> int | None:
    """Tasks of the whole machine running or ready to run right now, the
    caller included (the fourth field of ``/proc/loadavg``, "running/total").

    The file stays open: a ``pread`` of it costs about 2 µs where opening it
    costs about 19, and spinners ask often. None when it cannot be read.
    """
    global _loadavg_fd
    try:
        if _loadavg_fd is None:
            _loadavg_fd = os.open("/proc/loadavg", os.O_RDONLY | os.O_CLOEXEC)
        fields = os.pread(_loadavg_fd, 128, 0).split()
        return int(fields[3].split(b"/")[0])
    except (OSError, IndexError, ValueError):
        return None


def online_cpus() -> int:
    """CPUs of the machine (at least 1)."""
    return os.cpu_count() or 1
