"""CPU placement: whether two processes can run at the same time at all,
which CPU a thread runs on, and keeping a process's threads together.

Spinning while waiting for a peer only pays when the peer runs on another
CPU meanwhile. When both processes may run only on one and the same CPU (a
one-CPU machine, or both pinned there), a spinner holds the very CPU its
peer needs, and each round trip costs the whole spin budget
(`aether bench`'s same-cpu rows showed it).

The service keeps its threads on one CPU (``aether.service.placement`` says
why); the calls it needs for that are here: the CPU a thread is on, the
affinity of every thread of this process, and the machine's per-CPU busy
time.
"""

from __future__ import annotations

import os

from ._libc import translate


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


def allowed_cpus() -> frozenset[int]:
    """The CPUs the calling thread may run on."""
    return frozenset(os.sched_getaffinity(0))


def main_thread_cpus() -> frozenset[int]:
    """The CPUs this process's main thread may run on."""
    try:
        return frozenset(os.sched_getaffinity(os.getpid()))
    except OSError as exc:
        raise translate(exc, "sched_getaffinity") from None


def current_cpu() -> int | None:
    """The CPU the calling thread ran on last (``/proc/thread-self/stat``,
    field 39); None when it cannot be read."""
    try:
        with open("/proc/thread-self/stat", "rb") as f:
            stat = f.read()
        # The name (field 2) may hold spaces and parentheses: count after its end.
        return int(stat[stat.rindex(b")") + 2:].split()[36])
    except (OSError, ValueError, IndexError):
        return None


def set_thread_cpus(cpus: frozenset[int]) -> None:
    """Let the calling thread run only on ``cpus``."""
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as exc:
        raise translate(exc, "sched_setaffinity") from None


def set_process_cpus(cpus: frozenset[int], *, keep: frozenset[int] = frozenset(),
                     pid: int | None = None) -> None:
    """Let every thread of this process (or of ``pid``) run only on ``cpus``,
    except the threads whose ids are in ``keep``. Threads started meanwhile
    inherit the affinity of the thread that starts them, so a second pass
    catches those a first one missed."""
    for _ in range(2):
        for tid in _thread_ids(pid):
            if tid in keep:
                continue
            try:
                if os.sched_getaffinity(tid) != cpus:
                    os.sched_setaffinity(tid, cpus)
            except ProcessLookupError:
                continue  # the thread ended meanwhile
            except OSError as exc:
                raise translate(exc, "sched_setaffinity") from None


def _thread_ids(pid: int | None) -> list[int]:
    tasks = f"/proc/{'self' if pid is None else pid}/task"
    try:
        return [int(t) for t in os.listdir(tasks)]
    except OSError as exc:
        raise translate(exc, tasks) from None


def cpu_busy_ticks() -> dict[int, int] | None:
    """Per CPU, the clock ticks it spent busy since boot (``/proc/stat``: all
    but idle and iowait). None when it cannot be read."""
    try:
        with open("/proc/stat", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    busy: dict[int, int] = {}
    for line in lines:
        if not line.startswith(b"cpu") or line.startswith(b"cpu "):
            continue
        fields = line.split()
        try:
            ticks = [int(x) for x in fields[1:]]
            # user nice system idle iowait irq softirq steal (guest is in user)
            busy[int(fields[0][3:])] = sum(ticks[:8]) - ticks[3] - ticks[4]
        except (ValueError, IndexError):
            return None
    return busy


def process_cpu_seconds() -> float:
    """CPU time this process (all its threads) has used, user and system."""
    times = os.times()
    return times.user + times.system


def clock_ticks_per_second() -> int:
    """The unit of /proc/stat and os.times()' ancestors (USER_HZ)."""
    return os.sysconf("SC_CLK_TCK")
