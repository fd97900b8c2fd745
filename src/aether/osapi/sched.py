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
